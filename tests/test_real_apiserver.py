"""The server against a real kube-apiserver and etcd (sdtest.controlplane), as users run it.

One control plane serves the tests of this module that only add and change objects; the tests
that kill, compact or reconfigure a control plane start their own. Objects are created through the
API with documentation addresses; no kubelet runs, so status is set through the ``status``
subresource and a deleted pod that names a node stays terminating.
"""

from __future__ import annotations

import os
import signal
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from sdtest.controlplane import ControlPlane, wall_clock_second_after
from sdtest.factories import make_node, make_pod
from sdtest.helpers import FAST, Sampler, Server, eventually, metric_sum

pytestmark = [pytest.mark.apiserver, pytest.mark.slow]

NODE_SET = "kubelet"
POD_SET = "fluentd"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with ControlPlane(tmp_path_factory.mktemp("controlplane")) as cp:
        cp.ensure_namespace("logging")
        yield cp


def config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "sd.yaml"
    path.write_text(FAST + extra)
    return str(path)


def served(srv: Server, name: str) -> dict[str, str]:
    """address → the target's node or pod name."""
    resp = srv.get(f"/targets/{name}")
    assert resp.status_code == 200, resp.text
    return {t: g["labels"].get("__meta_kubernetes_pod_name") or g["labels"]["__meta_kubernetes_node_name"]
            for g in resp.json() for t in g["targets"]}


def node(name: str, ip: str, ready: str | None = "True", **kw) -> dict:
    obj = make_node(name, [ip], ready=ready, images=2, **kw)
    del obj["spec"]["podCIDR"]  # no address outside the documentation ranges, even unused
    return obj


def pod(name: str, ips: list[str], host_ip: str = "192.0.2.10", **kw) -> dict:
    kw.setdefault("namespace", "logging")
    kw.setdefault("node", "cp-ready")
    obj = make_pod(name, ips, **kw)
    obj["status"]["hostIP"] = host_ip
    return obj


def ready_status(status: str) -> dict:
    return {"conditions": [{"type": "Ready", "status": status, "reason": "Test", "message": "set by the test",
                            "lastHeartbeatTime": "2026-12-04T10:00:00Z", "lastTransitionTime": "2026-12-04T10:00:00Z"}]}


def create_twin_pair(cp: ControlPlane, old: dict, new: dict) -> None:
    """``old`` first, ``new`` in a later second: ``new`` has the newer creationTimestamp."""
    created = cp.create(old)
    wall_clock_second_after(created["metadata"]["creationTimestamp"])
    cp.create(new)


def test_both_sets_end_to_end_and_the_same_bytes_as_a_snapshot_of_the_cluster(cluster, tmp_path):
    cp = cluster
    cp.create(node("cp-ready", "192.0.2.10"))
    cp.create(node("cp-notready", "192.0.2.11", ready="False"))
    cp.create(node("cp-gone", "192.0.2.12"))
    # IP reuse: the dead node's twin is Ready=False, or Ready=Unknown (its kubelet stopped
    # posting); a later node took its IP. Names sort the other way: time decides, not names.
    create_twin_pair(cp, node("cp-z-false", "192.0.2.20", ready="True"), node("cp-a-new1", "192.0.2.20"))
    cp.set_status("Node", "cp-z-false", ready_status("False"))
    create_twin_pair(cp, node("cp-z-unknown", "192.0.2.21", ready="True"), node("cp-a-new2", "192.0.2.21"))
    cp.set_status("Node", "cp-z-unknown", ready_status("Unknown"))
    # Both Ready (the old one not yet noticed dead): the newer wins.
    create_twin_pair(cp, node("cp-z-old", "192.0.2.22"), node("cp-a-newer", "192.0.2.22"))

    cp.create(pod("fluentd-dual", ["192.0.2.50", "2001:db8::50"]))
    cp.create(pod("fluentd-v6", ["2001:db8::51"]))
    cp.create(pod("fluentd-notready", ["192.0.2.52"], ready="False"))
    cp.create(pod("fluentd-pending", ["192.0.2.53"], phase="Pending"))
    cp.create(pod("fluentd-leaving", ["192.0.2.54"]))
    cp.create(pod("other-app", ["192.0.2.55"], labels={"app.kubernetes.io/name": "other"}))

    with cp.serve(tmp_path) as srv:
        eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="first sync")
        want_nodes = {"192.0.2.10:10250": "cp-ready", "192.0.2.12:10250": "cp-gone", "192.0.2.20:10250": "cp-a-new1",
                      "192.0.2.21:10250": "cp-a-new2", "192.0.2.22:10250": "cp-a-newer"}
        eventually(lambda: served(srv, NODE_SET) == want_nodes, what="kubelet targets")
        want_pods = {"192.0.2.50:24231": "fluentd-dual", "[2001:db8::50]:24231": "fluentd-dual",
                     "[2001:db8::51]:24231": "fluentd-v6", "192.0.2.54:24231": "fluentd-leaving"}
        eventually(lambda: served(srv, POD_SET) == want_pods, what="fluentd targets")

        # A Ready flip through a real status update, both ways; a deletion; a pod terminating
        # (it names a node, so without a kubelet it keeps its deletionTimestamp).
        cp.set_status("Node", "cp-ready", ready_status("False"))
        eventually(lambda: "192.0.2.10:10250" not in served(srv, NODE_SET), what="NotReady node gone")
        cp.set_status("Node", "cp-ready", ready_status("True"))
        eventually(lambda: "192.0.2.10:10250" in served(srv, NODE_SET), what="Ready node back")
        cp.delete("Node", "cp-gone")
        cp.delete("Pod", "fluentd-leaving", "logging")
        del want_nodes["192.0.2.12:10250"], want_pods["192.0.2.54:24231"]
        eventually(lambda: served(srv, NODE_SET) == want_nodes, what="deleted node gone")
        eventually(lambda: served(srv, POD_SET) == want_pods, what="terminating pod gone")
        assert cp.request("GET", "/api/v1/namespaces/logging/pods/fluentd-leaving")["metadata"]["deletionTimestamp"]

        snapshot = cp.snapshot(tmp_path / "cluster.json")
        with Server("--snapshot", str(snapshot), "--config", config(tmp_path)) as offline:
            offline.wait_healthy()
            for name in (NODE_SET, POD_SET):
                want = offline.get(f"/targets/{name}")
                assert want.status_code == 200
                eventually(lambda: srv.get(f"/targets/{name}").content == want.content, what=f"{name}: same bytes as --snapshot")
                assert srv.get(f"/targets/{name}").headers["etag"] == want.headers["etag"]
        assert metric_sum(srv, "kube_http_sd_source_errors_total") == 0, srv.get("/metrics").text


def test_the_real_watch_list_is_used_and_selectors_are_accepted(cluster, tmp_path):
    cp = cluster
    cp.ensure_namespace("selectors")
    cp.create(pod("sel-a", ["198.51.100.10"], namespace="selectors", node="sel-node-1", labels={"tier": "gold"}))
    cp.create(pod("sel-b", ["198.51.100.11"], namespace="selectors", node="sel-node-2", labels={"tier": "silver"}))
    cp.create(pod("sel-c", ["198.51.100.12"], namespace="selectors", node="sel-node-1", labels={"tier": "bronze"}))
    cp.create(node("sel-node-1", "198.51.100.1", labels={"pool": "a"}))
    cp.create(node("sel-node-2", "198.51.100.2", labels={"pool": "b"}))
    custom = (
        "targets:\n"
        "  kubelet: {source: nodes, port: 10250}\n"
        "  fluentd: {source: pods, port: 24231, label_selector: app.kubernetes.io/name=fluentd}\n"
        "  pool-a: {source: nodes, port: 10250, label_selector: 'pool in (a)', field_selector: 'metadata.name!=sel-node-2'}\n"
        "  gold-on-1:\n"
        "    source: pods\n"
        "    namespaces: [selectors]\n"
        "    port: 24231\n"
        "    label_selector: 'tier notin (silver),app.kubernetes.io/name'\n"
        "    field_selector: 'spec.nodeName=sel-node-1,status.phase=Running'\n"
    )
    with cp.serve(tmp_path, extra=custom) as srv:
        eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="first sync")
        assert served(srv, "pool-a") == {"198.51.100.1:10250": "sel-node-1"}
        assert served(srv, "gold-on-1") == {"198.51.100.10:24231": "sel-a", "198.51.100.12:24231": "sel-c"}
        # Every list was the real server's WatchList; none fell back to pages.
        assert metric_sum(srv, 'kube_http_sd_relists_total{method="streaming"}') >= 4
        assert metric_sum(srv, 'kube_http_sd_relists_total{method="paginated"}') == 0
        assert metric_sum(srv, "kube_http_sd_streaming_list_fallbacks_total") == 0
        assert metric_sum(srv, "kube_http_sd_source_errors_total") == 0
        cp.create(pod("sel-d", ["198.51.100.13"], namespace="selectors", node="sel-node-1", labels={"tier": "gold"}))
        eventually(lambda: "198.51.100.13:24231" in served(srv, "gold-on-1"), what="a watched change")


def test_without_the_watch_list_feature_the_lists_are_paged(tmp_path):
    with ControlPlane(tmp_path / "cp", apiserver_flags=("--feature-gates=WatchList=false",)) as cp:
        for i in range(5):
            cp.create(node(f"paged-{i}", f"203.0.113.{i + 1}"))
        with cp.serve(tmp_path) as srv:
            eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="first sync")
            assert len(served(srv, NODE_SET)) == 5  # page_size 3: two pages
            assert metric_sum(srv, 'kube_http_sd_relists_total{source="nodes",method="paginated"}') >= 1
            assert metric_sum(srv, "kube_http_sd_streaming_list_fallbacks_total") >= 1


def apiserver_watches(cp: ControlPlane, resource: str) -> float:
    """Watches of ``resource`` the API server is serving now (its own metric)."""
    total = 0.0
    for line in cp.api.get("/metrics").text.splitlines():
        if line.startswith("apiserver_longrunning_requests{") and f'resource="{resource}"' in line and 'verb="WATCH"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_real_410_after_compaction_relists_without_losing_or_flapping(tmp_path):
    # Without the watch cache the API server serves each watch from etcd, whose compacted
    # history answers an old resourceVersion with 410 Gone (a configuration users run).
    with ControlPlane(tmp_path / "cp", apiserver_flags=("--watch-cache=false",)) as cp:
        for i in range(3):
            cp.create(node(f"gone-{i}", f"203.0.113.{10 + i}"))
        with cp.serve(tmp_path) as srv:
            eventually(lambda: len(served(srv, NODE_SET)) == 3, 30, what="first sync")
            with Sampler(srv.base + f"/targets/{NODE_SET}", interval=0.02) as sampler:
                watches = apiserver_watches(cp, "nodes")  # ours and the API server's own informer's
                srv.proc.send_signal(signal.SIGSTOP)
                try:
                    # Frozen, its watch runs out server-side (timeoutSeconds <= 10): cut.
                    eventually(lambda: apiserver_watches(cp, "nodes") < watches, 30, what="our node watch closed")
                    cp.set_status("Node", "gone-0", ready_status("False"))
                    cp.create(node("gone-new", "203.0.113.20"))
                    cp.etcd.compact(cp.etcd.revision())
                finally:
                    srv.proc.send_signal(signal.SIGCONT)
                want = {"203.0.113.11:10250": "gone-1", "203.0.113.12:10250": "gone-2", "203.0.113.20:10250": "gone-new"}
                eventually(lambda: served(srv, NODE_SET) == want, 30, what="changes made behind the compaction")
            assert metric_sum(srv, 'kube_http_sd_relists_total{source="nodes",reason="expired"}') >= 1
            answered = [(status, body) for status, body in sampler.samples if status != 0]  # 0: frozen, timed out
            assert answered and all(status == 200 and body for status, body in answered), answered[-5:]


def test_api_server_and_etcd_killed_and_restarted(tmp_path):
    with ControlPlane(tmp_path / "cp") as cp:
        cp.create(node("crash-1", "203.0.113.30"))
        with cp.serve(tmp_path) as srv:
            eventually(lambda: served(srv, NODE_SET) == {"203.0.113.30:10250": "crash-1"}, 30, what="first sync")
            for victim in ("kube-apiserver", "etcd"):
                with Sampler(srv.base + f"/targets/{NODE_SET}") as sampler:
                    if victim == "kube-apiserver":
                        cp.kill()
                        eventually(lambda: metric_sum(srv, 'kube_http_sd_source_failing{source="nodes"}') == 1, 60,
                                   what="outage visible in /metrics")
                        cp.start()
                    else:
                        # The API server stays up; its open watches may too (served from its
                        # cache), so the outage shows in its own readiness, not necessarily ours.
                        cp.etcd.kill()
                        eventually(lambda: cp.api.get("/readyz").status_code != 200, 60, what="etcd outage seen by the API server")
                        cp.etcd.start()
                    eventually(lambda: cp.api.get("/readyz").status_code == 200, 120, what="control plane ready again")
                    name = f"after-{victim}"
                    cp.create(node(name, "203.0.113.31" if victim == "etcd" else "203.0.113.32"))
                    eventually(lambda: name in served(srv, NODE_SET).values(), 60, what=f"a change after the {victim} restart")
                assert all(status == 200 and "203.0.113.30:10250" in {t for g in body for t in g["targets"]}
                           for status, body in sampler.samples), f"{victim}: targets not served throughout"
            assert srv.get("/readyz").status_code == 200


def apply_base(cp: ControlPlane) -> None:
    cp.ensure_namespace("monitoring")
    manifests = cp.kubectl("kustomize", str(Path(__file__).resolve().parent.parent / "deploy/kubernetes/base")).stdout
    cp.kubectl("apply", "-f", "-", input=manifests)


def test_the_shipped_rbac_for_real(cluster, tmp_path):
    cp = cluster
    apply_base(cp)
    token = cp.token("monitoring", "kube-http-sd")
    kubeconfig = cp.write_kubeconfig("kube-http-sd", token=token)
    cp.create(node("rbac-node", "203.0.113.40"))
    # Least privilege: the account cannot read a Secret.
    denied = httpx.get(cp.url + "/api/v1/namespaces/monitoring/secrets", verify=ssl.create_default_context(cafile=str(cp.ca_file)),
                       headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403, denied.text
    binding = cp.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kube-http-sd")
    with cp.serve(tmp_path, kubeconfig=kubeconfig) as srv:
        eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="synced with the ServiceAccount's token")
        assert "203.0.113.40:10250" in served(srv, NODE_SET)
        before = srv.get(f"/targets/{NODE_SET}").content

        cp.request("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kube-http-sd")
        # The open watches stay; the next request (watch timeouts are 5-10 s here) is refused.
        eventually(lambda: metric_sum(srv, 'kube_http_sd_source_errors_total{reason="forbidden"}') >= 1, 60,
                   what="403 counted in /metrics")
        eventually(lambda: "forbidden" in srv.get("/readyz").text, what="403 named by /readyz")
        page = srv.get("/", headers={"Accept": "text/html"}).text
        assert "forbidden" in page
        assert srv.get(f"/targets/{NODE_SET}").content == before  # the last targets stay served

        binding["metadata"] = {"name": "kube-http-sd", "labels": binding["metadata"].get("labels", {})}
        cp.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
        eventually(lambda: metric_sum(srv, "kube_http_sd_source_failing") == 0, 60, what="recovered")
        cp.create(node("rbac-after", "203.0.113.41"))
        eventually(lambda: "203.0.113.41:10250" in served(srv, NODE_SET), 30, what="watching again")


# The in-cluster files are read where the kubelet mounts them: a private mount namespace
# (util-linux `unshare`, as root) puts a directory of ours there for the server alone.
IN_CLUSTER = (
    "unshare", "--mount", "--propagation", "private", "sh", "-ec",
    'mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && '
    'mount --bind "$SA_DIR" /run/secrets/kubernetes.io/serviceaccount && exec "$@"', "sh",
)


def test_in_cluster_config_and_token_rotation(cluster, tmp_path):
    if os.geteuid() != 0:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("mounting the service-account directory needs root")
    cp = cluster
    apply_base(cp)
    cp.create(node("incluster-node", "203.0.113.50"))
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "ca.crt").write_bytes(cp.ca_file.read_bytes())
    (sa_dir / "namespace").write_text("monitoring")
    for name in ("token-1", "token-2"):
        cp.request("POST", "/api/v1/namespaces/monitoring/secrets",
                   {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}})
    (sa_dir / "token").write_text(cp.token("monitoring", "kube-http-sd", bound_secret="token-1"))
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(cp.port), "SA_DIR": str(sa_dir),
           "KUBECONFIG": ""}
    srv = Server("--config", config(tmp_path), env=env, command=(*IN_CLUSTER, sys.executable, "-m", "sd", "serve"))
    with srv:
        srv.wait_healthy()
        eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="in-cluster sync")
        assert "in-cluster" in srv.log()
        assert "203.0.113.50:10250" in served(srv, NODE_SET)
        # Rotation as the kubelet does it (a new file), then the old token revoked: deleting
        # the object it is bound to.
        new = sa_dir / "token.new"
        new.write_text(cp.token("monitoring", "kube-http-sd", bound_secret="token-2"))
        new.rename(sa_dir / "token")
        cp.delete("Secret", "token-1", "monitoring")
        # Open watches outlive their token; the next request (watch timeouts are 5-10 s here)
        # still carries the old one, is refused, and makes the server read the file again.
        eventually(lambda: metric_sum(srv, 'kube_http_sd_source_errors_total{reason="unauthorized"}') >= 1, 60,
                   what="the revoked token refused")
        restarts = metric_sum(srv, "kube_http_sd_watch_restarts_total")
        eventually(lambda: metric_sum(srv, "kube_http_sd_watch_restarts_total") >= restarts + 2, 60,
                   what="watches restarted with the new token")
        cp.create(node("incluster-after", "203.0.113.51"))
        eventually(lambda: "203.0.113.51:10250" in served(srv, NODE_SET), 30, what="a change seen with the new token")
        assert srv.get("/readyz").status_code == 200
        # Read again at the first 401, not a minute later: one refusal per request in flight.
        assert metric_sum(srv, 'kube_http_sd_source_errors_total{reason="unauthorized"}') <= 4


def test_a_kubeconfig_token_file_is_read_again_when_it_rotates(cluster, tmp_path):
    """A kubeconfig whose user names a ``tokenFile`` (a central instance's token mounted from a
    Secret): a rotated file is used at the first 401, as client-go's cached file token source
    does, not only after a restart."""
    cp = cluster
    apply_base(cp)
    for name in ("kubeconfig-token-1", "kubeconfig-token-2"):
        cp.request("POST", "/api/v1/namespaces/monitoring/secrets",
                   {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}})
    token_file = tmp_path / "token"
    token_file.write_text(cp.token("monitoring", "kube-http-sd", bound_secret="kubeconfig-token-1"))
    cp.create(node("tokenfile-node", "203.0.113.52"))
    with cp.serve(tmp_path, kubeconfig=cp.write_kubeconfig("token-file", token_file=token_file)) as srv:
        eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="synced with the file's token")
        assert "203.0.113.52:10250" in served(srv, NODE_SET)
        new = tmp_path / "token.new"
        new.write_text(cp.token("monitoring", "kube-http-sd", bound_secret="kubeconfig-token-2"))
        new.rename(token_file)
        cp.delete("Secret", "kubeconfig-token-1", "monitoring")
        eventually(lambda: metric_sum(srv, 'kube_http_sd_source_errors_total{reason="unauthorized"}') >= 1, 60,
                   what="the revoked token refused")
        cp.create(node("tokenfile-after", "203.0.113.53"))
        eventually(lambda: "203.0.113.53:10250" in served(srv, NODE_SET), 60, what="a change seen with the rotated token")
        assert srv.get("/readyz").status_code == 200


def test_every_manifest_without_a_crd_applies_to_the_real_api_server(cluster):
    cp = cluster
    cp.ensure_namespace("monitoring")
    deploy = Path(__file__).resolve().parent.parent / "deploy"
    overlays = sorted(p.parent for p in deploy.rglob("kustomization.yaml"))
    applied = 0
    for overlay in overlays:
        rendered = cp.kubectl("kustomize", str(overlay)).stdout
        docs = [d for d in rendered.split("\n---\n") if d.strip()]
        needs_crd = [d for d in docs if "monitoring.coreos.com/" in d]
        plain = [d for d in docs if d not in needs_crd]
        if not plain:
            continue
        done = cp.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input="\n---\n".join(plain), check=False)
        assert done.returncode == 0, f"{overlay.relative_to(deploy)}: {done.stderr}"
        applied += len(plain)
    assert applied >= 5


def test_a_pod_whose_status_update_empties_its_ips_loses_its_targets(cluster, tmp_path):
    # Prometheus' TestPodDiscoveryUpdateEmptyPodIP against the real thing: the API server
    # accepts podIP and podIPs cleared together, and writes the pod with neither. And a node
    # whose kubelet never posted: the API server writes daemonEndpoints.kubeletEndpoint.Port 0.
    cp = cluster
    cp.ensure_namespace("evicted")
    cp.create(pod("fluentd-evicted", ["203.0.113.60", "2001:db8::60"], namespace="evicted", node="cp-evicted-node"))
    bare = node("cp-no-kubelet", "203.0.113.61")
    del bare["status"]["daemonEndpoints"]
    cp.create(bare)
    assert cp.request("GET", "/api/v1/nodes/cp-no-kubelet")["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 0}}
    try:
        with cp.serve(tmp_path) as srv:
            eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="first sync")
            assert {"203.0.113.60:24231", "[2001:db8::60]:24231"} <= set(served(srv, POD_SET))
            assert served(srv, NODE_SET)["203.0.113.61:10250"] == "cp-no-kubelet"  # the set's port: none reported
            assert srv.get(f"/debug/sets/{NODE_SET}").json()["skipped"] == [], "Port 0 is none, not malformed"
            emptied = cp.set_status("Pod", "fluentd-evicted", {"podIP": None, "podIPs": None}, "evicted")
            assert "podIP" not in emptied["status"] and "podIPs" not in emptied["status"]
            eventually(lambda: not {"203.0.113.60:24231", "[2001:db8::60]:24231"} & set(served(srv, POD_SET)),
                       what="the pod's targets gone with its IPs")
            assert srv.get(f"/debug/sets/{POD_SET}").json()["skipped"] == []
            cp.set_status("Pod", "fluentd-evicted", {"podIP": "203.0.113.62", "podIPs": [{"ip": "203.0.113.62"}]}, "evicted")
            eventually(lambda: "203.0.113.62:24231" in served(srv, POD_SET), what="a new IP served")
    finally:
        cp.delete("Pod", "fluentd-evicted", "evicted", grace=0)
        cp.delete("Node", "cp-no-kubelet")
