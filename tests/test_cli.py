"""The command line as users run it: `kube-http-sd --version` and `kube-http-sd targets`
(piped into head, given a base URL or no scheme, with basic auth, the NODE column)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib

import pytest

from sdtest.factories import make_node
from sdtest.helpers import ROOT, Server, eventually

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset

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


def test_targets_piped_into_head_ends_quietly(tmp_path):
    # Enough targets that the table is far larger than a pipe's buffer.
    nodes = [make_node(f"n{i}", [f"2001:db8::{i:x}"]) for i in range(3000)]
    snapshot = tmp_path / "big.json"
    snapshot.write_text(json.dumps({"kind": "NodeList", "items": nodes}))
    with Server("--snapshot", str(snapshot)) as srv:
        srv.wait_healthy()
        script = f"set -o pipefail; {sys.executable} -m sd targets {srv.base}/targets/kubelet | head -1"
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["TARGET", "FAMILY", "OBJECT", "NODE", "INSTANCE"]
    assert result.stderr == ""


def test_a_base_url_lists_the_sets(server):
    for url in (server.base, server.base + "/"):
        result = run_cli("targets", url)
        assert result.returncode == 0, result.stderr
        assert "/targets/kubelet" in result.stdout and "/targets/fluentd" in result.stdout
        assert f"kube-http-sd targets {server.base}/targets/<set>" in result.stdout


def test_a_url_that_names_no_target_set_is_a_clear_error(server):
    result = run_cli("targets", server.base + "/debug/sets/kubelet")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not a target set URL" in result.stderr
    assert "Expecting value" not in result.stderr


def test_a_url_without_scheme_is_http(server):
    result = run_cli("targets", server.base.removeprefix("http://") + "/targets/kubelet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "4 targets"


def test_kubelet_targets_fill_the_node_column(server):
    result = run_cli("targets", server.base + "/targets/kubelet")
    rows = [line.split() for line in result.stdout.splitlines()[1:-1]]
    assert [r[2:4] for r in rows] == [["worker-1", "worker-1"], ["worker-2", "worker-2"], ["worker-3", "worker-3"],
                                      ["v6-only-1", "v6-only-1"]]


def test_pods_with_attached_node_metadata_are_still_named_by_pod(tmp_path):
    config = tmp_path / "sd.yaml"
    config.write_text(textwrap.dedent("""
        targets:
          fluentd: {source: pods, label_selector: app.kubernetes.io/name=fluentd, port_name: monitor, port: 24231,
                    ip_family: both, attach_metadata: {node: true}}
    """))
    with Server("--snapshot", SNAPSHOT, "--config", str(config)) as srv:
        srv.wait_healthy()
        result = run_cli("targets", srv.base + "/targets/fluentd")
    rows = [line.split() for line in result.stdout.splitlines()[1:-1]]
    assert ["198.51.100.5:24231", "ipv4", "logging/logging-fluentd-4xk2p", "worker-1", "-"] in rows


@pytest.fixture(scope="module")
def basic_auth(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("basic")
    (tmp / "password").write_text("hunter2\n")
    config = tmp / "sd.yaml"
    config.write_text(f"server:\n  basic_auth_username: prometheus\n  basic_auth_password_file: {tmp / 'password'}\n")
    with Server("--snapshot", SNAPSHOT, "--config", str(config)) as srv:
        eventually(lambda: srv.get("/healthz").status_code == 200, what="server up")
        yield srv, tmp


def test_targets_sends_basic_auth_with_the_password_from_a_file(basic_auth):
    srv, tmp = basic_auth
    url = srv.base + "/targets/kubelet"
    assert run_cli("targets", url).returncode == 1  # 401 without credentials
    result = run_cli("targets", url, "--user", "prometheus", "--password-file", str(tmp / "password"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "4 targets"
    (tmp / "wrong").write_text("nope\n")
    denied = run_cli("targets", url, "--user", "prometheus", "--password-file", str(tmp / "wrong"))
    assert denied.returncode == 1 and "HTTP 401" in denied.stderr


def test_basic_auth_options_go_together(basic_auth):
    srv, tmp = basic_auth
    result = run_cli("targets", srv.base + "/targets/kubelet", "--user", "prometheus")
    assert result.returncode == 2 and "--user and --password-file go together" in result.stderr
