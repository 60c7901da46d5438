"""The HTTP contract over real uvicorn sockets, IPv4 and IPv6, with the example snapshot."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import socket
import subprocess
import zlib

import httpx
import pytest

from sdtest.factories import make_node
from sdtest.helpers import ROOT, Server, eventually

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset

SNAPSHOT = str(ROOT / "examples" / "cluster.json")


@pytest.fixture(scope="module")
def server():
    with Server("--snapshot", SNAPSHOT, host="::") as srv:
        yield srv.wait_healthy()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_dual_stack_listener_answers_on_ipv4_and_ipv6(server, host):
    resp = httpx.get(f"http://{host}:{server.port}/targets/kubelet", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    groups = resp.json()
    assert groups and all(set(g) == {"targets", "labels"} for g in groups)


def test_example_snapshot_kubelet_targets_resolve_ip_reuse_and_skip_not_ready(server):
    groups = server.get("/targets/kubelet").json()
    by_target = {g["targets"][0]: g["labels"]["instance"] for g in groups}
    assert by_target == {
        "192.0.2.11:10250": "worker-1",  # the older node claiming the same IP is not served
        "192.0.2.12:10250": "worker-2",
        "192.0.2.13:10250": "worker-3",
        "[2001:db8:0:1::21]:10250": "v6-only-1",  # worker-4 is NotReady
    }


def test_example_snapshot_fluentd_targets_are_dual_stack(server):
    targets = sorted(g["targets"][0] for g in server.get("/targets/fluentd").json())
    assert "[2001:db8:244:2::7]:24231" in targets and "198.51.100.23:24231" in targets
    assert "[2001:db8:244:21::3]:24231" in targets
    assert not any("198.51.100.29" in t for t in targets)  # the web pod is not Fluentd
    assert not any("198.51.100.41" in t for t in targets)  # terminating Fluentd pod


def test_etag_and_if_none_match_give_304(server):
    first = server.get("/targets/fluentd")
    etag = first.headers["etag"]
    again = server.get("/targets/fluentd", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = server.get("/targets/fluentd", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200 and other.content == first.content


def test_head_returns_headers_without_body(server):
    plain = {"Accept-Encoding": "identity"}
    resp = httpx.head(server.base + "/targets/kubelet", timeout=5, headers=plain)
    assert resp.status_code == 200
    assert resp.content == b""
    assert int(resp.headers["content-length"]) == len(server.get("/targets/kubelet", headers=plain).content)


# -- gzip ---------------------------------------------------------------------------


def raw(server, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the body as sent (never decoded), over a plain socket client that
    adds no header of its own (no Accept-Encoding unless given)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def one_member(data: bytes) -> bytes:
    """Decode ``data`` as one gzip member, as curl and Chromium do (they stop after the first)."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    plain = decoder.decompress(data) + decoder.flush()
    assert decoder.eof and decoder.unused_data == b"", "exactly one gzip member"
    return plain


@pytest.mark.parametrize("path", ["/targets/kubelet", "/targets/fluentd", "/targets/fluentd?shards=3&shard=1"])
def test_no_accept_encoding_gets_the_plain_bytes_and_gzip_gets_them_compressed(server, path):
    status, plain_headers, plain = raw(server, path)  # as Prometheus asks: no Accept-Encoding
    assert status == 200 and "content-encoding" not in plain_headers and plain.startswith(b"[")
    assert plain_headers["vary"] == "Accept-Encoding" and int(plain_headers["content-length"]) == len(plain)
    status, headers, body = raw(server, path, {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert headers["content-type"] == "application/json"
    assert one_member(body) == plain and int(headers["content-length"]) == len(body) < len(plain)
    assert headers["etag"] == f'W/{plain_headers["etag"][:-1]}+gzip"', "its own ETag, derived from the plain one"
    assert raw(server, path, {"Accept-Encoding": "gzip"})[2] == body, "the same bytes for every request of a render"


def test_etags_304_and_head_per_encoding(server):
    path, gz = "/targets/fluentd", {"Accept-Encoding": "gzip, deflate"}
    _, plain_headers, _ = raw(server, path)
    _, gz_headers, gz_body = raw(server, path, gz)
    for headers, asked in ((plain_headers, {}), (gz_headers, gz)):
        status, got, body = raw(server, path, {**asked, "If-None-Match": headers["etag"]})
        assert status == 304 and body == b""
        assert got["etag"] == headers["etag"] and got["vary"] == "Accept-Encoding", "a 304 keeps ETag and Vary"
    # An ETag of the other encoding is another representation: the full answer.
    status, got, body = raw(server, path, {"If-None-Match": gz_headers["etag"]})
    assert status == 200 and "content-encoding" not in got
    status, got, body = raw(server, path, {**gz, "If-None-Match": plain_headers["etag"]})
    assert status == 200 and got["content-encoding"] == "gzip" and body == gz_body
    status, got, body = raw(server, path, gz, method="HEAD")
    assert status == 200 and body == b"" and int(got["content-length"]) == len(gz_body)
    assert got["content-encoding"] == "gzip" and got["etag"] == gz_headers["etag"]


@pytest.mark.parametrize(
    ("accept_encoding", "encoding"),
    [("gzip;q=0", None), ("identity", None), ("br", None), ("*", "gzip"), ("x-gzip", "gzip"), ("gzip;q=0.5, identity", None)],
)
def test_accept_encoding_q_values_identity_and_star(server, accept_encoding, encoding):
    status, headers, _ = raw(server, "/targets/kubelet", {"Accept-Encoding": accept_encoding})
    assert status == 200 and headers.get("content-encoding") == encoding


def test_refusing_both_gzip_and_identity_is_a_406(server):
    status, headers, body = raw(server, "/targets/kubelet", {"Accept-Encoding": "gzip;q=0, *;q=0"})
    assert status == 406 and json.loads(body)["error"] == "Accept-Encoding refuses both codings served: gzip and identity"


def test_requests_are_counted_by_encoding(server):
    def count(encoding: str) -> float:
        line = f'kube_http_sd_http_requests_total{{code="200",encoding="{encoding}",route="/targets/{{name}}"}} '
        return next((float(x.split()[-1]) for x in server.get("/metrics").text.splitlines() if x.startswith(line)), 0.0)

    before = count("gzip"), count("identity")
    raw(server, "/targets/kubelet", {"Accept-Encoding": "gzip"})
    raw(server, "/targets/kubelet")
    raw(server, "/targets/kubelet")
    assert (count("gzip"), count("identity")) == (before[0] + 1, before[1] + 2)


def test_curl_compressed_decodes_our_gzip(server):
    url = server.base + "/targets/kubelet"
    out = subprocess.run(["curl", "-sS", "--compressed", "-D", "-", "--noproxy", "*", url], capture_output=True, check=True)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower(), head
    assert body == raw(server, "/targets/kubelet")[2]


def test_unknown_set_is_a_json_404(server):
    resp = server.get("/targets/nope")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert "kubelet" in resp.json()["error"]


def test_unknown_route_is_a_json_404(server):
    resp = server.get("/nope")
    assert resp.status_code == 404 and resp.json()["status"] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_a_json_405(server, method):
    resp = httpx.request(method, server.base + "/targets/kubelet", timeout=5)
    assert resp.status_code == 405
    assert resp.json()["error"] == "method not allowed"
    assert "GET" in resp.headers["allow"]


def test_readyz_healthz_and_index(server):
    assert server.get("/readyz").status_code == 200
    assert server.get("/healthz").text == "ok\n"
    index = server.get("/").text
    assert "/targets/kubelet" in index and "/targets/fluentd" in index
    kubelet_line = next(line for line in index.splitlines() if line.startswith("kubelet"))
    assert kubelet_line.split()[3] == "4"


def test_metrics_exposes_targets_and_requests(server):
    server.get("/targets/kubelet")
    text = server.get("/metrics").text
    assert 'kube_http_sd_targets{family="ipv6",set="kubelet"} 1.0' in text
    assert 'kube_http_sd_ip_conflicts{set="kubelet"} 1.0' in text  # worker-1 and worker-1-old
    assert 'kube_http_sd_excluded_objects{reason="not_ready",set="kubelet"} 1.0' in text  # worker-4
    assert 'kube_http_sd_http_requests_total{code="200",encoding="gzip",route="/targets/{name}"}' in text  # httpx asks


def test_equal_state_gives_equal_bytes_across_restarts(server):
    with Server("--snapshot", SNAPSHOT) as other:
        other.wait_healthy()
        assert other.get("/targets/kubelet").content == server.get("/targets/kubelet").content
        assert other.get("/targets/fluentd").headers["etag"] == server.get("/targets/fluentd").headers["etag"]


def test_sigterm_shuts_down_cleanly():
    srv = Server("--snapshot", SNAPSHOT)
    with srv:
        srv.wait_healthy()
        assert srv.stop() == 0
        assert "listening address=127.0.0.1:" in srv.log()


def test_ipv6_only_listen_address():
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback; the dual-stack contract needs it")
    with Server("--snapshot", SNAPSHOT, host="::1") as srv:
        srv.wait_healthy()
        assert srv.get("/targets/kubelet").status_code == 200
        assert f"listening address=[::1]:{srv.port}" in srv.log()


async def test_healthz_fails_when_the_sources_task_ends():
    from sd.config import default_config
    from sd.http.app import create_app
    from sd.metrics import Metrics
    from sd.service import Service

    def driver(feed):
        async def crashes() -> None:
            if feed.name == "nodes":
                raise RuntimeError("informer bug")
            await asyncio.Event().wait()
        return crashes

    metrics = Metrics()
    app = create_app(Service(default_config(), metrics), metrics, driver)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sd") as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while (resp := await client.get("/healthz")).status_code != 500:
                assert loop.time() < deadline, resp.text
                await asyncio.sleep(0.01)
    assert resp.text == "background task stopped: nodes\n"


def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_host_header(server):
    resp = httpx.get(server.base + "/targets/kubelet/", headers={"Host": "attacker.invalid"}, follow_redirects=False)
    assert resp.status_code == 404 and "location" not in resp.headers
    assert resp.json()["error"] == "no route '/targets/kubelet/'; see / for the target sets"


def test_a_client_that_stops_reading_is_disconnected_after_the_write_timeout(tmp_path):
    nodes = [dict(make_node(f"n{i}", [f"127.1.{i // 250}.{i % 250 + 1}"]), kind="Node") for i in range(12000)]
    snapshot = tmp_path / "big.json"
    snapshot.write_text(json.dumps({"kind": "List", "items": nodes}))
    config = tmp_path / "sd.yaml"
    config.write_text("server:\n  write_timeout_seconds: 1\n")
    with Server("--snapshot", str(snapshot), "--config", str(config)) as srv:
        srv.wait_healthy()
        size = len(srv.get("/targets/kubelet").content)
        assert size > 8_000_000, "the body must not fit into the socket buffers"
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", srv.port))
        stalled.sendall(b"GET /targets/kubelet HTTP/1.1\r\nHost: x\r\n\r\n")
        eventually(lambda: "closing a connection that stopped reading" in srv.log(), what="the stalled client dropped")
        # Others are served meanwhile, and the stalled one finds its connection closed short of the body.
        assert len(srv.get("/targets/kubelet").content) == size
        received = 0
        stalled.settimeout(10)
        while chunk := stalled.recv(1 << 20):
            received += len(chunk)
        stalled.close()
        assert 0 < received < size


# -- sharded serving -----------------------------------------------------------------


def prometheus_hashmod(value: str, modulus: int) -> int:
    """relabel.go HashMod, written here from its definition: md5, last 8 bytes, big-endian."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def test_hashmod_matches_prometheus_relabel_tests():
    from sd.shards import hashmod

    assert hashmod("baz", 1000) == 976  # model/relabel/relabel_test.go
    assert hashmod("foo\nbar", 1000) == 734


@pytest.mark.parametrize("set_name", ["kubelet", "fluentd"])
@pytest.mark.parametrize("shards", [1, 2, 3, 7, 16])
def test_shards_are_disjoint_complete_and_hashmod_exact(server, set_name, shards):
    full = server.get(f"/targets/{set_name}").json()
    seen = []
    for shard in range(shards):
        resp = server.get(f"/targets/{set_name}?shards={shards}&shard={shard}")
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        groups = resp.json()
        for group in groups:  # bracketed IPv6 hashes as the bracketed string, as __address__ is
            assert prometheus_hashmod(group["targets"][0], shards) == shard
        assert groups == [g for g in full if g in groups], "a shard keeps the full body's order"
        seen += groups
    assert sorted(map(json.dumps, seen)) == sorted(map(json.dumps, full))


def test_each_shard_has_its_own_etag_304_and_head(server):
    tags = set()
    for shard in range(3):
        path = f"/targets/fluentd?shards=3&shard={shard}"
        resp = server.get(path)
        tags.add(resp.headers["etag"])
        assert server.get(path, headers={"If-None-Match": resp.headers["etag"]}).status_code == 304
        for coding in ("identity", "gzip"):
            _, headers, body = raw(server, path, {"Accept-Encoding": coding})
            tags.add(headers["etag"])
            status, head, _ = raw(server, path, {"Accept-Encoding": coding}, method="HEAD")
            assert status == 200 and int(head["content-length"]) == len(body)
    tags |= {raw(server, "/targets/fluentd", {"Accept-Encoding": coding})[1]["etag"] for coding in ("identity", "gzip")}
    assert len(tags) == 8, "per shard and encoding"
    assert server.get("/targets/fluentd?shards=3&shard=0").content == server.get("/targets/fluentd?shard=0&shards=3").content


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("shards=3", "go together"),
        ("shard=0", "go together"),
        ("shards=x&shard=0", "not integers"),
        ("shards=3&shard=1.0", "not integers"),
        ("shards=-1&shard=0", "not integers"),
        ("shards=0&shard=0", "out of range"),
        ("shards=1025&shard=0", "out of range"),
        ("shards=3&shard=3", "out of range"),
    ],
)
def test_bad_shard_parameters_are_a_json_400(server, query, says):
    resp = server.get(f"/targets/kubelet?{query}")
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    assert says in resp.json()["error"] and "1 <= N <= 1024" in resp.json()["error"]


def test_unrelated_query_parameters_are_ignored(server):
    plain, extra = server.get("/targets/kubelet"), server.get("/targets/kubelet?foo=bar")
    assert plain.status_code == extra.status_code == 200
    assert extra.content == plain.content and plain.json()
