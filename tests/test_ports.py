"""`ports: all`: a target per declared container port, the conflict rule per address, shards,
and the output as a function of the final objects only. Prometheus' own cases are in
tests/test_parity.py; here, what kubernetes_sd has no rule for."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sd.attach import Directory
from sd.config import AttachMetadata, ConfigError, PortsPolicy, default_config, parse_config
from sd.index import rank
from sd.kinds import nodes, pods
from sd.kinds.relations import RELATIONS
from sd.shards import hashmod
from sd.targets import TargetSet
from sd.views import explain, stats
from sdtest.factories import make_node, make_pod

NODE_IP = "192.0.2.20"
ALL = dataclasses.replace(default_config().targets["fluentd"], label_selector="", port_name=None, port=0,
                          ip_family="both", ports=PortsPolicy.ALL)


def pod(name: str, ips: list[str], ports: list[tuple[str, int, str]], created: str = "2026-01-01T00:00:00Z", **kw) -> dict:
    """A pod whose one container declares ``ports`` ((name, number, protocol)); none: no ports."""
    raw = make_pod(name, ips, created=created, port_name=None, **kw)
    if ports:
        raw["spec"]["containers"][0]["ports"] = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]
    return raw


def served(ts: TargetSet) -> dict[str, list[str]]:
    """address → the pod names served there, in body order."""
    ts.render()
    out: dict[str, list[str]] = {}
    for g in orjson.loads(ts.body):
        for t in g["targets"]:
            out.setdefault(t, []).append(g["labels"]["__meta_kubernetes_pod_name"])
    return out


def test_host_network_pods_sharing_a_node_ip_are_both_served_on_their_own_ports():
    ts = TargetSet(ALL)
    ts.upsert(pods.KIND.parse(pod("node-exporter", [NODE_IP], [("metrics", 9100, "TCP")])))
    ts.upsert(pods.KIND.parse(pod("fluent-bit", [NODE_IP], [("http", 2020, "TCP")])))
    assert served(ts) == {f"{NODE_IP}:9100": ["node-exporter"], f"{NODE_IP}:2020": ["fluent-bit"]}
    assert stats(ts).conflicts == 0


def test_two_pods_claiming_one_address_are_a_conflict_the_rule_resolves_per_address():
    # An old pod still listed on the IP and port a new one took: the newer wins that address,
    # the old one keeps the addresses nobody else claims.
    ts = TargetSet(ALL)
    ts.upsert(pods.KIND.parse(pod("old", [NODE_IP], [("metrics", 9100, "TCP"), ("admin", 9101, "TCP")])))
    ts.upsert(pods.KIND.parse(pod("new", [NODE_IP], [("metrics", 9100, "TCP")], created="2026-01-02T00:00:00Z")))
    assert served(ts) == {f"{NODE_IP}:9100": ["new"], f"{NODE_IP}:9101": ["old"]}
    assert stats(ts).conflicts == 1
    contested = next(i for i in explain(ts)["ips"] if i["target"] == f"{NODE_IP}:9100")
    assert contested["ip"] == NODE_IP and contested["winner"] == "logging/new"
    assert [loser["object"] for loser in contested["losers"]] == ["logging/old"]
    ts.delete("logging/new")
    assert served(ts) == {f"{NODE_IP}:9100": ["old"], f"{NODE_IP}:9101": ["old"]}


def test_containers_without_ports_of_two_host_network_pods_conflict_on_the_bare_ip():
    ts = TargetSet(ALL)
    ts.upsert(pods.KIND.parse(pod("a", [NODE_IP], [])))
    ts.upsert(pods.KIND.parse(pod("b", [NODE_IP], [], created="2026-01-02T00:00:00Z")))
    assert served(ts) == {NODE_IP: ["b"]}


def test_one_pod_serves_every_target_it_has_on_one_address():
    # CoreDNS: 53/UDP and 53/TCP are two targets at one address, both of the winning pod,
    # in kubernetes_sd's order; two containers without ports are two targets at the bare IP.
    raw = pod("coredns", ["192.0.2.30"], [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")])
    raw["spec"]["containers"].append({"name": "sidecar-a", "image": "a:1"})
    raw["spec"]["containers"].append({"name": "sidecar-b", "image": "b:1"})
    ts = TargetSet(ALL)
    ts.upsert(pods.KIND.parse(raw))
    ts.render()
    groups = orjson.loads(ts.body)
    at = [(g["targets"][0], g["labels"].get("__meta_kubernetes_pod_container_port_protocol"),
           g["labels"]["__meta_kubernetes_pod_container_name"]) for g in groups]
    assert at == [
        ("192.0.2.30", None, "sidecar-a"), ("192.0.2.30", None, "sidecar-b"),
        ("192.0.2.30:53", "UDP", "fluentd"), ("192.0.2.30:53", "TCP", "fluentd"),
        ("192.0.2.30:9153", "TCP", "fluentd"),
    ]
    assert len(ts) == 5 and sum(stats(ts).targets.values()) == 5


def test_a_port_removed_from_the_spec_loses_its_target_and_an_unnamed_one_has_no_name():
    ts = TargetSet(ALL)
    first = pods.KIND.parse(pod("p", ["192.0.2.40"], [("metrics", 9100, "TCP"), ("", 8080, "TCP")]))
    ts.upsert(first)
    ts.render()
    unnamed = next(g["labels"] for g in orjson.loads(ts.body) if g["targets"] == ["192.0.2.40:8080"])
    assert unnamed["__meta_kubernetes_pod_container_port_number"] == "8080"
    assert "__meta_kubernetes_pod_container_port_name" not in unnamed
    ts.upsert(pods.KIND.parse(pod("p", ["192.0.2.40"], [("metrics", 9100, "TCP")]), previous=first))
    assert served(ts) == {"192.0.2.40:9100": ["p"]}


def test_shards_keep_every_group_whole_and_their_union_is_the_set():
    ts = TargetSet(ALL)
    for i in range(12):
        ts.upsert(pods.KIND.parse(pod(f"p{i}", [f"192.0.2.{50 + i}", f"2001:db8::{50 + i}"],
                                      [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")])))
    ts.render()
    full = orjson.loads(ts.body)
    union = []
    for shard in range(3):
        groups = orjson.loads(bytes(ts.shard(3, shard)))
        assert all(hashmod(g["targets"][0], 3) == shard for g in groups)
        union += groups
    key = lambda g: orjson.dumps(g)  # noqa: E731
    assert sorted(union, key=key) == sorted(full, key=key) and len(full) == 12 * 2 * 3


def test_a_node_label_change_rebuilds_every_target_of_its_pods():
    directory = Directory(nodes.KIND)
    ts = TargetSet(dataclasses.replace(ALL, attach_metadata=AttachMetadata(node=True)))
    ts.attach(RELATIONS["pods"]["node"], directory)
    directory.upsert(nodes.KIND.parse(make_node("n1", ["192.0.2.100"], labels={"zone": "z1"})))
    ts.upsert(pods.KIND.parse(pod("p", ["192.0.2.60"], [("a", 1, "TCP"), ("b", 2, "TCP")], node="n1")))
    directory.upsert(nodes.KIND.parse(make_node("n1", ["192.0.2.100"], labels={"zone": "z2"})))
    ts.render()
    assert [g["labels"]["__meta_kubernetes_node_label_zone"] for g in orjson.loads(ts.body)] == ["z2", "z2"]


@pytest.mark.parametrize("settings_, problem", [
    ({"source": "nodes", "ports": "all"}, "targets.x.ports: all applies to sets whose objects declare ports (pods), not nodes"),
    ({"source": "pods", "ports": "all", "port": 9100}, "targets.x.port: does not apply with ports: all"),
    ({"source": "pods", "ports": "all", "port_name": "metrics"}, "targets.x.port_name: does not apply with ports: all"),
    ({"source": "pods", "ports": "all", "ip_family": "reachable"}, "targets.x.ip_family: reachable probes the one named port"),
    ({"source": "pods", "ports": "some", "port": 1}, "targets.x.ports: must be one of named, all, got 'some'"),
])
def test_ports_all_is_validated(settings_, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config({"targets": {"x": settings_}}, "sd.yaml")
    assert any(p.startswith(f"sd.yaml: {problem}") for p in caught.value.problems), caught.value.problems


def test_ports_all_needs_no_port():
    config = parse_config({"targets": {"x": {"source": "pods", "ports": "all"}}})
    assert config.targets["x"].ports is PortsPolicy.ALL
    assert parse_config({"targets": {"x": {"source": "pods", "port": 1}}}).targets["x"].ports is PortsPolicy.NAMED


IPS = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
PORT_SETS = [[], [("m", 9100, "TCP")], [("m", 9100, "TCP"), ("a", 9101, "TCP")], [("d", 53, "UDP"), ("t", 53, "TCP")]]
pod_versions = st.builds(
    lambda name, ips, ports, day, ready: pod(name, ips, ports, created=f"2026-01-0{day}T00:00:00Z", ready=ready),
    st.sampled_from([f"p{i}" for i in range(5)]),
    st.lists(st.sampled_from(IPS), max_size=2, unique=True),
    st.sampled_from(PORT_SETS),
    st.integers(1, 3),
    st.sampled_from(["True", "False"]),
)


@settings(max_examples=150, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(["upsert", "upsert", "delete"]), pod_versions), max_size=25),
       seed=st.randoms(use_true_random=False))
def test_every_port_output_depends_only_on_the_final_pods_and_each_address_has_one_pod(events, seed):
    incremental = TargetSet(ALL)
    final: dict[str, dict] = {}
    for i, (op, raw) in enumerate(events):
        name = raw["metadata"]["name"]
        if op == "upsert":
            final[name] = raw
            incremental.upsert(pods.KIND.parse(raw, previous=incremental.record(f"logging/{name}")))
        else:
            final.pop(name, None)
            incremental.delete(f"logging/{name}")
        if i % 3 == 0:
            incremental.render()
    order = list(final.values())
    seed.shuffle(order)
    fresh = TargetSet(ALL)
    for raw in order:
        fresh.upsert(pods.KIND.parse(raw))
    rebuilt = TargetSet(ALL)
    rebuilt.replace([pods.KIND.parse(raw) for raw in final.values()])
    for other in (fresh, rebuilt):
        other.render()
        incremental.render()
        assert incremental.body == other.body and incremental.etag == other.etag
    by_address = served(incremental)
    assert all(len(set(names)) == 1 for names in by_address.values())
    assert len(incremental) == sum(map(len, by_address.values()))
    for address, winner in incremental.index.winners.items():
        assert all(rank(c) <= rank(winner) for c in incremental.index.candidates(address))
