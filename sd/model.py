"""Raw Kubernetes Node/Pod dicts → small frozen records.

Records keep only what target sets need, compare by value (so a heartbeat that
changes nothing a target depends on is one ``==`` away from a no-op), and never
hold the raw object. Bad fields are skipped and reported through ``Report``;
nothing here raises on malformed input.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from operator import eq, itemgetter
from typing import Any, Callable, Mapping

# (reason, detail): reason is a short, stable metric label value; detail says
# where and why ("node/n1: status.addresses[2].address: not an IP: 'x'").
Report = Callable[[str, str], None]

# Reasons, used as the `reason` label of the skipped-data counter.
INVALID_IP = "invalid_ip"
UNSPECIFIED_IP = "unspecified_ip"
LINK_LOCAL_IP = "link_local_ip"
BAD_FIELD = "bad_field"
BAD_OBJECT = "bad_object"

_intern = sys.intern
_first, _second = itemgetter(0), itemgetter(1)


def _ignore(reason: str, detail: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Port:
    number: int
    container: str = ""
    protocol: str = "TCP"


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


@dataclass(frozen=True, slots=True)
class PodRecord:
    namespace: str
    name: str
    uid: str
    created: float
    terminating: bool
    ready: str
    phase: str
    node_name: str
    host_ip: str
    pod_ips: tuple[str, ...]  # status.podIPs (status.podIP fallback), canonical, primary first
    labels: tuple[tuple[str, str], ...]
    controller_kind: str
    controller_name: str
    ports: tuple[tuple[str, Port], ...]  # named container ports, first container wins a name

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ips(self, address_types: tuple[str, ...] = ()) -> tuple[str, ...]:
        return self.pod_ips


Record = NodeRecord | PodRecord


def is_ip(value: str) -> bool:
    # Canonical IPs are stored as str; only they contain ':' or are all digits/dots.
    return ":" in value or (value[:1].isdigit() and value.replace(".", "").isdigit())


def ip_family(ip: str) -> str:
    return "ipv6" if ":" in ip else "ipv4"


def normalize_ip(value: Any, where: str, report: Report = _ignore) -> str | None:
    """Canonical compressed form, IPv4-mapped IPv6 as IPv4; None (reported) when unusable."""
    if not isinstance(value, str):
        report(INVALID_IP, f"{where}: not an IP: {value!r}")
        return None
    ip, reason, why = _canonical(value)
    if ip is None:
        report(reason, f"{where}: {why}")
    return ip


@lru_cache(maxsize=65536)
def _canonical(value: str) -> tuple[str | None, str, str]:
    """(canonical IP, "", "") or (None, reason, why). Cached: a node's IPs repeat in every event."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None, INVALID_IP, f"not an IP: {value!r}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return None, UNSPECIFIED_IP, f"unspecified address {value!r} is not a target"
    if ip.is_link_local:
        return None, LINK_LOCAL_IP, f"link-local address {value!r} is unusable without a zone"
    return _intern(str(ip)), "", ""


def parse_node(raw: Any, report: Report = _ignore, previous: NodeRecord | None = None) -> NodeRecord | None:
    """A Node dict as the API returns it → NodeRecord, or None when it has no name.

    ``previous`` (the stored record of the same node) lets unchanged labels and
    conditions be reused instead of rebuilt: most events are heartbeats.
    """
    meta = _dict(raw, "metadata") if isinstance(raw, dict) else None
    name = _str(meta, "name") if meta is not None else ""
    if not name:
        report(BAD_OBJECT, f"node: object without metadata.name skipped: {_preview(raw)}")
        return None
    where = f"node/{name}"
    status = _dict(raw, "status", where, report) or {}
    conditions = _conditions(status, where, report, previous.conditions if previous else None)
    addresses: list[tuple[str, str]] = []
    for i, item in enumerate(_list(status, "addresses", where, report, "status.addresses")):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            report(BAD_FIELD, f"{where}: status.addresses[{i}]: expected {{type, address}}, got {_preview(item)}")
            continue
        kind, value = item["type"], item.get("address")
        if kind in ("Hostname", "InternalDNS", "ExternalDNS"):
            if isinstance(value, str) and value:
                addresses.append((_intern(kind), value))
            continue
        ip = normalize_ip(value, f"{where}: status.addresses[{i}].address", report)
        if ip is not None:
            addresses.append((_intern(kind), ip))
    ports: tuple[tuple[str, Port], ...] = ()
    daemon = _dict(status, "daemonEndpoints", where, report, "status.daemonEndpoints") or {}
    endpoint = _dict(daemon, "kubeletEndpoint", where, report, "status.daemonEndpoints.kubeletEndpoint")
    if endpoint and "Port" in endpoint:
        port = _port(endpoint.get("Port"), f"{where}: status.daemonEndpoints.kubeletEndpoint.Port", report)
        if port is not None:
            ports = (("kubelet", Port(port)),)
    spec = _dict(raw, "spec", where, report) or {}
    return NodeRecord(
        name=name,
        uid=_str(meta, "uid"),
        created=_timestamp(meta, "creationTimestamp", where, report),
        terminating=meta.get("deletionTimestamp") is not None,
        ready=dict(conditions).get("Ready", ""),
        conditions=conditions,
        addresses=tuple(addresses),
        labels=_labels(meta, where, report, previous.labels if previous else None),
        provider_id=_str(spec, "providerID"),
        ports=ports,
    )


def parse_pod(raw: Any, report: Report = _ignore, previous: PodRecord | None = None) -> PodRecord | None:
    """A Pod dict as the API returns it → PodRecord, or None when it has no name (see parse_node)."""
    meta = _dict(raw, "metadata") if isinstance(raw, dict) else None
    name = _str(meta, "name") if meta is not None else ""
    namespace = _str(meta, "namespace") if meta is not None else ""
    if not name or not namespace:
        report(BAD_OBJECT, f"pod: object without metadata.name/namespace skipped: {_preview(raw)}")
        return None
    where = f"pod/{namespace}/{name}"
    status = _dict(raw, "status", where, report) or {}
    spec = _dict(raw, "spec", where, report) or {}
    conditions = _conditions(status, where, report, None)
    ips: list[str] = []
    pod_ips = _list(status, "podIPs", where, report, "status.podIPs")
    if pod_ips:
        for i, item in enumerate(pod_ips):
            value = item.get("ip") if isinstance(item, dict) else item
            ip = normalize_ip(value, f"{where}: status.podIPs[{i}].ip", report)
            if ip is not None and ip not in ips:
                ips.append(ip)
    elif status.get("podIP") is not None:
        ip = normalize_ip(status.get("podIP"), f"{where}: status.podIP", report)
        if ip is not None:
            ips.append(ip)
    host_ip = status.get("hostIP")
    owner_kind = owner_name = ""
    for ref in _list(meta, "ownerReferences", where, report, "metadata.ownerReferences"):
        if isinstance(ref, dict) and ref.get("controller") is True:
            owner_kind, owner_name = _str(ref, "kind"), _str(ref, "name")
            break
    return PodRecord(
        namespace=_intern(namespace),
        name=name,
        uid=_str(meta, "uid"),
        created=_timestamp(meta, "creationTimestamp", where, report),
        terminating=meta.get("deletionTimestamp") is not None,
        ready=dict(conditions).get("Ready", ""),
        phase=_intern(_str(status, "phase")),
        node_name=_str(spec, "nodeName"),
        host_ip=host_ip if isinstance(host_ip, str) else "",
        pod_ips=tuple(ips),
        labels=_labels(meta, where, report, previous.labels if previous else None),
        controller_kind=_intern(owner_kind),
        controller_name=owner_name,
        ports=_container_ports(spec, where, report),
    )


def _container_ports(spec: Mapping[str, Any], where: str, report: Report) -> tuple[tuple[str, Port], ...]:
    ports: dict[str, Port] = {}
    for ci, container in enumerate(_list(spec, "containers", where, report, "spec.containers")):
        if not isinstance(container, dict):
            report(BAD_FIELD, f"{where}: spec.containers[{ci}]: expected an object, got {_preview(container)}")
            continue
        cname = _str(container, "name")
        for pi, item in enumerate(_list(container, "ports", where, report, f"spec.containers[{ci}].ports")):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue  # unnamed ports cannot be selected by name
            number = _port(item.get("containerPort"), f"{where}: spec.containers[{ci}].ports[{pi}].containerPort", report)
            if number is not None and item["name"] not in ports:
                protocol = item.get("protocol") if isinstance(item.get("protocol"), str) else "TCP"
                ports[_intern(item["name"])] = Port(number, _intern(cname), _intern(protocol))
    return tuple(ports.items())


def _conditions(
    status: Mapping[str, Any], where: str, report: Report, previous: tuple[tuple[str, str], ...] | None
) -> tuple[tuple[str, str], ...]:
    raw = _list(status, "conditions", where, report, "status.conditions")
    if previous is not None and len(raw) == len(previous):
        try:
            if all(c["type"] == t and c["status"] == v for c, (t, v) in zip(raw, previous)):
                return previous
        except (KeyError, TypeError):
            pass  # malformed: the full path below reports it
    out: list[tuple[str, str]] = []
    for i, cond in enumerate(raw):
        if not isinstance(cond, dict) or not isinstance(cond.get("type"), str) or not isinstance(cond.get("status"), str):
            report(BAD_FIELD, f"{where}: status.conditions[{i}]: expected {{type, status}} strings, got {_preview(cond)}")
            continue
        out.append((_intern(cond["type"]), _intern(cond["status"])))
    return tuple(out)


def _labels(
    meta: Mapping[str, Any], where: str, report: Report, previous: tuple[tuple[str, str], ...] | None
) -> tuple[tuple[str, str], ...]:
    labels = meta.get("labels")
    if labels is None:
        return ()
    if not isinstance(labels, dict):
        report(BAD_FIELD, f"{where}: metadata.labels: expected a map, got {_preview(labels)}")
        return ()
    # Same keys, same values: reuse. Written with map() so the loop runs in C; this
    # check runs for every watch event (bench/: ~5 -> ~1 us per heartbeat).
    if (
        previous is not None
        and len(labels) == len(previous)
        and all(map(eq, map(labels.get, map(_first, previous)), map(_second, previous)))
    ):
        return previous
    out = []
    for key, value in labels.items():
        if not isinstance(value, str):
            report(BAD_FIELD, f"{where}: metadata.labels[{key!r}]: expected a string, got {_preview(value)}")
            continue
        # Label keys and values repeat across thousands of objects: share them.
        out.append((_intern(key), _intern(value)))
    out.sort()
    return tuple(out)


def _timestamp(meta: Mapping[str, Any], field: str, where: str, report: Report) -> float:
    value = meta.get(field)
    if value is None:
        return 0.0
    seconds = _epoch(value) if isinstance(value, str) else None
    if seconds is None:
        report(BAD_FIELD, f"{where}: metadata.{field}: not an RFC 3339 time: {_preview(value)}")
        return 0.0
    return seconds


@lru_cache(maxsize=16384)
def _epoch(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _port(value: Any, where: str, report: Report) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    report(BAD_FIELD, f"{where}: expected a port 1-65535, got {_preview(value)}")
    return None


def _dict(obj: Mapping[str, Any], field: str, where: str = "", report: Report = _ignore, path: str = "") -> dict | None:
    value = obj.get(field)
    if value is None or isinstance(value, dict):
        return value
    report(BAD_FIELD, f"{where}: {path or field}: expected an object, got {_preview(value)}")
    return None


def _list(obj: Mapping[str, Any], field: str, where: str, report: Report, path: str = "") -> list:
    value = obj.get(field)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    report(BAD_FIELD, f"{where}: {path or field}: expected a list, got {_preview(value)}")
    return []


def _str(obj: Mapping[str, Any] | None, field: str) -> str:
    value = obj.get(field) if obj is not None else None
    return value if isinstance(value, str) else ""


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
