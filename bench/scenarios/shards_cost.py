"""shards_cost: what discovery costs the API server and the discovery side for N Prometheus shards,
each with its own kubernetes_sd (baseline) or each reading its shard of one kube-http-sd (ours),
on a real kube-apiserver (bench/README.md; Prometheus issue #15402).

Every Prometheus scrapes nothing: its scrape interval is an hour and every address is rewritten to
a closed loopback port, so both setups pay for discovery and relabeling only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from contextlib import ExitStack
from typing import Any

import httpx

from bench import workload as W
from bench.harness import CONFIG_YAML, MB, PY, Context, free_port, log, wait_synced
from sdtest.controlplane import ControlPlane
from sdtest.promtest import Prometheus, prometheus_binary

CLOSED_PORT = free_port()
# http_sd's refresh interval: a freshness-minded setting (Prometheus' default is 60s). Every refresh
# hands Prometheus the whole shard, which it re-processes: at 1s and 5,000 nodes its memory and the
# time to apply a change grow (bench/README.md).
REFRESH = "5s"
POD_SELECTOR = "app.kubernetes.io/name=fluentd"


def hashmod(address: str, n: int) -> int:
    return int.from_bytes(hashlib.md5(address.encode()).digest()[8:], "big") % n


def relabel(n: int) -> list[dict[str, Any]]:
    """The usual sharding rule, then the address sent nowhere (``instance`` keeps it)."""
    return [
        {"source_labels": ["__address__"], "modulus": n, "target_label": "__tmp_hash", "action": "hashmod"},
        {"source_labels": ["__tmp_hash"], "regex": "$(SHARD)", "action": "keep"},
        {"source_labels": ["__address__"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": f"127.0.0.1:{CLOSED_PORT}"},
    ]


def prometheus_config(setup: str, n: int, shard: int, kubeconfig: str, sd_base: str) -> dict[str, Any]:
    if setup == "kubernetes_sd":
        k8s = {"kubeconfig_file": kubeconfig}
        jobs = [
            {"job_name": "kubelet", "kubernetes_sd_configs": [{**k8s, "role": "node"}]},
            {"job_name": "fluentd", "kubernetes_sd_configs": [{**k8s, "role": "pod", "selectors": [
                {"role": "pod", "label": POD_SELECTOR}]}]},
        ]
        extra = [{"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "monitor|", "action": "keep"}]
    else:
        jobs = [{"job_name": name, "http_sd_configs": [{"url": f"{sd_base}/targets/{name}?shards={n}&shard={shard}",
                                                        "refresh_interval": REFRESH}]} for name in ("kubelet", "fluentd")]
        extra = []
    for job in jobs:
        job["relabel_configs"] = [dict(r, regex=str(shard)) if r.get("regex") == "$(SHARD)" else r
                                  for r in extra + relabel(n)]
    return {"global": {"scrape_interval": "1h", "scrape_timeout": "10s"}, "scrape_configs": jobs}


class ApiServerMeter:
    """The API server's own numbers: registered watchers, bytes of watch events sent, CPU, peak RSS."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.pid = cp.proc.pid
        self._peak = 0
        self._stop = threading.Event()

    def metrics(self) -> dict[str, float]:
        """Watches of nodes and pods being served (the API server's own informers' included: the
        scenario reports differences), and the bytes sent for them: watch events (streaming lists'
        initial events too) plus LIST responses."""
        out = {"watchers": 0.0, "watch_bytes": 0.0}
        for line in self.cp.api.get("/metrics").text.splitlines():
            if 'resource="nodes"' not in line and 'resource="pods"' not in line:
                continue
            value = float(line.rsplit(" ", 1)[1])
            if line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line:
                out["watchers"] += value
            elif line.startswith("apiserver_watch_events_sizes_sum{") or (
                    line.startswith("apiserver_response_sizes_sum{") and 'verb="LIST"' in line):
                out["watch_bytes"] += value
        return out

    def cpu(self) -> float:
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100

    def peak_during(self) -> "ApiServerMeter":
        self._peak = 0
        self._stop.clear()
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self._peak = max(self._peak, rss(self.pid))

    def peak(self) -> float:
        self._stop.set()
        return self._peak / MB


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def active(prom: Prometheus, pool: str) -> list[str]:
    resp = httpx.get(prom.base + "/api/v1/targets", params={"state": "active", "scrapePool": pool}, timeout=30)
    return [t["labels"]["instance"] for t in resp.json()["data"]["activeTargets"]]


def run(ctx: Context) -> None:
    sz, sc = ctx.sizes, "shards_cost"
    rows: dict[tuple[int, str], Any] = {}
    for n in sz.shard_counts:
        for key, unit, note in (
            ("watchers", "", "Node and Pod watches the API server serves for this setup (apiserver_longrunning_requests)"),
            ("sync_bytes", "MB", "bytes the API server sent for nodes and pods in the initial sync (watch events, "
                                 "apiserver_watch_events_sizes_sum, + LIST responses, apiserver_response_sizes_sum)"),
            ("sync_cpu", "s", "API server CPU seconds, spawn -> every shard has its share"),
            ("sync_time", "s", "spawn -> every shard has its share of both jobs"),
            ("churn_bytes", "MB", f"bytes of watch events sent during {sz.churn_seconds}s of churn"),
            ("churn_cpu", "s", f"API server CPU seconds during {sz.churn_seconds}s of churn"),
            ("apiserver_rss", "MB", "API server peak RSS, sync and churn"),
            ("discovery_rss", "MB", "discovery side RSS after churn: the Prometheus processes (+ kube-http-sd)"),
            ("new_node", "s", "a new Ready node created -> active in the shard that owns it"),
        ):
            rows[(n, key)] = ctx.metric(sc, f"N={n}: {key}", unit, "-", note=note if n == sz.shard_counts[0] else "")
    cp = ControlPlane(ctx.tmp / "controlplane-shards")
    try:
        cp.start()
        cp.ensure_namespace("logging")
        cp.load(W.nodes(sz.nodes) + W.pods(sz.pods))
        log(f"{sc}: {sz.nodes} nodes + {sz.pods} pods in the API server")
        config = ctx.tmp / "sd-shards.yaml"
        config.write_text(CONFIG_YAML)
        meter = ApiServerMeter(cp)
        serial = 0
        for n in sz.shard_counts:
            got: dict[str, dict[str, float]] = {}
            for setup in ("kubernetes_sd", "kube-http-sd"):
                serial += 1
                got[setup] = measure(ctx, cp, meter, setup, n, str(config), serial)
                log(f"{sc} N={n} {setup}: {got[setup]}")
            for key in got["kube-http-sd"]:
                rows[(n, key)].add(got["kube-http-sd"][key], got["kubernetes_sd"][key])
    finally:
        cp.stop()


def measure(ctx: Context, cp: ControlPlane, meter: ApiServerMeter, setup: str, n: int, config: str, serial: int) -> dict[str, float]:
    sz = ctx.sizes
    out: dict[str, float] = {}
    with ExitStack() as stack:
        before, cpu0 = meter.metrics(), meter.cpu()
        meter.peak_during()
        t0 = time.monotonic()
        pids: list[int] = []
        sd_base = ""
        if setup == "kube-http-sd":
            port = free_port()
            proc = ctx.spawn("server", [PY, "-m", "sd", "serve", "--kubeconfig", str(cp.kubeconfig), "--config", config,
                                        "--listen", f"127.0.0.1:{port}", "--log-level", "warning"])
            stack.callback(proc.stop)
            wait_synced(proc, port)
            sd_base, pids = f"http://127.0.0.1:{port}", [proc.pid]
        proms = []
        for shard in range(n):
            prom = stack.enter_context(Prometheus(prometheus_config(setup, n, shard, str(cp.kubeconfig), sd_base),
                                                  ctx.tmp / f"prom-{serial}-{shard}", prometheus_binary()))
            proms.append(prom)
        for prom in proms:
            prom.wait_ready(60)
            pids.append(prom.proc.pid)
        nodes = sz.nodes
        deadline = time.monotonic() + 300
        while sum(len(active(p, "kubelet")) for p in proms) < nodes or not all(active(p, "fluentd") for p in proms):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{setup} N={n}: shards not synced in 300 s")
            time.sleep(0.2)
        out["sync_time"] = time.monotonic() - t0
        mid, cpu1 = meter.metrics(), meter.cpu()
        out["watchers"] = mid["watchers"] - before["watchers"]
        out["sync_bytes"] = (mid["watch_bytes"] - before["watch_bytes"]) / MB
        out["sync_cpu"] = cpu1 - cpu0
        churn(cp, sz.churn_seconds, serial)
        after, cpu2 = meter.metrics(), meter.cpu()
        out["churn_bytes"] = (after["watch_bytes"] - mid["watch_bytes"]) / MB
        out["churn_cpu"] = cpu2 - cpu1
        out["apiserver_rss"] = meter.peak()
        out["discovery_rss"] = sum(rss(pid) for pid in pids) / MB
        new = sz.nodes + serial
        address = f"{W.node_ip(new)}:10250"
        owner = proms[hashmod(address, n)]
        t1 = time.monotonic()
        cp.create(W.node(new))
        while address not in active(owner, "kubelet"):
            if time.monotonic() > t1 + 60:
                raise RuntimeError(f"{setup} N={n}: the new node never reached its shard")
            time.sleep(0.05)
        out["new_node"] = time.monotonic() - t1
        cp.delete("Node", W.node_name(new))
    return out


def churn(cp: ControlPlane, seconds: float, serial: int) -> None:
    """For ``seconds``, five times a second: one node turns NotReady and the previous one Ready
    again, and one pod is rolled (deleted at once, a replacement with a new name created). Every
    node is Ready again at the end."""
    def ready(j: int, status: str) -> None:
        cp.set_status("Node", W.node_name(j % 1000), {"conditions": [{"type": "Ready", "status": status, "reason": "Bench"}]})

    live = {i: W.pod(i)["metadata"]["name"] for i in range(1000)}
    for name in cp.request("GET", "/api/v1/namespaces/logging/pods")["items"]:
        base = int(name["metadata"]["name"].split("-")[1])
        if base in live:
            live[base] = name["metadata"]["name"]
    end = time.monotonic() + seconds
    tick, i = time.monotonic(), 0
    while time.monotonic() < end:
        ready(i, "False")
        if i:
            ready(i - 1, "True")
        j = i % 1000
        cp.delete("Pod", live[j], "logging", grace=0)
        replacement = W.pod(j)
        live[j] = replacement["metadata"]["name"] = f"{replacement['metadata']['name']}-r{serial}-{i}"
        cp.create(replacement)
        i += 1
        tick += 0.2
        time.sleep(max(0.0, tick - time.monotonic()))
    ready(i - 1, "True")
