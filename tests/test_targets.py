from __future__ import annotations

import dataclasses

import orjson
import pytest

from sd.config import default_config
from sd.kinds import nodes, pods
from sd.kinds.labels import sanitize
from sd.status import SourceStatus
from sd.shards import SHARD_COUNTS_KEPT
from sd.targets import TargetSet, select_ips
from sdtest.factories import make_node, make_pod

parse_node, parse_pod = nodes.KIND.parse, pods.KIND.parse

KUBELET = default_config().targets["kubelet"]
FLUENTD = default_config().targets["fluentd"]


def groups(ts: TargetSet) -> list[dict]:
    ts.render()
    return orjson.loads(ts.body)


def test_kubelet_group_has_kubernetes_sd_node_labels():
    raw = make_node("n1", ["10.0.0.1"], external=["203.0.113.1"], labels={"topology.kubernetes.io/zone": "eu-1a"})
    ts = TargetSet(KUBELET)
    ts.upsert(parse_node(raw))
    [group] = groups(ts)
    assert group["targets"] == ["10.0.0.1:10250"]
    labels = group["labels"]
    assert labels["__meta_kubernetes_node_name"] == "n1"
    assert labels["__meta_kubernetes_node_provider_id"] == "aws:///eu-west-1a/i-n1"
    assert labels["__meta_kubernetes_node_label_topology_kubernetes_io_zone"] == "eu-1a"
    assert labels["__meta_kubernetes_node_labelpresent_topology_kubernetes_io_zone"] == "true"
    assert labels["__meta_kubernetes_node_address_InternalIP"] == "10.0.0.1"
    assert labels["__meta_kubernetes_node_address_ExternalIP"] == "203.0.113.1"
    assert labels["__meta_kubernetes_node_address_Hostname"] == "n1"
    assert labels["__meta_kubernetes_node_condition_ready"] == "true"
    assert labels["__meta_kubernetes_node_condition_memorypressure"] == "false"
    assert labels["__meta_sd_ip_family"] == "ipv4"
    assert labels["instance"] == "n1"
    assert set(group) == {"targets", "labels"}


def test_kubelet_port_falls_back_to_10250_without_daemon_endpoint():
    ts = TargetSet(KUBELET)
    ts.upsert(parse_node(make_node("n1", ["10.0.0.1"], kubelet_port=None)))
    ts.upsert(parse_node(make_node("n2", ["10.0.0.2"], kubelet_port=10255)))
    assert [g["targets"] for g in groups(ts)] == [["10.0.0.1:10250"], ["10.0.0.2:10255"]]


def test_ipv6_only_node_is_bracketed_and_labelled_ipv6():
    ts = TargetSet(KUBELET)
    ts.upsert(parse_node(make_node("v6", ["fd00::9"])))
    [group] = groups(ts)
    assert group["targets"] == ["[fd00::9]:10250"]
    assert group["labels"]["__meta_sd_ip_family"] == "ipv6"


def test_external_ip_is_the_fallback_address():
    raw = make_node("n1", [], external=["203.0.113.1"])
    ts = TargetSet(KUBELET)
    ts.upsert(parse_node(raw))
    assert groups(ts)[0]["targets"] == ["203.0.113.1:10250"]


def test_fluentd_pod_gives_one_target_per_family():
    ts = TargetSet(FLUENTD)
    ts.upsert(parse_pod(make_pod("f1", ["10.244.0.5", "fd00::5"])))
    out = {g["targets"][0]: g["labels"] for g in groups(ts)}
    assert set(out) == {"10.244.0.5:24231", "[fd00::5]:24231"}
    assert out["[fd00::5]:24231"]["__meta_kubernetes_pod_ip"] == "fd00::5"
    assert out["[fd00::5]:24231"]["__meta_sd_ip_family"] == "ipv6"
    labels = out["10.244.0.5:24231"]
    assert labels["__meta_kubernetes_namespace"] == "logging"
    assert labels["__meta_kubernetes_pod_name"] == "f1"
    assert labels["__meta_kubernetes_pod_node_name"] == "node-1"
    assert labels["__meta_kubernetes_pod_ready"] == "true"
    assert labels["__meta_kubernetes_pod_phase"] == "Running"
    assert labels["__meta_kubernetes_pod_uid"] == "uid-logging-f1"
    assert labels["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == "fluentd"
    assert labels["__meta_kubernetes_pod_container_port_name"] == "monitor"
    assert "instance" not in labels


def test_fluentd_port_uses_named_container_port_then_default():
    ts = TargetSet(FLUENTD)
    ts.upsert(parse_pod(make_pod("named", ["10.244.0.5"], port_name="monitor", port=9999)))
    ts.upsert(parse_pod(make_pod("unnamed", ["10.244.0.6"], port_name=None)))
    ts.upsert(parse_pod(make_pod("other", ["10.244.0.7"], port_name="http", port=8080)))
    assert sorted(g["targets"][0] for g in groups(ts)) == ["10.244.0.5:9999", "10.244.0.6:24231", "10.244.0.7:24231"]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"phase": "Pending"}, "not running"),
        ({"ready": "False"}, "not ready"),
        ({"deleting": True}, "terminating"),
        ({"ips": []}, "no IP yet"),
    ],
)
def test_fluentd_pod_not_served(kwargs, why):
    ts = TargetSet(FLUENTD)
    ts.upsert(parse_pod(make_pod("f1", **{"ips": ["10.244.0.5"], **kwargs})))
    assert groups(ts) == [], why


def test_static_labels_metrics_path_and_scheme_are_emitted():
    config = dataclasses.replace(KUBELET, labels=(("cluster", "prod"),), metrics_path="/metrics/cadvisor", scheme="https")
    ts = TargetSet(config)
    ts.upsert(parse_node(make_node("n1")))
    labels = groups(ts)[0]["labels"]
    assert labels["cluster"] == "prod"
    assert labels["__metrics_path__"] == "/metrics/cadvisor"
    assert labels["__scheme__"] == "https"


def test_instance_is_not_set_when_a_node_can_have_two_targets():
    ts = TargetSet(dataclasses.replace(KUBELET, ip_family="both"))
    ts.upsert(parse_node(make_node("n1", ["10.0.0.1", "fd00::1"])))
    assert [("instance" in g["labels"]) for g in groups(ts)] == [False, False]


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("primary", ("fd00::1",)),
        ("ipv4", ("10.0.0.1",)),
        ("ipv6", ("fd00::1",)),
        ("both", ("fd00::1", "10.0.0.1")),
    ],
)
def test_ip_family_policy(family, expected):
    assert select_ips(("fd00::1", "10.0.0.1", "10.0.0.2", "fd00::2"), family) == expected


def test_ip_family_policy_with_missing_family_gives_nothing():
    assert select_ips(("10.0.0.1",), "ipv6") == ()


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("app.kubernetes.io/name", "app_kubernetes_io_name"), ("a-b c", "a_b_c"), ("ok_1", "ok_1"), ("ü", "_")],
)
def test_label_names_are_sanitized(raw, clean):
    assert sanitize(raw) == clean


def test_output_is_sorted_and_deterministic():
    a, b = TargetSet(KUBELET), TargetSet(KUBELET)
    raws = [make_node(f"n{i}", [f"10.0.0.{i}"]) for i in range(1, 6)]
    for raw in raws:
        a.upsert(parse_node(raw))
    for raw in reversed(raws):
        b.upsert(parse_node(raw))
    assert groups(a) == groups(b) and a.body == b.body and a.etag == b.etag
    assert [g["labels"]["instance"] for g in groups(a)] == ["n1", "n2", "n3", "n4", "n5"]


def test_heartbeat_only_events_cause_no_render():
    ts = TargetSet(KUBELET)
    ts.upsert(parse_node(make_node("n1", heartbeat="2026-11-21T10:00:00Z")))
    assert ts.render()
    etag = ts.etag
    for second in range(10, 60, 10):
        ts.upsert(parse_node(make_node("n1", heartbeat=f"2026-11-21T10:00:{second}Z")))
    assert not ts.dirty
    assert not ts.render()
    assert ts.renders == 1 and ts.etag == etag


def test_a_change_to_a_losing_candidate_causes_no_render():
    ts = TargetSet(KUBELET)
    ts.upsert(parse_node(make_node("winner", ["10.0.0.7"], created="2026-06-01T00:00:00Z")))
    ts.upsert(parse_node(make_node("loser", ["10.0.0.7"], created="2026-01-01T00:00:00Z")))
    ts.render()
    ts.upsert(parse_node(make_node("loser", ["10.0.0.7"], created="2026-01-01T00:00:00Z", labels={"x": "y"})))
    assert not ts.dirty


def test_render_coalesces_many_changes_into_one_body():
    ts = TargetSet(KUBELET)
    calls = []
    ts.on_dirty = lambda: calls.append(1)
    for i in range(1, 50):
        ts.upsert(parse_node(make_node(f"n{i}", [f"10.0.1.{i}"])))
    assert calls == [1]
    assert ts.render() and not ts.render()
    assert len(groups(ts)) == 49


def test_set_is_not_synced_until_its_first_list_is_rendered():
    ts = TargetSet(KUBELET)
    source = SourceStatus("nodes")
    ts.add_status(source)
    ts.upsert(parse_node(make_node("n1")))
    source.synced = True
    ts.source_synced()
    assert not ts.synced  # serving now would answer 200 [] and drop every target in Prometheus
    ts.render()
    assert ts.synced and len(groups(ts)) == 1


def test_an_empty_set_turns_synced_too():
    ts = TargetSet(KUBELET)
    source = SourceStatus("nodes")
    ts.add_status(source)
    assert not ts.dirty
    source.synced = True
    ts.source_synced()
    assert ts.dirty and ts.render() and ts.synced and ts.body == b"[]"


def test_a_change_rebuilds_only_the_block_that_holds_its_group():
    ts = TargetSet(KUBELET)
    for i in range(1, 601):
        ts.upsert(parse_node(make_node(f"n{i:03}", [f"2001:db8::{i:x}"])))
    ts.render()

    def data(body):
        return [c.obj if isinstance(c, memoryview) else c for c in body.chunks]

    before = data(ts.current)
    assert len(before) > 6, "several blocks"
    ts.upsert(parse_node(make_node("n300", ["2001:db8::12c"], labels={"x": "y"})))
    ts.render()
    after = data(ts.current)
    assert [a is b for a, b in zip(before, after)].count(False) == 1, "one block rebuilt, the others served as they were"
    assert ts.current.length == len(ts.body) == sum(len(c) for c in ts.current.chunks)
    fresh = TargetSet(KUBELET)
    fresh.replace([ts.index.records[k] for k in sorted(ts.index.records)])
    fresh.render()
    assert (fresh.body, fresh.etag) == (ts.body, ts.etag), "block boundaries never show in bytes or ETag"
    assert [g["labels"].get("__meta_kubernetes_node_label_x") for g in groups(ts) if g["targets"] == ["[2001:db8::12c]:10250"]] == ["y"]


def test_shard_bodies_are_cut_once_per_render_and_only_two_shard_counts_are_kept():
    ts = TargetSet(KUBELET)
    for i in range(1, 30):
        ts.upsert(parse_node(make_node(f"n{i}", [f"192.0.2.{i}"])))
    ts.render()
    first = ts.shard(4, 1)
    assert ts.shard(4, 1) is first, "cut once per render"
    asked = (2, 3, 5, 6)
    cut = {n: ts.shard(n, 0) for n in asked}
    recent = asked[-SHARD_COUNTS_KEPT:]
    assert all(ts.shard(n, 0) is cut[n] for n in reversed(recent)), "the shard counts asked last are kept"
    assert ts.shard(4, 1) is not first, "older ones are cut again"
    # A change shows in the shards after the next render, never before it.
    ts.delete("n1")
    assert b"192.0.2.1:" in b"".join(bytes(ts.shard(2, i)) for i in range(2))
    ts.render()
    assert b"192.0.2.1:" not in b"".join(bytes(ts.shard(2, i)) for i in range(2))
    union = [g for i in range(2) for g in orjson.loads(bytes(ts.shard(2, i)))]
    assert sorted(union, key=orjson.dumps) == sorted(groups(ts), key=orjson.dumps)


def test_a_node_that_comes_back_unchanged_is_served_its_old_group_and_a_changed_one_a_new_one(monkeypatch):
    ts = TargetSet(KUBELET)
    for i in range(1, 4):
        ts.upsert(parse_node(make_node(f"n{i}", [f"192.0.2.{i}"], labels={"zone": "a"})))
    ts.render()
    before = (ts.body, ts.etag)
    built: list[str] = []
    labels = nodes.KIND.labels
    monkeypatch.setattr(nodes.KIND, "labels", lambda record, *args: built.append(record.name) or labels(record, *args))
    ts.upsert(parse_node(make_node("n2", ["192.0.2.2"], labels={"zone": "a"}, ready="False")))
    ts.render()
    ts.upsert(parse_node(make_node("n2", ["192.0.2.2"], labels={"zone": "a"})))
    ts.render()
    assert (ts.body, ts.etag) == before and built == [], "served as it left, not built again"
    ts.upsert(parse_node(make_node("n2", ["192.0.2.2"], labels={"zone": "a"}, ready="False")))
    ts.render()
    ts.upsert(parse_node(make_node("n2", ["192.0.2.2"], labels={"zone": "b"})))
    assert [g["labels"]["__meta_kubernetes_node_label_zone"] for g in groups(ts)] == ["a", "b", "a"] and built == ["n2"]
    ts.delete("n2")
    fresh = TargetSet(KUBELET)
    fresh.replace([ts.record(k) for k in ("n1", "n3")])
    fresh.render()
    ts.render()
    assert (ts.body, ts.etag) == (fresh.body, fresh.etag)
