"""9. large: 20,000 nodes (25 images each, no pods): sync time against the floor, peak RSS,
the render after one Ready flip against the full render, and clients that request the body
and never read it (bench/README.md)."""

from __future__ import annotations

import socket
import time

from bench import workload as W
from bench.harness import MB, Client, Context, Env, Proc, RssSampler, log, scrape

RENDERS = 'kube_http_sd_renders_total{set="kubelet"}'
RENDER_SUM = 'kube_http_sd_render_duration_seconds_sum{set="kubelet"}'
STALLED_CLIENTS = 16
STALL_SECONDS = 3.0


def _wait_renders(client: Client, proc: Proc, target: float, timeout: float = 30.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(client)
        if metrics.get(RENDERS, 0.0) >= target:
            return metrics
        proc.alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{RENDERS} did not reach {target}")
        time.sleep(0.01)


def _flip_renders(env: Env, proc: Proc, client: Client, nodes: list[dict], flips: int) -> list[float]:
    """Seconds of each render that follows one Ready flip (one node at a time)."""
    out = []
    updates = env.api.prepare_modifies(W.ready_flip_updates(nodes[:flips], 2 * flips))
    for update in updates:
        before = scrape(client)
        env.api.push_prepared([update])
        after = _wait_renders(client, proc, before.get(RENDERS, 0.0) + 1)
        renders = after[RENDERS] - before.get(RENDERS, 0.0)
        out.append((after[RENDER_SUM] - before[RENDER_SUM]) / renders)
    return out


def _stalled(port: int, proc: Proc) -> tuple[float, float]:
    """(RSS before, peak RSS while STALLED_CLIENTS clients have asked for the body and read nothing)."""
    before = proc.mem()["VmRSS"]
    socks = []
    try:
        with RssSampler(proc) as rss:
            for _ in range(STALLED_CLIENTS):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(b"GET /targets/kubelet HTTP/1.1\r\nHost: bench\r\n\r\n")
                socks.append(sock)
            time.sleep(STALL_SECONDS)  # a measurement window: the server writes what the sockets take
    finally:
        for sock in socks:
            sock.close()
    return before, rss.peak


def run(ctx: Context) -> None:
    sz, runs, sc = ctx.sizes, ctx.runs, "large"
    n = sz.large_nodes
    m_sync = ctx.metric(sc, f"sync time vs floor, {n} nodes", "s", "<= 1.5x", lambda o, b, r: r is not None and r <= 1.5,
                        note="as initial_sync, with nodes only (25 images each); floor: bench/base_list.py --mode raw")
    m_hwm = ctx.metric(sc, f"peak RSS (VmHWM), {n} nodes", "MB", "< 180 MB", lambda o, b, r: o < 180,
                       note="after sync and everything below; baseline: the floor list process's VmHWM")
    m_render = ctx.metric(sc, "render after one Ready flip vs full render", "ms", "<= 0.1x",
                          lambda o, b, r: r is not None and r <= 0.1,
                          note="median of 20 single-node flips, each read from render_duration_seconds_sum; "
                               "baseline: the first (full) render after sync")
    m_stall = ctx.metric(sc, f"RSS growth, {STALLED_CLIENTS} clients that never read", "MB", "< 2x one body",
                         lambda o, b, r: r is not None and r < 2.0,
                         note=f"peak VmRSS over {STALL_SECONDS:g} s after {STALLED_CLIENTS} GETs with 4 KiB receive "
                              "buffers that are never read, minus VmRSS before; baseline: the body's size")
    env = Env(ctx)
    try:
        log(f"{sc}: loading {n} nodes into the double")
        nodes = W.nodes(n)
        env.api.add_many(nodes)
        for run in range(runs):
            proc, port, sync = env.spawn_synced()
            client = Client(port, timeout=60)
            try:
                first = _wait_renders(client, proc, 1)
                full = first[RENDER_SUM] / first[RENDERS]
                flips = _flip_renders(env, proc, client, nodes, 10)
                status, _, body = client.get("/targets/kubelet")
                if status != 200:
                    raise RuntimeError(f"/targets/kubelet answered {status}")
                before, peak = _stalled(port, proc)
                hwm = proc.mem()["VmHWM"] / MB
            finally:
                client.close()
                proc.stop()
            doc, floor = env.list_baseline("raw")
            flip = sorted(flips)[len(flips) // 2]
            m_sync.add(sync, floor)
            m_hwm.add(hwm, doc["maxrss_kb"] * 1024 / MB)
            m_render.add(flip * 1000, full * 1000)
            m_stall.add((peak - before) / MB, len(body) / MB)
            log(f"{sc} run {run + 1}/{runs}: sync {sync:.2f}s (floor {floor:.2f}s), VmHWM {hwm:.0f} MB, "
                f"render full {full * 1000:.1f} ms, one flip {flip * 1000:.2f} ms, "
                f"stalled readers +{(peak - before) / MB:.1f} MB (body {len(body) / MB:.1f} MB)")
    finally:
        env.stop()
