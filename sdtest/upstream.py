"""The upstream programs the tests run (kube-apiserver, kubectl, etcd, Prometheus 3,
prometheus-operator), built from their published Go modules by ``tools/build.sh`` through the
wrapper modules in ``tools/`` into a cache outside the repository (minutes the first time, then
instant). Without Go or a build the tests that need one skip on a developer's machine and fail
under ``CI``."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

import pytest

from sdtest.helpers import ROOT

# program -> the wrapper module in tools/ that builds it
MODULES = {
    "kube-apiserver": "kubernetes",
    "kubectl": "kubernetes",
    "etcd": "etcd",
    "prometheus": "prometheus",
    "prometheus-operator": "prometheus-operator",
    "helm": "helm",
    "vmagent": "vmagent",
}


def program(name: str) -> str:
    """The path of a built program (building its module when missing)."""
    return _build(MODULES[name])[name]


@cache
def _build(module: str) -> dict[str, str]:
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "tools" / "build.sh"), module], capture_output=True, text=True, timeout=3600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"tools/build.sh {module} did not run: {exc}")
    if done.returncode != 0:
        unavailable(f"tools/build.sh {module} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return {Path(p).name: p for p in done.stdout.split()}


def unavailable(why: str) -> None:
    message = f"an upstream program is not available: {why}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
