"""kube-http-sd benchmarks: `python -m bench` from the repository root (see bench/README.md).

Kept empty of imports: the baselines run as `python -m bench.base_*` and their start-up
time is part of what is measured.
"""
