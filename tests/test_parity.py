"""Label parity with Prometheus' kubernetes_sd pod role, transcribed from Prometheus'
discovery/kubernetes/pod_test.go (makeMultiPortPods, makePods, makeInitContainerPods,
TestPodDiscoveryBeforeRun, ...InitContainer, ...UpdateEmptyPodIP, ...WithNodeMetadata[UpdateNode]),
and from node_test.go (TestNodeDiscoveryBeforeStart, ...Conditions), with our documented
differences applied: one target per pod IP on the set's named port (or,
with `ports: all`, kubernetes_sd's target per container port), the Ready filter, and
`__meta_sd_ip_family`.
The Go tests' public addresses (1.2.3.4, 2.3.4.5) are replaced by documentation ones."""

from __future__ import annotations

import copy
import dataclasses

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sdtest.factories import make_node, make_pod

from sd.config import AttachMetadata, PortsPolicy, default_config
from sd.kinds import nodes, pods
from sd.kinds.relations import RELATIONS
from sd.attach import Directory
from sd.kinds.labels import Allowlist
from sd.targets import TargetSet
from sd.views import explain

POD_IP, HOST_IP = "192.0.2.4", "192.0.2.5"
FLUENTD = default_config().targets["fluentd"]


def pod_set(port_name: str, **changes) -> TargetSet:
    return TargetSet(dataclasses.replace(FLUENTD, label_selector="", port_name=port_name, ip_family="primary", **changes))


def multi_port_pod() -> dict:
    return {
        "metadata": {
            "name": "testpod", "namespace": "default", "uid": "abc123",
            "labels": {"test/label": "testvalue"},
            "annotations": {"test/annotation": "testannotationvalue"},
            "ownerReferences": [{"kind": "testcontrollerkind", "name": "testcontrollername", "controller": True}],
        },
        "spec": {
            "nodeName": "testnode",
            "containers": [
                {"name": "testcontainer0", "image": "testcontainer0:latest", "ports": [
                    {"name": "testport0", "protocol": "TCP", "containerPort": 9000},
                    {"name": "testport1", "protocol": "UDP", "containerPort": 9001},
                ]},
                {"name": "testcontainer1", "image": "testcontainer1:latest"},
            ],
        },
        "status": {
            "podIP": POD_IP, "hostIP": HOST_IP, "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "testcontainer0", "containerID": "docker://a1b2c3d4e5f6"},
                {"name": "testcontainer1", "containerID": "containerd://6f5e4d3c2b1a"},
            ],
        },
    }


def served(ts: TargetSet) -> dict[str, dict[str, str]]:
    ts.render()
    return {g["targets"][0]: g["labels"] for g in orjson.loads(ts.body)}


MULTI_PORT_GROUP = {  # pod_test.go TestPodDiscoveryBeforeRun: the group's labels
    "__meta_kubernetes_pod_name": "testpod",
    "__meta_kubernetes_namespace": "default",
    "__meta_kubernetes_pod_label_test_label": "testvalue",
    "__meta_kubernetes_pod_labelpresent_test_label": "true",
    "__meta_kubernetes_pod_annotation_test_annotation": "testannotationvalue",
    "__meta_kubernetes_pod_annotationpresent_test_annotation": "true",
    "__meta_kubernetes_pod_node_name": "testnode",
    "__meta_kubernetes_pod_ip": POD_IP,
    "__meta_kubernetes_pod_host_ip": HOST_IP,
    "__meta_kubernetes_pod_ready": "true",
    "__meta_kubernetes_pod_phase": "Running",
    "__meta_kubernetes_pod_uid": "abc123",
    "__meta_kubernetes_pod_controller_kind": "testcontrollerkind",
    "__meta_kubernetes_pod_controller_name": "testcontrollername",
}


def test_multi_port_pod_labels_equal_kubernetes_sd_for_each_named_port():
    for port_name, target in [
        ("testport0", {  # the 1.2.3.4:9000 target of TestPodDiscoveryBeforeRun
            "__meta_kubernetes_pod_container_name": "testcontainer0",
            "__meta_kubernetes_pod_container_image": "testcontainer0:latest",
            "__meta_kubernetes_pod_container_port_name": "testport0",
            "__meta_kubernetes_pod_container_port_number": "9000",
            "__meta_kubernetes_pod_container_port_protocol": "TCP",
            "__meta_kubernetes_pod_container_init": "false",
            "__meta_kubernetes_pod_container_id": "docker://a1b2c3d4e5f6",
        }),
        ("testport1", {  # ...and its 1.2.3.4:9001 target
            "__meta_kubernetes_pod_container_name": "testcontainer0",
            "__meta_kubernetes_pod_container_image": "testcontainer0:latest",
            "__meta_kubernetes_pod_container_port_name": "testport1",
            "__meta_kubernetes_pod_container_port_number": "9001",
            "__meta_kubernetes_pod_container_port_protocol": "UDP",
            "__meta_kubernetes_pod_container_init": "false",
            "__meta_kubernetes_pod_container_id": "docker://a1b2c3d4e5f6",
        }),
    ]:
        ts = pod_set(port_name, annotations=("test/annotation",))
        ts.upsert(pods.KIND.parse(multi_port_pod(), annotations=ts.annotations))
        address = f"{POD_IP}:{target['__meta_kubernetes_pod_container_port_number']}"
        labels = served(ts)[address]
        assert labels.pop("__meta_sd_ip_family") == "ipv4"
        assert labels == {**MULTI_PORT_GROUP, **target}


def test_a_pod_whose_update_empties_its_pod_ip_loses_its_targets():
    # TestPodDiscoveryUpdateEmptyPodIP: makePods, then the same pod with Status.PodIP "":
    # Prometheus sends the pod's group with no targets. Our update path (previous record
    # given, as the feed does) must not keep the old IP as "the last good value".
    ts = pod_set("testport")
    raw = make_pod("testpod", [POD_IP], namespace="default", port_name="testport", port=9000)
    first = pods.KIND.parse(raw)
    ts.upsert(first)
    assert set(served(ts)) == {f"{POD_IP}:9000"}
    del raw["status"]["podIPs"]
    raw["status"]["podIP"] = ""
    ts.upsert(pods.KIND.parse(raw, previous=first))
    assert served(ts) == {}
    assert [e["object"] for e in explain(ts)["excluded"]] == ["default/testpod"]


# -- ports: all: kubernetes_sd's pod role, target by target ----------------------------


def every_port_set(**changes) -> TargetSet:
    changes = {"ip_family": "primary", **changes}
    return TargetSet(dataclasses.replace(FLUENTD, label_selector="", port_name=None, port=0, ports=PortsPolicy.ALL, **changes))


def targets_served(ts: TargetSet) -> list[dict[str, str]]:
    """Every target as kubernetes_sd's test writes one: __address__ plus the group's labels."""
    ts.render()
    return [{"__address__": t, **g["labels"]} for g in orjson.loads(ts.body) for t in g["targets"]]


def by_address(targets: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(targets, key=lambda t: (t["__address__"], t["__meta_kubernetes_pod_container_name"]))


def test_every_container_port_is_a_target_as_in_pod_discovery_before_run():
    # TestPodDiscoveryBeforeRun, its three targets: one per container port, and one at the bare
    # pod IP for the container without ports.
    ts = every_port_set(annotations=("test/annotation",))
    ts.upsert(pods.KIND.parse(multi_port_pod(), annotations=ts.annotations))
    group = {**MULTI_PORT_GROUP, "__meta_sd_ip_family": "ipv4"}
    assert by_address(targets_served(ts)) == by_address([
        {**group,
         "__address__": f"{POD_IP}:9000",
         "__meta_kubernetes_pod_container_name": "testcontainer0",
         "__meta_kubernetes_pod_container_image": "testcontainer0:latest",
         "__meta_kubernetes_pod_container_port_name": "testport0",
         "__meta_kubernetes_pod_container_port_number": "9000",
         "__meta_kubernetes_pod_container_port_protocol": "TCP",
         "__meta_kubernetes_pod_container_init": "false",
         "__meta_kubernetes_pod_container_id": "docker://a1b2c3d4e5f6"},
        {**group,
         "__address__": f"{POD_IP}:9001",
         "__meta_kubernetes_pod_container_name": "testcontainer0",
         "__meta_kubernetes_pod_container_image": "testcontainer0:latest",
         "__meta_kubernetes_pod_container_port_name": "testport1",
         "__meta_kubernetes_pod_container_port_number": "9001",
         "__meta_kubernetes_pod_container_port_protocol": "UDP",
         "__meta_kubernetes_pod_container_init": "false",
         "__meta_kubernetes_pod_container_id": "docker://a1b2c3d4e5f6"},
        {**group,
         "__address__": POD_IP,
         "__meta_kubernetes_pod_container_name": "testcontainer1",
         "__meta_kubernetes_pod_container_image": "testcontainer1:latest",
         "__meta_kubernetes_pod_container_init": "false",
         "__meta_kubernetes_pod_container_id": "containerd://6f5e4d3c2b1a"},
    ])


def init_container_pod() -> dict:
    return {  # makeInitContainerPods
        "metadata": {"name": "testpod", "namespace": "default", "uid": "abc123"},
        "spec": {
            "nodeName": "testnode",
            "containers": [{"name": "testcontainer", "image": "testcontainer:latest",
                            "ports": [{"name": "testport", "protocol": "TCP", "containerPort": 9000}]}],
            "initContainers": [{"name": "initcontainer", "image": "initcontainer:latest"}],
        },
        "status": {
            "podIP": POD_IP, "hostIP": HOST_IP, "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "testcontainer", "containerID": "docker://a1b2c3d4e5f6"}],
            "initContainerStatuses": [{"name": "initcontainer", "containerID": "containerd://6f5e4d3c2b1a"}],
        },
    }


def test_an_init_container_without_ports_is_a_target_at_the_pod_ip_as_in_pod_discovery_init_container():
    # TestPodDiscoveryInitContainer: expectedPodTargetGroups plus the init container's target;
    # Pending and not ready, so require_ready: false.
    ts = every_port_set(require_ready=False)
    ts.upsert(pods.KIND.parse(init_container_pod()))
    group = {
        "__meta_kubernetes_pod_name": "testpod", "__meta_kubernetes_namespace": "default",
        "__meta_kubernetes_pod_node_name": "testnode", "__meta_kubernetes_pod_ip": POD_IP,
        "__meta_kubernetes_pod_host_ip": HOST_IP, "__meta_kubernetes_pod_ready": "false",
        "__meta_kubernetes_pod_phase": "Pending", "__meta_kubernetes_pod_uid": "abc123",
        "__meta_sd_ip_family": "ipv4",
    }
    assert by_address(targets_served(ts)) == by_address([
        {**group,
         "__address__": f"{POD_IP}:9000",
         "__meta_kubernetes_pod_container_name": "testcontainer",
         "__meta_kubernetes_pod_container_image": "testcontainer:latest",
         "__meta_kubernetes_pod_container_port_name": "testport",
         "__meta_kubernetes_pod_container_port_number": "9000",
         "__meta_kubernetes_pod_container_port_protocol": "TCP",
         "__meta_kubernetes_pod_container_init": "false",
         "__meta_kubernetes_pod_container_id": "docker://a1b2c3d4e5f6"},
        {**group,
         "__address__": POD_IP,
         "__meta_kubernetes_pod_container_name": "initcontainer",
         "__meta_kubernetes_pod_container_image": "initcontainer:latest",
         "__meta_kubernetes_pod_container_init": "true",
         "__meta_kubernetes_pod_container_id": "containerd://6f5e4d3c2b1a"},
    ])


def test_every_port_on_every_pod_ip_ipv6_bracketed_even_without_a_port():
    ts = every_port_set(ip_family="both")
    raw = multi_port_pod()
    raw["status"]["podIPs"] = [{"ip": POD_IP}, {"ip": "2001:db8::4"}]
    ts.upsert(pods.KIND.parse(raw))
    got = {t["__address__"]: (t["__meta_kubernetes_pod_ip"], t["__meta_sd_ip_family"]) for t in targets_served(ts)}
    assert got == {
        f"{POD_IP}:9000": (POD_IP, "ipv4"), f"{POD_IP}:9001": (POD_IP, "ipv4"), POD_IP: (POD_IP, "ipv4"),
        "[2001:db8::4]:9000": ("2001:db8::4", "ipv6"), "[2001:db8::4]:9001": ("2001:db8::4", "ipv6"),
        "[2001:db8::4]": ("2001:db8::4", "ipv6"),
    }


def test_a_pod_whose_update_empties_its_pod_ip_loses_every_port_target():
    ts = every_port_set()
    raw = multi_port_pod()
    first = pods.KIND.parse(raw)
    ts.upsert(first)
    assert len(targets_served(ts)) == 3
    raw["status"]["podIP"] = ""
    ts.upsert(pods.KIND.parse(raw, previous=first))
    assert targets_served(ts) == [] and len(ts) == 0


@pytest.mark.parametrize("ref, expected", [
    ({"kind": "ReplicaSet", "name": "web-5d9c", "controller": True},
     {"__meta_kubernetes_pod_controller_kind": "ReplicaSet", "__meta_kubernetes_pod_controller_name": "web-5d9c"}),
    ({"kind": "", "name": "web-5d9c", "controller": True}, {"__meta_kubernetes_pod_controller_name": "web-5d9c"}),
    ({"kind": "ReplicaSet", "name": "", "controller": True}, {"__meta_kubernetes_pod_controller_kind": "ReplicaSet"}),
    ({"kind": "ReplicaSet", "name": "web-5d9c"}, {}),  # an owner, not the controller
])
def test_controller_labels_are_each_present_when_not_empty_as_pod_go_writes_them(ref, expected):
    raw = make_pod("p", [POD_IP])
    raw["metadata"]["ownerReferences"] = [ref]
    labels = pods.KIND.labels(pods.KIND.parse(raw))
    assert {k: v for k, v in labels.items() if "controller" in k} == expected


def test_a_named_port_on_an_init_container_is_served_as_init():
    # makeInitContainerPods (Pending, not Ready, hence require_ready: false), its init
    # container given the named port the Go test's lacks.
    raw = {
        "metadata": {"name": "testpod", "namespace": "default", "uid": "abc123"},
        "spec": {
            "nodeName": "testnode",
            "containers": [{"name": "testcontainer", "image": "testcontainer:latest",
                            "ports": [{"name": "testport", "protocol": "TCP", "containerPort": 9000}]}],
            "initContainers": [{"name": "initcontainer", "image": "initcontainer:latest",
                                "ports": [{"name": "metrics", "protocol": "TCP", "containerPort": 9100}]}],
        },
        "status": {
            "podIP": POD_IP, "hostIP": HOST_IP, "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "testcontainer", "containerID": "docker://a1b2c3d4e5f6"}],
            "initContainerStatuses": [{"name": "initcontainer", "containerID": "containerd://6f5e4d3c2b1a"}],
        },
    }
    ts = pod_set("metrics", require_ready=False)
    ts.upsert(pods.KIND.parse(raw))
    labels = served(ts)[f"{POD_IP}:9100"]
    assert {k: labels[k] for k in labels if "container" in k} == {
        "__meta_kubernetes_pod_container_name": "initcontainer",
        "__meta_kubernetes_pod_container_image": "initcontainer:latest",
        "__meta_kubernetes_pod_container_init": "true",
        "__meta_kubernetes_pod_container_id": "containerd://6f5e4d3c2b1a",
        "__meta_kubernetes_pod_container_port_name": "metrics",
        "__meta_kubernetes_pod_container_port_number": "9100",
        "__meta_kubernetes_pod_container_port_protocol": "TCP",
    }
    assert labels["__meta_kubernetes_pod_phase"] == "Pending" and labels["__meta_kubernetes_pod_ready"] == "false"


def test_a_native_sidecar_port_is_served_from_a_running_ready_pod_and_id_waits_for_status():
    raw = make_pod("fluentd-x", ["192.0.2.9"], port_name=None)
    raw["spec"]["initContainers"] = [{"name": "exporter", "image": "exporter:1", "restartPolicy": "Always",
                                      "ports": [{"name": "monitor", "containerPort": 24231}]}]
    ts = pod_set("monitor")
    ts.upsert(pods.KIND.parse(raw))
    labels = served(ts)["192.0.2.9:24231"]
    assert labels["__meta_kubernetes_pod_container_init"] == "true"
    assert labels["__meta_kubernetes_pod_container_name"] == "exporter"
    assert "__meta_kubernetes_pod_container_id" not in labels  # no status for it yet
    raw["status"]["initContainerStatuses"] = [{"name": "exporter", "containerID": "containerd://abc"}]
    ts.upsert(pods.KIND.parse(raw))
    assert served(ts)["192.0.2.9:24231"]["__meta_kubernetes_pod_container_id"] == "containerd://abc"


def test_unlisted_annotations_are_never_stored_and_prefixes_select():
    raw = make_pod("p", ["192.0.2.7"])
    raw["metadata"]["annotations"] = {"prometheus.io/scrape": "true", "prometheus.io/port": "9102", "other": "x"}
    assert pods.KIND.parse(raw).annotations == ()
    record = pods.KIND.parse(raw, annotations=Allowlist.of(("prometheus.io/*",)))
    assert record.annotations == (("prometheus.io/port", "9102"), ("prometheus.io/scrape", "true"))
    ts = pod_set("monitor", annotations=("prometheus.io/scrape",))
    ts.upsert(record)
    labels = served(ts)["192.0.2.7:24231"]
    assert labels["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] == "true"
    assert labels["__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape"] == "true"
    assert not [k for k in labels if "prometheus_io_port" in k or "annotation_other" in k]


# -- attach_metadata: {node: true} ---------------------------------------------------


NODE = RELATIONS["pods"]["node"]


def attached_set(directory: Directory, **changes) -> TargetSet:
    ts = pod_set("monitor", attach_metadata=AttachMetadata(node=True), **changes)
    ts.attach(NODE, directory)
    return ts


def test_node_metadata_on_pod_targets_as_kubernetes_sd_attaches_it():
    # TestPodDiscoveryWithNodeMetadata: node testnode with l1=v1.
    directory = Directory(nodes.KIND)
    ts = attached_set(directory)
    directory.upsert(nodes.KIND.parse({"metadata": {"name": "testnode", "labels": {"l1": "v1"}}, "status": {}}))
    ts.upsert(pods.KIND.parse(make_pod("testpod", [POD_IP], node="testnode")))
    labels = served(ts)[f"{POD_IP}:24231"]
    assert {k: v for k, v in labels.items() if k.startswith("__meta_kubernetes_node_")} == {
        "__meta_kubernetes_node_name": "testnode",
        "__meta_kubernetes_node_label_l1": "v1",
        "__meta_kubernetes_node_labelpresent_l1": "true",
    }


def test_a_node_label_change_rebuilds_only_the_groups_of_pods_on_that_node(monkeypatch):
    # TestPodDiscoveryWithNodeMetadataUpdateNode: l1=v1 becomes l2=v2.
    directory = Directory(nodes.KIND)
    ts = attached_set(directory)
    for name in ("testnode", "other"):
        directory.upsert(nodes.KIND.parse(make_node(name, ["192.0.2.100"], labels={"l1": "v1"})))
    ts.upsert(pods.KIND.parse(make_pod("a", ["192.0.2.1"], node="testnode")))
    ts.upsert(pods.KIND.parse(make_pod("b", ["192.0.2.2"], node="other")))
    before = served(ts)
    built: list[str] = []
    labels = pods.KIND.labels
    monkeypatch.setattr(pods.KIND, "labels", lambda record, *args: built.append(record.name) or labels(record, *args))
    directory.upsert(nodes.KIND.parse(make_node("testnode", ["192.0.2.100"], labels={"l2": "v2"})))
    after = served(ts)
    assert built == ["a"], "only a's group is built again"
    assert after["192.0.2.1:24231"]["__meta_kubernetes_node_label_l2"] == "v2"
    assert "__meta_kubernetes_node_label_l1" not in after["192.0.2.1:24231"]
    assert after["192.0.2.2:24231"] == before["192.0.2.2:24231"]
    # A heartbeat of the node (same labels) rebuilds nothing.
    directory.upsert(nodes.KIND.parse(make_node("testnode", ["192.0.2.100"], labels={"l2": "v2"}, heartbeat="2026-11-21T10:00:10Z")))
    assert not ts.dirty


def test_a_pod_is_held_back_until_its_node_is_known_and_again_when_it_goes():
    # Prometheus 3.11+ (#18006; TestPodDiscoveryWithNodeSelector): with node metadata, a pod
    # whose node is not in the node store gets an empty group.
    directory = Directory(nodes.KIND)
    ts = attached_set(directory)
    ts.upsert(pods.KIND.parse(make_pod("a", ["192.0.2.1"], node="late")))
    assert served(ts) == {}
    assert explain(ts)["excluded"] == [
        {"object": "logging/a", "reason": "node_unknown", "why": "its node late is not known (attach_metadata: node)"}
    ]
    directory.upsert(nodes.KIND.parse(make_node("late", ["192.0.2.100"], labels={"zone": "z1"})))
    assert served(ts)["192.0.2.1:24231"]["__meta_kubernetes_node_label_zone"] == "z1"
    directory.delete("late")
    assert served(ts) == {}


def test_a_pod_held_back_frees_its_ip_for_another_candidate():
    directory = Directory(nodes.KIND)
    ts = attached_set(directory)
    directory.upsert(nodes.KIND.parse(make_node("known", ["192.0.2.100"])))
    ts.upsert(pods.KIND.parse(make_pod("old", ["192.0.2.1"], node="known", created="2026-01-01T00:00:00Z")))
    ts.upsert(pods.KIND.parse(make_pod("new", ["192.0.2.1"], node="gone", created="2026-02-01T00:00:00Z")))
    assert served(ts)["192.0.2.1:24231"]["__meta_kubernetes_pod_name"] == "old"


def test_a_pod_deleted_then_added_again_after_its_node_changed_gets_the_new_node_labels():
    # The group kept from the deleted pod must not be reused: nothing re-queues a deleted pod
    # when its node's labels change.
    directory = Directory(nodes.KIND)
    ts = attached_set(directory)
    directory.upsert(nodes.KIND.parse(make_node("n1", ["192.0.2.100"], labels={"zone": "z0"})))
    raw = make_pod("p0", ["192.0.2.1"], node="n1")
    ts.upsert(pods.KIND.parse(raw))
    assert served(ts)["192.0.2.1:24231"]["__meta_kubernetes_node_label_zone"] == "z0"
    ts.delete("logging/p0")
    ts.render()
    directory.upsert(nodes.KIND.parse(make_node("n1", ["192.0.2.100"], labels={"zone": "z1"})))
    ts.upsert(pods.KIND.parse(raw))
    assert served(ts)["192.0.2.1:24231"]["__meta_kubernetes_node_label_zone"] == "z1"


def test_a_pod_that_moved_away_and_back_after_its_node_changed_gets_the_new_node_labels():
    # The example hypothesis found: while the pod named an unknown node (held back), its old
    # node's labels changed; nothing re-queues it for that node, so the group kept from before
    # it moved must not be reused when it names that node again.
    directory = Directory(nodes.KIND)
    ts = attached_set(directory)
    directory.upsert(nodes.KIND.parse(make_node("n1", ["192.0.2.100"], labels={"zone": "z1"})))
    on_n1 = pods.KIND.parse(make_pod("p0", ["192.0.2.1"], node="n1"))
    ts.upsert(on_n1)
    assert served(ts)["192.0.2.1:24231"]["__meta_kubernetes_node_label_zone"] == "z1"
    ts.upsert(pods.KIND.parse(make_pod("p0", ["192.0.2.1"], node="n0")))
    assert served(ts) == {}, "held back: node n0 is not known"
    directory.upsert(nodes.KIND.parse(make_node("n1", ["192.0.2.100"], labels={"zone": "z0"})))
    ts.upsert(on_n1)
    assert served(ts)["192.0.2.1:24231"]["__meta_kubernetes_node_label_zone"] == "z0"


node_events = st.lists(
    st.tuples(
        st.sampled_from(["node", "pod"]),
        st.integers(0, 3),  # which object
        st.integers(0, 4),  # its labels / node; 4 = delete
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(node_events)
def test_attached_labels_equal_a_fresh_build_for_any_event_order(events):
    def node(i: int, v: int) -> dict:
        return make_node(f"n{i}", [f"192.0.2.{100 + i}"], labels={"zone": f"z{v}"})

    def pod(i: int, v: int) -> dict:
        return make_pod(f"p{i}", [f"192.0.2.{i + 1}"], node=f"n{v}")

    directory = Directory(nodes.KIND)
    ts = attached_set(directory)
    final_nodes: dict[int, dict] = {}
    final_pods: dict[int, dict] = {}
    for what, i, v in events:
        objects, build = (final_nodes, node) if what == "node" else (final_pods, pod)
        if v == 4:
            objects.pop(i, None)
            (directory.delete(f"n{i}") if what == "node" else ts.delete(f"logging/p{i}"))
        else:
            objects[i] = build(i, v)
            record = (nodes.KIND if what == "node" else pods.KIND).parse(copy.deepcopy(objects[i]))
            (directory.upsert if what == "node" else ts.upsert)(record)
        if len(events) % 3 == 0:
            ts.render()  # renders in between must not change the end result
    fresh_directory = Directory(nodes.KIND)
    fresh = attached_set(fresh_directory)
    fresh_directory.replace([nodes.KIND.parse(n) for n in final_nodes.values()])
    fresh.replace([pods.KIND.parse(p) for p in final_pods.values()])
    assert served(ts) == served(fresh)


def test_node_labels_reach_pod_targets_through_a_live_watch_with_one_node_watch(api, tmp_path):
    from sdtest.helpers import FAST, Server, eventually

    config = tmp_path / "sd.yaml"
    config.write_text(FAST + "\n".join([
        "targets:",
        "  kubelet: {source: nodes, port: 10250, port_name: kubelet, annotations: ['team.example/*']}",
        "  fluentd:",
        "    source: pods",
        "    port: 24231",
        "    port_name: monitor",
        "    label_selector: app.kubernetes.io/name=fluentd",
        "    ip_family: both",
        "    attach_metadata: {node: true}",
        "    annotations: ['team.example/owner']",
        "",
    ]))
    node = make_node("n1", ["192.0.2.1"], labels={"topology.kubernetes.io/zone": "z1"})
    node["metadata"]["annotations"]["team.example/owner"] = "logs"
    api.add(node)
    api.add(make_pod("f1", ["192.0.2.10", "2001:db8::10"], node="n1"))
    api.add(make_pod("f2", ["192.0.2.11"], node="n-later"))
    with Server("--kubeconfig", api.write_kubeconfig(tmp_path / "kubeconfig"), "--config", str(config)) as srv:
        srv.wait_healthy()

        def pod_labels() -> dict[str, dict[str, str]]:
            resp = srv.get("/targets/fluentd")
            assert resp.status_code == 200
            return {g["targets"][0]: g["labels"] for g in resp.json()}

        labels = eventually(pod_labels, what="first sync")
        for target in ("192.0.2.10:24231", "[2001:db8::10]:24231"):
            assert labels[target]["__meta_kubernetes_node_label_topology_kubernetes_io_zone"] == "z1"
            assert labels[target]["__meta_kubernetes_node_annotation_team_example_owner"] == "logs"
        assert "192.0.2.11:24231" not in labels, "its node is not known yet: held back, as Prometheus 3.11+ does"
        moved = make_node("n1", ["192.0.2.1"], labels={"topology.kubernetes.io/zone": "z2"})
        api.modify(moved)
        eventually(lambda: pod_labels()["192.0.2.10:24231"]["__meta_kubernetes_node_label_topology_kubernetes_io_zone"] == "z2",
                   what="the node's new zone on its pod's targets")
        api.add(make_node("n-later", ["192.0.2.2"], labels={"topology.kubernetes.io/zone": "z3"}))
        eventually(lambda: pod_labels().get("192.0.2.11:24231", {}).get("__meta_kubernetes_node_name") == "n-later")
        # The kubelet set and the attached metadata share the one unfiltered node watch.
        node_streams = [r for r in api.requests if r["path"] == "/api/v1/nodes" and r["query"].get("sendInitialEvents")]
        assert len(node_streams) == 1


def test_a_set_attached_after_it_was_filled_indexes_its_pods_by_node():
    # What a reload does when it adds an attaching set to a running pod source.
    directory = Directory(nodes.KIND)
    directory.upsert(nodes.KIND.parse(make_node("n1", ["192.0.2.100"], labels={"zone": "z1"})))
    ts = pod_set("monitor", attach_metadata=AttachMetadata(node=True))
    ts.upsert(pods.KIND.parse(make_pod("a", ["192.0.2.1"], node="n1")))
    ts.render()
    ts.attach(NODE, directory)
    assert served(ts)["192.0.2.1:24231"]["__meta_kubernetes_node_label_zone"] == "z1"
    directory.upsert(nodes.KIND.parse(make_node("n1", ["192.0.2.100"], labels={"zone": "z2"})))
    assert served(ts)["192.0.2.1:24231"]["__meta_kubernetes_node_label_zone"] == "z2"


# -- the node role: node_test.go ------------------------------------------------------

KUBELET = default_config().targets["kubelet"]
NODE_IP = "192.0.2.6"


def go_node(conditions: list[dict] | None, labels: dict | None = None, annotations: dict | None = None) -> dict:
    """node_test.go's makeNode: one InternalIP, kubelet port 10250, the given conditions."""
    return {
        "metadata": {"name": "test", "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"providerID": "aws:///test-zone/i-test"},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}, "conditions": conditions},
    }


def node_targets(raw: dict, **changes) -> list[dict[str, str]]:
    ts = TargetSet(dataclasses.replace(KUBELET, **changes))
    ts.upsert(nodes.KIND.parse(raw, annotations=ts.annotations))
    ts.render()
    return [{"__address__": t, **g["labels"]} for g in orjson.loads(ts.body) for t in g["targets"]]


NODE_TARGET = {"__address__": f"{NODE_IP}:10250", "instance": "test",
               "__meta_kubernetes_node_address_InternalIP": NODE_IP, "__meta_sd_ip_family": "ipv4"}


def test_node_labels_as_in_node_discovery_before_start():
    # TestNodeDiscoveryBeforeStart: no conditions, so not Ready: require_ready: false serves it.
    raw = go_node(None, {"test-label": "testvalue"}, {"test-annotation": "testannotationvalue"})
    raw["spec"]["providerID"] = "aws:///nl-north-7b/i-03149834983492827"
    assert node_targets(raw, require_ready=False, annotations=("test-annotation",)) == [{
        **NODE_TARGET,
        "__meta_kubernetes_node_name": "test",
        "__meta_kubernetes_node_provider_id": "aws:///nl-north-7b/i-03149834983492827",
        "__meta_kubernetes_node_label_test_label": "testvalue",
        "__meta_kubernetes_node_labelpresent_test_label": "true",
        "__meta_kubernetes_node_annotation_test_annotation": "testannotationvalue",
        "__meta_kubernetes_node_annotationpresent_test_annotation": "true",
    }]


@pytest.mark.parametrize("conditions, expected", [  # TestNodeDiscoveryConditions, case by case
    ([{"type": "Ready", "status": "True"}], {"__meta_kubernetes_node_condition_ready": "true"}),
    ([{"type": "Ready", "status": "False"}], {"__meta_kubernetes_node_condition_ready": "false"}),
    ([{"type": "Ready", "status": "Unknown"}], {"__meta_kubernetes_node_condition_ready": "unknown"}),
    (None, {}),
    ([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}],
     {"__meta_kubernetes_node_condition_memorypressure": "false", "__meta_kubernetes_node_condition_ready": "true",
      "__meta_kubernetes_node_condition_diskpressure": "false"}),
], ids=["ready true", "ready false", "ready unknown", "no conditions", "multiple conditions"])
def test_node_condition_labels_as_in_node_discovery_conditions(conditions, expected):
    assert node_targets(go_node(conditions), require_ready=False) == [{
        **NODE_TARGET,
        "__meta_kubernetes_node_name": "test",
        "__meta_kubernetes_node_provider_id": "aws:///test-zone/i-test",
        **expected,
    }]
