"""real_apiserver: the initial sync and a Ready flip's freshness against a real kube-apiserver and
etcd (sdtest.controlplane, built by tools/build.sh), not the double (bench/README.md)."""

from __future__ import annotations

import json
import time

from bench import workload as W
from bench.harness import CONFIG_YAML, MB, PY, Client, Context, free_port, log, pct, wait_synced
from sdtest.controlplane import ControlPlane

PACE_SECONDS = 0.25


def run(ctx: Context) -> None:
    sz, runs, sc = ctx.sizes, ctx.runs, "real_apiserver"
    m_sync = ctx.metric(sc, "sync time vs floor", "s", "<= 1.5x", lambda o, b, r: r is not None and r <= 1.5,
                        note="spawn -> first 200 on both sets (ours) vs spawn -> both streaming lists read and "
                             "orjson-parsed to their initial-events-end bookmark (bench/base_stream.py)")
    m_rss = ctx.metric(sc, "peak RSS after sync (VmHWM)", "MB", "< 110 MB", lambda o, b, r: o < 110,
                       note="baseline: the floor process's peak RSS")
    m_p50 = ctx.metric(sc, "Ready flip -> served, p50", "ms", "-", ratio=False,
                       note="status PATCH sent -> /targets/kubelet changed (polled with If-None-Match); "
                            "baseline: the PATCH's own round trip")
    m_p99 = ctx.metric(sc, "Ready flip -> served, p99", "ms", "< 250 ms", lambda o, b, r: o < 250, ratio=False)
    cp = ControlPlane(ctx.tmp / "controlplane")
    try:
        cp.start()
        cp.ensure_namespace("logging")
        t0 = time.monotonic()
        cp.load(W.nodes(sz.nodes) + W.pods(sz.pods))
        log(f"{sc}: created {sz.nodes} nodes + {sz.pods} pods through the API in {time.monotonic() - t0:.0f}s (not counted)")
        config = ctx.tmp / "sd-real.yaml"
        config.write_text(CONFIG_YAML)
        for run in range(runs):
            port = free_port()
            proc = ctx.spawn("server", [PY, "-m", "sd", "serve", "--kubeconfig", str(cp.kubeconfig), "--config", str(config),
                                        "--listen", f"127.0.0.1:{port}", "--log-level", "warning"])
            try:
                with ctx.profiled(proc.pid, f"{sc}-run{run}", run == 0):
                    ours = wait_synced(proc, port) - proc.t_spawn
                hwm = proc.mem()["VmHWM"] / MB
                if run == 0:
                    flips, patches = freshness(cp, port, sz.real_flips)
                    m_p50.add(pct(flips, 50), pct(patches, 50))
                    m_p99.add(pct(flips, 99), pct(patches, 99))
            finally:
                proc.stop()
            floor = ctx.baseline("stream-floor", "base_stream", "--kubeconfig", str(cp.kubeconfig), pipe_stdout=True)
            try:
                doc = json.loads(floor.line(timeout=300))
            finally:
                floor.stop()
            if doc["nodes"] != sz.nodes or doc["pods"] != sz.pods:
                raise RuntimeError(f"the floor read {doc['nodes']} nodes, {doc['pods']} pods")
            base = doc["done"] - floor.t_spawn
            m_sync.add(ours, base)
            m_rss.add(hwm, doc["maxrss_kb"] * 1024 / MB)
            log(f"{sc} run {run + 1}/{runs}: ours {ours:.3f}s (VmHWM {hwm:.0f} MB), floor {base:.3f}s")
    finally:
        cp.stop()


def freshness(cp: ControlPlane, port: int, n: int) -> tuple[list[float], list[float]]:
    """``n`` Ready flips (False, then True again, over the first nodes) through the status
    subresource, PACE_SECONDS apart (back to back they would measure the renderer's burst limit,
    one render per 0.1 s): ms from sending the PATCH to /targets/kubelet showing it, and the
    PATCH's own ms."""
    client = Client(port)
    try:
        status, resp, body = client.get("/targets/kubelet")
        etag = resp.getheader("ETag") or ""
        seen: list[float] = []
        t0 = 0.0
        patched: list[float] = []
        for i in range(n):
            name = W.node_name(i // 2)
            ready = "False" if i % 2 == 0 else "True"
            needle = b'"__meta_kubernetes_node_name":"' + name.encode() + b'"'
            time.sleep(max(0.0, t0 + PACE_SECONDS - time.monotonic()) if i else 0.0)
            t0 = time.monotonic()
            cp.set_status("Node", name, {"conditions": [{"type": "Ready", "status": ready, "reason": "Bench",
                                                          "lastHeartbeatTime": W.heartbeat_time(i),
                                                          "lastTransitionTime": W.heartbeat_time(i)}]})
            patched.append((time.monotonic() - t0) * 1000)
            deadline = t0 + 10
            while True:
                status, resp, body = client.get("/targets/kubelet", {"If-None-Match": etag})
                if status == 200:
                    etag = resp.getheader("ETag") or etag
                    if (needle in body) == (ready == "True"):
                        seen.append((time.monotonic() - t0) * 1000)
                        break
                elif status != 304:
                    raise RuntimeError(f"/targets/kubelet answered {status}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"flip {i} of {name} not served within 10 s")
                time.sleep(0.001)
        return seen, patched
    finally:
        client.close()
