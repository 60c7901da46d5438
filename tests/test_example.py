"""examples/cluster.json, the quickstart's snapshot: only documentation addresses (a
Prometheus pointed at it scrapes nothing real), and, served with the default config, the
cases the project exists for."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

from sdtest.helpers import ROOT, Server

EXAMPLE = ROOT / "examples" / "cluster.json"
DOCUMENTATION = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]


def objects(kind: str) -> list[dict]:
    return [o for o in json.loads(EXAMPLE.read_text())["items"] if o["kind"] == kind]


@pytest.fixture(scope="module")
def server():
    with Server("--snapshot", str(EXAMPLE)) as srv:
        yield srv.wait_healthy()


def test_every_address_in_the_example_is_a_documentation_address():
    text = EXAMPLE.read_text()
    candidates = re.findall(r'"([0-9a-fA-F.:]+(?:/\d+)?)"', text)
    found = []
    for candidate in candidates:
        try:
            network = ipaddress.ip_network(candidate, strict=False)
        except ValueError:
            continue
        found.append(network)
        assert any(network.subnet_of(d) for d in DOCUMENTATION if d.version == network.version), candidate
    assert len(found) > 20, "expected the example's node, pod and CIDR addresses"


def test_each_pods_host_ip_is_an_address_of_its_node():
    addresses = {n["metadata"]["name"]: {a["address"] for a in n["status"]["addresses"]} for n in objects("Node")}
    for pod in objects("Pod"):
        node = pod["spec"]["nodeName"]
        host_ips = {h["ip"] for h in pod["status"]["hostIPs"]} | {pod["status"]["hostIP"]}
        assert host_ips <= addresses[node], f"{pod['metadata']['name']} on {node}: {host_ips}"


def test_one_ip_is_claimed_by_two_ready_nodes_and_the_older_loses(server):
    view = server.get("/debug/sets/kubelet").json()
    contested = [{k: ip[k] for k in ("ip", "target", "winner", "losers")} for ip in view["ips"] if ip["losers"]]
    assert contested == [
        {
            "ip": "192.0.2.11",
            "target": "192.0.2.11:10250",
            "winner": "worker-1",
            "losers": [{"object": "worker-1-old",
                        "why": "older: created 2026-03-02T08:15:00Z, worker-1 created 2026-11-20T14:03:11Z"}],
        }
    ]
    assert 'kube_http_sd_ip_conflicts{set="kubelet"} 1.0' in server.get("/metrics").text


def test_a_not_ready_node_is_excluded_with_its_reason(server):
    view = server.get("/debug/sets/kubelet").json()
    assert [(e["object"], e["reason"], e["why"]) for e in view["excluded"]] == [
        ("worker-4", "not_ready", "not ready (Ready=False)")
    ]
    assert not any(g["labels"]["__meta_kubernetes_node_name"] == "worker-4" for g in server.get("/targets/kubelet").json())


def test_the_ipv6_only_node_is_a_bracketed_kubelet_target(server):
    by_node = {g["labels"]["__meta_kubernetes_node_name"]: g for g in server.get("/targets/kubelet").json()}
    assert by_node["v6-only-1"]["targets"] == ["[2001:db8:0:1::21]:10250"]
    assert by_node["v6-only-1"]["labels"]["__meta_sd_ip_family"] == "ipv6"
    assert sorted(by_node) == ["v6-only-1", "worker-1", "worker-2", "worker-3"]


def test_a_dual_stack_fluentd_pod_is_one_target_per_family(server):
    groups = server.get("/targets/fluentd").json()
    pod = [(g["targets"], g["labels"]["__meta_sd_ip_family"]) for g in groups
           if g["labels"]["__meta_kubernetes_pod_name"] == "logging-fluentd-8fj3q"]
    assert sorted(pod) == [(["198.51.100.23:24231"], "ipv4"), (["[2001:db8:244:2::7]:24231"], "ipv6")]
    assert all(g["labels"]["__meta_kubernetes_pod_host_ip"] == "192.0.2.12" for g in groups
               if g["labels"]["__meta_kubernetes_pod_name"] == "logging-fluentd-8fj3q")
    names = {g["labels"]["__meta_kubernetes_pod_name"] for g in groups}
    assert "web-7d4b9c-k2l4m" not in names  # not Fluentd
    assert "logging-fluentd-old2x" not in names and "logging-fluentd-p0nd1" not in names  # terminating, not ready
