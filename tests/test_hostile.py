"""Hostile input from the API side: poisoned watch history, watches that hang up at once,
refused credentials. Each must be backed off (never a reconnect storm), must not freeze
the targets, and must say why in /readyz, /metrics and the explain view.

The real server process runs against the loopback API double.
"""

from __future__ import annotations

import json
import time

import pytest

from sdtest.factories import make_node, with_ready
from sdtest.helpers import Server, eventually, metric_sum
from sdtest.kubeapi import FakeKubeAPI

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset


def start(api: FakeKubeAPI, tmp_path, config_file: str, token: str | None = None) -> Server:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token=token)
    return Server("--kubeconfig", kubeconfig, "--config", config_file)


def kubelet_targets(srv: Server) -> set[str]:
    resp = srv.get("/targets/kubelet")
    assert resp.status_code == 200, resp.text
    return {t for g in resp.json() for t in g["targets"]}


def node_watches(api: FakeKubeAPI) -> int:
    return sum(1 for r in api.requests if r["watch"] and r["path"].endswith("/nodes"))


BAD_LINES = {
    "unknown event type": b'{"type":"EXPLODED","object":{"kind":"Node","metadata":{"name":"x","resourceVersion":"1"}}}',
    "metadata is a list": b'{"type":"MODIFIED","object":{"kind":"Node","metadata":[]}}',
    "object is null": b'{"type":"MODIFIED","object":null}',
    "3000-deep nesting": b'{"type":"MODIFIED","object":' + b"[" * 3000 + b"]" * 3000 + b"}",
    "invalid UTF-8": b'{"type":"MODIFIED","object":{"metadata":{"name":"\xff\xfe","resourceVersion":"9"}}}',
    "Status without type": b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}',
}


@pytest.mark.parametrize("line", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_bad_line_replayed_on_every_rewatch_is_backed_off_then_relisted_past(api, tmp_path, config_file, line):
    api.add(make_node("n1", ["192.0.2.1"]))
    with start(api, tmp_path, config_file) as srv:
        srv.wait_healthy()
        eventually(lambda: kubelet_targets(srv) == {"192.0.2.1:10250"}, what="first sync")
        before = node_watches(api)
        api.poison("Node", line)  # in the history: every watch from an older version replays it
        api.add(make_node("n2", ["192.0.2.2"]))  # after the bad line: only a relist can bring it
        eventually(lambda: kubelet_targets(srv) == {"192.0.2.1:10250", "192.0.2.2:10250"}, what="n2 via relist")
        watches = node_watches(api) - before
        assert watches <= 6, f"{watches} watch requests: re-watching was not backed off"
        assert metric_sum(srv, 'kube_http_sd_relists_total{reason="malformed_event"') >= 1
        assert metric_sum(srv, 'kube_http_sd_source_errors_total{reason="malformed_event"') >= 1
        assert metric_sum(srv, 'kube_http_sd_skipped_total{reason="malformed_event"') >= 1
        view = srv.get("/debug/sets/kubelet").json()
        assert view["sources"][0]["last_error"]["reason"] == "malformed_event"
        assert any(s["reason"] == "malformed_event" for s in view["skipped"])
        assert "relisting" in srv.log() and "malformed_event" in srv.log()
        # Once past the bad line, the watch carries changes again.
        api.add(make_node("n3", ["192.0.2.3"]))
        eventually(lambda: "192.0.2.3:10250" in kubelet_targets(srv), what="n3 via the watch")
        assert srv.get("/readyz").status_code == 200


def test_a_watch_that_ends_at_once_is_backed_off_and_shown(api, tmp_path, config_file):
    api.add(make_node("n1", ["192.0.2.1"]))
    with start(api, tmp_path, config_file) as srv:
        srv.wait_healthy()
        eventually(lambda: kubelet_targets(srv) == {"192.0.2.1:10250"}, what="first sync")
        api.close_watches_at_once(10_000)
        api.drop_streams()
        before, t0 = node_watches(api), time.monotonic()
        eventually(lambda: metric_sum(srv, 'kube_http_sd_source_errors_total{reason="short_watch"') >= 3,
                   what="short watches counted as errors")
        # Backoff from 0.05 s doubling to 0.5 s: ten watches take 2.7 s or more, a few per
        # second, not the ~1,500/s of a hot loop.
        eventually(lambda: node_watches(api) - before >= 10, what="ten more watch requests")
        rate = (node_watches(api) - before) / (time.monotonic() - t0)
        assert rate < 15, f"{rate:.0f} watch requests per second"
        assert kubelet_targets(srv) == {"192.0.2.1:10250"}, "the last state stays served"
        # Between retries the source is stale, and readiness says why (while staying 200:
        # the last state is still served).
        ready = eventually(lambda: (r := srv.get("/readyz")).status_code == 200 and "nodes: stale" in r.text and r,
                           what="the stale source in /readyz")
        assert "last error short_watch" in ready.text
        api.close_watches_at_once(0)
        api.add(make_node("n2", ["192.0.2.2"]))
        eventually(lambda: "192.0.2.2:10250" in kubelet_targets(srv), what="recovery once watches stay open")


def test_refused_credentials_are_the_reason_readyz_gives(tmp_path, config_file):
    with FakeKubeAPI(tokens={"right"}) as api:
        api.add(make_node("n1", ["192.0.2.1"]))
        with start(api, tmp_path, config_file, token="wrong") as srv:
            srv.wait_healthy()
            # Polled for the line as it reads between retries: during a retry's own list it
            # also names the list in flight ("syncing, listing (...), last error ...").
            ready = eventually(lambda: (r := srv.get("/readyz")).status_code == 503
                               and "nodes: syncing, last error unauthorized" in r.text and r,
                               what="the 401 named in /readyz")
            assert "waiting for first sync: fluentd, kubelet" in ready.text
            eventually(lambda: metric_sum(srv, 'kube_http_sd_source_errors_total{reason="unauthorized",source="nodes"') >= 1)
            assert srv.get("/targets/kubelet").status_code == 503


@pytest.mark.parametrize(
    "mutate",
    [
        lambda n: n["status"].update(conditions="Ready"),
        lambda n: n["status"]["addresses"][0].update(address="not-an-ip"),
        lambda n: n.update(status=None),
    ],
    ids=["conditions a string", "address not an IP", "status null"],
)
def test_a_malformed_update_never_takes_a_served_target_away(api, tmp_path, config_file, mutate):
    node = make_node("n1", ["192.0.2.1"])
    api.add(node)
    with start(api, tmp_path, config_file) as srv:
        srv.wait_healthy()
        eventually(lambda: kubelet_targets(srv) == {"192.0.2.1:10250"}, what="first sync")
        bad = make_node("n1", ["192.0.2.1"])
        mutate(bad)
        api.modify(bad)
        eventually(lambda: metric_sum(srv, "kube_http_sd_skipped_total{") >= 1, what="the bad update counted")
        skipped = srv.get("/debug/sets/kubelet").json()["skipped"]
        assert [s["object"] for s in skipped] == ["node/n1"]
        assert "keeping the last good value" in skipped[0]["detail"]
        api.add(make_node("n2", ["192.0.2.2"]))  # a later event: the bad one has been applied by now
        eventually(lambda: "192.0.2.2:10250" in kubelet_targets(srv))
        assert "192.0.2.1:10250" in kubelet_targets(srv)
        # Well-formed data can still take it away.
        api.modify(with_ready(make_node("n1", ["192.0.2.1"]), "False"))
        eventually(lambda: kubelet_targets(srv) == {"192.0.2.2:10250"})


def _modified_line(node: dict, version: str, unread: bytes = b'"ok"', label: bytes = b'"b"') -> bytes:
    """A MODIFIED line for ``node`` at ``version`` whose labels gain x=<label> and whose
    status.images (a part no parser reads) holds ``unread``."""
    obj = json.loads(json.dumps(node))
    obj["metadata"]["resourceVersion"] = version
    obj["metadata"]["labels"]["x"] = "LABEL"
    obj["status"]["images"] = [{"names": ["UNREAD"]}]
    line = json.dumps({"type": "MODIFIED", "object": obj}).encode()
    return line.replace(b'"LABEL"', label).replace(b'"UNREAD"', unread) + b"\n"


UNREAD_BAD_BYTES = {"invalid UTF-8": b'"\xff\xfe"', "overlong UTF-8": b'"\xc0\xaf"'}


@pytest.mark.parametrize("bad", UNREAD_BAD_BYTES.values(), ids=UNREAD_BAD_BYTES.keys())
def test_a_modified_line_with_bad_bytes_in_a_part_nobody_reads_is_dropped_like_an_added_one(api, tmp_path, config_file, bad):
    node = make_node("n1", ["192.0.2.1"])
    api.add(node)
    with start(api, tmp_path, config_file) as srv:
        srv.wait_healthy()
        eventually(lambda: kubelet_targets(srv) == {"192.0.2.1:10250"}, what="first sync")
        api.send_malformed(_modified_line(node, str(int(api.resource_version) + 1), unread=bad))
        eventually(lambda: metric_sum(srv, 'kube_http_sd_skipped_total{reason="malformed_event"') >= 1,
                   what="the line counted as malformed")
        assert metric_sum(srv, 'kube_http_sd_source_errors_total{reason="malformed_event"') >= 1, "backed off"
        api.add(make_node("n2", ["192.0.2.2"]))
        eventually(lambda: "192.0.2.2:10250" in kubelet_targets(srv), what="the watch goes on")
        labels = {g["targets"][0]: g["labels"] for g in srv.get("/targets/kubelet").json()}
        assert "__meta_kubernetes_node_label_x" not in labels["192.0.2.1:10250"], "the dropped line's label is not served"


WATCHED_PART_BAD_BYTES = {"invalid UTF-8": b'"\xff"', "number out of range": b"1e999999"}


@pytest.mark.parametrize("bad", WATCHED_PART_BAD_BYTES.values(), ids=WATCHED_PART_BAD_BYTES.keys())
def test_bad_bytes_in_a_watched_part_are_a_malformed_event_not_an_internal_error(api, tmp_path, config_file, bad):
    node = make_node("n1", ["192.0.2.1"])
    api.add(node)
    with start(api, tmp_path, config_file) as srv:
        srv.wait_healthy()
        eventually(lambda: kubelet_targets(srv) == {"192.0.2.1:10250"}, what="first sync")
        api.send_malformed(_modified_line(node, str(int(api.resource_version) + 1), label=bad))
        eventually(lambda: metric_sum(srv, 'kube_http_sd_skipped_total{reason="malformed_event"') >= 1,
                   what="the line counted as malformed")
        assert metric_sum(srv, 'kube_http_sd_source_errors_total{reason="internal_error"') == 0
        assert "internal error" not in srv.log() and "Traceback" not in srv.log()
