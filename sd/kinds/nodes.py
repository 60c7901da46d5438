"""Nodes: the record, its parser, Prometheus' node-role labels and the exclusion rules."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from sd.kinds.common import BAD_FIELD, BAD_OBJECT, META, READINESS_WHY
from sd.kinds.common import NOTHING, Allowlist, Fields, Kind, Port, Report
from sd.kinds.common import add_pairs, conditions, field_reader, get_dict, get_list, get_str, ignore, is_ip, text
from sd.kinds.common import listed, normalize_ip, object_annotations, object_labels, port_number, preview, readiness
from sd.kinds.common import NO_PART, RawPart, Watched, WatchedCondition, sanitize, timestamp

import msgspec

NODE_NAME = META + "node_name"
NODE_PROVIDER_ID = META + "node_provider_id"
NODE_LABEL = META + "node_label_"
NODE_LABEL_PRESENT = META + "node_labelpresent_"
NODE_ADDRESS = META + "node_address_"
NODE_CONDITION = META + "node_condition_"
NODE_ANNOTATION = META + "node_annotation_"
NODE_ANNOTATION_PRESENT = META + "node_annotationpresent_"

INTERNAL_IP = "InternalIP"
EXTERNAL_IP = "ExternalIP"
_HOSTNAME_TYPES = ("Hostname", "InternalDNS", "ExternalDNS")
KUBELET_PORT = "kubelet"  # the port name under which the kubelet endpoint is offered

_intern = sys.intern


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


class _WatchedStatus(msgspec.Struct):
    conditions: list[WatchedCondition] | None = None
    addresses: RawPart = NO_PART
    daemonEndpoints: RawPart = NO_PART


class WatchedNode(Watched):
    """What ``Nodes.parse`` reads (besides metadata): not images, nodeInfo, capacity."""

    spec: RawPart = NO_PART
    status: _WatchedStatus | None = None


class Nodes(Kind[NodeRecord]):
    name = "nodes"
    singular = "node"
    object_kind = "Node"
    list_kind = "NodeList"
    namespaced = False
    fields = {
        "metadata.name": field_reader("metadata", "name"),
        "spec.unschedulable": field_reader("spec", "unschedulable"),
    }
    address_types = (INTERNAL_IP, EXTERNAL_IP)
    why_excluded = READINESS_WHY
    watched = WatchedNode

    def parse(
        self, raw: Any, report: Report = ignore, previous: NodeRecord | None = None, annotations: Allowlist = NOTHING
    ) -> NodeRecord | None:
        meta = get_dict(raw, "metadata") if isinstance(raw, dict) else None
        name = get_str(meta, "name")
        if meta is None or not name:
            report(BAD_OBJECT, f"node: object without metadata.name skipped: {preview(raw)}")
            return None
        where = f"node/{name}"
        f = Fields(report, previous)
        status = f.section(raw, "status", where, ("conditions", "ready", "addresses", "ports"), required=True)
        f.at = ("conditions", "ready")
        conds = conditions(status, where, f, previous.conditions if previous else None)
        f.at = ("addresses",)
        addresses = _addresses(status, where, f)
        f.at = ("ports",)
        ports = _kubelet_port(status, where, f)
        spec = f.section(raw, "spec", where, ("provider_id",))
        f.at = ("provider_id",)
        provider_id = text(spec, "providerID", where, f, "spec.providerID")
        f.at = ("created",)
        created = timestamp(meta, "creationTimestamp", where, f)
        f.at = ("labels",)
        labels = object_labels(meta, where, f, previous.labels if previous else None)
        f.at = ("annotations",)
        kept = object_annotations(meta, annotations, where, f, previous.annotations if previous else None)
        return f.finish(
            NodeRecord(
                name=name,
                uid=get_str(meta, "uid"),
                created=created,
                terminating=meta.get("deletionTimestamp") is not None,
                ready=dict(conds).get("Ready", ""),
                conditions=conds,
                addresses=addresses,
                labels=labels,
                provider_id=provider_id,
                ports=ports,
                annotations=kept,
            )
        )

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

    def attached_labels(self, record: NodeRecord, annotations: Allowlist = NOTHING) -> dict[str, str]:
        """What Prometheus' attach_metadata puts on a pod's targets from its node: the node's
        name, labels and (listed) annotations, under the node-role names."""
        labels = {NODE_NAME: record.name}
        add_pairs(labels, NODE_LABEL, NODE_LABEL_PRESENT, record.labels)
        add_pairs(labels, NODE_ANNOTATION, NODE_ANNOTATION_PRESENT, listed(record.annotations, annotations))
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
                addresses.append((_intern(kind), value))
            continue
        ip = normalize_ip(value, f"{where}: status.addresses[{i}].address", report)
        if ip is not None:
            addresses.append((_intern(kind), ip))
    return tuple(addresses)


def _kubelet_port(status: dict, where: str, report: Report) -> tuple[tuple[str, Port], ...]:
    path = "status.daemonEndpoints"
    daemon = get_dict(status, "daemonEndpoints", where, report, path) or {}
    endpoint = get_dict(daemon, "kubeletEndpoint", where, report, path + ".kubeletEndpoint")
    if not endpoint or "Port" not in endpoint:
        return ()
    port = port_number(endpoint.get("Port"), f"{where}: {path}.kubeletEndpoint.Port", report)
    return ((KUBELET_PORT, Port(port)),) if port is not None else ()


KIND = Nodes()


class Directory:
    """The nodes one node watch delivers, for sets that attach node metadata to their
    targets (``attach_metadata: {node: true}``). It is read like a target set by its feed;
    when a node's labels or annotations change, appear or go, it tells its listeners the
    node's name, so that only the targets of objects on that node are rebuilt."""

    def __init__(self) -> None:
        self.records: dict[str, NodeRecord] = {}
        self.sources: list[Any] = []  # the SourceStatus of its feed
        self.listeners: list[Any] = []  # the sets attached to it (node_changed, source_synced)

    def labels(self, name: str, annotations: Allowlist) -> dict[str, str]:
        """The attached labels of node ``name``; {} while it is not known."""
        node = self.records.get(name)
        return KIND.attached_labels(node, annotations) if node is not None else {}

    # -- read by its feed, like a target set ---------------------------------------------

    def add_source(self, status: Any) -> None:
        self.sources.append(status)

    def source_synced(self) -> None:
        for ts in self.listeners:
            ts.source_synced()

    def record(self, key: str) -> NodeRecord | None:
        return self.records.get(key)

    def upsert(self, record: NodeRecord) -> None:
        old = self.records.get(record.name)
        self.records[record.name] = record
        # Heartbeats reuse the stored label tuples: `is` settles almost every event.
        if old is None or not (old.labels is record.labels or old.labels == record.labels) or old.annotations != record.annotations:
            self._changed(record.name)

    def delete(self, key: str) -> None:
        if self.records.pop(key, None) is not None:
            self._changed(key)

    def replace(self, records: list[NodeRecord], keys: set[str] | None = None) -> None:
        seen = set()
        for record in records:
            seen.add(record.name)
            self.upsert(record)
        for key in set(self.records if keys is None else keys) - seen:
            self.delete(key)

    def _changed(self, name: str) -> None:
        for ts in self.listeners:
            ts.node_changed(name)
