"""Raw Node and Pod dicts shaped like `kubectl get node/pod -o json` output."""

from __future__ import annotations

import copy
from typing import Any

_HEARTBEAT = "2026-11-21T10:00:00Z"


def make_node(
    name: str,
    ips: list[str] | tuple[str, ...] = ("10.0.0.1",),
    *,
    ready: str | None = "True",
    created: str = "2026-01-01T00:00:00Z",
    labels: dict[str, str] | None = None,
    external: list[str] | tuple[str, ...] = (),
    kubelet_port: int | None = 10250,
    deleting: bool = False,
    heartbeat: str = _HEARTBEAT,
    images: int = 3,
    resource_version: str = "1",
) -> dict[str, Any]:
    conditions = [
        {
            "type": t,
            "status": "False",
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": created,
            "reason": f"KubeletHasNo{t}",
            "message": "kubelet has no pressure",
        }
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    if ready is not None:
        conditions.append(
            {
                "type": "Ready",
                "status": ready,
                "lastHeartbeatTime": heartbeat,
                "lastTransitionTime": created,
                "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown",
                "message": "kubelet is posting ready status",
            }
        )
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": resource_version,
            "creationTimestamp": created,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"providerID": f"aws:///eu-west-1a/i-{name}", "podCIDR": "10.244.0.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip} for ip in ips]
            + [{"type": "ExternalIP", "address": ip} for ip in external]
            + [{"type": "Hostname", "address": name}],
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}} if kubelet_port else {},
            "images": [
                {"names": [f"registry.example/image-{i}@sha256:{i:064x}", f"registry.example/image-{i}:v1"], "sizeBytes": 10_000_000 + i}
                for i in range(images)
            ],
            "nodeInfo": {"kubeletVersion": "v1.31.2", "containerRuntimeVersion": "containerd://1.7.22"},
        },
    }
    if deleting:
        node["metadata"]["deletionTimestamp"] = "2026-11-21T12:00:00Z"
    return node


def make_pod(
    name: str,
    ips: list[str] | tuple[str, ...] = ("10.244.0.5",),
    *,
    namespace: str = "logging",
    node: str = "node-1",
    phase: str = "Running",
    ready: str | None = "True",
    created: str = "2026-01-01T00:00:00Z",
    labels: dict[str, str] | None = None,
    port_name: str | None = "monitor",
    port: int = 24231,
    deleting: bool = False,
    resource_version: str = "1",
) -> dict[str, Any]:
    conditions = [{"type": "PodScheduled", "status": "True"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready, "lastTransitionTime": created})
    container: dict[str, Any] = {"name": "fluentd", "image": "fluent/fluentd:v1.18-1"}
    if port_name:
        container["ports"] = [{"name": port_name, "containerPort": port, "protocol": "TCP"}]
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "resourceVersion": resource_version,
            "creationTimestamp": created,
            "labels": {"app.kubernetes.io/name": "fluentd", **(labels or {})},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "uid": "ds", "controller": True}],
        },
        "spec": {"nodeName": node, "containers": [container]},
        "status": {
            "phase": phase,
            "hostIP": "10.0.0.1",
            "conditions": conditions,
            "podIPs": [{"ip": ip} for ip in ips],
        },
    }
    if ips:
        pod["status"]["podIP"] = ips[0]
    if deleting:
        pod["metadata"]["deletionTimestamp"] = "2026-11-21T12:00:00Z"
    return pod


def with_ready(obj: dict[str, Any], status: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    for cond in out["status"]["conditions"]:
        if cond["type"] == "Ready":
            cond["status"] = status
    return out


def make_namespace(name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}, "annotations": annotations or {}}}


# Workload kinds: API version, and whether the pod template sits in a jobTemplate.
_WORKLOADS = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1"}


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """A controller ownerReference to ``owner`` (an object as the API server returned it)."""
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True}


def make_workload(kind: str, name: str, namespace: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Deployment, ReplicaSet, Job or CronJob as a user or its controller would create it (the
    smallest valid spec), controlled by ``owner`` (as the API server returned it) if given."""
    template = {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:v1"}]}}
    if kind in ("Job", "CronJob"):
        template["spec"]["restartPolicy"] = "Never"
        spec: dict[str, Any] = {"template": template}
        if kind == "CronJob":
            spec = {"schedule": "0 3 * * *", "jobTemplate": {"spec": spec}}
    else:
        spec = {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {"app": name}}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": _WORKLOADS[kind], "kind": kind, "metadata": meta, "spec": spec}
