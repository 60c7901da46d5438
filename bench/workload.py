"""Benchmark workload: realistic Nodes and Fluentd Pods, and pre-built watch updates.

Reuses ``sdtest/factories.py`` (``make_node``/``make_pod``) and adds what a production cluster
carries: ~15 node labels (zone, region, instance type, hostname, node pool, ...), 25 container
images per node (the bulk of a Node's bytes, as in real clusters), InternalIP ``127.x.y.z`` plus
``Hostname``, the kubelet port in ``status.daemonEndpoints``; DaemonSet-owned Fluentd pods with
dual-stack ``status.podIPs`` (``127.x.y.z`` and ``2001:db8:244::n``: loopback and documentation
addresses only, never scraped), the ``app.kubernetes.io/name=fluentd`` label and a ``monitor``
container port.

Everything here is deterministic (same sizes, same bytes on every run).
"""

from __future__ import annotations

from typing import Any, Iterator

from sdtest.factories import make_node, make_pod

ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
INSTANCE_TYPES = ("m6i.2xlarge", "m6i.4xlarge", "c6i.4xlarge", "r6i.2xlarge")
POOLS = ("general", "compute", "memory", "system")
NODE_IMAGES = 25
CREATED = "2026-01-01T00:00:00Z"


def node_name(i: int) -> str:
    return f"ip-10-{16 + i // 4096}-{(i // 16) % 256}-{(i % 16) * 16 + 1}.eu-west-1.compute.internal"


def node_ip(i: int) -> str:
    return f"127.{16 + i // 4096}.{(i // 16) % 256}.{(i % 16) * 16 + 1}"


def pod_ips(i: int) -> list[str]:
    return [f"127.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}", f"2001:db8:244::{i + 1:x}"]


def node_labels(i: int) -> dict[str, str]:
    zone = ZONES[i % len(ZONES)]
    itype = INSTANCE_TYPES[i % len(INSTANCE_TYPES)]
    pool = POOLS[i % len(POOLS)]
    return {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": itype,
        "beta.kubernetes.io/os": "linux",
        "failure-domain.beta.kubernetes.io/region": "eu-west-1",
        "failure-domain.beta.kubernetes.io/zone": zone,
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": itype,
        "topology.kubernetes.io/region": "eu-west-1",
        "topology.kubernetes.io/zone": zone,
        "topology.ebs.csi.aws.com/zone": zone,
        "eks.amazonaws.com/nodegroup": f"ng-{pool}",
        "eks.amazonaws.com/capacityType": "ON_DEMAND" if i % 5 else "SPOT",
        "node-pool": pool,
        "team": f"team-{i % 17}",
    }


def node(i: int, *, ready: str = "True", heartbeat: str = "2026-11-21T10:00:00Z",
         extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    obj = make_node(
        node_name(i),
        [node_ip(i)],
        ready=ready,
        created=CREATED,
        labels={**node_labels(i), **(extra_labels or {})},
        kubelet_port=10250,
        heartbeat=heartbeat,
        images=NODE_IMAGES,
    )
    zone = ZONES[i % len(ZONES)]
    obj["spec"]["providerID"] = f"aws:///{zone}/i-{i:017x}"
    obj["spec"]["podCIDR"] = f"127.{100 + i // 65536}.{(i // 256) % 256}.0/24"
    obj["metadata"]["annotations"] = {
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        "csi.volume.kubernetes.io/nodeid": f'{{"ebs.csi.aws.com":"i-{i:017x}"}}',
    }
    status = obj["status"]
    status["capacity"] = {"cpu": "8", "memory": "32386544Ki", "pods": "110", "ephemeral-storage": "104845292Ki"}
    status["allocatable"] = {"cpu": "7910m", "memory": "31371760Ki", "pods": "110", "ephemeral-storage": "95551679124"}
    status["nodeInfo"] = {
        "machineID": f"{i:032x}", "systemUUID": f"ec2{i:029x}", "bootID": f"{i:08x}-0000-4000-8000-000000000000",
        "kernelVersion": "6.1.112-122.189.amzn2023.x86_64", "osImage": "Amazon Linux 2023",
        "containerRuntimeVersion": "containerd://1.7.22", "kubeletVersion": "v1.31.2-eks-94953ac",
        "kubeProxyVersion": "v1.31.2-eks-94953ac", "operatingSystem": "linux", "architecture": "amd64",
    }
    return obj


def pod(i: int) -> dict[str, Any]:
    obj = make_pod(
        f"fluentd-{i:05d}-{(i * 2654435761) % 100000:05d}",
        pod_ips(i),
        namespace="logging",
        node=node_name(i),
        created=CREATED,
        labels={"app.kubernetes.io/instance": "logging", "app.kubernetes.io/component": "fluentd",
                "controller-revision-hash": "7c9d8f6b5d", "pod-template-generation": "3"},
        port_name="monitor",
        port=24231,
    )
    obj["status"]["hostIP"] = node_ip(i)
    container = obj["spec"]["containers"][0]
    container["ports"] = [
        {"name": "forward", "containerPort": 24240, "protocol": "TCP"},
        {"name": "monitor", "containerPort": 24231, "protocol": "TCP"},
    ]
    container["resources"] = {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"memory": "400Mi"}}
    container["volumeMounts"] = [{"name": "varlog", "mountPath": "/var/log"},
                                 {"name": "config", "mountPath": "/fluentd/etc"}]
    obj["spec"]["volumes"] = [{"name": "varlog", "hostPath": {"path": "/var/log"}},
                              {"name": "config", "secret": {"secretName": "fluentd-config"}}]
    obj["spec"]["serviceAccountName"] = "fluentd"
    obj["status"]["containerStatuses"] = [{
        "name": "fluentd", "ready": True, "restartCount": 0, "image": "fluent/fluentd:v1.18-1",
        "imageID": "docker.io/fluent/fluentd@sha256:" + "ab" * 32,
        "containerID": f"containerd://{i:064x}", "started": True,
        "state": {"running": {"startedAt": CREATED}},
    }]
    return obj


def nodes(n: int) -> list[dict[str, Any]]:
    return [node(i) for i in range(n)]


def pods(n: int) -> list[dict[str, Any]]:
    return [pod(i) for i in range(n)]


def heartbeat_time(k: int) -> str:
    """A distinct RFC 3339 time per update number (seconds wrap through a day)."""
    return f"2026-11-{22 + k // 86400 % 7:02d}T{k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z"


def with_heartbeat(base: dict[str, Any], k: int, *, ready: str | None = None) -> dict[str, Any]:
    """``base`` with every condition's lastHeartbeatTime bumped (and Ready set if given).

    Shares everything else with ``base`` (images, labels, ...): cheap to pre-build by the
    ten thousand. The double copies what it stores, so sharing is safe."""
    hb = heartbeat_time(k)
    conditions = []
    for cond in base["status"]["conditions"]:
        c = {**cond, "lastHeartbeatTime": hb}
        if ready is not None and c["type"] == "Ready":
            if c["status"] != ready:
                c["lastTransitionTime"] = hb
            c["status"] = ready
            c["reason"] = "KubeletReady" if ready == "True" else "KubeletNotReady"
        conditions.append(c)
    return {**base, "status": {**base["status"], "conditions": conditions}}


def heartbeat_updates(base_nodes: list[dict[str, Any]], n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` heartbeat-only updates cycling over ``base_nodes`` (no target-visible change)."""
    m = len(base_nodes)
    return [with_heartbeat(base_nodes[(start + k) % m], start + k) for k in range(n)]


def ready_flip_updates(base_nodes: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` updates cycling over ``base_nodes``; each flips that node's Ready (True↔False),
    starting from Ready=True, so every event changes /targets/kubelet."""
    m = len(base_nodes)
    out = []
    for k in range(n):
        ready = "False" if (k // m) % 2 == 0 else "True"
        out.append(with_heartbeat(base_nodes[k % m], k, ready=ready))
    return out


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


if __name__ == "__main__":
    import orjson

    ns, ps = nodes(5000), pods(5000)
    nb = sum(len(orjson.dumps(o)) for o in ns)
    pb = sum(len(orjson.dumps(o)) for o in ps)
    print(f"5000 nodes: {nb / 1e6:.1f} MB JSON ({nb / 5000:.0f} B/node); 5000 pods: {pb / 1e6:.1f} MB ({pb / 5000:.0f} B/pod)")


# -- attach_metadata: namespaces and workloads ------------------------------------------------
# The same Fluentd pods spread over NAMESPACES namespaces, each namespace's pods owned by the
# current ReplicaSet of one Deployment that keeps REVISIONS ReplicaSets (Kubernetes' default
# revisionHistoryLimit: 10), and each namespace running JOBS Jobs of one CronJob.
NAMESPACES = 50
REVISIONS = 10
JOBS = 10


def namespace_name(k: int) -> str:
    return f"team-{k:02d}"


def namespace(k: int, revision: int = 0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace_name(k), "uid": f"uid-ns-{k}", "creationTimestamp": CREATED,
                         "labels": {"kubernetes.io/metadata.name": namespace_name(k), "team": f"team-{k % 17}",
                                    "cost-center": f"cc-{k % 7}", "environment": "production",
                                    "bench.example/revision": str(revision)},
                         "annotations": {"owner.example/contact": f"team-{k}@example.org"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def _owned(kind: str, api_version: str, name: str, ns: str, owner_kind: str, owner: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "creationTimestamp": CREATED,
                         "labels": {"app": owner, "pod-template-hash": name[-10:]},
                         "annotations": {"deployment.kubernetes.io/revision": "1"},
                         "ownerReferences": [{"apiVersion": "apps/v1" if owner_kind == "Deployment" else "batch/v1",
                                              "kind": owner_kind, "name": owner, "uid": f"uid-{ns}-{owner}",
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": owner}}},
            "status": {"replicas": 0, "observedGeneration": 1}}


def replicaset_name(k: int, revision: int) -> str:
    return f"fluentd-{revision:04d}{k:06d}"


def replicasets() -> list[dict[str, Any]]:
    return [_owned("ReplicaSet", "apps/v1", replicaset_name(k, r), namespace_name(k), "Deployment", "fluentd")
            for k in range(NAMESPACES) for r in range(REVISIONS)]


def jobs() -> list[dict[str, Any]]:
    return [_owned("Job", "batch/v1", f"nightly-{29000000 + j}", namespace_name(k), "CronJob", "nightly")
            for k in range(NAMESPACES) for j in range(JOBS)]


def namespaced_pods(n: int) -> list[dict[str, Any]]:
    """``pods(n)``, pod i in namespace i % NAMESPACES, owned by that namespace's current ReplicaSet."""
    out = []
    for i in range(n):
        obj = pod(i)
        k = i % NAMESPACES
        obj["metadata"]["namespace"] = namespace_name(k)
        obj["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset_name(k, 0),
                                               "uid": f"uid-rs-{k}", "controller": True, "blockOwnerDeletion": True}]
        out.append(obj)
    return out
