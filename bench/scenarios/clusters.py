"""clusters: one server over k clusters of N nodes and N pods each, against one server over one
cluster of the same total size (k*N nodes, k*N pods): sync time, peak RSS, and a Ready flip's
path to the served body (bench/README.md). Each cluster is an API double of its own (in this
process); the clusters reuse one another's node names and IPs, as unrelated clusters do."""

from __future__ import annotations

import gc
import time

from bench import workload as W
from bench.double import BenchKubeAPI
from bench.harness import CONFIG_YAML, MB, PY, Client, Context, free_port, log, scrape, wait_synced

RENDER_SUM = 'kube_http_sd_render_duration_seconds_sum{set="kubelet"}'
RENDER_COUNT = 'kube_http_sd_render_duration_seconds_count{set="kubelet"}'


def run(ctx: Context) -> None:
    sz, runs, sc = ctx.sizes, ctx.runs, "clusters"
    n = sz.cluster_objects
    for k in sz.cluster_counts:
        label = f"{k} x {n:,}"
        m_sync = ctx.metric(sc, f"{label}: sync time", "s", "-", note=f"spawn -> first 200 on both sets; baseline: "
                            f"one cluster of {k * n:,} nodes + {k * n:,} pods" if k == sz.cluster_counts[0] else "")
        m_rss = ctx.metric(sc, f"{label}: peak RSS after sync (VmHWM)", "MB", "-")
        m_flip = ctx.metric(sc, f"{label}: Ready flip -> served", "ms", "-",
                            note="modify() in one cluster -> /targets/kubelet's ETag changed (median of 10)"
                            if k == sz.cluster_counts[0] else "")
        m_render = ctx.metric(sc, f"{label}: render after one flip", "ms", "-",
                              note="kube_http_sd_render_duration_seconds of the renders that flip caused"
                              if k == sz.cluster_counts[0] else "")
        log(f"{sc}: loading {k} doubles of {n} nodes + {n} pods, and one of {k * n} + {k * n}")
        apis = [_double(n) for _ in range(k)]
        single = _double(k * n)
        try:
            for run in range(runs):
                ours = _measure(ctx, apis, f"{sc}-{k}-run{run}")
                base = _measure(ctx, [single], f"{sc}-{k}-single-run{run}")
                m_sync.add(ours[0], base[0])
                m_rss.add(ours[1], base[1])
                m_flip.add(ours[2], base[2])
                m_render.add(ours[3], base[3])
                log(f"{sc} {label} run {run + 1}/{runs}: sync {ours[0]:.2f}s vs {base[0]:.2f}s, "
                    f"VmHWM {ours[1]:.0f} vs {base[1]:.0f} MB, flip {ours[2]:.1f} vs {base[2]:.1f} ms, "
                    f"render {ours[3]:.2f} vs {base[3]:.2f} ms")
        finally:
            for api in [*apis, single]:
                api.stop()
            gc.collect()


def _double(n: int) -> BenchKubeAPI:
    api = BenchKubeAPI(history_limit=10_000).start()
    api.add_many(W.nodes(n))
    api.add_many(W.pods(n))
    return api


def _measure(ctx: Context, apis: list[BenchKubeAPI], name: str) -> tuple[float, float, float, float]:
    """(sync seconds, VmHWM MB, flip -> served ms, render ms) of a server over ``apis``: one
    is served as today (--kubeconfig), several through a clusters: map."""
    config = ctx.tmp / f"sd-{name}.yaml"
    kubeconfigs = [api.write_kubeconfig(ctx.tmp / f"kubeconfig-{api.port}") for api in apis]
    args = ["--config", str(config)]
    if len(apis) == 1:
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
        base = W.node(7)
        try:
            for i in range(10):
                ready = "False" if i % 2 == 0 else "True"
                _, resp, _ = client.get("/targets/kubelet")
                etag = resp.headers["ETag"]
                before = scrape(client)
                sent = time.monotonic()
                apis[-1].modify(W.with_heartbeat(base, 10_000 + i, ready=ready))
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
