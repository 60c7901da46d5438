"""The IP-reuse rule, case by case, through a real target set (filters, family policy, index)."""

from __future__ import annotations

import dataclasses

import orjson

from sd.config import default_config
from sd.kinds import nodes, pods
from sd.targets import TargetSet
from sdtest.factories import make_node, make_pod

parse_node, parse_pod = nodes.KIND.parse, pods.KIND.parse

KUBELET = default_config().targets["kubelet"]
FLUENTD = default_config().targets["fluentd"]


def served(ts: TargetSet) -> dict[str, str]:
    """target → the object (node name or namespace/pod) that owns it, from the rendered body."""
    ts.render()
    out = {}
    for group in orjson.loads(ts.body):
        (target,) = group["targets"]
        labels = group["labels"]
        owner = labels.get("__meta_kubernetes_node_name") or f"{labels['__meta_kubernetes_namespace']}/{labels['__meta_kubernetes_pod_name']}"
        assert target not in out, f"{target} served twice"
        out[target] = owner
    return out


def nodes(*raws, config=KUBELET) -> TargetSet:
    ts = TargetSet(config)
    for raw in raws:
        ts.upsert(parse_node(raw))
    return ts


def test_not_ready_node_sharing_ip_loses_to_the_new_ready_node():
    ts = nodes(
        make_node("old", ["10.0.0.7"], ready="Unknown", created="2026-01-01T00:00:00Z"),
        make_node("new", ["10.0.0.7"], ready="True", created="2026-06-01T00:00:00Z"),
    )
    assert served(ts) == {"10.0.0.7:10250": "new"}


def test_ready_true_beats_ready_false_even_when_older():
    ts = nodes(
        make_node("live", ["10.0.0.7"], ready="True", created="2026-01-01T00:00:00Z"),
        make_node("dead", ["10.0.0.7"], ready="False", created="2026-06-01T00:00:00Z"),
    )
    assert served(ts) == {"10.0.0.7:10250": "live"}


def test_unknown_false_and_true_on_one_ip_serve_the_true_one():
    # prometheus-operator only drops Unknown when another node holds the IP: it keeps the False one too.
    ts = nodes(
        make_node("unknown", ["10.0.0.7"], ready="Unknown", created="2026-03-01T00:00:00Z"),
        make_node("false", ["10.0.0.7"], ready="False", created="2026-09-01T00:00:00Z"),
        make_node("true", ["10.0.0.7"], ready="True", created="2026-01-01T00:00:00Z"),
    )
    assert served(ts) == {"10.0.0.7:10250": "true"}


def test_two_ready_nodes_on_one_ip_newest_creation_wins():
    ts = nodes(
        make_node("b-older", ["10.0.0.7"], created="2026-01-01T00:00:00Z"),
        make_node("a-newer", ["10.0.0.7"], created="2026-06-01T00:00:00Z"),
    )
    assert served(ts) == {"10.0.0.7:10250": "a-newer"}


def test_equal_creation_times_greater_name_wins():
    ts = nodes(make_node("node-a", ["10.0.0.7"]), make_node("node-b", ["10.0.0.7"]))
    assert served(ts) == {"10.0.0.7:10250": "node-b"}


def test_relaxed_filters_ready_true_still_beats_newer_not_ready():
    relaxed = dataclasses.replace(KUBELET, require_ready=False)
    ts = nodes(
        make_node("live", ["10.0.0.7"], ready="True", created="2026-01-01T00:00:00Z"),
        make_node("newer-dead", ["10.0.0.7"], ready="Unknown", created="2026-06-01T00:00:00Z"),
        config=relaxed,
    )
    assert served(ts) == {"10.0.0.7:10250": "live"}


def test_relaxed_filters_serve_a_not_ready_node_alone_on_its_ip():
    relaxed = dataclasses.replace(KUBELET, require_ready=False)
    assert served(nodes(make_node("dead", ["10.0.0.7"], ready="False"), config=relaxed)) == {"10.0.0.7:10250": "dead"}


def test_dual_stack_node_losing_primary_ipv4_emits_nothing_under_primary():
    ts = nodes(
        make_node("old", ["10.0.0.7", "fd00::7"], created="2026-01-01T00:00:00Z"),
        make_node("new", ["10.0.0.7"], created="2026-06-01T00:00:00Z"),
    )
    assert served(ts) == {"10.0.0.7:10250": "new"}


def test_dual_stack_node_losing_primary_ipv4_keeps_its_ipv6_under_both():
    both = dataclasses.replace(KUBELET, ip_family="both")
    ts = nodes(
        make_node("old", ["10.0.0.7", "fd00::7"], created="2026-01-01T00:00:00Z"),
        make_node("new", ["10.0.0.7"], created="2026-06-01T00:00:00Z"),
        config=both,
    )
    assert served(ts) == {"10.0.0.7:10250": "new", "[fd00::7]:10250": "old"}


def test_each_ip_served_once_and_winner_recomputed_when_it_goes_away():
    ts = nodes(
        make_node("old", ["10.0.0.7"], created="2026-01-01T00:00:00Z"),
        make_node("new", ["10.0.0.7"], created="2026-06-01T00:00:00Z"),
    )
    ts.delete("new")
    assert served(ts) == {"10.0.0.7:10250": "old"}


def test_terminating_node_is_not_a_candidate():
    ts = nodes(
        make_node("leaving", ["10.0.0.7"], created="2026-06-01T00:00:00Z", deleting=True),
        make_node("staying", ["10.0.0.7"], created="2026-01-01T00:00:00Z"),
    )
    assert served(ts) == {"10.0.0.7:10250": "staying"}


def test_losers_stay_indexed_for_inspection():
    ts = nodes(
        make_node("old", ["10.0.0.7"], created="2026-01-01T00:00:00Z"),
        make_node("new", ["10.0.0.7"], created="2026-06-01T00:00:00Z"),
    )
    assert [r.name for r in ts.index.candidates("10.0.0.7")] == ["new", "old"]
    assert ts.index.conflicts() == 1
    assert ts.index.conflicts_resolved == 1


def test_fluentd_rollout_on_reused_ip_serves_only_the_new_pod():
    ts = TargetSet(FLUENTD)
    ts.upsert(parse_pod(make_pod("old", ["10.244.0.5", "fd00::5"], created="2026-01-01T00:00:00Z", deleting=True)))
    ts.upsert(parse_pod(make_pod("new", ["10.244.0.5", "fd00::5"], created="2026-06-01T00:00:00Z")))
    assert served(ts) == {"10.244.0.5:24231": "logging/new", "[fd00::5]:24231": "logging/new"}


def test_pod_that_finished_never_claims_its_ip_even_with_relaxed_filters():
    relaxed = dataclasses.replace(FLUENTD, require_ready=False)
    ts = TargetSet(relaxed)
    ts.upsert(parse_pod(make_pod("done", ["10.244.0.5"], phase="Succeeded", ready="False", created="2026-06-01T00:00:00Z")))
    ts.upsert(parse_pod(make_pod("pending", ["10.244.0.5"], phase="Pending", ready="False", created="2026-01-01T00:00:00Z")))
    assert served(ts) == {"10.244.0.5:24231": "logging/pending"}
