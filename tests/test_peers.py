"""Side by side with the peers on one real API server (sdtest.controlplane): Prometheus 3's own
``kubernetes_sd`` (node and pod roles) and prometheus-operator's kubelet controller, against our
``kubelet`` and ``fluentd`` sets, on the cases this project exists for.

Every Prometheus scrape address is rewritten to a closed loopback port before scraping (the
discovered labels keep the original address); the objects use documentation addresses only.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdtest.controlplane import ControlPlane, wall_clock_second_after
from sdtest.factories import make_node, make_pod
from sdtest.helpers import ROOT, eventually, free_port, terminate
from sdtest.promtest import Prometheus, prometheus_binary
from sdtest.upstream import program

pytestmark = [pytest.mark.apiserver, pytest.mark.e2e, pytest.mark.slow]

CLOSED_PORT = free_port()  # nothing listens here: every scrape fails at once, on loopback
NODE_LABEL_JOBS = ("k8s-nodes", "sd-kubelet")
POD_LABEL_JOBS = ("k8s-pods", "sd-fluentd")


def node(name: str, ips: list[str], ready: str = "True") -> dict:
    obj = make_node(name, ips, ready=ready, images=1, labels={"topology.kubernetes.io/zone": "zone-a"})
    del obj["spec"]["podCIDR"]
    return obj


def pod(name: str, ips: list[str], **kw: Any) -> dict:
    obj = make_pod(name, ips, namespace="logging", node="peer-ready", **kw)
    obj["status"]["hostIP"] = "192.0.2.100"
    obj["spec"]["containers"][0]["ports"].append({"name": "forward", "containerPort": 24224, "protocol": "TCP"})
    return obj


def conditions(ready: str) -> dict:
    return {"conditions": [{"type": "Ready", "status": ready, "reason": "Test", "message": "set by the test",
                            "lastHeartbeatTime": "2026-12-04T10:00:00Z", "lastTransitionTime": "2026-12-04T10:00:00Z"}]}


def every_port_pods() -> list[dict]:
    """For ``ports: all``: a pod with a TCP, a UDP and an unnamed port, a container and an init
    container without ports; two host-network pods on a node's IP, on different ports."""
    multi = make_pod("exporter-multi", ["192.0.2.160"], namespace="logging", node="peer-ready", port_name=None,
                     labels={"app.kubernetes.io/name": "exporter"})
    multi["spec"]["containers"] = [
        {"name": "c0", "image": "registry.example/c0:1", "ports": [
            {"name": "metrics", "containerPort": 9000, "protocol": "TCP"},
            {"name": "stats", "containerPort": 9001, "protocol": "UDP"},
            {"containerPort": 8080, "protocol": "TCP"}]},
        {"name": "c1", "image": "registry.example/c1:1"},
    ]
    multi["spec"]["initContainers"] = [{"name": "init", "image": "registry.example/init:1"}]
    multi["status"]["hostIP"] = "192.0.2.100"
    status = {"image": "registry.example/x:1", "imageID": "", "ready": True, "restartCount": 0, "state": {}}
    multi["status"]["containerStatuses"] = [{**status, "name": c, "containerID": f"containerd://{c}"} for c in ("c0", "c1")]
    multi["status"]["initContainerStatuses"] = [{**status, "name": "init", "containerID": "containerd://init"}]
    out = [multi]
    for name, port in (("node-exporter", 9100), ("node-agent", 2020)):
        host = make_pod(name, ["192.0.2.100"], namespace="logging", node="peer-ready", port_name="metrics", port=port,
                        labels={"app.kubernetes.io/name": name})
        host["spec"]["hostNetwork"] = True
        host["status"]["hostIP"] = "192.0.2.100"
        out.append(host)
    return out


def build_cluster(cp: ControlPlane) -> None:
    """The cases, each named: a lone NotReady node; a dead node and the new node on its IP, the
    dead one Ready=False or Ready=Unknown; an IPv6-only node; Fluentd pods dual-stack, IPv4,
    not ready, pending, terminating."""
    cp.ensure_namespace("logging")
    cp.create(node("peer-ready", ["192.0.2.100"]))
    cp.create(node("peer-notready", ["192.0.2.101"], ready="False"))
    cp.create(node("peer-v6only", ["2001:db8::100"]))
    for ip, dead, status in (("192.0.2.110", "peer-old-false", "False"), ("192.0.2.111", "peer-old-unknown", "Unknown")):
        created = cp.create(node(dead, [ip]))
        wall_clock_second_after(created["metadata"]["creationTimestamp"])
        cp.create(node(dead.replace("old", "new"), [ip]))
        cp.set_status("Node", dead, conditions(status))
    cp.create(pod("fluentd-dual", ["192.0.2.150", "2001:db8::150"]))
    cp.create(pod("fluentd-v4", ["192.0.2.151"]))
    cp.create(pod("fluentd-notready", ["192.0.2.152"], ready="False"))
    cp.create(pod("fluentd-pending", ["192.0.2.153"], phase="Pending", ready="False"))
    cp.create(pod("fluentd-leaving", ["192.0.2.154"]))
    cp.delete("Pod", "fluentd-leaving", "logging")  # it names a node and no kubelet runs: terminating
    for obj in every_port_pods():
        cp.create(obj)


def rewrite_to_closed_port() -> list[dict]:
    """``instance`` keeps the discovered address and object name (Prometheus drops targets whose
    labels are equal after relabeling: all would be 127.0.0.1:CLOSED_PORT), then the address goes."""
    return [
        {"source_labels": ["__address__", "__meta_kubernetes_node_name", "__meta_kubernetes_pod_name"],
         "separator": "/", "target_label": "instance"},
        {"target_label": "__address__", "replacement": f"127.0.0.1:{CLOSED_PORT}"},
    ]


def rewrite_each_container_to_closed_port() -> list[dict]:
    """As ``rewrite_to_closed_port``, the container in ``instance`` too: one address may hold
    several targets (containers without ports share the bare pod IP)."""
    return [
        {"source_labels": ["__address__", "__meta_kubernetes_pod_name", "__meta_kubernetes_pod_container_name"],
         "separator": "/", "target_label": "instance"},
        {"target_label": "__address__", "replacement": f"127.0.0.1:{CLOSED_PORT}"},
    ]


# Our sets: the two defaults, and every container port of the pods in "logging".
SETS = """
targets:
  kubelet: {source: nodes, port: 10250, port_name: kubelet}
  fluentd: {source: pods, port: 24231, port_name: monitor, label_selector: app.kubernetes.io/name=fluentd, ip_family: both}
  every-port: {source: pods, namespaces: [logging], ports: all, ip_family: both}
"""


def prometheus_config(kubeconfig: Path, sd_base: str) -> dict:
    k8s = {"kubeconfig_file": str(kubeconfig)}
    return {
        "global": {"scrape_interval": "1m", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "k8s-nodes", "kubernetes_sd_configs": [{**k8s, "role": "node"}],
             "relabel_configs": rewrite_to_closed_port()},
            {"job_name": "k8s-pods",
             "kubernetes_sd_configs": [{**k8s, "role": "pod", "namespaces": {"names": ["logging"]},
                                        "selectors": [{"role": "pod", "label": "app.kubernetes.io/name=fluentd"}]}],
             "relabel_configs": [
                 {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "monitor", "action": "keep"},
                 *rewrite_to_closed_port(),
             ]},
            {"job_name": "sd-kubelet", "http_sd_configs": [{"url": f"{sd_base}/targets/kubelet", "refresh_interval": "1s"}],
             "relabel_configs": rewrite_to_closed_port()},
            {"job_name": "sd-fluentd", "http_sd_configs": [{"url": f"{sd_base}/targets/fluentd", "refresh_interval": "1s"}],
             "relabel_configs": rewrite_to_closed_port()},
            {"job_name": "k8s-pods-all",
             "kubernetes_sd_configs": [{**k8s, "role": "pod", "namespaces": {"names": ["logging"]}}],
             "relabel_configs": rewrite_each_container_to_closed_port()},
            {"job_name": "sd-every-port",
             "http_sd_configs": [{"url": f"{sd_base}/targets/every-port", "refresh_interval": "1s"}],
             "relabel_configs": rewrite_each_container_to_closed_port()},
        ],
    }


class Operator:
    """prometheus-operator with only its kubelet controller doing anything (no CRD installed):
    it writes the Ready nodes' kubelets into kube-system/kubelet's Endpoints and EndpointSlices."""

    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        self.log = workdir / "operator.log"
        port = free_port()
        args = [program("prometheus-operator"), "--kubelet-service=kube-system/kubelet", "--kubelet-endpoints=true",
                "--kubelet-endpointslice=true", "--kubelet-sync-period=1s", f"--web.listen-address=127.0.0.1:{port}",
                "--log-level=debug"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=out, env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)})

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("peers")
    with contextlib.ExitStack() as stack:
        cp = stack.enter_context(ControlPlane(tmp / "controlplane"))
        build_cluster(cp)
        srv = stack.enter_context(cp.serve(tmp, extra=SETS))
        eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="kube-http-sd synced")
        prom = stack.enter_context(Prometheus(prometheus_config(cp.kubeconfig, srv.base), tmp / "prometheus",
                                              prometheus_binary()))
        prom.wait_ready()
        operator = Operator(cp, tmp)
        stack.callback(operator.stop)
        yield cp, srv, prom, operator


def discovered(prom: Prometheus, job: str) -> dict[tuple[str, str], dict[str, str]]:
    """(original address, node or pod name) → discovered labels, for one job's active targets."""
    out = {}
    for t in prom.active_targets(job):
        labels = t["discoveredLabels"]
        name = labels.get("__meta_kubernetes_pod_name") or labels["__meta_kubernetes_node_name"]
        out[(labels["__address__"], name)] = labels
    return out


NODES_ONLY_PROMETHEUS = {  # what kubernetes_sd's node role serves and we don't, and why
    ("192.0.2.101:10250", "peer-notready"): "NotReady",
    ("192.0.2.110:10250", "peer-old-false"): "IP-reuse loser, Ready=False",
    ("192.0.2.111:10250", "peer-old-unknown"): "IP-reuse loser, Ready=Unknown",
}
PODS_ONLY_PROMETHEUS = {
    ("192.0.2.152:24231", "fluentd-notready"): "not ready",
    ("192.0.2.153:24231", "fluentd-pending"): "not running",
    ("192.0.2.154:24231", "fluentd-leaving"): "terminating",
}
PODS_ONLY_OURS = {  # the pod role reads status.podIP only: a pod's second family is invisible to it
    ("[2001:db8::150]:24231", "fluentd-dual"): "second family (podIPs)",
}


NODES_BOTH = {"peer-ready", "peer-v6only", "peer-new-false", "peer-new-unknown"}
PODS_BOTH = {"fluentd-dual", "fluentd-v4"}


@pytest.mark.parametrize("theirs, ours, only_theirs, only_ours, common", [
    ("k8s-nodes", "sd-kubelet", NODES_ONLY_PROMETHEUS, {}, NODES_BOTH),
    ("k8s-pods", "sd-fluentd", PODS_ONLY_PROMETHEUS, PODS_ONLY_OURS, PODS_BOTH),
], ids=["node-role", "pod-role"])
def test_labels_and_targets_side_by_side_with_kubernetes_sd(peers, theirs, ours, only_theirs, only_ours, common):
    _, srv, prom, _ = peers

    def both() -> tuple[dict, dict]:
        a, b = discovered(prom, theirs), discovered(prom, ours)
        assert set(a) - set(b) == set(only_theirs) and set(b) - set(a) == set(only_ours), (sorted(a), sorted(b))
        return a, b

    a, b = prom.eventually(both, f"{theirs} and {ours} differ by exactly the named targets", timeout=60, extra=srv.log)
    assert {name for _, name in set(a) & set(b)} == common
    for key in set(a) & set(b):
        ours_k8s = {k: v for k, v in b[key].items() if k.startswith("__meta_kubernetes_")}
        theirs_same = {k: a[key].get(k) for k in ours_k8s}
        assert ours_k8s == theirs_same, f"{key}: our labels differ from Prometheus' {theirs}"


def every_target(prom: Prometheus, job: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """(original address, pod, container) → the target's __meta_kubernetes_* labels."""
    out = {}
    for t in prom.active_targets(job):
        labels = t["discoveredLabels"]
        key = (labels["__address__"], labels["__meta_kubernetes_pod_name"], labels["__meta_kubernetes_pod_container_name"])
        assert key not in out, key
        out[key] = {k: v for k, v in labels.items() if k.startswith("__meta_kubernetes_")}
    return out


def _targets(pod: str, address: str, containers: tuple[str, ...]) -> set[tuple[str, str, str]]:
    return {(address, pod, c) for c in containers}


EVERY_PORT_ONLY_PROMETHEUS = (  # kubernetes_sd serves pods that are not ready, not running, or terminating
    _targets("fluentd-notready", "192.0.2.152:24231", ("fluentd",)) | _targets("fluentd-notready", "192.0.2.152:24224", ("fluentd",))
    | _targets("fluentd-pending", "192.0.2.153:24231", ("fluentd",)) | _targets("fluentd-pending", "192.0.2.153:24224", ("fluentd",))
    | _targets("fluentd-leaving", "192.0.2.154:24231", ("fluentd",)) | _targets("fluentd-leaving", "192.0.2.154:24224", ("fluentd",))
)
EVERY_PORT_ONLY_OURS = (  # status.podIPs: the second family
    _targets("fluentd-dual", "[2001:db8::150]:24231", ("fluentd",)) | _targets("fluentd-dual", "[2001:db8::150]:24224", ("fluentd",))
)
EVERY_PORT_BOTH = (
    _targets("fluentd-dual", "192.0.2.150:24231", ("fluentd",)) | _targets("fluentd-dual", "192.0.2.150:24224", ("fluentd",))
    | _targets("fluentd-v4", "192.0.2.151:24231", ("fluentd",)) | _targets("fluentd-v4", "192.0.2.151:24224", ("fluentd",))
    | _targets("exporter-multi", "192.0.2.160:9000", ("c0",)) | _targets("exporter-multi", "192.0.2.160:9001", ("c0",))
    | _targets("exporter-multi", "192.0.2.160:8080", ("c0",)) | _targets("exporter-multi", "192.0.2.160", ("c1", "init"))
    | _targets("node-exporter", "192.0.2.100:9100", ("fluentd",)) | _targets("node-agent", "192.0.2.100:2020", ("fluentd",))
)


def test_every_port_target_by_target_with_kubernetes_sd_pod_role(peers):
    # ports: all against the pod role without any keep rule: the same targets (a UDP and an
    # unnamed port, containers and an init container without ports at the bare IP, two
    # host-network pods on one node IP) with the same labels, label by label, both ways.
    _, srv, prom, _ = peers

    def both() -> tuple[dict, dict]:
        theirs, ours = every_target(prom, "k8s-pods-all"), every_target(prom, "sd-every-port")
        assert set(theirs) - set(ours) == EVERY_PORT_ONLY_PROMETHEUS, sorted(set(theirs) - set(ours))
        assert set(ours) - set(theirs) == EVERY_PORT_ONLY_OURS, sorted(set(ours) - set(theirs))
        return theirs, ours

    theirs, ours = prom.eventually(both, "k8s-pods-all and sd-every-port differ by exactly the named targets",
                                   timeout=60, extra=srv.log)
    assert set(theirs) & set(ours) == EVERY_PORT_BOTH
    for key in EVERY_PORT_BOTH:
        assert ours[key] == theirs[key], f"{key}: our labels differ from kubernetes_sd's pod role"


def kubelet_endpoints(cp: ControlPlane) -> dict[str, set[str]]:
    """What the operator wrote: node name → its addresses, from the Endpoints and the
    EndpointSlices of kube-system/kubelet (the same, or the test says where they differ)."""
    eps = cp.request("GET", "/api/v1/namespaces/kube-system/endpoints/kubelet")
    from_endpoints: dict[str, set[str]] = {}
    for subset in eps.get("subsets") or []:
        for a in subset.get("addresses") or []:
            from_endpoints.setdefault(a["targetRef"]["name"], set()).add(a["ip"])
    slices = cp.request("GET", "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices"
                        "?labelSelector=kubernetes.io/service-name=kubelet")
    from_slices: dict[str, set[str]] = {}
    for s in slices["items"]:
        for e in s.get("endpoints") or []:
            from_slices.setdefault(e["targetRef"]["name"], set()).update(e["addresses"])
    return {"endpoints": from_endpoints, "endpointslices": from_slices}


def test_prometheus_operator_kubelet_endpoints_scenario_by_scenario(peers):
    cp, srv, _, operator = peers
    served = {g["labels"]["__meta_kubernetes_node_name"]: set(g["targets"]) for g in srv.get("/targets/kubelet").json()}
    assert served == {
        "peer-ready": {"192.0.2.100:10250"},
        "peer-v6only": {"[2001:db8::100]:10250"},
        "peer-new-false": {"192.0.2.110:10250"},
        "peer-new-unknown": {"192.0.2.111:10250"},
    }

    def written() -> dict[str, dict[str, set[str]]]:
        got = kubelet_endpoints(cp)
        assert "peer-new-unknown" in got["endpointslices"], got
        return got

    got = eventually(written, 60, what=f"the operator's kubelet Endpoints\n{operator.log.read_text()[-3000:]}")
    # What prometheus-operator v0.93 does, scenario by scenario (README, "Why not the built-in options").
    # Endpoints (what a ServiceMonitor on the kubelet Service reads): a lone NotReady node is kept;
    # a Ready=False twin is kept beside the new node on its IP (that IP is scraped twice, the dead
    # node's labels on one copy); a Ready=Unknown twin is dropped; the IPv6-only node is there.
    assert got["endpoints"] == {
        "peer-ready": {"192.0.2.100"},
        "peer-notready": {"192.0.2.101"},
        "peer-old-false": {"192.0.2.110"},
        "peer-new-false": {"192.0.2.110"},
        "peer-new-unknown": {"192.0.2.111"},
        "peer-v6only": {"2001:db8::100"},
    }, got
    # EndpointSlices hold one endpoint per IP: of the Ready=False twin and the new node, whichever
    # the operator's node list (an informer cache, unordered) gives last, not the Ready one.
    slices = dict(got["endpointslices"])
    twin = [n for n in ("peer-old-false", "peer-new-false") if slices.pop(n, None) == {"192.0.2.110"}]
    assert len(twin) == 1, got
    assert slices == {n: a for n, a in got["endpoints"].items() if n not in ("peer-old-false", "peer-new-false")}, got


def prometheus_resource(shards: int) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
        "metadata": {"name": "k8s", "namespace": "monitoring"},
        "spec": {"shards": shards, "serviceAccountName": "prometheus-k8s",
                 "scrapeConfigSelector": {}, "scrapeConfigNamespaceSelector": {},
                 "serviceMonitorSelector": {}, "serviceMonitorNamespaceSelector": {}},
    }


def generated_config(cp: ControlPlane) -> dict:
    """The configuration the operator generated for Prometheus monitoring/k8s (its Secret)."""
    secret = cp.request("GET", "/api/v1/namespaces/monitoring/secrets/prometheus-k8s")
    return yaml.safe_load(gzip.decompress(base64.b64decode(secret["data"]["prometheus.yaml.gz"])))


def runnable(config: dict, sd_base: str, shard: int) -> dict:
    """The generated configuration as this test may run it: the Service URL pointed at the loopback
    server, $(SHARD) filled in as the config-reloader does, every scrape address sent to a closed
    loopback port (after the operator's own relabeling, hashmod included), no remote services."""
    text = yaml.safe_dump(config).replace("http://kube-http-sd.monitoring.svc:8080", sd_base).replace("$(SHARD)", str(shard))
    config = yaml.safe_load(text)
    for job in config.get("scrape_configs") or []:
        job.pop("kubernetes_sd_configs", None)
        job["relabel_configs"] = (job.get("relabel_configs") or []) + rewrite_to_closed_port()
        for key in ("authorization", "tls_config", "bearer_token_file"):
            job.pop(key, None)
    for key in ("alerting", "rule_files", "remote_write", "remote_read"):
        config.pop(key, None)
    return config


@pytest.mark.parametrize("overlay, shards", [("prometheus-operator", 1), ("prometheus-operator-sharded", 2)])
def test_our_prometheus_operator_manifests_for_real(peers, tmp_path, overlay, shards):
    cp, srv, _, _ = peers
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
               input=subprocess.run([program("prometheus-operator"), "crds"], capture_output=True, text=True, check=True).stdout)
    cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cp.ensure_namespace("monitoring")
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "deploy" / overlay))  # real schema validation
    # No controller-manager runs: publish kube-root-ca.crt (the kubelet ScrapeConfigs' CA) and fill
    # their token Secret, as its root-CA publisher and token controller would.
    if cp.api.get("/api/v1/namespaces/monitoring/configmaps/kube-root-ca.crt").status_code == 404:
        cp.request("POST", "/api/v1/namespaces/monitoring/configmaps",
                   {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"},
                    "data": {"ca.crt": cp.ca_file.read_text()}})
    cp.kubectl("create", "serviceaccount", "prometheus-k8s", "-n", "monitoring", check=False)
    token = cp.token("monitoring", "prometheus-k8s")
    cp.request("PATCH", "/api/v1/namespaces/monitoring/secrets/kube-http-sd-kubelet-scrape-token",
               {"data": {"token": base64.b64encode(token.encode()).decode()}}, "application/merge-patch+json")
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(prometheus_resource(shards)))
    operator = Operator(cp, tmp_path)  # started after the CRDs: its Prometheus controller runs
    try:
        def rendered() -> dict:
            config = generated_config(cp)
            jobs = {j["job_name"]: j for j in config.get("scrape_configs") or []}
            assert {"scrapeConfig/monitoring/kube-http-sd-kubelet", "scrapeConfig/monitoring/kube-http-sd-fluentd"} <= set(jobs), jobs
            url = jobs["scrapeConfig/monitoring/kube-http-sd-fluentd"]["http_sd_configs"][0]["url"]
            assert ("shards=2&shard=$(SHARD)" in url) == (shards == 2), url
            return config

        config = eventually(rendered, 90, what=f"the operator's generated configuration\n{operator.log.read_text()[-3000:]}")
    finally:
        operator.stop()
        # No garbage collector runs: the generated Secret would outlive its Prometheus.
        cp.api.delete("/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheuses/k8s")
        cp.api.delete("/api/v1/namespaces/monitoring/secrets/prometheus-k8s")

    served = {name: {t for g in srv.get(f"/targets/{name}").json() for t in g["targets"]} for name in ("kubelet", "fluentd")}
    found: dict[str, list[str]] = {"kubelet": [], "fluentd": []}
    for shard in range(shards):
        with Prometheus(runnable(config, srv.base, shard), tmp_path / f"prometheus-{shard}", prometheus_binary()) as prom:
            prom.wait_ready()
            job = {"kubelet": "scrapeConfig/monitoring/kube-http-sd-kubelet", "fluentd": "scrapeConfig/monitoring/kube-http-sd-fluentd"}

            def discovered_all() -> dict[str, list[str]]:
                got = {name: sorted(t["discoveredLabels"]["__address__"] for t in prom.active_targets(j)) for name, j in job.items()}
                assert all(got.values()), got
                return got

            got = prom.eventually(discovered_all, f"shard {shard} discovers our targets", timeout=60, extra=srv.log)
            for name in found:
                found[name] += got[name]
    for name, targets in found.items():
        assert sorted(targets) == sorted(served[name]), f"{overlay} {name}: the shards' union is not the set, each once"
