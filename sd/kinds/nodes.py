"""Nodes: the record, its parser, Prometheus' node-role labels and the exclusion rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sd.kinds.fields import Fields, conditions, field_reader, get_dict, get_list, port_number, text
from sd.kinds.ips import is_ip, normalize_ip
from sd.kinds.kind import READINESS_WHY, Kind, Port, readiness
from sd.kinds.labels import META, NOTHING, Allowlist, ObjectLabels, listed, sanitize
from sd.kinds.meta import Identity
from sd.kinds.reports import BAD_FIELD, Report, preview
from sd.kinds.shared import intern
from sd.kinds.watched import WatchedCondition, parts, watched

NODE_NAME = META + "node_name"
NODE_PROVIDER_ID = META + "node_provider_id"
NODE_ADDRESS = META + "node_address_"
NODE_CONDITION = META + "node_condition_"
NODE_OBJECT = ObjectLabels.of("node")  # _node_label_<n>, _node_labelpresent_<n>, annotations likewise


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    uid: str
    created: float  # creationTimestamp as epoch seconds (0 when missing)
    terminating: bool
    ready: str  # "True" | "False" | "Unknown" | "" (no Ready condition)
    conditions: tuple[tuple[str, str], ...]  # (type, status), API order
    addresses: tuple[tuple[str, str], ...]  # (type, value); IPs canonical, hostnames as given
    labels: tuple[tuple[str, str], ...]  # sorted by key
    provider_id: str
    ports: tuple[tuple[str, Port], ...]  # ("kubelet", Port(10250)) when the node reports one
    annotations: tuple[tuple[str, str], ...] = ()  # the listed ones only, sorted by key

    @property
    def key(self) -> str:
        return self.name

    def ips(self, address_types: tuple[str, ...]) -> tuple[str, ...]:
        """IP addresses of the given types, in the types' priority order."""
        return tuple(
            value
            for wanted in address_types
            for kind, value in self.addresses
            if kind == wanted and is_ip(value)
        )


# Address types: the set's default order, and the ones that hold hostnames, not IPs.
INTERNAL_IP = "InternalIP"
EXTERNAL_IP = "ExternalIP"
_HOSTNAME_TYPES = ("Hostname", "InternalDNS", "ExternalDNS")
KUBELET_PORT = "kubelet"  # the port name under which the kubelet endpoint is offered

# What ``Nodes.parse`` reads besides metadata: not images, nodeInfo, capacity.
WatchedNode = watched("WatchedNode", [("conditions", list[WatchedCondition] | None, None), *parts("addresses", "daemonEndpoints")])


class Nodes(Kind[NodeRecord]):
    name = "nodes"
    object_kind = "Node"
    namespaced = False
    fields = {
        "metadata.name": field_reader("metadata", "name"),
        "spec.unschedulable": field_reader("spec", "unschedulable"),
    }
    address_types = (INTERNAL_IP, EXTERNAL_IP)
    why_excluded = READINESS_WHY
    watched = WatchedNode
    record = NodeRecord

    def read(self, raw: dict[str, Any], who: Identity, f: Fields) -> dict[str, Any]:
        where, previous = who.where, f.previous
        status = f.section(raw, "status", where, ("conditions", "ready", "addresses", "ports"), required=True)
        conds = conditions(status, where, f.filling("conditions", "ready"), previous.conditions if previous else None)
        addresses = _addresses(status, where, f.filling("addresses"))
        ports = _kubelet_port(status, where, f.filling("ports"))
        spec = f.section(raw, "spec", where, ("provider_id",))
        provider_id = text(spec, "providerID", where, f.filling("provider_id"), "spec.providerID")
        return {"name": who.name, "ready": dict(conds).get("Ready", ""), "conditions": conds,
                "addresses": addresses, "ports": ports, "provider_id": provider_id}

    def exclude(self, record: NodeRecord, require_ready: bool) -> str | None:
        return readiness(record.terminating, record.ready) if require_ready else None

    def labels(self, record: NodeRecord, annotations: Allowlist = NOTHING) -> dict[str, str]:
        labels = self.attached_labels(record, annotations)
        labels[NODE_PROVIDER_ID] = record.provider_id
        for kind, value in record.addresses:
            labels.setdefault(NODE_ADDRESS + sanitize(kind), value)  # first address of each type
        for kind, status in record.conditions:
            labels[NODE_CONDITION + sanitize(kind.lower())] = status.lower()
        return labels

    def instance(self, record: NodeRecord) -> str | None:
        return record.name

    def same_attached(self, old: NodeRecord, new: NodeRecord) -> bool:
        # Heartbeats reuse the stored label tuples: `is` settles almost every event.
        return (old.labels is new.labels or old.labels == new.labels) and old.annotations == new.annotations

    def attached_labels(self, record: NodeRecord, annotations: Allowlist = NOTHING) -> dict[str, str]:
        """What Prometheus' attach_metadata puts on a pod's targets from its node: the node's
        name, labels and (listed) annotations, under the node-role names."""
        labels = {NODE_NAME: record.name}
        NODE_OBJECT.add(labels, record.labels, listed(record.annotations, annotations))
        return labels


def _addresses(status: dict, where: str, report: Report) -> tuple[tuple[str, str], ...]:
    addresses: list[tuple[str, str]] = []
    for i, item in enumerate(get_list(status, "addresses", where, report, "status.addresses")):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            report(BAD_FIELD, f"{where}: status.addresses[{i}]: expected {{type, address}}, got {preview(item)}")
            continue
        kind, value = item["type"], item.get("address")
        if kind in _HOSTNAME_TYPES:
            if isinstance(value, str) and value:
                addresses.append((intern(kind), value))
            continue
        if value == "":
            continue  # no address of this type: none, not malformed
        ip = normalize_ip(value, f"{where}: status.addresses[{i}].address", report)
        if ip is not None:
            addresses.append((intern(kind), ip))
    return tuple(addresses)


def _kubelet_port(status: dict, where: str, report: Report) -> tuple[tuple[str, Port], ...]:
    """The kubelet's port; () when the node reports none: daemonEndpoints absent, or
    ``{"kubeletEndpoint": {"Port": 0}}``, what the API server writes for a node whose
    kubelet has not posted its status (Port is a plain int32 there)."""
    path = "status.daemonEndpoints"
    daemon = get_dict(status, "daemonEndpoints", where, report, path) or {}
    endpoint = get_dict(daemon, "kubeletEndpoint", where, report, path + ".kubeletEndpoint")
    value = endpoint.get("Port") if endpoint else None
    if value is None or (type(value) is int and value == 0):
        return ()
    port = port_number(value, f"{where}: {path}.kubeletEndpoint.Port", report)
    return ((KUBELET_PORT, Port(port)),) if port is not None else ()


KIND = Nodes()
