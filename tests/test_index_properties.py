"""Property tests for the index: the output is a function of the final objects only."""

from __future__ import annotations

import dataclasses

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sd.config import default_config
from sd.index import rank
from sd.kinds import nodes, pods
from sd.targets import TargetSet
from sdtest.factories import make_node, make_pod

parse_node, parse_pod = nodes.KIND.parse, pods.KIND.parse

KUBELET = default_config().targets["kubelet"]
FLUENTD = default_config().targets["fluentd"]
CONFIGS = [
    KUBELET,
    dataclasses.replace(KUBELET, ip_family="both"),
    dataclasses.replace(KUBELET, require_ready=False, ip_family="both"),
    dataclasses.replace(KUBELET, ip_family="ipv6", address_types=("ExternalIP", "InternalIP")),
]

NAMES = [f"n{i}" for i in range(6)]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1", "fd00::2"]

node_versions = st.builds(
    lambda name, ips, external, ready, day, deleting: make_node(
        name, ips, external=external, ready=ready, created=f"2026-01-0{day}T00:00:00Z", deleting=deleting
    ),
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(IPS), max_size=3, unique=True),
    st.lists(st.sampled_from(IPS), max_size=1),
    st.sampled_from(["True", "False", "Unknown", None]),
    st.integers(1, 3),
    st.booleans(),
)


def final_objects(events: list[tuple[str, dict]]) -> dict[str, dict]:
    state: dict[str, dict] = {}
    for op, raw in events:
        name = raw["metadata"]["name"]
        if op == "upsert":
            state[name] = raw
        else:
            state.pop(name, None)
    return state


def apply(ts: TargetSet, events: list[tuple[str, dict]]) -> None:
    for op, raw in events:
        if op == "upsert":
            ts.upsert(parse_node(raw))
        else:
            ts.delete(raw["metadata"]["name"])


def body(ts: TargetSet) -> bytes:
    ts.render()
    return ts.body


events_st = st.lists(st.tuples(st.sampled_from(["upsert", "upsert", "delete"]), node_versions), max_size=25)


@settings(max_examples=150, deadline=None)
@given(events=events_st, config=st.sampled_from(CONFIGS), shuffle_seed=st.randoms(use_true_random=False))
def test_output_depends_only_on_final_objects_not_event_order(events, config, shuffle_seed):
    final = final_objects(events)
    incremental = TargetSet(config)
    apply(incremental, events)
    # The same final objects arriving in another order, with no history.
    order = list(final.values())
    shuffle_seed.shuffle(order)
    fresh = TargetSet(config)
    apply(fresh, [("upsert", raw) for raw in order])
    assert body(incremental) == body(fresh)


@settings(max_examples=150, deadline=None)
@given(events=events_st, config=st.sampled_from(CONFIGS))
def test_incremental_state_equals_replace_all_rebuild(events, config):
    final = final_objects(events)
    incremental = TargetSet(config)
    apply(incremental, events)
    rebuilt = TargetSet(config)
    apply(rebuilt, [("upsert", make_node("stale", ["10.0.0.1"], created="2026-01-09T00:00:00Z"))])
    rebuilt.replace([parse_node(raw) for raw in final.values()])
    assert body(incremental) == body(rebuilt)
    assert incremental.index.winners == rebuilt.index.winners


@settings(max_examples=150, deadline=None)
@given(events=events_st, config=st.sampled_from(CONFIGS))
def test_no_ip_is_served_twice_and_winners_outrank_every_candidate(events, config):
    ts = TargetSet(config)
    apply(ts, events)
    groups = orjson.loads(body(ts))
    addresses = [g["targets"][0].rsplit(":", 1)[0].strip("[]") for g in groups]
    assert len(addresses) == len(set(addresses))
    for ip, winner in ts.index.winners.items():
        for other in ts.index.candidates(ip):
            assert rank(other) <= rank(winner)
            if other.ready == "True":
                assert winner.ready == "True"


@settings(max_examples=100, deadline=None)
@given(
    pods=st.lists(
        st.builds(
            lambda name, ips, ready, phase, day: make_pod(
                name, ips, ready=ready, phase=phase, created=f"2026-01-0{day}T00:00:00Z"
            ),
            st.sampled_from(NAMES),
            st.lists(st.sampled_from(IPS), max_size=2, unique=True),
            st.sampled_from(["True", "False"]),
            st.sampled_from(["Running", "Pending", "Succeeded"]),
            st.integers(1, 3),
        ),
        max_size=12,
    ),
    seed=st.randoms(use_true_random=False),
)
def test_pod_sets_are_order_independent_too(pods, seed):
    a, b = TargetSet(FLUENTD), TargetSet(FLUENTD)
    for raw in pods:
        a.upsert(parse_pod(raw))
    final = {raw["metadata"]["name"]: raw for raw in pods}
    order = list(final.values())
    seed.shuffle(order)
    for raw in order:
        b.upsert(parse_pod(raw))
    assert body(a) == body(b)
