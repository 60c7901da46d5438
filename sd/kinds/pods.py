"""Pods: the record, its parser, Prometheus' pod-role labels and the exclusion rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sd.kinds.fields import Fields, conditions, field_reader, get_list, get_str, port_number, text
from sd.kinds.ips import normalize_ip
from sd.kinds.kind import READINESS_WHY, Kind, Port, readiness
from sd.kinds.labels import META, NOTHING, Allowlist, ObjectLabels, listed
from sd.kinds.meta import Identity, controller_of
from sd.kinds.reports import BAD_FIELD, Report, preview
from sd.kinds.shared import intern
from sd.kinds.watched import WatchedCondition, parts, watched

NAMESPACE = META + "namespace"
POD_NAME = META + "pod_name"
POD_IP = META + "pod_ip"
POD_READY = META + "pod_ready"
POD_PHASE = META + "pod_phase"
POD_NODE_NAME = META + "pod_node_name"
POD_HOST_IP = META + "pod_host_ip"
POD_UID = META + "pod_uid"
POD_CONTROLLER_KIND = META + "pod_controller_kind"
POD_CONTROLLER_NAME = META + "pod_controller_name"
POD_CONTAINER_NAME = META + "pod_container_name"
POD_CONTAINER_PORT_NAME = META + "pod_container_port_name"
POD_CONTAINER_PORT_NUMBER = META + "pod_container_port_number"
POD_CONTAINER_PORT_PROTOCOL = META + "pod_container_port_protocol"
POD_CONTAINER_INIT = META + "pod_container_init"
POD_CONTAINER_IMAGE = META + "pod_container_image"
POD_CONTAINER_ID = META + "pod_container_id"
POD_OBJECT = ObjectLabels.of("pod")  # _pod_label_<n>, _pod_labelpresent_<n>, annotations likewise

# Exclusion reasons of pods only (NOT_READY, TERMINATING are shared).
NOT_RUNNING = "not_running"
FINISHED = "finished"
_FINISHED_PHASES = ("Succeeded", "Failed")


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
    # Every container port, as kubernetes_sd's pod role lists them: spec.containers, then
    # initContainers, each container's ports in order; (name or "", port). A container
    # without ports is one ("", Port(0, ...)).
    containers: tuple[tuple[str, Port], ...]
    annotations: tuple[tuple[str, str], ...] = ()  # the listed ones only, sorted by key

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ports(self) -> tuple[tuple[str, Port], ...]:
        """The named ports; the first of a name wins (containers before initContainers)."""
        named: dict[str, Port] = {}
        for name, port in self.containers:
            if name:
                named.setdefault(name, port)
        return tuple(named.items())

    def ips(self, address_types: tuple[str, ...] = ()) -> tuple[str, ...]:
        return self.pod_ips


# What ``Pods.parse`` reads besides metadata.
WatchedPod = watched(
    "WatchedPod",
    [
        ("conditions", list[WatchedCondition] | None, None),
        *parts("phase", "hostIP", "podIP", "podIPs", "containerStatuses", "initContainerStatuses"),
    ],
)


class Pods(Kind[PodRecord]):
    name = "pods"
    object_kind = "Pod"
    namespaced = True
    fields = {
        path: field_reader(*path.split("."))
        for path in (
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        )
    }
    probes = True
    declares_ports = True
    watched = WatchedPod
    record = PodRecord
    why_excluded = {
        **READINESS_WHY,
        NOT_RUNNING: lambda r: f"phase {r.phase or 'missing'}, not Running",
        FINISHED: lambda r: f"phase {r.phase}: finished, its IP may belong to another pod",
    }

    def read(self, raw: dict[str, Any], who: Identity, f: Fields) -> dict[str, Any]:
        where = who.where
        status = f.section(raw, "status", where, ("ready", "phase", "host_ip", "pod_ips", "containers"), required=True)
        fields = {
            "namespace": who.namespace,
            "name": who.name,
            "ready": dict(conditions(status, where, f.filling("ready"), None)).get("Ready", ""),
            "phase": intern(text(status, "phase", where, f.filling("phase"), "status.phase")),
            "host_ip": text(status, "hostIP", where, f.filling("host_ip"), "status.hostIP"),
            "pod_ips": _pod_ips(status, where, f.filling("pod_ips")),
        }
        spec = f.section(raw, "spec", where, ("node_name", "containers"))
        fields["node_name"] = text(spec, "nodeName", where, f.filling("node_name"), "spec.nodeName")
        fields["containers"] = _container_ports(spec, status, where, f.filling("containers"))
        kind, name = controller_of(who.meta, where, f.filling("controller_kind", "controller_name"))
        fields["controller_kind"], fields["controller_name"] = intern(kind), name
        return fields

    def exclude(self, record: PodRecord, require_ready: bool) -> str | None:
        if record.phase in _FINISHED_PHASES:
            return FINISHED  # its IP may already belong to another pod
        if not require_ready:
            return None
        if record.phase != "Running" and not record.terminating:
            return NOT_RUNNING
        return readiness(record.terminating, record.ready)

    def labels(self, record: PodRecord, annotations: Allowlist = NOTHING) -> dict[str, str]:
        labels = {
            NAMESPACE: record.namespace,
            POD_NAME: record.name,
            POD_UID: record.uid,
            POD_READY: record.ready.lower() if record.ready else "unknown",
            POD_PHASE: record.phase,
            POD_NODE_NAME: record.node_name,
            POD_HOST_IP: record.host_ip,
        }
        if record.controller_kind:  # each only when not empty, as pod.go writes them
            labels[POD_CONTROLLER_KIND] = record.controller_kind
        if record.controller_name:
            labels[POD_CONTROLLER_NAME] = record.controller_name
        POD_OBJECT.add(labels, record.labels, listed(record.annotations, annotations))
        return labels

    def node_of(self, record: PodRecord) -> str | None:
        return record.node_name

    def all_ports(self, record: PodRecord) -> tuple[tuple[str, Port], ...]:
        return record.containers

    def target_labels(self, record: PodRecord, ip: str, port: Port | None, port_name: str | None) -> dict[str, str]:
        labels = {POD_IP: ip}
        if port is not None:
            labels[POD_CONTAINER_NAME] = port.container
            labels[POD_CONTAINER_IMAGE] = port.image
            if port.container_id:  # absent until the container's status has one (kubernetes_sd: dropped when empty)
                labels[POD_CONTAINER_ID] = port.container_id
            if port.number:  # 0: a container without ports, served at the bare IP
                if port_name:  # an unnamed port has none (kubernetes_sd: "" is dropped)
                    labels[POD_CONTAINER_PORT_NAME] = port_name
                labels[POD_CONTAINER_PORT_NUMBER] = str(port.number)
                labels[POD_CONTAINER_PORT_PROTOCOL] = port.protocol
            labels[POD_CONTAINER_INIT] = "true" if port.init else "false"
        return labels


def _pod_ips(status: Mapping[str, Any], where: str, report: Report) -> tuple[str, ...]:
    """status.podIPs, else status.podIP. Empty or absent is a pod without an IP (starting
    again, evicted: Prometheus' TestPodDiscoveryUpdateEmptyPodIP), not a malformed value:
    its targets go."""
    ips: list[str] = []
    pod_ips = get_list(status, "podIPs", where, report, "status.podIPs")
    if pod_ips:
        for i, item in enumerate(pod_ips):
            value = item.get("ip") if isinstance(item, dict) else item
            if value == "":
                continue
            ip = normalize_ip(value, f"{where}: status.podIPs[{i}].ip", report)
            if ip is not None and ip not in ips:
                ips.append(ip)
    elif status.get("podIP") not in (None, ""):
        ip = normalize_ip(status.get("podIP"), f"{where}: status.podIP", report)
        if ip is not None:
            ips.append(ip)
    return tuple(ips)


# (spec list, status list, init): where container ports are read, in this order, as
# kubernetes_sd does (pod.go: Containers, then InitContainers, with their statuses).
_CONTAINER_LISTS = (("containers", "containerStatuses", False), ("initContainers", "initContainerStatuses", True))


def _container_ports(
    spec: Mapping[str, Any], status: Mapping[str, Any], where: str, report: Report
) -> tuple[tuple[str, Port], ...]:
    ports: list[tuple[str, Port]] = []
    for field, statuses_field, init in _CONTAINER_LISTS:
        ids = {
            s["name"]: s["containerID"]
            for s in get_list(status, statuses_field, where, report, f"status.{statuses_field}")
            if isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("containerID"), str)
        }
        for ci, container in enumerate(get_list(spec, field, where, report, f"spec.{field}")):
            if not isinstance(container, dict):
                report(BAD_FIELD, f"{where}: spec.{field}[{ci}]: expected an object, got {preview(container)}")
                continue
            cname, image = intern(get_str(container, "name")), intern(get_str(container, "image"))
            cid = ids.get(cname, "")
            declared = get_list(container, "ports", where, report, f"spec.{field}[{ci}].ports")
            if container.get("ports") in (None, []):  # absent or []: none (a malformed list was reported)
                ports.append(("", Port(0, cname, "", image, init, cid)))
            for pi, item in enumerate(declared):
                if not isinstance(item, dict):
                    report(BAD_FIELD, f"{where}: spec.{field}[{ci}].ports[{pi}]: expected an object, got {preview(item)}")
                    continue
                number = port_number(item.get("containerPort"), f"{where}: spec.{field}[{ci}].ports[{pi}].containerPort", report)
                if number is not None:
                    name = item.get("name") if isinstance(item.get("name"), str) else ""
                    protocol = item.get("protocol") if isinstance(item.get("protocol"), str) else "TCP"
                    ports.append((intern(name), Port(number, cname, intern(protocol), image, init, cid)))
    return tuple(ports)


KIND = Pods()
