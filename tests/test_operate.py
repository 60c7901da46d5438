"""Day two: the explain view, the targets command, access control with real TLS."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import subprocess
import sys
import textwrap
import threading

import httpx
import pytest
import trustme

from sdtest.factories import make_node, make_pod
from sdtest.helpers import ROOT, Server, eventually, free_port, probed_pod

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset

SNAPSHOT = str(ROOT / "examples" / "cluster.json")


@pytest.fixture(scope="module")
def server():
    with Server("--snapshot", SNAPSHOT) as srv:
        yield srv.wait_healthy()


def test_explain_view_names_winner_losers_and_why(tmp_path):
    snapshot = tmp_path / "cluster.json"
    nodes = [
        make_node("dead", ["10.0.0.7"], ready="Unknown", created="2026-01-01T00:00:00Z"),
        make_node("old", ["10.0.0.7"], created="2026-02-01T00:00:00Z"),
        make_node("new", ["10.0.0.7"], created="2026-06-01T00:00:00Z"),
        make_node("bad", ["not-an-ip"]),
    ]
    snapshot.write_text(json.dumps({"kind": "List", "items": nodes}))
    config = tmp_path / "sd.yaml"
    config.write_text("targets:\n  kubelet: {source: nodes, port: 10250, port_name: kubelet}\n")
    with Server("--snapshot", str(snapshot), "--config", str(config)) as srv:
        srv.wait_healthy()
        view = srv.get("/debug/sets/kubelet").json()
        assert view["ips"] == [
            {
                "ip": "10.0.0.7",
                "target": "10.0.0.7:10250",
                "family": "ipv4",
                "winner": "new",
                "node": None,
                "instance": "new",
                "labels": {"kubernetes.io/hostname": "new", "kubernetes.io/os": "linux"},
                "losers": [{"object": "old", "why": "older: created 2026-02-01T00:00:00Z, new created 2026-06-01T00:00:00Z"}],
            }
        ]
        excluded = {e["object"]: e for e in view["excluded"]}
        assert excluded["dead"]["reason"] == "not_ready"
        assert excluded["dead"]["why"] == "not ready (Ready=Unknown)"
        assert excluded["bad"]["reason"] == "no_address"
        assert view["skipped"] == [
            {"object": "node/bad", "reason": "invalid_ip", "detail": "node/bad: status.addresses[0].address: not an IP: 'not-an-ip'"}
        ]
        text = srv.get("/debug/sets/kubelet?format=text").text
        assert "10.0.0.7  10.0.0.7:10250  new" in text
        assert "old: older" in text and "node/bad" in text
        assert srv.get("/debug/sets/nope").status_code == 404


def test_explain_view_can_be_disabled(tmp_path):
    config = tmp_path / "sd.yaml"
    config.write_text("server:\n  debug: false\n")
    with Server("--snapshot", SNAPSHOT, "--config", str(config)) as srv:
        srv.wait_healthy()
        assert srv.get("/debug/sets/kubelet").status_code == 404
        assert "/debug" not in srv.get("/").text


def test_targets_command_prints_a_table(server):
    result = subprocess.run(
        [sys.executable, "-m", "sd", "targets", server.base + "/targets/fluentd"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TARGET", "FAMILY", "OBJECT", "NODE", "INSTANCE"]
    assert any(line.split()[:4] == ["[2001:db8:244:21::3]:24231", "ipv6", "logging/logging-fluentd-m2n7v", "v6-only-1"] for line in lines)
    assert lines[-1] == "6 targets"


def test_targets_command_reports_http_errors(server):
    result = subprocess.run(
        [sys.executable, "-m", "sd", "targets", server.base + "/targets/nope"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A server with TLS, a bearer token and basic auth, all from files."""
    tmp = tmp_path_factory.mktemp("secured")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    (tmp / "token").write_text("s3cret-token\n")
    (tmp / "password").write_text("hunter2\n")
    config = tmp / "sd.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            server:
              tls_cert_file: {tmp / 'server.pem'}
              tls_key_file: {tmp / 'server.pem'}
              bearer_token_file: {tmp / 'token'}
              basic_auth_username: prometheus
              basic_auth_password_file: {tmp / 'password'}
            """
        )
    )
    srv = Server("--snapshot", SNAPSHOT, "--config", str(config))
    srv.base = srv.base.replace("http://", "https://")
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(tmp / "ca.pem")), base_url=srv.base, timeout=5)
    eventually(lambda: client.get("/healthz").status_code == 200, timeout=15, what="TLS /healthz")
    yield srv, client, tmp, ca
    client.close()
    srv.stop()


def test_tls_serves_with_the_configured_certificate(secured):
    srv, client, tmp, ca = secured
    assert client.get("/targets/kubelet", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.base + "/healthz", timeout=5)  # the system trust store does not know our CA
    with pytest.raises(httpx.HTTPError):
        httpx.get(srv.base.replace("https://", "http://") + "/healthz", timeout=5)


@pytest.mark.parametrize("path", ["/targets/kubelet", "/", "/readyz", "/metrics", "/debug/sets/kubelet", "/nope"])
def test_every_route_but_healthz_needs_credentials(secured, path):
    _, client, _, _ = secured
    resp = client.get(path)
    assert resp.status_code == 401
    assert resp.json() == {"error": "unauthorized", "status": 401}
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer s3cret-token-and-more"},
        {"Authorization": "Bearer"},
        {"Authorization": "s3cret-token"},
        {"Authorization": "Basic !!!"},
    ],
)
def test_wrong_credentials_get_the_same_bare_401(secured, headers):
    _, client, _, _ = secured
    resp = client.get("/targets/kubelet", headers=headers)
    assert resp.status_code == 401 and resp.json() == {"error": "unauthorized", "status": 401}


@pytest.mark.parametrize(
    ("auth", "status"),
    [(("prometheus", "hunter2"), 200), (("prometheus", "wrong"), 401), (("someone", "hunter2"), 401)],
)
def test_basic_auth(secured, auth, status):
    _, client, _, _ = secured
    assert client.get("/targets/fluentd", auth=auth).status_code == status


def test_rotated_token_file_takes_effect_without_restart(secured):
    _, client, tmp, _ = secured
    (tmp / "token").write_text("rotated-token-2\n")
    try:
        eventually(lambda: client.get("/readyz", headers={"Authorization": "Bearer rotated-token-2"}).status_code == 200)
        assert client.get("/readyz", headers={"Authorization": "Bearer s3cret-token"}).status_code == 401
    finally:
        (tmp / "token").write_text("s3cret-token\n")


def test_renewed_certificate_is_served_without_restart(secured):
    srv, client, tmp, ca = secured
    new_ca = trustme.CA()
    new_ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    new_ca.cert_pem.write_to_path(str(tmp / "new-ca.pem"))
    verify = ssl.create_default_context(cafile=str(tmp / "new-ca.pem"))
    with httpx.Client(verify=verify, base_url=srv.base, timeout=5) as fresh:
        eventually(lambda: fresh.get("/healthz").status_code == 200, timeout=20, what="new certificate served")
    assert "TLS certificate reloaded" in srv.log()


def test_check_config_rejects_half_configured_tls_and_auth(tmp_path):
    config = tmp_path / "sd.yaml"
    config.write_text("server:\n  tls_cert_file: /nope.pem\n  basic_auth_username: x\n")
    result = subprocess.run(
        [sys.executable, "-m", "sd", "check-config", "--config", str(config)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2
    assert f"{config}: server.tls_cert_file: no such file: /nope.pem" in result.stderr
    assert "tls_cert_file and tls_key_file go together" in result.stderr
    assert "basic_auth_username and basic_auth_password_file go together" in result.stderr


class _Listener:
    """A metrics endpoint bound to exactly one loopback address."""

    def __init__(self, host: str, port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"fluentd_up 1\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = family

        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("listen_on", "served", "advice"),
    [
        ("127.0.0.1", "127.0.0.1", "IPv6 refused"),
        ("::1", "[::1]", "IPv4 refused"),
    ],
)
def test_reachable_mode_publishes_only_the_family_that_answers(tmp_path, listen_on, served, advice):
    listener = _Listener(listen_on)
    try:
        port = listener.port
        snapshot, config = probed_pod(tmp_path, port)
        with Server("--snapshot", snapshot, "--config", config) as srv:
            srv.wait_healthy()
            eventually(
                lambda: [g["targets"] for g in srv.get("/targets/fluentd").json()] == [[f"{served}:{port}"]],
                what="only the answering family",
            )
            view = srv.get("/debug/sets/fluentd").json()
            [probe] = view["probes"]
            assert probe["object"] == "logging/fluentd-a"
            assert advice in probe["advice"]
            assert sorted(r["ok"] for r in probe["results"].values()) == [False, True]
            assert "advice: logging/fluentd-a: " + advice in srv.get("/debug/sets/fluentd?format=text").text
            metrics = srv.get("/metrics").text
            assert 'kube_http_sd_probe_endpoints{family="ipv4",result=' in metrics
    finally:
        listener.close()


def test_reachable_mode_serves_the_primary_until_something_answers(tmp_path):
    port = free_port()  # nothing listens here
    pod = make_pod("fluentd-a", ["::1", "127.0.0.1"], port=port)
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "PodList", "items": [pod]}))
    config = tmp_path / "sd.yaml"
    config.write_text(
        "probe: {interval_seconds: 1, timeout_seconds: 1}\n"
        "targets:\n  fluentd: {source: pods, port_name: monitor, port: 24231, ip_family: reachable}\n"
    )
    with Server("--snapshot", str(snapshot), "--config", str(config)) as srv:
        srv.wait_healthy()
        eventually(lambda: len(srv.get("/debug/sets/fluentd").json()["probes"]) == 1, what="probed")
        assert [g["targets"] for g in srv.get("/targets/fluentd").json()] == [[f"[::1]:{port}"]]


def test_a_certificate_written_before_its_key_never_breaks_https(tmp_path):
    old_ca, new_ca = trustme.CA(), trustme.CA()
    old, new = old_ca.issue_cert("127.0.0.1"), new_ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    old.cert_chain_pems[0].write_to_path(str(cert))
    old.private_key_pem.write_to_path(str(key))
    old_ca.cert_pem.write_to_path(str(tmp_path / "old-ca.pem"))
    new_ca.cert_pem.write_to_path(str(tmp_path / "new-ca.pem"))
    config = tmp_path / "sd.yaml"
    config.write_text(f"server:\n  tls_cert_file: {cert}\n  tls_key_file: {key}\n")
    with Server("--snapshot", SNAPSHOT, "--config", str(config)) as srv:
        base = srv.base.replace("http://", "https://")
        trust_old = ssl.create_default_context(cafile=str(tmp_path / "old-ca.pem"))
        trust_new = ssl.create_default_context(cafile=str(tmp_path / "new-ca.pem"))
        eventually(lambda: httpx.get(base + "/healthz", verify=trust_old, timeout=5).status_code == 200, timeout=15)
        # A rotation that writes the certificate first: for a while it does not match the key.
        new.cert_chain_pems[0].write_to_path(str(cert))
        eventually(lambda: "TLS reload failed" in srv.log(), what="the mismatched pair refused")
        for _ in range(5):  # every new handshake still gets the previous, working pair
            assert httpx.get(base + "/healthz", verify=trust_old, timeout=5).status_code == 200
        metrics = httpx.get(base + "/metrics", verify=trust_old, timeout=5).text
        assert 'kube_http_sd_tls_reloads_total{result="failed"} 1.0' in metrics
        new.private_key_pem.write_to_path(str(key))
        eventually(lambda: httpx.get(base + "/healthz", verify=trust_new, timeout=5).status_code == 200,
                   what="the new pair once the key matches")
        assert srv.log().count("TLS reload failed") == 1, "a bad pair is logged once, not at every check"
