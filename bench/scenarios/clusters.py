"""clusters: one server over k clusters of N nodes and N pods each, against one server over one
cluster of the same total size (k*N nodes, k*N pods): sync time, peak RSS, and a Ready flip's
path to the served body (bench/README.md). In ``clusters`` each cluster is an API double of its
own (in this process); in ``clusters_real`` a real kube-apiserver and etcd (sdtest.controlplane),
as many as fit beside each other. The clusters reuse one another's node names and IPs, as
unrelated clusters do."""

from __future__ import annotations

import gc
import time

from bench import workload as W
from typing import Callable

from bench.double import BenchKubeAPI
from bench.harness import CONFIG_YAML, MB, PY, Client, Context, free_port, log, scrape, wait_synced
from sdtest.controlplane import ControlPlane

RENDER_SUM = 'kube_http_sd_render_duration_seconds_sum{set="kubelet"}'
RENDER_COUNT = 'kube_http_sd_render_duration_seconds_count{set="kubelet"}'


def run(ctx: Context) -> None:
    sz = ctx.sizes
    _scenario(ctx, "clusters", sz.cluster_counts, sz.cluster_objects, _doubles)


def run_real(ctx: Context) -> None:
    sz = ctx.sizes
    _scenario(ctx, "clusters_real", sz.real_cluster_counts, sz.cluster_objects, _control_planes)


# Starts clusters of the given sizes; returns, for each, its kubeconfig and how to flip node 7's
# Ready, and what stops them all.
Start = Callable[[Context, list[int]], tuple[list[tuple[str, Callable[[int], None]]], Callable[[], None]]]


def _scenario(ctx: Context, sc: str, counts: tuple[int, ...], n: int, start: Start) -> None:
    for k in counts:
        label = f"{k} x {n:,}"
        first = k == counts[0]
        m_sync = ctx.metric(sc, f"{label}: sync time", "s", "-", note="spawn -> first 200 on both sets; baseline: "
                            "one cluster of the same total size (k x N nodes, k x N pods)" if first else "")
        m_rss = ctx.metric(sc, f"{label}: peak RSS after sync (VmHWM)", "MB", "-")
        m_flip = ctx.metric(sc, f"{label}: Ready flip -> served", "ms", "-",
                            note="node Ready flipped in one cluster -> /targets/kubelet's ETag changed (median of 10)"
                            if first else "")
        m_render = ctx.metric(sc, f"{label}: render after one flip", "ms", "-",
                              note="kube_http_sd_render_duration_seconds of the renders that flip caused" if first else "")
        log(f"{sc}: {k} clusters of {n} nodes + {n} pods")
        clusters, stop = start(ctx, [n] * k)
        try:
            ours = [_measure(ctx, clusters, f"{sc}-{k}-run{run}") for run in range(ctx.runs)]
        finally:
            stop()
        log(f"{sc}: one cluster of {k * n} nodes + {k * n} pods")
        single, stop = start(ctx, [k * n])
        try:
            base = [_measure(ctx, single, f"{sc}-{k}-single-run{run}") for run in range(ctx.runs)]
        finally:
            stop()
        for run, (o, b) in enumerate(zip(ours, base)):
            m_sync.add(o[0], b[0])
            m_rss.add(o[1], b[1])
            m_flip.add(o[2], b[2])
            m_render.add(o[3], b[3])
            log(f"{sc} {label} run {run + 1}/{ctx.runs}: sync {o[0]:.2f}s vs {b[0]:.2f}s, VmHWM {o[1]:.0f} vs {b[1]:.0f} MB, "
                f"flip {o[2]:.1f} vs {b[2]:.1f} ms, render {o[3]:.2f} vs {b[3]:.2f} ms")


def _doubles(ctx: Context, sizes: list[int]) -> tuple[list[tuple[str, Callable[[int], None]]], Callable[[], None]]:
    apis = []
    for n in sizes:
        api = BenchKubeAPI(history_limit=10_000).start()
        apis.append(api)
        api.add_many(W.nodes(n))
        api.add_many(W.pods(n))

    def flipper(api: BenchKubeAPI) -> Callable[[int], None]:
        return lambda i: api.modify(W.with_heartbeat(W.node(7), 10_000 + i, ready="False" if i % 2 == 0 else "True"))

    def stop() -> None:
        for api in apis:
            api.stop()
        gc.collect()

    return [(str(api.write_kubeconfig(ctx.tmp / f"kubeconfig-{api.port}")), flipper(api)) for api in apis], stop


def _control_planes(ctx: Context, sizes: list[int]) -> tuple[list[tuple[str, Callable[[int], None]]], Callable[[], None]]:
    cps: list[ControlPlane] = []

    def stop() -> None:
        for cp in cps:
            cp.stop()

    try:
        for i, n in enumerate(sizes):
            cp = ControlPlane(ctx.tmp / f"controlplane-{len(sizes)}-{n}-{i}")
            cps.append(cp)
            cp.start()
            cp.ensure_namespace("logging")
            t0 = time.monotonic()
            cp.load(W.nodes(n) + W.pods(n))
            log(f"created {n} nodes + {n} pods through API server {i + 1}/{len(sizes)} in {time.monotonic() - t0:.0f}s (not counted)")
    except BaseException:
        stop()
        raise

    def flipper(cp: ControlPlane) -> Callable[[int], None]:
        def flip(i: int) -> None:
            status = W.with_heartbeat(W.node(7), 10_000 + i, ready="False" if i % 2 == 0 else "True")["status"]
            cp.set_status("Node", W.node_name(7), status)
        return flip

    return [(str(cp.kubeconfig), flipper(cp)) for cp in cps], stop


def _measure(ctx: Context, clusters: list[tuple[str, Callable[[int], None]]], name: str) -> tuple[float, float, float, float]:
    """(sync seconds, VmHWM MB, flip -> served ms, render ms) of a server over ``clusters``
    (kubeconfig, flip): one is served as today (--kubeconfig), several through a clusters: map."""
    config = ctx.tmp / f"sd-{name}.yaml"
    kubeconfigs = [kc for kc, _ in clusters]
    args = ["--config", str(config)]
    if len(clusters) == 1:
        config.write_text(CONFIG_YAML)
        args += ["--kubeconfig", str(kubeconfigs[0])]
    else:
        config.write_text(CONFIG_YAML + "clusters:\n" + "".join(f"  c{i}: {{kubeconfig: {kc}}}\n" for i, kc in enumerate(kubeconfigs)))
    port = free_port()
    proc = ctx.spawn("server", [PY, "-m", "sd", "serve", *args, "--listen", f"127.0.0.1:{port}", "--log-level", "warning"])
    try:
        with ctx.profiled(proc.pid, name, name.endswith("run0")):
            synced = wait_synced(proc, port, timeout=600) - proc.t_spawn
        hwm = proc.mem()["VmHWM"] / MB
        flips, renders = [], []
        client = Client(port, timeout=30)
        flip = clusters[-1][1]
        try:
            for i in range(10):
                _, resp, _ = client.get("/targets/kubelet")
                etag = resp.headers["ETag"]
                before = scrape(client)
                sent = time.monotonic()
                flip(i)
                while client.get("/targets/kubelet", {"If-None-Match": etag})[0] == 304:
                    proc.alive()
                    if time.monotonic() - sent > 30:
                        raise RuntimeError(f"{name}: a flip not served within 30 s")
                    time.sleep(0.001)  # polling leaves the server (on the same 2 CPUs) room to work
                flips.append((time.monotonic() - sent) * 1000)
                time.sleep(0.3)  # the renderer's coalescing window has passed: every render counted
                after = scrape(client)
                count = after[RENDER_COUNT] - before[RENDER_COUNT]
                renders.append((after[RENDER_SUM] - before[RENDER_SUM]) / count * 1000 if count else 0.0)
        finally:
            client.close()
    finally:
        proc.stop()
    flips.sort()
    renders.sort()
    return synced, hwm, flips[len(flips) // 2], renders[len(renders) // 2]
