"""kube-http-sd benchmarks: one command, one table (see bench/README.md).

    .venv/bin/python -m bench [--quick] [--only NAME[,NAME]] [--runs N] [--json FILE] [--profile DIR]

(from the repository root). Scenarios: initial_sync, event_throughput, serving, freshness,
memory, sharding, streaming_list, attach_metadata, large, gzip, real_apiserver, shards_cost,
ports_all, clusters, clusters_real.
Every number comes from real processes: the server (`python -m sd serve`) and the
baselines run as subprocesses against the loopback Kubernetes API double (sdtest/kubeapi.py,
running in this process). Each scenario reports the median of --runs runs (per-run ratios to a
baseline measured in the same run, then their median). Nothing is asserted: the table says
which budgets hold; the exit status is 0. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from bench.harness import PYSPY, T_START, Context, MachineLoad, Sizes, log, print_table
from bench.scenarios import (attach_metadata, clusters, event_throughput, freshness, gzip_body, initial_sync, large,
                             memory, ports_all, real_apiserver, serving, sharding, shards_cost, streaming_list)

SCENARIOS: dict[str, Callable[[Context], None]] = {
    "initial_sync": initial_sync.run,
    "event_throughput": event_throughput.run,
    "serving": serving.run,
    "freshness": freshness.run,
    "memory": memory.run,
    "sharding": sharding.run,
    "streaming_list": streaming_list.run,
    "attach_metadata": attach_metadata.run,
    "large": large.run,
    "gzip": gzip_body.run,
    "real_apiserver": real_apiserver.run,
    "shards_cost": shards_cost.run,
    "ports_all": ports_all.run,
    "clusters": clusters.run,
    "clusters_real": clusters.run_real,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run, smaller sizes: a smoke test")
    parser.add_argument("--only", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--runs", type=int, help="runs per scenario (default 3; --quick: 1)")
    parser.add_argument("--churn-seconds", type=float, help="shards_cost's churn phase (default 300; --quick: 15)")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--profile", help="write py-spy raw profiles of the server (first run) into this directory "
                                          "(numbers taken while profiling are slightly pessimistic)")
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.churn_seconds:
        sizes = dataclasses.replace(sizes, churn_seconds=args.churn_seconds)
    runs = args.runs or (1 if args.quick else 3)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    profile = Path(args.profile).resolve() if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
        if not Path(PYSPY).exists():
            log(f"--profile: {PYSPY} not found (pip install py-spy); profiling disabled")
    loads: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    log(f"sizes: {sizes}; runs: {runs}; scenarios: {', '.join(names)}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="kube-http-sd-bench-") as tmpdir:
        ctx = Context(sizes, runs, Path(tmpdir), profile)
        try:
            for name in names:
                log(f"=== {name}")
                t0 = time.monotonic()
                load = MachineLoad()
                try:
                    with load:
                        SCENARIOS[name](ctx)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - report, keep going, exit 0
                    ctx.notes.append(f"{name}: FAILED: {type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''}")
                    log(f"{name} failed:\n{traceback.format_exc()}")
                finally:
                    ctx.stop_all()
                share = getattr(load, "share", None)
                if share is not None:
                    loads.append(f"{name} {share * 100:.0f}%")
                log(f"=== {name} took {time.monotonic() - t0:.0f}s; other processes used "
                    f"{(share or 0) * 100:.0f}% of the machine meanwhile")
        except KeyboardInterrupt:
            log("interrupted")
        finally:
            ctx.stop_all()
    print()
    print(f"kube-http-sd benchmarks: {'quick, ' if args.quick else ''}{runs} run(s), median; "
          f"{sizes.nodes} nodes, {sizes.pods} pods; {os.cpu_count()} CPUs; total {time.monotonic() - T_START:.0f}s")
    print()
    print_table(ctx.results, ctx.notes)
    if loads:
        print(f"  * machine noise: CPU used by processes outside this benchmark, share of {os.cpu_count()} CPUs: "
              + ", ".join(loads))
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes.__dict__, "runs": runs,
                                               "results": [m.summary() for m in ctx.results], "notes": ctx.notes,
                                               "machine_noise": loads},
                                              indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
