"""Several clusters from one server, against two real control planes (sdtest.controlplane)
with overlapping node IPs and IP reuse in each. ``east`` is reached with the admin's client
certificate, ``west`` with a ServiceAccount token bound by the RBAC a remote cluster gets
(deploy/kubernetes/remote): the two credentials kubeconfigs most often carry."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sdtest.controlplane import ControlPlane, wall_clock_second_after
from sdtest.helpers import FAST, ROOT, Server, eventually, free_port, metric_sum
from sdtest.promtest import Prometheus
from tests.test_real_apiserver import node, pod, ready_status

pytestmark = [pytest.mark.apiserver, pytest.mark.slow]


@pytest.fixture(scope="module")
def east(tmp_path_factory):
    with ControlPlane(tmp_path_factory.mktemp("east")) as cp:
        cp.ensure_namespace("logging")
        yield cp


@pytest.fixture(scope="module")
def west(tmp_path_factory):
    with ControlPlane(tmp_path_factory.mktemp("west")) as cp:
        cp.ensure_namespace("logging")
        cp.ensure_namespace("monitoring")
        manifests = cp.kubectl("kustomize", str(ROOT / "deploy/kubernetes/remote")).stdout
        cp.kubectl("apply", "-f", "-", input=manifests)
        yield cp


def west_kubeconfig(west: ControlPlane) -> Path:
    return west.write_kubeconfig("kube-http-sd", token=west.token("monitoring", "kube-http-sd"))


def never_answers(tmp_path: Path) -> Path:
    """A kubeconfig of a cluster that never answers: a closed loopback port."""
    path = tmp_path / "kubeconfig-ghost"
    path.write_text(textwrap.dedent(f"""
        apiVersion: v1
        kind: Config
        current-context: ghost
        clusters: [{{name: ghost, cluster: {{server: "https://127.0.0.1:{free_port()}", insecure-skip-tls-verify: true}}}}]
        users: [{{name: ghost, user: {{token: nobody}}}}]
        contexts: [{{name: ghost, context: {{cluster: ghost, user: ghost}}}}]
    """))
    return path


def write_config(path: Path, clusters: dict[str, Path], timeout: float = 60) -> None:
    lines = "".join(f"  {name}: {{kubeconfig: {kc}}}\n" for name, kc in clusters.items())
    path.write_text(FAST + "clusters:\n" + lines + textwrap.dedent(f"""
        targets:
          kubelet: {{source: nodes, port: 10250, port_name: kubelet, cluster_sync_timeout_seconds: {timeout}}}
          fluentd: {{source: pods, label_selector: app.kubernetes.io/name=fluentd, ip_family: both, port_name: monitor, port: 24231,
                     cluster_sync_timeout_seconds: {timeout}}}
    """))


def served(srv: Server, name: str, within: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """(cluster, address) → the target's node or pod name, of the targets whose address starts
    with one of ``within`` (each test uses addresses of its own: the clusters are shared)."""
    resp = srv.get(f"/targets/{name}")
    assert resp.status_code == 200, resp.text
    out = {}
    for group in resp.json():
        labels = group["labels"]
        for target in group["targets"]:
            if not target.startswith(within):
                continue
            key = (labels["__meta_sd_cluster"], target)
            assert key not in out, f"{key} served twice"
            out[key] = labels.get("__meta_kubernetes_pod_name") or labels["__meta_kubernetes_node_name"]
    return out


def twins(cp: ControlPlane, old: dict, new: dict) -> None:
    created = cp.create(old)
    wall_clock_second_after(created["metadata"]["creationTimestamp"])
    cp.create(new)


def relists(srv: Server, cluster: str) -> float:
    return metric_sum(srv, f'kube_http_sd_relists_total{{cluster="{cluster}"}}')


def reload(srv: Server, count: int) -> None:
    srv.proc.send_signal(signal.SIGHUP)
    eventually(lambda: srv.log().count("config reloaded") >= count, what=f"reload {count} applied")


# The relabel rule docs/configure.md documents: the cluster's name as the `cluster` label.
CLUSTER_RELABEL = {"source_labels": ["__meta_sd_cluster"], "target_label": "cluster"}


def test_real_prometheus_labels_every_target_with_its_cluster_after_the_documented_rule(east, west, tmp_path):
    for cp, prefix in ((east, "pe"), (west, "pw")):
        cp.create(node(f"{prefix}-1", "203.0.113.10"))  # one IP, two clusters
        cp.create(node(f"{prefix}-2", f"203.0.113.{11 if prefix == 'pe' else 12}"))
    config = tmp_path / "sd.yaml"
    write_config(config, {"east": east.kubeconfig, "west": west_kubeconfig(west)})
    with Server("--config", str(config)) as srv:
        srv.wait_healthy()
        eventually(lambda: srv.get("/readyz").status_code == 200, 60, what="both clusters synced")
        scrape = {
            "job_name": "kubelet",
            "http_sd_configs": [{"url": f"{srv.base}/targets/kubelet", "refresh_interval": "1s"}],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_node_name"], "regex": "p[ew]-.*", "action": "keep"},
                CLUSTER_RELABEL,
                {"target_label": "__address__", "replacement": "127.0.0.1:9"},  # never the documentation addresses
            ],
        }
        prom_config = {"global": {"scrape_interval": "1m", "scrape_timeout": "1s"}, "scrape_configs": [scrape]}
        with Prometheus(prom_config, tmp_path / "prometheus") as prom:
            prom.wait_ready()
            targets = prom.eventually(lambda: len(prom.active_targets("kubelet")) == 4 and prom.active_targets("kubelet"),
                                      "four targets from two clusters")
            seen = sorted((t["labels"]["cluster"], t["labels"]["instance"]) for t in targets)
            assert seen == [("east", "pe-1"), ("east", "pe-2"), ("west", "pw-1"), ("west", "pw-2")]

        # The targets command shows the cluster too.
        table = subprocess.run([sys.executable, "-m", "sd", "targets", f"{srv.base}/targets/kubelet"],
                               capture_output=True, text=True, timeout=60, check=True).stdout
        assert table.splitlines()[0].split()[:2] == ["CLUSTER", "TARGET"]
        assert any(line.split()[:2] == ["west", "203.0.113.10:10250"] for line in table.splitlines())


OURS = ("192.0.2.", "[2001:db8::")  # the addresses of the next test's objects


def test_two_real_clusters_served_labelled_conflicts_within_each_reload_and_one_killed(east, west, tmp_path):
    # The same IPs in both clusters, for different machines; IP reuse inside each.
    for cp, prefix in ((east, "e"), (west, "w")):
        cp.create(node(f"{prefix}-a", "192.0.2.10"))
        cp.create(node("same-name", "192.0.2.11"))  # one node name in both clusters
        cp.create(pod("fluentd-1", ["192.0.2.50", "2001:db8::50"], node="same-name"))
    # east: the dead node's IP taken by a newer node, the dead one Ready=False.
    twins(east, node("e-z-dead", "192.0.2.20"), node("e-b-new", "192.0.2.20"))
    east.set_status("Node", "e-z-dead", ready_status("False"))
    # west: both Ready on one IP; the newer wins.
    twins(west, node("w-z-old", "192.0.2.20"), node("w-b-newer", "192.0.2.20"))

    config = tmp_path / "sd.yaml"
    write_config(config, {"east": east.kubeconfig, "west": west_kubeconfig(west)})
    with Server("--config", str(config)) as srv:
        srv.wait_healthy()
        eventually(lambda: srv.get("/readyz").status_code == 200, 60, what="both clusters synced")
        want = {("east", "192.0.2.10:10250"): "e-a", ("east", "192.0.2.11:10250"): "same-name",
                ("east", "192.0.2.20:10250"): "e-b-new",
                ("west", "192.0.2.10:10250"): "w-a", ("west", "192.0.2.11:10250"): "same-name",
                ("west", "192.0.2.20:10250"): "w-b-newer"}
        eventually(lambda: served(srv, "kubelet", OURS) == want, 30, what="both clusters' nodes")
        pods = {(c, t): "fluentd-1" for c in ("east", "west") for t in ("192.0.2.50:24231", "[2001:db8::50]:24231")}
        eventually(lambda: served(srv, "fluentd", OURS) == pods, 30, what="both clusters' pods")
        view = srv.get("/debug/sets/kubelet").json()
        assert {(e["cluster"], e["ip"], e["winner"], tuple(lo["object"] for lo in e["losers"])) for e in view["ips"]} >= {
            ("west", "192.0.2.20", "w-b-newer", ("w-z-old",)),
        }
        assert ("east", "e-z-dead", "not_ready") in {(e["cluster"], e["object"], e["reason"]) for e in view["excluded"]}
        assert "CLUSTER" in srv.get("/debug/sets/kubelet?format=text").text

        # A change in one cluster reaches only its targets.
        west.set_status("Node", "w-a", ready_status("False"))
        del want[("west", "192.0.2.10:10250")]
        eventually(lambda: served(srv, "kubelet", OURS) == want, 30, what="west's NotReady node gone, east's twin kept")

        # SIGHUP: a cluster that never answers is added; the others are not listed again.
        before = {c: relists(srv, c) for c in ("east", "west")}
        ghost = never_answers(tmp_path)
        write_config(config, {"east": east.kubeconfig, "west": west_kubeconfig(west), "ghost": ghost})
        reload(srv, 1)
        eventually(lambda: metric_sum(srv, 'kube_http_sd_source_errors_total{cluster="ghost"}') >= 1, 30, what="ghost failing")
        assert srv.get("/targets/kubelet").status_code == 200  # served before: stays served
        assert "kubelet: serving without cluster ghost" in srv.get("/readyz").text
        assert metric_sum(srv, 'kube_http_sd_set_cluster_synced{cluster="ghost",set="kubelet"}') == 0
        assert metric_sum(srv, 'kube_http_sd_set_cluster_synced{cluster="east",set="kubelet"}') == 1

        # east's API server dies: its targets stay served, west's changes keep arriving.
        east.kill()
        west.create(node("w-late", "192.0.2.12"))
        want[("west", "192.0.2.12:10250")] = "w-late"
        eventually(lambda: served(srv, "kubelet", OURS) == want, 30, what="west's new node, east's last state")
        eventually(lambda: metric_sum(srv, 'kube_http_sd_source_failing{cluster="east"}') >= 1, 60, what="east failing")
        assert {c: relists(srv, c) for c in ("east", "west")} == before

        # SIGHUP removes east and ghost: their targets go, west is not listed again.
        write_config(config, {"west": west_kubeconfig(west)})
        reload(srv, 2)
        west_only = {k: v for k, v in want.items() if k[0] == "west"}
        eventually(lambda: served(srv, "kubelet", OURS) == west_only, 30, what="east's targets gone with it")
        assert relists(srv, "west") == before["west"]
        assert srv.get("/readyz").status_code == 200


def test_a_cluster_that_never_answers_holds_the_set_only_until_its_timeout(west, tmp_path):
    west.create(node("t-a", "198.51.100.10"))
    config = tmp_path / "sd.yaml"
    clusters = {"west": west_kubeconfig(west), "ghost": never_answers(tmp_path)}
    write_config(config, clusters, timeout=3600)
    with Server("--config", str(config)) as srv:
        srv.wait_healthy()
        eventually(lambda: metric_sum(srv, 'kube_http_sd_set_cluster_synced{cluster="west",set="kubelet"}') == 1, 30,
                   what="west synced")
        waiting = srv.get("/targets/kubelet")
        assert waiting.status_code == 503 and "ghost/nodes" in waiting.json()["error"]
        readyz = srv.get("/readyz")
        assert readyz.status_code == 503 and "kubelet: waiting for cluster ghost" in readyz.text

        # A short timeout (a reload makes the set anew, so the timeout counts from now).
        write_config(config, clusters, timeout=3)
        reload(srv, 1)
        eventually(lambda: srv.get("/targets/kubelet").status_code == 200, 20, what="served after the timeout")
        assert set(served(srv, "kubelet", ("198.51.100.",))) == {("west", "198.51.100.10:10250")}
        readyz = srv.get("/readyz")
        assert readyz.status_code == 200 and "kubelet: serving without cluster ghost" in readyz.text
        page = srv.get("/sets/kubelet", headers={"Accept": "text/html"}).text
        assert "ghost" in page and "state-missing" in page
        assert "partial" in srv.get("/").text
        assert metric_sum(srv, 'kube_http_sd_source_up{cluster="ghost",source="nodes"}') == 0
