"""SIGHUP reloads the configuration, as Prometheus users expect: a valid file is applied
keeping the state of what did not change; an invalid one is refused and logged, and the
process keeps running on the old one."""

from __future__ import annotations

import json
import signal
import textwrap

import pytest

from sdtest.factories import make_node, make_pod
from sdtest.helpers import FAST, Server, eventually, metric_sum
from sdtest.kubeapi import FakeKubeAPI

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset

KUBELET_ONLY = FAST + textwrap.dedent(
    """
    targets:
      kubelet:
        source: nodes
        port: 10250
        port_name: kubelet
    """
)


@pytest.fixture
def running(api, tmp_path):
    """The server on KUBELET_ONLY (its config file, to rewrite), synced with two nodes."""
    api.add_many([make_node("n1", ["192.0.2.1"], labels={"pool": "a"}), make_node("n2", ["192.0.2.2"], labels={"pool": "b"})])
    config = tmp_path / "sd.yaml"
    config.write_text(KUBELET_ONLY)
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    with Server("--kubeconfig", kubeconfig, "--config", str(config)) as srv:
        srv.wait_healthy()
        eventually(lambda: srv.get("/readyz").status_code == 200, what="first sync")
        yield srv, config


def lists(api: FakeKubeAPI, selector: str = "") -> int:
    """Lists of nodes with ``selector``: streaming ones (watches with sendInitialEvents) and LISTs."""
    return sum(
        1 for r in api.requests
        if r["path"].endswith("/nodes") and r["query"].get("labelSelector", "") == selector
        and (not r["watch"] or r["query"].get("sendInitialEvents"))
    )


def reload(srv: Server, count: int) -> None:
    srv.proc.send_signal(signal.SIGHUP)
    eventually(lambda: srv.log().count("config reload") >= count, what=f"reload {count} handled")


def test_sighup_applies_a_new_config_keeping_unchanged_sets_and_sources(api, running):
    srv, config = running
    kubelet = srv.get("/targets/kubelet")
    assert srv.get("/targets/fluentd").status_code == 404
    assert lists(api) == 1

    config.write_text(KUBELET_ONLY + (
        "  kubelet-https:\n"      # reads the same source as kubelet: no new watch
        "    source: nodes\n"
        "    port: 10250\n"
        "    scheme: https\n"
        "  pool-a:\n"             # a new source: listed and watched
        "    source: nodes\n"
        "    port: 9100\n"
        "    label_selector: pool=a\n"
    ))
    reload(srv, 1)
    assert 'msg="config reloaded" sets=kubelet,kubelet-https,pool-a kept=kubelet' in srv.log()
    # The unchanged set kept its state: the same bytes and ETag, no relist of its source.
    again = srv.get("/targets/kubelet")
    assert again.content == kubelet.content and again.headers["etag"] == kubelet.headers["etag"]
    # A set on a source already running is filled from it at once.
    https = eventually(lambda: (r := srv.get("/targets/kubelet-https")).status_code == 200 and r.json())
    assert sorted(g["targets"][0] for g in https) == ["192.0.2.1:10250", "192.0.2.2:10250"]
    assert all(g["labels"]["__scheme__"] == "https" for g in https)
    pool = eventually(lambda: (r := srv.get("/targets/pool-a")).status_code == 200 and r.json(), what="pool-a synced")
    assert [g["targets"][0] for g in pool] == ["192.0.2.1:9100"]
    assert lists(api) == 1 and lists(api, "pool=a") == 1
    assert metric_sum(srv, "kube_http_sd_config_last_reload_successful") == 1.0

    # A set removed from the file is no longer served, and its source stops.
    config.write_text(KUBELET_ONLY)
    reload(srv, 2)
    assert srv.get("/targets/pool-a").status_code == 404
    api.add(make_node("n3", ["192.0.2.3"], labels={"pool": "a"}))
    eventually(lambda: len(srv.get("/targets/kubelet").json()) == 3, what="the kept set still follows the watch")
    assert lists(api, "pool=a") == 1


def test_sighup_with_an_invalid_config_keeps_the_running_one(running):
    srv, config = running
    before = srv.get("/targets/kubelet").content
    config.write_text(KUBELET_ONLY.replace("port: 10250", "port: 0"))
    reload(srv, 1)
    assert f"config reload refused, keeping the running config: {config}: targets.kubelet.port: must be 1-65535, got 0" in srv.log()
    assert srv.proc.poll() is None
    assert srv.get("/targets/kubelet").content == before
    assert metric_sum(srv, "kube_http_sd_config_last_reload_successful") == 0.0
    assert metric_sum(srv, 'kube_http_sd_config_reloads_total{result="failed"}') == 1.0


def test_sighup_rereads_the_snapshot(tmp_path):
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "NodeList", "items": [make_node("n1", ["192.0.2.1"])]}))
    with Server("--snapshot", str(snapshot)) as srv:
        srv.wait_healthy()
        assert [g["targets"][0] for g in srv.get("/targets/kubelet").json()] == ["192.0.2.1:10250"]
        snapshot.write_text(json.dumps({"kind": "NodeList", "items": [make_node("n2", ["192.0.2.2"])]}))
        reload(srv, 1)
        eventually(lambda: [g["targets"][0] for g in srv.get("/targets/kubelet").json()] == ["192.0.2.2:10250"])


def test_sighup_with_an_unreadable_snapshot_changes_nothing(tmp_path):
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "NodeList", "items": [make_node("n1", ["192.0.2.1"])]}))
    config = tmp_path / "sd.yaml"
    config.write_text(KUBELET_ONLY)
    with Server("--snapshot", str(snapshot), "--config", str(config)) as srv:
        srv.wait_healthy()
        before = srv.get("/targets/kubelet").content
        config.write_text(KUBELET_ONLY + "  again:\n    source: nodes\n    port: 9100\n")
        snapshot.write_text("{not json")
        reload(srv, 1)
        assert "config reload refused, keeping the running config" in srv.log() and "neither JSON nor YAML" in srv.log()
        assert srv.get("/targets/again").status_code == 404
        assert srv.get("/targets/kubelet").content == before


def pods_config(annotations: list[str], attach: bool) -> str:
    """The kubelet set (it keeps the unfiltered node watch running) and a Fluentd set."""
    return FAST + textwrap.dedent(
        f"""
        targets:
          kubelet: {{source: nodes, port: 10250}}
          fluentd:
            source: pods
            port: 24231
            port_name: monitor
            annotations: {json.dumps(annotations)}
            attach_metadata: {{node: {json.dumps(attach)}}}
        """
    )


def fluentd_labels(srv: Server) -> dict[str, str] | None:
    """The labels of the one Fluentd target, once the set is served."""
    resp = srv.get("/targets/fluentd")
    groups = resp.json() if resp.status_code == 200 else []
    return groups[0]["labels"] if len(groups) == 1 else None


@pytest.mark.parametrize("attach", [False, True], ids=["pod annotation", "attached node annotation"])
def test_sighup_that_lists_more_annotations_applies_them_to_objects_already_held(api, tmp_path, attach):
    node = make_node("n1", ["192.0.2.1"])
    node["metadata"]["annotations"]["team.example/owner"] = "nodes-team"
    pod = make_pod("p1", ["192.0.2.10"], node="n1")
    pod["metadata"]["annotations"] = {"team.example/owner": "alice"}
    api.add_many([node, pod])
    config = tmp_path / "sd.yaml"
    config.write_text(pods_config([], attach))
    with Server("--kubeconfig", api.write_kubeconfig(tmp_path / "kubeconfig"), "--config", str(config)) as srv:
        srv.wait_healthy()
        assert not any("annotation" in k for k in eventually(lambda: fluentd_labels(srv), what="first sync"))
        config.write_text(pods_config(["team.example/owner"], attach))
        reload(srv, 1)
        name = "__meta_kubernetes_node_annotation_team_example_owner" if attach else "__meta_kubernetes_pod_annotation_team_example_owner"
        eventually(lambda: (fluentd_labels(srv) or {}).get(name) == ("nodes-team" if attach else "alice"),
                   what="the newly listed annotation, with no change to the objects")


def test_attach_off_node_deleted_attach_on_never_serves_the_deleted_nodes_labels(api, tmp_path):
    api.add_many([make_node("n1", ["192.0.2.1"], labels={"zone": "z1"}), make_pod("p1", ["192.0.2.10"], node="n1")])
    config = tmp_path / "sd.yaml"
    config.write_text(pods_config([], True))
    with Server("--kubeconfig", api.write_kubeconfig(tmp_path / "kubeconfig"), "--config", str(config)) as srv:
        srv.wait_healthy()
        assert eventually(lambda: fluentd_labels(srv), what="first sync")["__meta_kubernetes_node_label_zone"] == "z1"
        config.write_text(pods_config([], False))
        reload(srv, 1)
        api.delete("Node", "n1")
        eventually(lambda: srv.get("/targets/kubelet").json() == [], what="the node's deletion seen")
        config.write_text(pods_config([], True))
        reload(srv, 2)
        # Its node is gone: the pod is held back (as Prometheus 3.11+ does), not served with
        # the labels the dropped node index last had.
        eventually(lambda: (r := srv.get("/targets/fluentd")).status_code == 200 and r.json() == [],
                   what="the attached set served again, without the pod of the deleted node")
        api.add(make_node("n1", ["192.0.2.1"], labels={"zone": "z2"}))
        labels = eventually(lambda: fluentd_labels(srv), what="the pod served once its node is back")
        assert labels["__meta_kubernetes_node_label_zone"] == "z2"
