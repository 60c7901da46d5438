"""Without a ``clusters:`` map the server serves today's single cluster with today's bytes
and ETags: the bodies of examples/cluster.json under the default config were recorded in
tests/recorded/ before several clusters existed, and the running server must still answer
exactly them (no ``__meta_sd_cluster``, same order, same ETags, same shard ETags)."""

from __future__ import annotations

import json

import pytest

from sdtest.helpers import ROOT, Server

RECORDED = ROOT / "tests" / "recorded"
PLAIN = {"Accept-Encoding": "identity"}  # as Prometheus asks (httpx would ask for gzip)
EXAMPLE = ROOT / "examples" / "cluster.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    with Server("--snapshot", str(EXAMPLE)) as srv:
        yield srv.wait_healthy()


@pytest.mark.parametrize("name", ["kubelet", "fluentd"])
def test_single_cluster_body_and_etag_are_the_recorded_ones(server, name):
    recorded = json.loads((RECORDED / "etags.json").read_text())[name]
    resp = server.get(f"/targets/{name}", headers=PLAIN)
    assert resp.status_code == 200
    assert resp.content == (RECORDED / f"{name}.json").read_bytes()
    assert resp.headers["etag"] == recorded["etag"]
    assert b"__meta_sd_cluster" not in resp.content
    shard_etags = [server.get(f"/targets/{name}?shards=3&shard={i}", headers=PLAIN).headers["etag"] for i in range(3)]
    assert shard_etags == recorded["shards_3"]
