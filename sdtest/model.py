"""An independent implementation of the documented rules for the two default sets.

Given the raw Node and Pod objects a cluster holds, ``kubelet_body`` and
``fluentd_body`` return the exact bytes the server must serve for them. Written from
docs/ (DESIGN.md contracts), sharing no code with ``sd``, so that a bug in the
server's parsing, index or rendering shows up as a difference rather than being
repeated here. Objects are assumed well-formed (the soak test makes them so).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any, Iterable

import orjson

M = "__meta_kubernetes_"
_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _name(text: str) -> str:
    return _BAD.sub("_", text)


def _ip(value: Any) -> str | None:
    """Canonical usable IP, or None."""
    if not isinstance(value, str):
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if ip.version == 6 and ip.scope_id:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_link_local:
        return None
    return str(ip)


def _target(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _created(obj: dict) -> float:
    stamp = obj["metadata"].get("creationTimestamp")
    return datetime.fromisoformat(stamp).timestamp() if stamp else 0.0


def _ready(obj: dict) -> str:
    value = ""
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond["type"] == "Ready":
            value = cond["status"]
    return value


def _label_pairs(labels: dict[str, str], prefix: str, present: str) -> dict[str, str]:
    out = {}
    for key, value in sorted(labels.items()):
        out[prefix + _name(key)] = value
        out[present + _name(key)] = "true"
    return out


def _resolve(claims: Iterable[tuple[str, str, float, bool, dict]]) -> list[tuple[str, str, dict]]:
    """(ip, key, created, ready, group) claims → one (key, target, group) per IP: Ready first,
    then newest, then greater key; sorted as served (by key, then target)."""
    best: dict[str, tuple[tuple[bool, float, str], str, dict]] = {}
    for ip, key, created, ready, group in claims:
        rank = (ready, created, key)
        if ip not in best or rank > best[ip][0]:
            best[ip] = (rank, key, group)
    rows = [(key, group["targets"][0], group) for _, key, group in best.values()]
    return sorted(rows, key=lambda r: (r[0], r[1]))


def _body(rows: list[tuple[str, str, dict]]) -> bytes:
    return orjson.dumps([group for _, _, group in rows], option=orjson.OPT_SORT_KEYS)


def kubelet_body(nodes: Iterable[dict]) -> bytes:
    """/targets/kubelet: Ready nodes without a deletionTimestamp, first InternalIP else
    ExternalIP, the kubelet's port (10250 by default), node-role labels, instance = name."""
    claims = []
    for node in nodes:
        meta, status = node["metadata"], node.get("status", {})
        if meta.get("deletionTimestamp") or _ready(node) != "True":
            continue
        addresses = status.get("addresses") or []
        ips = [ip for t in ("InternalIP", "ExternalIP") for a in addresses if a["type"] == t and (ip := _ip(a.get("address")))]
        if not ips:
            continue
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
        labels = {M + "node_name": meta["name"], M + "node_provider_id": (node.get("spec") or {}).get("providerID", "")}
        labels.update(_label_pairs(meta.get("labels") or {}, M + "node_label_", M + "node_labelpresent_"))
        for a in addresses:
            value = a.get("address") if a["type"] in ("Hostname", "InternalDNS", "ExternalDNS") else _ip(a.get("address"))
            if value:
                labels.setdefault(M + "node_address_" + _name(a["type"]), value)
        for cond in status.get("conditions") or []:
            labels[M + "node_condition_" + _name(cond["type"].lower())] = cond["status"].lower()
        ip = ips[0]
        labels["__meta_sd_ip_family"] = "ipv6" if ":" in ip else "ipv4"
        labels["instance"] = meta["name"]
        group = {"targets": [_target(ip, port)], "labels": labels}
        claims.append((ip, meta["name"], _created(node), True, group))
    return _body(_resolve(claims))


def fluentd_body(pods: Iterable[dict]) -> bytes:
    """/targets/fluentd: app.kubernetes.io/name=fluentd pods, Running, Ready, not
    terminating; one target per family (first IPv4, first IPv6 of status.podIPs); the
    container port named monitor (else 24231); pod-role labels."""
    claims = []
    for pod in pods:
        meta, status, spec = pod["metadata"], pod.get("status", {}), pod.get("spec", {})
        if (meta.get("labels") or {}).get("app.kubernetes.io/name") != "fluentd":
            continue
        if meta.get("deletionTimestamp") or status.get("phase") != "Running" or _ready(pod) != "True":
            continue
        raw_ips = [p["ip"] if isinstance(p, dict) else p for p in status.get("podIPs") or []] or [status.get("podIP")]
        ips = list(dict.fromkeys(ip for v in raw_ips if (ip := _ip(v))))
        first4 = next((ip for ip in ips if ":" not in ip), None)
        first6 = next((ip for ip in ips if ":" in ip), None)
        chosen = [ip for ip in ips if ip in (first4, first6)]
        named = next(
            (
                (c, p, init)
                for field, init in (("containers", False), ("initContainers", True))
                for c in spec.get(field) or []
                for p in c.get("ports") or []
                if p.get("name") == "monitor"
            ),
            None,
        )
        port = named[1]["containerPort"] if named else 24231
        key = f"{meta['namespace']}/{meta['name']}"
        ready = _ready(pod)
        for ip in chosen:
            labels = {
                M + "namespace": meta["namespace"],
                M + "pod_name": meta["name"],
                M + "pod_uid": meta.get("uid", ""),
                M + "pod_ready": ready.lower() or "unknown",
                M + "pod_phase": status.get("phase", ""),
                M + "pod_node_name": spec.get("nodeName", ""),
                M + "pod_host_ip": status.get("hostIP", ""),
                M + "pod_ip": ip,
                "__meta_sd_ip_family": "ipv6" if ":" in ip else "ipv4",
            }
            owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller") is True), None)
            if owner:
                labels[M + "pod_controller_kind"] = owner["kind"]
                labels[M + "pod_controller_name"] = owner["name"]
            labels.update(_label_pairs(meta.get("labels") or {}, M + "pod_label_", M + "pod_labelpresent_"))
            if named:
                container, _, init = named
                statuses = status.get("initContainerStatuses" if init else "containerStatuses") or []
                cid = next((s["containerID"] for s in statuses if s.get("name") == container["name"] and s.get("containerID")), "")
                labels[M + "pod_container_name"] = container["name"]
                labels[M + "pod_container_image"] = container.get("image", "")
                if cid:
                    labels[M + "pod_container_id"] = cid
                labels[M + "pod_container_port_name"] = "monitor"
                labels[M + "pod_container_port_number"] = str(port)
                labels[M + "pod_container_port_protocol"] = named[1].get("protocol", "TCP")
                labels[M + "pod_container_init"] = "true" if init else "false"
            group = {"targets": [_target(ip, port)], "labels": labels}
            claims.append((ip, key, _created(pod), True, group))
    return _body(_resolve(claims))
