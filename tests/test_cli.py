"""The command line as users run it: `kube-http-sd --version`."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from sdtest.helpers import ROOT, Server

SNAPSHOT = str(ROOT / "examples" / "cluster.json")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sd", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def server():
    with Server("--snapshot", SNAPSHOT) as srv:
        yield srv.wait_healthy()


def test_version_prints_the_package_version_and_its_runtime():
    result = run_cli("--version")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"kube-http-sd {version} (python {sys.version.split()[0]}, kubernetes-asyncio ")


def test_the_version_is_logged_at_start(server):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    first = next(line for line in server.log().splitlines() if "msg=starting" in line)
    assert f"version={version} python={sys.version.split()[0]} kubernetes_asyncio=" in first
