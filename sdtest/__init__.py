"""Test support shared by tests/ and bench/: the loopback Kubernetes API double
(``kubeapi``), object factories (``factories``), the server as a real process and
polling helpers (``helpers``), and real Prometheus (``promtest``).

Importable from the repository root (pytest's ``pythonpath``, ``python -m bench``);
not part of the installed package.
"""
