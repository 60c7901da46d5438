"""Streaming lists (KEP-3157 WatchList): the server process against the API double in each
of its modes: a 1.34+ server that streams, one with the WatchList gate off (422), and an
old one that ignores the parameters."""

from __future__ import annotations

import pytest
from sdtest.factories import make_node, make_pod, with_ready
from sdtest.helpers import FAST, Sampler, Server, eventually, metric_sum
from sdtest.kubeapi import FakeKubeAPI

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset


def start(api: FakeKubeAPI, tmp_path) -> Server:
    config = tmp_path / "sd.yaml"
    config.write_text(FAST)
    srv = Server("--kubeconfig", api.write_kubeconfig(tmp_path / "kubeconfig"), "--config", str(config))
    srv.wait_healthy()
    return srv


def requests(api: FakeKubeAPI, path: str = "/api/v1/nodes") -> list[dict]:
    return [r for r in api.requests if r["path"] == path]


def streaming_lists(api: FakeKubeAPI, path: str = "/api/v1/nodes") -> list[dict]:
    return [r for r in requests(api, path) if r["watch"] and r["query"].get("sendInitialEvents")]


def kubelet_targets(srv: Server) -> set[str]:
    resp = srv.get("/targets/kubelet")
    assert resp.status_code == 200, resp.text
    return {t for g in resp.json() for t in g["targets"]}


@pytest.fixture
def nodes(api):
    api.add_many([make_node(f"n{i}", [f"192.0.2.{i}"]) for i in range(1, 8)])
    api.add(make_pod("f1", ["198.51.100.1", "2001:db8::1"]))
    api.add(make_pod("web", ["198.51.100.2"], labels={"app.kubernetes.io/name": "web"}))


def test_the_initial_sync_is_one_streaming_list_per_source_and_no_list_request(api, nodes, tmp_path):
    with start(api, tmp_path) as srv:
        eventually(lambda: len(kubelet_targets(srv)) == 7, what="synced from the stream")
        assert [r for r in api.requests if not r["watch"] and r["path"].startswith("/api/v1/")] == [], "no LIST at all"
        (stream,) = streaming_lists(api)
        assert stream["query"]["resourceVersionMatch"] == "NotOlderThan" and stream["query"]["resourceVersion"] == ""
        assert stream["query"]["allowWatchBookmarks"].lower() == "true"
        (pods,) = streaming_lists(api, "/api/v1/pods")
        assert pods["query"]["labelSelector"] == "app.kubernetes.io/name=fluentd", "selectors go on the stream"
        assert metric_sum(srv, 'kube_http_sd_relists_total{method="streaming",reason="initial",source="nodes"') == 1
        # A change arrives on the same stream: it went on as the watch.
        api.modify(with_ready(api.get("Node", "n1"), "False"))
        eventually(lambda: "192.0.2.1:10250" not in kubelet_targets(srv), what="the Ready flip")
        assert len([r for r in requests(api) if r["watch"]]) == 1


def test_sets_answer_503_until_the_end_bookmark_never_200_empty(api, nodes, tmp_path):
    api.hold_initial_events_end = True
    with start(api, tmp_path) as srv:
        # Every object has been streamed: the explain view shows the list in flight...
        eventually(lambda: (srv.get("/debug/sets/kubelet").json()["sources"][0]["listing"] or {}).get("objects") == 7,
                   what="the 7 nodes received")
        # ...but without the end bookmark the list is not done: 503, never 200 [].
        resp = srv.get("/targets/kubelet")
        assert resp.status_code == 503 and resp.headers["retry-after"]
        assert srv.get("/readyz").status_code == 503
        assert "listing (7 objects" in srv.get("/readyz").text
        api.release_initial_events_end()
        eventually(lambda: len(kubelet_targets(srv)) == 7, what="ready at the end bookmark")


def test_compaction_and_deletions_in_a_gap_relist_by_stream_and_never_empty(api, nodes, tmp_path):
    with start(api, tmp_path) as srv:
        eventually(lambda: len(kubelet_targets(srv)) == 7)
        with Sampler(srv.base + "/targets/kubelet") as sampler:
            api.stop()
            for i in range(1, 4):
                api.delete("Node", f"n{i}")
            api.compact()
            api.start()
            eventually(lambda: kubelet_targets(srv) == {f"192.0.2.{i}:10250" for i in range(4, 8)}, timeout=15)
        assert all(status == 200 and len(body) >= 4 for status, body in sampler.samples)
        assert metric_sum(srv, 'kube_http_sd_relists_total{method="streaming",reason="expired",source="nodes"') >= 1
        assert [r for r in api.requests if not r["watch"]] == []


@pytest.mark.parametrize(("mode", "why"), [("off", "rejected_422"), ("ignore", "ignored")])
def test_a_server_without_streaming_lists_gets_paginated_ones_and_the_same_targets(api, nodes, tmp_path, mode, why):
    api.watch_list = mode
    with start(api, tmp_path) as srv:
        eventually(lambda: len(kubelet_targets(srv)) == 7, timeout=20, what="synced by the fallback")
        # The pod source falls back on its own clock: polled, not assumed done with the nodes'.
        eventually(lambda: srv.get("/targets/fluentd").status_code == 200, what="the pods synced by the fallback too")
        lists = [r for r in requests(api) if not r["watch"]]
        assert lists and all(r["query"]["limit"] == "3" for r in lists)
        assert metric_sum(srv, f'kube_http_sd_streaming_list_fallbacks_total{{reason="{why}",source="nodes"') == 1
        assert metric_sum(srv, 'kube_http_sd_relists_total{method="paginated",reason="initial",source="nodes"') == 1
        assert srv.log().count('msg="streaming list unavailable, listing with pages" source=nodes') == 1
        # The next relist tries streaming again (the server may have been upgraded)...
        api.stop()
        api.add(make_node("n8", ["192.0.2.8"]))
        api.compact()  # the watch's version is gone: 410, relist
        api.start()
        eventually(lambda: len(streaming_lists(api)) >= 2, what="a streaming attempt at the relist")
        # ...and falls back again, quietly, serving throughout.
        eventually(lambda: metric_sum(srv, f'kube_http_sd_streaming_list_fallbacks_total{{reason="{why}",source="nodes"') >= 2,
                   timeout=20)
        api.add(make_node("n9", ["192.0.2.9"]))
        eventually(lambda: "192.0.2.9:10250" in kubelet_targets(srv), timeout=20)
        assert srv.log().count('msg="streaming list unavailable, listing with pages" source=nodes') == 1


def test_the_double_refuses_what_the_api_server_refuses(api):
    import httpx

    base = f"{api.url}/api/v1/nodes?watch=true&sendInitialEvents=true"
    resp = httpx.get(base + "&allowWatchBookmarks=true")
    assert resp.status_code == 422 and "resourceVersionMatch to NotOlderThan" in resp.json()["message"]
    resp = httpx.get(base + "&resourceVersionMatch=NotOlderThan")
    assert resp.status_code == 422 and "allowWatchBookmarks to true" in resp.json()["message"]
    api.watch_list = "off"
    resp = httpx.get(base + "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
    assert resp.status_code == 422 and "unless the WatchList feature gate is enabled" in resp.json()["message"]


def test_api_requests_carry_our_user_agent(api, nodes, tmp_path):
    from sd.kube.client import user_agent

    with start(api, tmp_path) as srv:
        eventually(lambda: len(kubelet_targets(srv)) == 7)
    agents = {r["user_agent"] for r in api.requests if r["path"].startswith("/api/v1/")}
    assert agents == {user_agent()}
    assert user_agent().startswith("kube-http-sd/0.1.0 (python/3.") and "kubernetes-asyncio/" in user_agent()
