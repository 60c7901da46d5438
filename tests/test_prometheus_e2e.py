"""End to end with a real Prometheus: API double → kube-http-sd (subprocess) → http_sd → Prometheus.

Everything is asserted through Prometheus' own HTTP API (`/api/v1/targets`, `/api/v1/query`),
polling with deadlines. Prometheus batches discovery updates (the discovery manager sends at
most every 5 s; the scrape manager applies them every 1 s with the hidden
`--scrape.discovery-reload-interval` flag when supported), so each change takes a few seconds
to show: cases share one stack per module where that is safe.

All scraped addresses are loopback: node IPs are in 127.0.0.0/8 (nothing listens on their
kubelet port, so those targets are simply down), and the Fluentd pod's IPs are 127.0.0.1 and
::1, where the test's own metrics endpoint listens.

The Prometheus is 3.x, built from its Go module by tools/build.sh (sdtest.upstream); one smoke
test runs Debian's 2.42, what distribution users have (scripts/test.sh installs it). Without
either these tests fail under CI.
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trustme
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sdtest.factories import make_node, make_pod, with_ready
from sdtest.helpers import FAST, ROOT, Server, eventually, free_port
from sdtest.kubeapi import FakeKubeAPI
from sdtest.promtest import DualStackMetrics, Prometheus, debian_prometheus, prometheus_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OLD, NEW = "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"


def prometheus_config(sd_base: str) -> dict[str, Any]:
    """Both sets over http_sd, refreshed every second, with relabeling on the __meta_* names."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "kubelet",
                "http_sd_configs": [{"url": f"{sd_base}/targets/kubelet", "refresh_interval": "1s"}],
                "relabel_configs": [
                    {"action": "labelmap", "regex": "__meta_kubernetes_node_label_(.+)"},
                    {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"},
                    {"source_labels": ["__meta_sd_ip_family"], "target_label": "ip_family"},
                ],
            },
            {
                "job_name": "fluentd",
                "http_sd_configs": [{"url": f"{sd_base}/targets/fluentd", "refresh_interval": "1s"}],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
                    {"source_labels": ["__meta_sd_ip_family"], "target_label": "ip_family"},
                ],
            },
        ],
    }


def counter(text: str, sample: str, **labels: str) -> float:
    """Sum of the samples called `sample` whose labels include `labels`, in exposition `text`."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def address(target: dict[str, Any]) -> str:
    return target["discoveredLabels"]["__address__"]


def kubelet_nodes(prom: Prometheus) -> dict[str, list[str]]:
    """Active kubelet targets: address → node labels (a list, so a doubled address shows)."""
    out: dict[str, list[str]] = {}
    for t in prom.active_targets("kubelet"):
        out.setdefault(address(t), []).append(t["labels"].get("node", "?"))
    return out


@dataclass
class Stack:
    api: FakeKubeAPI
    server: Server
    prom: Prometheus
    metrics: DualStackMetrics

    def logs(self) -> str:
        return f"--- kube-http-sd log ---\n{self.server.log()[-4000:]}"

    def wait(self, check: Any, what: str, timeout: float = 30) -> Any:
        return self.prom.eventually(check, what, timeout, extra=self.logs)


# -- one shared stack for the discovery / scrape cases -----------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    binary = prometheus_binary()  # fails (never skips) when Prometheus is missing
    tmp = tmp_path_factory.mktemp("prom-e2e")
    (tmp / "sd.yaml").write_text(FAST)
    with contextlib.ExitStack() as stack_:
        metrics = stack_.enter_context(DualStackMetrics())
        api = stack_.enter_context(FakeKubeAPI())
        api.add_many(
            [
                make_node("e2e-labels", ["127.0.0.11"], labels={"topology.kubernetes.io/zone": "zone-a"}),
                make_node("e2e-flappy", ["127.0.0.12"]),
                make_node("e2e-old", ["127.0.0.13"], created=OLD),
                make_node("e2e-down", ["127.0.0.14"], ready="False"),
                make_pod("fluentd-dual", ["127.0.0.1", "::1"], node="e2e-labels", port=metrics.port),
                make_pod("web", ["127.0.0.50"], labels={"app.kubernetes.io/name": "web"}),
            ]
        )
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        server = stack_.enter_context(Server("--kubeconfig", kubeconfig, "--config", str(tmp / "sd.yaml")))
        server.wait_healthy()
        eventually(lambda: server.get("/readyz").status_code == 200, timeout=30, what="kube-http-sd first sync")
        prom = stack_.enter_context(Prometheus(prometheus_config(server.base), tmp / "prometheus", binary))
        prom.wait_ready()
        s = Stack(api, server, prom, metrics)
        s.wait(
            lambda: set(kubelet_nodes(prom)) == {"127.0.0.11:10250", "127.0.0.12:10250", "127.0.0.13:10250"}
            and len(prom.active_targets("fluentd")) == 2,
            "Prometheus discovers the initial targets",
        )
        yield s


def test_discovered_labels_carry_meta_names_and_relabeling_uses_them(stack):
    prom = stack.prom
    (node,) = [t for t in prom.active_targets("kubelet") if address(t) == "127.0.0.11:10250"]
    discovered = node["discoveredLabels"]
    assert {
        "__address__": "127.0.0.11:10250",
        "__meta_kubernetes_node_name": "e2e-labels",
        "__meta_kubernetes_node_provider_id": "aws:///eu-west-1a/i-e2e-labels",
        "__meta_kubernetes_node_label_topology_kubernetes_io_zone": "zone-a",
        "__meta_kubernetes_node_labelpresent_topology_kubernetes_io_zone": "true",
        "__meta_kubernetes_node_address_InternalIP": "127.0.0.11",
        "__meta_kubernetes_node_address_Hostname": "e2e-labels",
        "__meta_kubernetes_node_condition_ready": "true",
        "__meta_kubernetes_node_condition_memorypressure": "false",
        "__meta_sd_ip_family": "ipv4",
        "instance": "e2e-labels",
    }.items() <= discovered.items(), discovered
    # After relabeling: the labelmap'd node labels, node/ip_family from __meta_*, no __meta_* left.
    assert {
        "job": "kubelet",
        "instance": "e2e-labels",
        "node": "e2e-labels",
        "ip_family": "ipv4",
        "topology_kubernetes_io_zone": "zone-a",
        "kubernetes_io_hostname": "e2e-labels",
        "kubernetes_io_os": "linux",
    }.items() <= node["labels"].items(), node["labels"]
    assert not [k for k in node["labels"] if k.startswith("__")], node["labels"]

    # Not Ready from the start, or not matching the fluentd selector: never discovered.
    assert "127.0.0.14:10250" not in kubelet_nodes(prom)
    fluentd = {address(t): t for t in prom.active_targets("fluentd")}
    port = stack.metrics.port
    assert set(fluentd) == {f"127.0.0.1:{port}", f"[::1]:{port}"}
    for addr, ip, family in ((f"127.0.0.1:{port}", "127.0.0.1", "ipv4"), (f"[::1]:{port}", "::1", "ipv6")):
        t = fluentd[addr]
        assert {
            "__meta_kubernetes_namespace": "logging",
            "__meta_kubernetes_pod_name": "fluentd-dual",
            "__meta_kubernetes_pod_ip": ip,
            "__meta_kubernetes_pod_node_name": "e2e-labels",
            "__meta_kubernetes_pod_ready": "true",
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_controller_kind": "DaemonSet",
            "__meta_kubernetes_pod_container_port_name": "monitor",
            "__meta_kubernetes_pod_container_port_number": str(port),
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "fluentd",
            "__meta_sd_ip_family": family,
        }.items() <= t["discoveredLabels"].items(), t["discoveredLabels"]
        assert {
            "job": "fluentd",
            "instance": addr,
            "namespace": "logging",
            "pod": "fluentd-dual",
            "node": "e2e-labels",
            "ip_family": family,
        }.items() <= t["labels"].items(), t["labels"]


def test_prometheus_3_is_answered_the_plain_body(stack):
    """Prometheus sends no Accept-Encoding: every /targets answer it got was plain (only it asks
    this stack's server for targets), and it read them (the targets above)."""
    text = stack.server.get("/metrics").text
    route = {"route": "/targets/{name}", "code": "200"}
    assert counter(text, "kube_http_sd_http_requests_total", **route, encoding="identity") >= 2
    assert counter(text, "kube_http_sd_http_requests_total", **route, encoding="gzip") == 0


def test_node_turning_not_ready_leaves_prometheus_active_targets(stack):
    api, prom = stack.api, stack.prom
    node = api.get("Node", "e2e-flappy")
    stack.wait(lambda: "127.0.0.12:10250" in kubelet_nodes(prom), "e2e-flappy is an active target")
    api.modify(with_ready(node, "False"))
    stack.wait(lambda: "127.0.0.12:10250" not in kubelet_nodes(prom), "NotReady e2e-flappy leaves the active targets")
    assert kubelet_nodes(prom)["127.0.0.11:10250"] == ["e2e-labels"]  # the others stay


def test_ip_reuse_shows_one_active_target_labelled_with_the_new_node(stack):
    api, prom = stack.api, stack.prom
    addr = "127.0.0.13:10250"
    stack.wait(lambda: kubelet_nodes(prom).get(addr) == ["e2e-old"], "e2e-old is an active target")
    seen: list[list[str]] = []

    def only_new() -> bool:
        nodes = kubelet_nodes(prom).get(addr, [])
        seen.append(nodes)
        return nodes == ["e2e-new"]

    api.modify(with_ready(api.get("Node", "e2e-old"), "Unknown"))
    api.add(make_node("e2e-new", ["127.0.0.13"], created=NEW))
    stack.wait(only_new, "one target for the reused IP, labelled e2e-new")
    assert all(len(nodes) <= 1 for nodes in seen), f"address doubled at some point: {seen}"
    (target,) = [t for t in prom.active_targets("kubelet") if address(t) == addr]
    assert target["labels"]["instance"] == "e2e-new"
    assert target["discoveredLabels"]["__meta_kubernetes_node_name"] == "e2e-new"
    assert target["discoveredLabels"]["__meta_kubernetes_node_condition_ready"] == "true"
    instances = Counter(t["labels"]["instance"] for t in prom.active_targets("kubelet"))
    assert "e2e-old" not in instances and instances["e2e-new"] == 1, instances


def test_fluentd_ipv4_and_bracketed_ipv6_targets_are_scraped(stack):
    prom, port = stack.prom, stack.metrics.port
    v4, v6 = f"127.0.0.1:{port}", f"[::1]:{port}"

    def both_up() -> bool:
        targets = {address(t): t for t in prom.active_targets("fluentd")}
        assert set(targets) == {v4, v6}, targets
        assert targets[v6]["scrapeUrl"] == f"http://[::1]:{port}/metrics"
        return all(t["health"] == "up" for t in targets.values())

    stack.wait(both_up, "both fluentd targets healthy in /api/v1/targets")
    stack.wait(
        lambda: {r["metric"]["instance"]: r["value"][1] for r in prom.query('up{job="fluentd"}')} == {v4: "1", v6: "1"},
        'up{job="fluentd"} == 1 for both instances',
    )
    # The samples prove which socket answered each target: [::1] really went over IPv6.
    stack.wait(
        lambda: {r["metric"]["instance"]: r["metric"]["listener"] for r in prom.query("e2e_fluentd_records_total")}
        == {v4: "ipv4", v6: "ipv6"},
        "each instance's samples come from its own family's listener",
    )
    assert {"127.0.0.1", "::1"} <= set(stack.metrics.peers)


# -- the 503 case: its own stack, since it restarts the server ----------------------------


def snapshot(prom: Prometheus) -> list[tuple[str, str]]:
    """Active targets as (pool, discovered labels): what Prometheus currently believes."""
    return sorted((t["scrapePool"], json.dumps(t["discoveredLabels"], sort_keys=True)) for t in prom.active_targets())


def addresses(prom: Prometheus) -> set[tuple[str, str]]:
    return {(t["scrapePool"], address(t)) for t in prom.active_targets()}


def test_prometheus_keeps_targets_while_server_answers_503_then_converges(tmp_path):
    binary = prometheus_binary()
    config = tmp_path / "sd.yaml"
    config.write_text(FAST)
    first = [
        make_node("n-a", ["127.0.0.41"]),
        make_node("n-b", ["127.0.0.42"]),
        make_pod("fluentd-x", ["127.0.0.43"]),
    ]
    with contextlib.ExitStack() as es:
        api1 = es.enter_context(FakeKubeAPI())
        api1.add_many(first)
        srv1 = es.enter_context(Server("--kubeconfig", api1.write_kubeconfig(tmp_path / "kc1"), "--config", str(config)))
        srv1.wait_healthy()
        eventually(lambda: srv1.get("/readyz").status_code == 200, timeout=30, what="first server synced")
        prom = es.enter_context(Prometheus(prometheus_config(srv1.base), tmp_path / "prometheus", binary))
        prom.wait_ready()
        expected = {("kubelet", "127.0.0.41:10250"), ("kubelet", "127.0.0.42:10250"), ("fluentd", "127.0.0.43:24231")}
        prom.eventually(lambda: addresses(prom) == expected, "Prometheus discovers the first state", extra=srv1.log)
        before = snapshot(prom)

        # Same port, but its API server is not up yet: every /targets/* answers 503.
        srv1.stop()
        api2 = FakeKubeAPI(port=free_port())
        srv2 = es.enter_context(
            Server("--kubeconfig", api2.write_kubeconfig(tmp_path / "kc2"), "--config", str(config), port=srv1.port)
        )
        srv2.wait_healthy()
        assert srv2.get("/targets/kubelet").status_code == 503
        assert srv2.get("/targets/fluentd").status_code == 503
        route_503 = {"route": "/targets/{name}", "code": "503"}
        base_503 = counter(srv2.get("/metrics").text, "kube_http_sd_http_requests_total", **route_503)
        base_failures = counter(httpx.get(prom.base + "/metrics", timeout=5).text, "prometheus_sd_http_failures_total")

        # Prometheus' discovery manager forwards updates at most every 5 s: a `200 []` from a
        # stand-in server empties its active targets ~5 s (5 refreshes) later. So watch through
        # >= 16 refreshes of the 503s (2 sets, 1 s each: ~8 s) before calling them harmless.
        seen: list[list[tuple[str, str]]] = []

        def refused_long_enough() -> bool:
            seen.append(snapshot(prom))
            refused = counter(srv2.get("/metrics").text, "kube_http_sd_http_requests_total", **route_503) - base_503
            return refused >= 16

        prom.eventually(refused_long_enough, "Prometheus refreshes against the 503s", extra=srv2.log)
        failures = counter(httpx.get(prom.base + "/metrics", timeout=5).text, "prometheus_sd_http_failures_total")
        assert failures - base_failures >= 2, (base_failures, failures)
        changed = [s for s in seen if s != before]
        assert not changed, f"Prometheus changed its targets during the 503s: {changed[0]} != {before}\n{prom.log_tail()}"
        assert snapshot(prom) == before
        assert srv2.get("/readyz").status_code == 503  # still waiting: the window was all 503

        # The API server comes up with a changed cluster: Prometheus converges to it.
        api2.add_many([first[0], make_node("n-c", ["127.0.0.44"]), make_pod("fluentd-x", ["127.0.0.45"])])
        es.callback(api2.stop)
        api2.start()
        after = {("kubelet", "127.0.0.41:10250"), ("kubelet", "127.0.0.44:10250"), ("fluentd", "127.0.0.45:24231")}
        prom.eventually(lambda: addresses(prom) == after, "Prometheus converges to the new state", extra=srv2.log)
        assert {t["labels"]["instance"] for t in prom.active_targets("kubelet")} == {"n-a", "n-c"}


def test_prometheus_shards_reading_shard_urls_discover_what_hashmod_keeps(tmp_path):
    """N jobs that read the full body and keep their share with the usual hashmod rule
    discover exactly what N jobs reading ?shards=N&shard=I discover. Every scrape goes to
    the loopback discard port: the targets themselves (documentation addresses) are never
    contacted."""
    shards = 3
    items = [dict(make_node(f"n{i}", [f"127.0.1.{i + 1}"]), kind="Node") for i in range(30)]
    items += [dict(make_pod(f"f{i}", [f"198.51.100.{i + 1}", f"2001:db8::{i + 1:x}"]), kind="Pod") for i in range(15)]
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "List", "items": items}))
    to_loopback = [
        {"source_labels": ["__address__"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": "127.0.0.1:9"},
    ]
    jobs = []
    with Server("--snapshot", str(snapshot)) as server:
        server.wait_healthy()
        for set_name in ("kubelet", "fluentd"):
            for i in range(shards):
                keep = [
                    {"source_labels": ["__address__"], "modulus": shards, "target_label": "__tmp_hash", "action": "hashmod"},
                    {"source_labels": ["__tmp_hash"], "regex": str(i), "action": "keep"},
                ]
                jobs.append({
                    "job_name": f"{set_name}-full-{i}",
                    "http_sd_configs": [{"url": f"{server.base}/targets/{set_name}", "refresh_interval": "1s"}],
                    "relabel_configs": copy.deepcopy(keep + to_loopback),  # no YAML aliases
                })
                jobs.append({
                    "job_name": f"{set_name}-shard-{i}",
                    "http_sd_configs": [{"url": f"{server.base}/targets/{set_name}?shards={shards}&shard={i}", "refresh_interval": "1s"}],
                    "relabel_configs": copy.deepcopy(keep + to_loopback),  # keeps all of it, as the contract promises
                })
        config = {"global": {"scrape_interval": "1m", "scrape_timeout": "1s"}, "scrape_configs": jobs}
        with Prometheus(config, tmp_path / "prometheus") as prom:
            prom.wait_ready()

            def discovered() -> dict[str, set[str]]:
                out: dict[str, set[str]] = {job["job_name"]: set() for job in jobs}
                for target in prom.active_targets():
                    # The original address, kept in instance before the rewrite to loopback
                    # (this Prometheus shows the rewritten one in discoveredLabels too).
                    out[target["scrapePool"]].add(target["labels"]["instance"])
                return out

            expected = {"kubelet": 30, "fluentd": 30}
            pools = prom.eventually(
                lambda: (d := discovered())
                and all(sum(len(d[f"{s}-{kind}-{i}"]) for i in range(shards)) == n for s, n in expected.items() for kind in ("full", "shard"))
                and d,
                "every job discovered its share", 30, extra=lambda: repr({k: len(v) for k, v in discovered().items()}),
            )
            for set_name in expected:
                for i in range(shards):
                    assert pools[f"{set_name}-shard-{i}"] == pools[f"{set_name}-full-{i}"], (set_name, i)
                    assert pools[f"{set_name}-shard-{i}"], "each shard has targets at this size"
            assert any(t.startswith("[2001:db8::") for i in range(shards) for t in pools[f"fluentd-shard-{i}"])


def test_the_shipped_kubelet_jobs_label_targets_as_kube_prometheus_stack_does(tmp_path):
    """config/prometheus.yml's three kubelet jobs, run by a real Prometheus against the
    example snapshot: every target has job="kubelet" and the metrics_path of its path,
    the labels kube-prometheus' rules and dashboards select on. Every scrape goes to the
    loopback discard port: the example's documentation addresses are never contacted."""
    shipped = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    (tmp_path / "token").write_text("stand-in-token\n")
    paths = {"kubelet": "/metrics", "kubelet-cadvisor": "/metrics/cadvisor", "kubelet-probes": "/metrics/probes"}
    with Server("--snapshot", str(ROOT / "examples" / "cluster.json")) as server:
        server.wait_healthy()
        jobs = []
        for job in shipped["scrape_configs"]:
            if job["job_name"] not in paths:
                continue
            job = copy.deepcopy(job)  # the shipped file shares parts through YAML aliases
            job["http_sd_configs"] = [{"url": f"{server.base}/targets/kubelet", "refresh_interval": "1s"}]
            job["tls_config"]["ca_file"] = str(tmp_path / "ca.crt")
            job["authorization"]["credentials_file"] = str(tmp_path / "token")
            job["relabel_configs"].append({"target_label": "__address__", "replacement": "127.0.0.1:9"})
            jobs.append(job)
        assert [j["job_name"] for j in jobs] == list(paths)
        config = {"global": {"scrape_interval": "1m", "scrape_timeout": "1s"}, "scrape_configs": jobs}
        with Prometheus(config, tmp_path / "prometheus") as prom:
            prom.wait_ready()
            targets = prom.eventually(lambda: len(prom.active_targets()) == 3 * 4 and prom.active_targets(),
                                      "four nodes in each of the three jobs", extra=server.log)
    seen = {}
    for target in targets:
        labels = target["labels"]
        seen.setdefault(target["scrapePool"], set()).add((labels["job"], labels["metrics_path"], labels["node"], labels["instance"]))
    nodes = ("v6-only-1", "worker-1", "worker-2", "worker-3")
    assert seen == {pool: {("kubelet", path, n, n) for n in nodes} for pool, path in paths.items()}


def test_debian_prometheus_2_42_discovers_both_sets(tmp_path):
    """Smoke run on the Prometheus distribution users install (Debian's 2.42)."""
    binary = debian_prometheus()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    assert "version 2.42" in version, version
    config = tmp_path / "sd.yaml"
    config.write_text(FAST)
    with contextlib.ExitStack() as es:
        api = es.enter_context(FakeKubeAPI())
        api.add_many([make_node("deb-a", ["127.0.0.61"]), make_node("deb-b", ["127.0.0.62"], ready="False"),
                      make_pod("fluentd-deb", ["127.0.0.63", "::1"])])
        srv = es.enter_context(Server("--kubeconfig", api.write_kubeconfig(tmp_path / "kc"), "--config", str(config)))
        srv.wait_healthy()
        prom = es.enter_context(Prometheus(prometheus_config(srv.base), tmp_path / "prometheus", binary))
        prom.wait_ready()
        want = {("kubelet", "127.0.0.61:10250"), ("fluentd", "127.0.0.63:24231"), ("fluentd", "[::1]:24231")}
        prom.eventually(lambda: addresses(prom) == want, "Debian's Prometheus discovers both sets", extra=srv.log)
        assert {t["labels"]["node"] for t in prom.active_targets("kubelet")} == {"deb-a"}


class Recorder(ThreadingHTTPServer):
    """A loopback http_sd endpoint that answers ``[]`` after ``delay`` seconds and records each
    request: (headers, seconds until the client hung up or was answered, whether it was answered)."""

    daemon_threads = True

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[tuple[dict[str, str], float, bool]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                start = time.monotonic()
                headers = {k.lower(): v for k, v in self.headers.items()}
                answered = True
                if recorder.delay:
                    # The client's timeout closes the connection: readable with nothing to read.
                    self.connection.settimeout(recorder.delay)
                    try:
                        answered = self.connection.recv(1) != b""
                    except TimeoutError:
                        answered = True
                if answered:
                    try:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", "2")
                        self.end_headers()
                        self.wfile.write(b"[]")
                    except OSError:
                        answered = False
                recorder.requests.append((headers, time.monotonic() - start, answered))

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/targets/kubelet"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        super().__exit__(*exc)


def test_what_prometheus_3_sends_to_an_http_sd_server(tmp_path):
    """The README's claims about Prometheus' requests, checked against the built 3.x: its headers
    (no Accept-Encoding: it never asks for gzip, so the plain body is what it reads) and its
    timeout (the refresh interval: a slower answer is abandoned and the last targets kept)."""
    binary = prometheus_binary()
    with Recorder() as fast, Recorder(delay=5.0) as slow:
        config = {
            "global": {"scrape_interval": "1m"},
            "scrape_configs": [
                {"job_name": "fast", "http_sd_configs": [{"url": fast.url, "refresh_interval": "1s"}]},
                {"job_name": "slow", "http_sd_configs": [{"url": slow.url, "refresh_interval": "2s"}]},
            ],
        }
        with Prometheus(config, tmp_path / "prometheus", binary) as prom:
            prom.wait_ready()
            prom.eventually(lambda: len(fast.requests) >= 2 and slow.requests, "requests from both jobs", timeout=30)
        headers, _, _ = fast.requests[0]
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()[2]
        assert headers["user-agent"] == f"Prometheus/{version}"
        assert headers["accept"] == "application/json"
        assert headers["x-prometheus-refresh-interval-seconds"] == "1"
        assert "accept-encoding" not in headers, headers
        assert "authorization" not in headers
        _, waited, answered = slow.requests[0]
        assert not answered and 1.5 < waited < 4.5, (waited, answered)  # gave up after its 2 s refresh interval
