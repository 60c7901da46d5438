"""attach_metadata against a real kube-apiserver (sdtest.controlplane), and beside Prometheus 3.16's
own kubernetes_sd pod role with the same attach_metadata on the same pods.

No controller-manager runs: the workload objects are created by hand as their controllers would
(a Deployment, its ReplicaSet with the Deployment as controller owner, pods owned by the
ReplicaSet; a CronJob, its Job, the Job's pod). Every Prometheus scrape address is rewritten to a
closed loopback port; objects use documentation addresses only.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

from sdtest.controlplane import ControlPlane
from sdtest.factories import make_namespace, make_node, make_pod, make_workload, owner_reference
from sdtest.helpers import eventually, free_port
from sdtest.promtest import Prometheus, prometheus_binary

pytestmark = [pytest.mark.apiserver, pytest.mark.slow]

CLOSED_PORT = free_port()  # nothing listens here: every scrape fails at once, on loopback
SELECTOR = "attach-test=yes"
NAMESPACES = ("shop", "batch-jobs", "plain")
ATTACH = {"node": True, "namespace": True, "deployment": True, "job": True, "cronjob": True}
SD_CONFIG = f"""
targets:
  attached:
    source: pods
    port: 24231
    port_name: monitor
    label_selector: {SELECTOR}
    annotations: ['*']
    attach_metadata: {{node: true, namespace: true, deployment: true, job: true, cronjob: true}}
"""


def pod(name: str, namespace: str, ip: str, owner: dict[str, Any] | None, node: str = "attach-node") -> dict:
    obj = make_pod(name, [ip], namespace=namespace, node=node, labels={"attach-test": "yes"})
    obj["status"]["hostIP"] = "192.0.2.200"
    obj["metadata"]["ownerReferences"] = [owner_reference(owner)] if owner is not None else []
    return obj


def build(cp: ControlPlane) -> None:
    """shop: a Deployment's two pods; batch-jobs: a CronJob's Job's pod and a lone Job's pod;
    plain: a pod of no workload, and one on a node nobody has seen (held back)."""
    cp.create(make_namespace("shop", {"team": "web", "tier": "frontend"}, {"owner.example/contact": "web@example.org"}))
    cp.create(make_namespace("batch-jobs", {"team": "data"}))
    cp.create(make_namespace("plain"))
    node = make_node("attach-node", ["192.0.2.200"], labels={"topology.kubernetes.io/zone": "zone-a"})
    del node["spec"]["podCIDR"]
    cp.create(node)
    deployment = cp.create(make_workload("Deployment", "web", "shop"))
    replicaset = cp.create(make_workload("ReplicaSet", "web-5d8f9c", "shop", deployment))
    cp.create(pod("web-5d8f9c-a", "shop", "192.0.2.210", replicaset))
    cp.create(pod("web-5d8f9c-b", "shop", "192.0.2.211", replicaset))
    cronjob = cp.create(make_workload("CronJob", "nightly", "batch-jobs"))
    job = cp.create(make_workload("Job", "nightly-29001", "batch-jobs", cronjob))
    cp.create(pod("nightly-29001-x", "batch-jobs", "192.0.2.212", job))
    lone = cp.create(make_workload("Job", "migrate", "batch-jobs"))
    cp.create(pod("migrate-y", "batch-jobs", "192.0.2.213", lone))
    cp.create(pod("loner", "plain", "192.0.2.214", None))
    cp.create(pod("ghost", "plain", "192.0.2.215", None, node="ghost-node"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attach")
    with contextlib.ExitStack() as stack:
        cp = stack.enter_context(ControlPlane(tmp / "controlplane"))
        build(cp)
        srv = stack.enter_context(cp.serve(tmp, extra=SD_CONFIG))
        yield cp, srv


def served(srv: Any) -> dict[str, dict[str, str]]:
    """pod name → its target's labels."""
    resp = srv.get("/targets/attached")
    assert resp.status_code == 200, resp.text
    return {g["labels"]["__meta_kubernetes_pod_name"]: g["labels"] for g in resp.json()}


def test_workload_names_and_namespace_labels_from_the_real_api_server(cluster):
    _, srv = cluster
    got = eventually(lambda: len(served(srv)) == 5 and served(srv), 30, what="the five pods on a known node served")
    assert "ghost" not in got, "its node is not known: held back"
    for name in ("web-5d8f9c-a", "web-5d8f9c-b"):
        labels = got[name]
        assert labels["__meta_kubernetes_pod_deployment_name"] == "web"
        assert labels["__meta_kubernetes_namespace_label_team"] == "web"
        assert labels["__meta_kubernetes_namespace_annotation_owner_example_contact"] == "web@example.org"
        assert labels["__meta_kubernetes_node_label_topology_kubernetes_io_zone"] == "zone-a"
        assert "__meta_kubernetes_pod_job_name" not in labels
    nightly = got["nightly-29001-x"]
    assert (nightly["__meta_kubernetes_pod_job_name"], nightly["__meta_kubernetes_pod_cronjob_name"]) == ("nightly-29001", "nightly")
    assert got["migrate-y"]["__meta_kubernetes_pod_job_name"] == "migrate"
    assert "__meta_kubernetes_pod_cronjob_name" not in got["migrate-y"]
    assert not [k for k in got["loner"] if k.endswith(("_deployment_name", "_job_name", "_cronjob_name"))]
    # Namespace plain has only the label the API server gives every namespace.
    assert {k: v for k, v in got["loner"].items() if k.startswith("__meta_kubernetes_namespace_label")} == {
        "__meta_kubernetes_namespace_label_kubernetes_io_metadata_name": "plain",
        "__meta_kubernetes_namespace_labelpresent_kubernetes_io_metadata_name": "true",
    }
    # One shared watch per related kind, and none of Deployments or CronJobs.
    sources = set(re.findall(r'kube_http_sd_source_up\{source="([^"]+)"\}', srv.get("/metrics").text))
    assert sources == {"pods " + SELECTOR, "nodes", "namespaces", "replicasets", "jobs"}


def test_a_namespace_relabelled_at_run_time_reaches_its_pods_targets_and_no_other(cluster):
    cp, srv = cluster
    before = eventually(lambda: len(served(srv)) == 5 and served(srv), 30, what="first sync")
    cp.request("PATCH", "/api/v1/namespaces/shop", {"metadata": {"labels": {"team": "storefront"}}}, "application/merge-patch+json")

    def relabelled() -> dict[str, dict[str, str]]:
        got = served(srv)
        assert all(got[n]["__meta_kubernetes_namespace_label_team"] == "storefront" for n in ("web-5d8f9c-a", "web-5d8f9c-b"))
        return got

    after = eventually(relabelled, 30, what="namespace shop's new label on its pods' targets")
    for name in ("nightly-29001-x", "migrate-y", "loner"):
        assert after[name] == before[name], f"{name} is in another namespace: unchanged"
    cp.request("PATCH", "/api/v1/namespaces/shop", {"metadata": {"labels": {"team": "web"}}}, "application/merge-patch+json")
    eventually(lambda: served(srv) == before, 30, what="the label back")


def prometheus_config(kubeconfig: Any, sd_base: str) -> dict:
    relabel = [
        {"source_labels": ["__address__", "__meta_kubernetes_pod_name"], "separator": "/", "target_label": "instance"},
        {"target_label": "__address__", "replacement": f"127.0.0.1:{CLOSED_PORT}"},
    ]
    return {
        "global": {"scrape_interval": "1m", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "k8s-attached",
             "kubernetes_sd_configs": [{"kubeconfig_file": str(kubeconfig), "role": "pod", "namespaces": {"names": list(NAMESPACES)},
                                        "selectors": [{"role": "pod", "label": SELECTOR}], "attach_metadata": ATTACH}],
             "relabel_configs": [{"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "monitor",
                                  "action": "keep"}, *relabel]},
            {"job_name": "sd-attached", "http_sd_configs": [{"url": f"{sd_base}/targets/attached", "refresh_interval": "1s"}],
             "relabel_configs": relabel},
        ],
    }


@pytest.mark.e2e
def test_our_attached_labels_equal_kubernetes_sd_with_the_same_attach_metadata(cluster, tmp_path):
    cp, srv = cluster
    eventually(lambda: len(served(srv)) == 5, 30, what="first sync")
    with Prometheus(prometheus_config(cp.kubeconfig, srv.base), tmp_path / "prometheus", prometheus_binary()) as prom:
        prom.wait_ready()

        def discovered(job: str) -> dict[str, dict[str, str]]:
            return {t["discoveredLabels"]["__meta_kubernetes_pod_name"]: t["discoveredLabels"] for t in prom.active_targets(job)}

        def both() -> tuple[dict, dict]:
            theirs, ours = discovered("k8s-attached"), discovered("sd-attached")
            assert set(theirs) == set(ours) == {"web-5d8f9c-a", "web-5d8f9c-b", "nightly-29001-x", "migrate-y", "loner"}, (
                sorted(theirs), sorted(ours))
            return theirs, ours

        theirs, ours = prom.eventually(both, "the same pods discovered by both, the ghost node's by neither", timeout=60, extra=srv.log)
        for name in ours:
            mine = {k: v for k, v in ours[name].items() if k.startswith("__meta_kubernetes_")}
            prometheus = {k: v for k, v in theirs[name].items() if k.startswith("__meta_kubernetes_")}
            assert mine == prometheus, f"{name}: our labels differ from kubernetes_sd's"
