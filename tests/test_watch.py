"""Live sync: the real server process, through kubernetes-asyncio, against the loopback API double.

Every wait polls with a deadline; Samplers record every response while faults
play out, so "never empty / never twice / never 503" is checked, not hoped.
"""

from __future__ import annotations


import pytest

from sdtest.factories import make_node, make_pod, with_ready
from sdtest.helpers import FAST, Sampler, Server, eventually, free_port, metric_sum
from sdtest.kubeapi import FakeKubeAPI

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset


@pytest.fixture(params=["streaming", "paginated"])
def server(request, api, tmp_path):
    """The server on FAST, listing with streaming lists (the default) or with pages only."""
    config = tmp_path / "sd.yaml"
    config.write_text(FAST.replace("kubernetes:\n", "kubernetes:\n  streaming_list: off\n") if request.param == "paginated" else FAST)
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    with Server("--kubeconfig", kubeconfig, "--config", str(config)) as srv:
        srv.wait_healthy()
        eventually(lambda: srv.get("/readyz").status_code == 200, what="first sync")
        srv.mode = request.param
        yield srv


def list_attempts(api: FakeKubeAPI, path: str) -> int:
    """Lists of a collection: LIST requests that start one (not their further pages), and
    streaming lists (watches with sendInitialEvents)."""
    return sum(
        1 for r in api.requests
        if r["path"] == path and (not r["query"].get("continue") if not r["watch"] else r["query"].get("sendInitialEvents"))
    )


def kubelet(srv: Server) -> dict[str, str]:
    resp = srv.get("/targets/kubelet")
    assert resp.status_code == 200, resp.text
    return {g["targets"][0]: g["labels"]["instance"] for g in resp.json()}


def fluentd(srv: Server) -> dict[str, str]:
    resp = srv.get("/targets/fluentd")
    assert resp.status_code == 200, resp.text
    return {g["targets"][0]: g["labels"]["__meta_kubernetes_pod_name"] for g in resp.json()}


def addresses(body: list[dict]) -> list[str]:
    return [g["targets"][0] for g in body]


def test_node_turning_not_ready_leaves_and_ready_brings_it_back(api, server):
    node = make_node("n1", ["10.0.0.1"])
    api.add(node)
    eventually(lambda: kubelet(server) == {"10.0.0.1:10250": "n1"})
    api.modify(with_ready(node, "False"))
    eventually(lambda: kubelet(server) == {})
    api.modify(with_ready(node, "True"))
    eventually(lambda: kubelet(server) == {"10.0.0.1:10250": "n1"})


def test_ip_reuse_sequence_serves_the_new_node_exactly_once(api, server):
    a = make_node("node-a", ["10.0.0.7"], created="2026-01-01T00:00:00Z")
    api.add(a)
    eventually(lambda: kubelet(server) == {"10.0.0.7:10250": "node-a"})
    with Sampler(server.base + "/targets/kubelet") as sampler:
        api.modify(with_ready(a, "Unknown"))
        eventually(lambda: kubelet(server) == {})
        api.add(make_node("node-b", ["10.0.0.7"], created="2026-06-01T00:00:00Z"))
        eventually(lambda: kubelet(server) == {"10.0.0.7:10250": "node-b"})
        api.delete("Node", "node-a")
        eventually(lambda: server.get("/metrics").text.count('kube_http_sd_objects{set="kubelet"} 1.0') == 1)
        assert kubelet(server) == {"10.0.0.7:10250": "node-b"}
    for status, body in sampler.samples:
        assert status == 200
        assert len(body) <= 1  # the IP is never served twice
        for group in body:
            if group["labels"]["instance"] == "node-a":
                assert group["labels"]["__meta_kubernetes_node_condition_ready"] == "true"


def test_fluentd_rollout_on_reused_ip_never_doubles_or_empties(api, server):
    old = make_pod("fluentd-old", ["10.244.1.5", "fd00::1:5"], node="node-1", created="2026-01-01T00:00:00Z")
    api.add(old)
    eventually(lambda: set(fluentd(server).values()) == {"fluentd-old"})
    new_only = {"10.244.1.5:24231": "fluentd-new", "[fd00::1:5]:24231": "fluentd-new"}
    with Sampler(server.base + "/targets/fluentd") as sampler:
        api.add(make_pod("fluentd-new", ["10.244.1.5", "fd00::1:5"], node="node-1", created="2026-06-01T00:00:00Z"))
        eventually(lambda: fluentd(server) == new_only)
        terminating = make_pod("fluentd-old", ["10.244.1.5", "fd00::1:5"], node="node-1", created="2026-01-01T00:00:00Z", deleting=True)
        api.modify(terminating)
        eventually(lambda: 'kube_http_sd_excluded_objects{reason="terminating",set="fluentd"} 1.0' in server.get("/metrics").text)
        api.delete("Pod", "fluentd-old", "logging")
        eventually(lambda: 'kube_http_sd_objects{set="fluentd"} 1.0' in server.get("/metrics").text)
        assert fluentd(server) == new_only
    assert sampler.samples
    for status, body in sampler.samples:
        assert status == 200
        assert sorted(addresses(body)) == ["10.244.1.5:24231", "[fd00::1:5]:24231"]  # never 0, never 2 per address


def test_compaction_with_deletions_in_the_gap_relists_and_never_empties(api, server):
    api.add_many([make_node(f"n{i}", [f"10.0.1.{i}"]) for i in range(1, 11)])
    eventually(lambda: len(kubelet(server)) == 10)
    with Sampler(server.base + "/targets/kubelet") as sampler:
        api.stop()
        for i in range(1, 6):
            api.delete("Node", f"n{i}")
        api.add(make_node("n99", ["10.0.1.99"]))
        api.compact()
        api.start()
        eventually(lambda: sorted(kubelet(server).values()) == sorted([f"n{i}" for i in range(6, 11)] + ["n99"]))
    assert all(status == 200 and len(body) >= 5 for status, body in sampler.samples)
    assert metric_sum(server, 'kube_http_sd_relists_total{reason="expired"') >= 1


def test_api_server_down_keeps_last_state_then_converges(api, server):
    api.add_many([make_node("n1", ["10.0.0.1"]), make_node("n2", ["10.0.0.2"])])
    eventually(lambda: len(kubelet(server)) == 2)
    before = server.get("/targets/kubelet").content
    api.stop()
    eventually(lambda: metric_sum(server, 'kube_http_sd_source_up{source="nodes"}') == 0.0, what="outage visible in /metrics")
    with Sampler(server.base + "/targets/kubelet", interval=0.1) as sampler:
        eventually(lambda: len(sampler.samples) >= 40, timeout=30, what="40 samples, 4 s or more of outage")
    assert all(status == 200 and body is not None for status, body in sampler.samples)
    assert server.get("/targets/kubelet").content == before
    assert server.get("/readyz").status_code == 200
    api.delete("Node", "n1")
    api.add(make_node("n3", ["10.0.0.3"]))
    api.start()
    eventually(lambda: kubelet(server) == {"10.0.0.2:10250": "n2", "10.0.0.3:10250": "n3"}, timeout=15)
    eventually(lambda: metric_sum(server, 'kube_http_sd_source_up{source="nodes"}') == 1.0)
    assert metric_sum(server, 'kube_http_sd_watch_restarts_total{reason="connection"') >= 1


def test_error_bursts_and_a_malformed_event_are_survived_and_counted(api, server):
    api.add(make_node("n1", ["10.0.0.1"]))
    eventually(lambda: len(kubelet(server)) == 1)
    api.fail_next(4, status=500)
    api.drop_streams()
    api.add(make_node("n2", ["10.0.0.2"]))
    eventually(lambda: len(kubelet(server)) == 2)
    api.fail_next(2, status=429, retry_after=1)
    api.drop_streams()
    api.add(make_node("n3", ["10.0.0.3"]))
    eventually(lambda: len(kubelet(server)) == 3)
    api.wait_for_watches(2)
    api.send_malformed()
    api.add(make_node("n4", ["10.0.0.4"]))
    eventually(lambda: len(kubelet(server)) == 4)
    assert metric_sum(server, 'kube_http_sd_watch_restarts_total{reason="http_5xx"') >= 1
    assert metric_sum(server, 'kube_http_sd_watch_restarts_total{reason="throttled"') >= 1
    assert metric_sum(server, 'kube_http_sd_skipped_total{reason="malformed_event"') >= 1
    assert metric_sum(server, 'kube_http_sd_watch_restarts_total{reason="malformed_event"') >= 1
    assert server.proc.poll() is None


def test_malformed_object_is_counted_and_the_rest_still_served(api, server):
    api.add(make_node("good", ["10.0.0.1"]))
    bad = make_node("bad", ["not-an-ip"])
    bad["status"]["conditions"] = "Ready"
    api.add(bad)
    eventually(lambda: metric_sum(server, 'kube_http_sd_skipped_total{reason="invalid_ip"') >= 1)
    assert metric_sum(server, 'kube_http_sd_skipped_total{reason="bad_field"') >= 1
    eventually(lambda: kubelet(server) == {"10.0.0.1:10250": "good"})
    assert "node/bad: status.addresses[0].address: not an IP: 'not-an-ip'" in server.log()


def test_before_the_api_server_is_reachable_sets_are_503_then_ready(tmp_path, config_file):
    port = free_port()
    api = FakeKubeAPI(port=port)
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    with Server("--kubeconfig", kubeconfig, "--config", config_file) as srv:
        srv.wait_healthy()
        for path in ("/targets/kubelet", "/targets/fluentd", "/readyz"):
            resp = srv.get(path)
            assert resp.status_code == 503, path
        resp = srv.get("/targets/kubelet")
        assert resp.headers["retry-after"] == "5"
        assert resp.headers["content-type"] == "application/json"
        assert "first full list" in resp.json()["error"]
        with api:
            api.add(make_node("n1", ["10.0.0.1"]))
            eventually(lambda: srv.get("/readyz").status_code == 200, timeout=15)
            assert kubelet(srv) == {"10.0.0.1:10250": "n1"}


def test_selectors_are_sent_to_the_api_server(api, server):
    api.add(make_pod("web", ["10.244.0.9"], labels={"app.kubernetes.io/name": "web"}))
    api.add(make_pod("f1", ["10.244.0.5"]))
    eventually(lambda: fluentd(server) == {"10.244.0.5:24231": "f1"})
    pod_requests = [r for r in api.requests if r["path"] == "/api/v1/pods"]
    assert pod_requests and all(r["query"].get("labelSelector") == "app.kubernetes.io/name=fluentd" for r in pod_requests)


def test_watch_uses_bookmarks_pagination_and_a_randomized_timeout(api, server):
    api.add_many([make_node(f"n{i}", [f"10.0.2.{i}"]) for i in range(1, 8)])
    eventually(lambda: len(kubelet(server)) == 7)
    node_requests = [r for r in api.requests if r["path"] == "/api/v1/nodes"]
    lists = [r for r in node_requests if not r["watch"]]
    watches = [r for r in node_requests if r["watch"]]
    if server.mode == "paginated":
        assert lists and all(r["query"]["limit"] == "3" for r in lists)
    else:  # one streaming list, no LIST at all
        assert lists == [] and watches[0]["query"]["sendInitialEvents"].lower() == "true"
        assert watches[0]["query"]["resourceVersionMatch"] == "NotOlderThan" and watches[0]["query"]["resourceVersion"] == ""
    assert watches and all(r["query"]["allowWatchBookmarks"].lower() == "true" for r in watches)
    assert all(5 <= int(r["query"]["timeoutSeconds"]) <= 10 for r in watches)
    assert all(r["query"].get("resourceVersion") for r in watches if not r["query"].get("sendInitialEvents"))


def test_bookmarks_advance_the_version_so_a_rewatch_needs_no_relist(api, server):
    api.add(make_node("n1", ["10.0.0.1"]))
    eventually(lambda: len(kubelet(server)) == 1)
    api.add(make_pod("other", ["10.244.0.1"], labels={"app.kubernetes.io/name": "web"}))  # invisible to nodes
    api.wait_for_watches(2)
    synced = metric_sum(server, 'kube_http_sd_source_last_sync_timestamp_seconds{source="nodes"}')
    api.bookmark()
    rv = api.resource_version
    eventually(lambda: metric_sum(server, 'kube_http_sd_source_last_sync_timestamp_seconds{source="nodes"}') > synced,
               what="the bookmark received")
    api.drop_streams()
    eventually(lambda: any(r["watch"] and r["query"].get("resourceVersion") == rv for r in api.requests
                           if r["path"] == "/api/v1/nodes"), what="a re-watch from the bookmark's version")
    assert list_attempts(api, "/api/v1/nodes") == 1  # the initial list only
