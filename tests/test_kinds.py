from __future__ import annotations

import copy

import pytest

from sd.kinds import nodes, pods
from sd.kinds.ips import normalize_ip
from sd.kinds.kind import Port
from sd.kinds.reports import BAD_FIELD, BAD_OBJECT, INVALID_IP, LINK_LOCAL_IP, UNSPECIFIED_IP
from sdtest.factories import make_node, make_pod

parse_node, parse_pod = nodes.KIND.parse, pods.KIND.parse


class Reports(list):
    def __call__(self, reason: str, detail: str) -> None:
        self.append((reason, detail))

    @property
    def reasons(self) -> list[str]:
        return [r for r, _ in self]


def test_node_parses_the_fields_targets_need():
    raw = make_node("n1", ["10.0.0.1", "fd00::1"], external=["203.0.113.9"], labels={"zone": "a"}, kubelet_port=10255)
    node = parse_node(raw)
    assert node is not None
    assert node.name == "n1" and node.key == "n1" and node.uid == "uid-n1"
    assert node.ready == "True"
    assert ("MemoryPressure", "False") in node.conditions
    assert node.ips(("InternalIP",)) == ("10.0.0.1", "fd00::1")
    assert node.ips(("ExternalIP", "InternalIP")) == ("203.0.113.9", "10.0.0.1", "fd00::1")
    assert ("Hostname", "n1") in node.addresses
    assert dict(node.labels)["zone"] == "a"
    assert node.provider_id == "aws:///eu-west-1a/i-n1"
    assert dict(node.ports) == {"kubelet": Port(10255)}
    assert node.created == pytest.approx(1767225600.0)
    assert not node.terminating


def test_heartbeat_only_change_compares_equal():
    a = make_node("n1", heartbeat="2026-11-21T10:00:00Z", resource_version="5")
    b = make_node("n1", heartbeat="2026-11-21T10:00:10Z", resource_version="6")
    b["status"]["images"].append({"names": ["x:1"], "sizeBytes": 1})
    assert parse_node(a) == parse_node(b)


def test_ready_change_does_not_compare_equal():
    assert parse_node(make_node("n1", ready="True")) != parse_node(make_node("n1", ready="False"))


def test_missing_ready_condition_is_empty_string():
    assert parse_node(make_node("n1", ready=None)).ready == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("fd00:0:0:0:0:0:0:5", "fd00::5"),
        ("FD00::A", "fd00::a"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_ips_are_canonical(value, expected):
    assert normalize_ip(value, "x") == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not-an-ip", INVALID_IP),
        ("10.0.0.256", INVALID_IP),
        (42, INVALID_IP),
        (None, INVALID_IP),
        ("0.0.0.0", UNSPECIFIED_IP),
        ("::", UNSPECIFIED_IP),
        ("fe80::1", LINK_LOCAL_IP),
        ("169.254.3.4", LINK_LOCAL_IP),
    ],
)
def test_unusable_ips_are_skipped_and_reported(value, reason):
    reports = Reports()
    assert normalize_ip(value, "node/n1: status.addresses[0].address", reports) is None
    assert reports.reasons == [reason]
    assert reports[0][1].startswith("node/n1: status.addresses[0].address: ")


def test_bad_address_is_skipped_but_the_rest_of_the_node_kept():
    raw = make_node("n1", ["fe80::1", "garbage", "10.0.0.5"])
    reports = Reports()
    node = parse_node(raw, reports)
    assert node.ips(("InternalIP",)) == ("10.0.0.5",)
    assert sorted(reports.reasons) == [INVALID_IP, LINK_LOCAL_IP]


@pytest.mark.parametrize(
    "mutate, reasons",
    [
        (lambda n: n.pop("status"), [BAD_FIELD]),
        (lambda n: n["status"].update(addresses=None), []),
        (lambda n: n["status"].update(addresses="10.0.0.1"), [BAD_FIELD]),
        (lambda n: n["status"].update(addresses=[42, {"type": 7}, {"type": "InternalIP"}]), [BAD_FIELD, BAD_FIELD, INVALID_IP]),
        (lambda n: n["status"].update(conditions=[{"type": "Ready"}, "x", None]), [BAD_FIELD, BAD_FIELD, BAD_FIELD]),
        (lambda n: n["status"].update(conditions={"Ready": "True"}), [BAD_FIELD]),
        (lambda n: n["status"].update(daemonEndpoints={"kubeletEndpoint": {"Port": "10250"}}), [BAD_FIELD]),
        (lambda n: n["status"].update(daemonEndpoints=[]), [BAD_FIELD]),
        (lambda n: n["metadata"].update(labels={"a": 1, "b": None}), [BAD_FIELD, BAD_FIELD]),
        (lambda n: n["metadata"].update(labels=["a"]), [BAD_FIELD]),
        (lambda n: n["metadata"].update(creationTimestamp="yesterday"), [BAD_FIELD]),
        (lambda n: n["metadata"].update(creationTimestamp=12), [BAD_FIELD]),
        (lambda n: n.update(spec=None), []),
        (lambda n: n.update(spec="x"), [BAD_FIELD]),
    ],
)
def test_malformed_node_fields_never_raise(mutate, reasons):
    raw = make_node("n1")
    mutate(raw)
    reports = Reports()
    node = parse_node(raw, reports)
    assert node is not None and node.name == "n1"
    assert reports.reasons == reasons and all(detail.startswith("node/n1: ") for _, detail in reports)


def test_malformed_field_report_names_where_and_why():
    raw = make_node("n1")
    raw["status"]["addresses"] = "10.0.0.1"
    reports = Reports()
    parse_node(raw, reports)
    assert reports == [(BAD_FIELD, "node/n1: status.addresses: expected a list, got '10.0.0.1'")]


@pytest.mark.parametrize("raw", [None, 42, "node", [], {}, {"metadata": None}, {"metadata": {"name": 5}}])
def test_node_without_name_is_skipped_and_reported(raw):
    reports = Reports()
    assert parse_node(raw, reports) is None
    assert reports.reasons == [BAD_OBJECT]


def test_pod_parses_dual_stack_ips_and_named_ports():
    pod = parse_pod(make_pod("f1", ["10.244.0.5", "fd00::5"], port_name="monitor", port=24231))
    assert pod.key == "logging/f1"
    assert pod.pod_ips == ("10.244.0.5", "fd00::5")
    assert pod.phase == "Running" and pod.ready == "True"
    assert pod.node_name == "node-1"
    assert pod.controller_kind == "DaemonSet" and pod.controller_name == "fluentd"
    assert dict(pod.ports) == {"monitor": Port(24231, "fluentd", "TCP", "fluent/fluentd:v1.18-1")}


def test_pod_falls_back_to_pod_ip_without_pod_ips():
    raw = make_pod("f1", ["10.244.0.5"])
    del raw["status"]["podIPs"]
    assert parse_pod(raw).pod_ips == ("10.244.0.5",)


def test_pod_ips_dedupe_after_normalization():
    raw = make_pod("f1", ["::ffff:10.244.0.5", "10.244.0.5"])
    assert parse_pod(raw).pod_ips == ("10.244.0.5",)


@pytest.mark.parametrize(
    "mutate, reasons",
    [
        (lambda p: p.pop("status"), [BAD_FIELD]),
        (lambda p: p["status"].update(podIPs=None, podIP=None), []),
        (lambda p: p["status"].update(podIPs=[{"ip": 5}, "x", {"ip": "fe80::1"}]), [INVALID_IP, INVALID_IP, LINK_LOCAL_IP]),
        (lambda p: p["spec"].update(containers=None), []),
        (lambda p: p["spec"].update(containers=[None, {"ports": "x"}, {"ports": [{"name": "m", "containerPort": "x"}]}]), [BAD_FIELD, BAD_FIELD, BAD_FIELD]),
        (lambda p: p["metadata"].update(ownerReferences="x"), [BAD_FIELD]),
        (lambda p: p["status"].update(hostIP=5), [BAD_FIELD]),
    ],
)
def test_malformed_pod_fields_never_raise(mutate, reasons):
    raw = make_pod("f1")
    mutate(raw)
    reports = Reports()
    pod = parse_pod(raw, reports)
    assert pod is not None and pod.key == "logging/f1"
    assert reports.reasons == reasons and all(detail.startswith("pod/logging/f1: ") for _, detail in reports)


def test_pod_without_namespace_is_skipped():
    raw = make_pod("f1")
    del raw["metadata"]["namespace"]
    reports = Reports()
    assert parse_pod(raw, reports) is None
    assert reports.reasons == [BAD_OBJECT]


def test_records_share_label_strings_between_objects():
    a = parse_node(make_node("a", labels={"topology.kubernetes.io/zone": "eu-west-1a"}))
    b = parse_node(copy.deepcopy(make_node("b", labels={"topology.kubernetes.io/zone": "eu-west-1a"})))
    za = next(v for k, v in a.labels if k == "topology.kubernetes.io/zone")
    zb = next(v for k, v in b.labels if k == "topology.kubernetes.io/zone")
    assert za is zb


def test_unchanged_labels_and_conditions_reuse_the_previous_record_parts():
    first = parse_node(make_node("n1", labels={"zone": "a"}))
    again = parse_node(make_node("n1", labels={"zone": "a"}, heartbeat="2026-11-21T10:00:10Z"), previous=first)
    assert again == first
    assert again.labels is first.labels and again.conditions is first.conditions


def test_changed_labels_or_conditions_are_not_taken_from_the_previous_record():
    first = parse_node(make_node("n1", labels={"zone": "a"}))
    relabelled = parse_node(make_node("n1", labels={"zone": "b"}), previous=first)
    assert dict(relabelled.labels)["zone"] == "b"
    not_ready = parse_node(make_node("n1", labels={"zone": "a"}, ready="False"), previous=first)
    assert not_ready.ready == "False" and ("Ready", "False") in not_ready.conditions
    fewer = make_node("n1", labels={"zone": "a"})
    fewer["metadata"]["labels"] = {"zone": "a", "kubernetes.io/os": "linux", "extra": "x"}
    assert len(parse_node(fewer, previous=first).labels) == 3


def test_malformed_conditions_in_an_update_keep_the_last_good_conditions():
    first = parse_node(make_node("n1"))
    raw = make_node("n1", ready="False")
    raw["status"]["conditions"][0] = "garbage"
    reports = Reports()
    parsed = parse_node(raw, reports, previous=first)
    # The list cannot be trusted, so not even its Ready=False entry is taken: only
    # well-formed data may take a served target away.
    assert reports.reasons == [BAD_FIELD] and "keeping the last good value" in reports[0][1]
    assert parsed.conditions == first.conditions and parsed.ready == "True"


def test_a_new_object_with_a_malformed_field_gets_the_well_formed_part():
    raw = make_node("n1")
    raw["status"]["conditions"].insert(0, "garbage")
    node = parse_node(raw, Reports())
    assert node.ready == "True" and len(node.conditions) == 4


NODE_UPDATES = {
    "conditions a string": lambda n: n["status"].update(conditions="Ready"),
    "an address not an IP": lambda n: n["status"]["addresses"][0].update(address="not-an-ip"),
    "addresses a map": lambda n: n["status"].update(addresses={"InternalIP": "192.0.2.1"}),
    "status null": lambda n: n.update(status=None),
    "status absent": lambda n: n.pop("status"),
    "status a list": lambda n: n.update(status=[]),
    "kubelet port a string": lambda n: n["status"]["daemonEndpoints"]["kubeletEndpoint"].update(Port="x"),
    "labels not a map": lambda n: n["metadata"].update(labels=["a"]),
    "a label value not a string": lambda n: n["metadata"]["labels"].update(zone=7),
    "creationTimestamp garbage": lambda n: n["metadata"].update(creationTimestamp="yesterday"),
    "spec a string": lambda n: n.update(spec="x"),
}


@pytest.mark.parametrize("mutate", NODE_UPDATES.values(), ids=NODE_UPDATES.keys())
def test_a_malformed_field_in_a_node_update_keeps_the_previous_value(mutate):
    first = parse_node(make_node("n1", ["192.0.2.1"], labels={"zone": "a"}, kubelet_port=10255))
    raw = make_node("n1", ["192.0.2.1"], labels={"zone": "a"}, kubelet_port=10255)
    mutate(raw)
    reports = Reports()
    assert parse_node(raw, reports, previous=first) == first
    assert reports and set(reports.reasons) <= {BAD_FIELD, INVALID_IP}


POD_UPDATES = {
    "conditions a string": lambda p: p["status"].update(conditions="Ready"),
    "a pod IP not an IP": lambda p: p["status"].update(podIPs=[{"ip": "192.0.2.5"}, {"ip": "x"}]),
    "podIPs a string": lambda p: p["status"].update(podIPs="192.0.2.5"),
    "status null": lambda p: p.update(status=None),
    "phase a number": lambda p: p["status"].update(phase=3),
    "containers a map": lambda p: p["spec"].update(containers={}),
    "a port number a string": lambda p: p["spec"]["containers"][0]["ports"][0].update(containerPort="x"),
    "ownerReferences a string": lambda p: p["metadata"].update(ownerReferences="x"),
    "spec a list": lambda p: p.update(spec=[]),
}


@pytest.mark.parametrize("mutate", POD_UPDATES.values(), ids=POD_UPDATES.keys())
def test_a_malformed_field_in_a_pod_update_keeps_the_previous_value(mutate):
    first = parse_pod(make_pod("f1", ["192.0.2.5", "2001:db8::5"], port_name="monitor", port=24231))
    raw = make_pod("f1", ["192.0.2.5", "2001:db8::5"], port_name="monitor", port=24231)
    mutate(raw)
    reports = Reports()
    assert parse_pod(raw, reports, previous=first) == first
    assert reports and set(reports.reasons) <= {BAD_FIELD, INVALID_IP}


def test_well_formed_changes_still_apply_next_to_a_malformed_field():
    first = parse_node(make_node("n1", ["192.0.2.1"], labels={"zone": "a"}))
    raw = make_node("n1", ["192.0.2.1"], labels={"zone": "b"}, ready="False")
    raw["status"]["addresses"][0]["address"] = "garbage"
    node = parse_node(raw, Reports(), previous=first)
    assert node.ready == "False" and dict(node.labels)["zone"] == "b"  # taken: well-formed
    assert node.addresses == first.addresses  # kept: malformed


@pytest.mark.parametrize("value", ["fd00::5%eth0", "2001:db8::5%1", "fe80::1%eth0"])
def test_scoped_ipv6_addresses_are_never_targets(value):
    reports = Reports()
    assert normalize_ip(value, "pod/ns/p: status.podIPs[0].ip", reports) is None
    assert reports.reasons == ["scoped_ip"]
    pod = parse_pod(make_pod("f1", [value, "2001:db8::5"]), Reports())
    assert pod.pod_ips == ("2001:db8::5",)


def test_pod_reuses_previous_labels():
    first = parse_pod(make_pod("f1"))
    assert parse_pod(make_pod("f1"), previous=first).labels is first.labels


def test_equal_label_pairs_and_conditions_are_one_tuple_shared_by_records_and_the_table_stays_bounded():
    from sd.kinds import shared

    a = parse_node(make_node("n1", ["192.0.2.1"], labels={"zone": "a", "name": "n1"}))
    b = parse_node(make_node("n2", ["192.0.2.2"], labels={"zone": "a", "name": "n2"}))
    assert dict(a.labels)["zone"] == "a" and [p for p in a.labels if p[0] == "zone"][0] is [p for p in b.labels if p[0] == "zone"][0]
    assert a.conditions is b.conditions
    for i in range(shared.SHARED_MAX + 10):
        parse_node(make_node(f"m{i}", ["192.0.2.3"], labels={"unique": str(i)}))
    assert shared.held() <= shared.SHARED_MAX


# Empty is not malformed: the "none" each forgiving reader must take as the new value
# (docs/correctness.md, "Malformed or none"), never as a reason to keep the last one.
POD_NONES = {
    "podIP empty, podIPs absent (TestPodDiscoveryUpdateEmptyPodIP)": (
        lambda p: (p["status"].pop("podIPs"), p["status"].update(podIP="")), "pod_ips", ()),
    "podIP empty, podIPs empty": (lambda p: p["status"].update(podIP="", podIPs=[]), "pod_ips", ()),
    "podIP and podIPs absent (as the API server writes it)": (
        lambda p: (p["status"].pop("podIPs"), p["status"].pop("podIP")), "pod_ips", ()),
    "conditions empty": (lambda p: p["status"].update(conditions=[]), "ready", ""),
    "conditions absent": (lambda p: p["status"].pop("conditions"), "ready", ""),
    "containers empty": (lambda p: p["spec"].update(containers=[]), "ports", ()),
    "a container's ports empty": (lambda p: p["spec"]["containers"][0].update(ports=[]), "ports", ()),
    "hostIP empty": (lambda p: p["status"].update(hostIP=""), "host_ip", ""),
    "phase absent": (lambda p: p["status"].pop("phase"), "phase", ""),
    "ownerReferences empty": (lambda p: p["metadata"].update(ownerReferences=[]), "controller_kind", ""),
    "labels absent": (lambda p: p["metadata"].pop("labels"), "labels", ()),
}


@pytest.mark.parametrize("mutate, field, none", POD_NONES.values(), ids=POD_NONES.keys())
def test_an_empty_pod_field_in_an_update_is_none_not_malformed(mutate, field, none):
    first = parse_pod(make_pod("f1", ["192.0.2.5", "2001:db8::5"], port_name="monitor", port=24231))
    raw = make_pod("f1", ["192.0.2.5", "2001:db8::5"], port_name="monitor", port=24231)
    mutate(raw)
    reports = Reports()
    assert getattr(parse_pod(raw, reports, previous=first), field) == none
    assert reports == []


NODE_NONES = {
    "addresses empty": (lambda n: n["status"].update(addresses=[]), "addresses", ()),
    "an InternalIP empty": (lambda n: n["status"].update(addresses=[{"type": "InternalIP", "address": ""}]), "addresses", ()),
    "conditions empty": (lambda n: n["status"].update(conditions=[]), "conditions", ()),
    "conditions absent": (lambda n: n["status"].pop("conditions"), "ready", ""),
    "daemonEndpoints absent": (lambda n: n["status"].pop("daemonEndpoints"), "ports", ()),
    "daemonEndpoints empty": (lambda n: n["status"].update(daemonEndpoints={}), "ports", ()),
    # What the API server writes for a node whose kubelet never posted: Port is a plain int32.
    "kubelet Port 0": (lambda n: n["status"].update(daemonEndpoints={"kubeletEndpoint": {"Port": 0}}), "ports", ()),
    "providerID absent": (lambda n: n["spec"].pop("providerID"), "provider_id", ""),
}


@pytest.mark.parametrize("mutate, field, none", NODE_NONES.values(), ids=NODE_NONES.keys())
def test_an_empty_node_field_in_an_update_is_none_not_malformed(mutate, field, none):
    first = parse_node(make_node("n1", ["192.0.2.1"], labels={"zone": "a"}, kubelet_port=10255))
    raw = make_node("n1", ["192.0.2.1"], labels={"zone": "a"}, kubelet_port=10255)
    mutate(raw)
    reports = Reports()
    assert getattr(parse_node(raw, reports, previous=first), field) == none
    assert reports == []


def test_a_kubelet_port_false_is_malformed_not_zero():
    first = parse_node(make_node("n1", kubelet_port=10255))
    raw = make_node("n1")
    raw["status"]["daemonEndpoints"] = {"kubeletEndpoint": {"Port": False}}
    reports = Reports()
    assert parse_node(raw, reports, previous=first).ports == first.ports
    assert reports.reasons == [BAD_FIELD]
