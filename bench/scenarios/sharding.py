"""6. sharding: N=4 shard bodies of /targets/kubelet against the full body: bytes and server
CPU per request, and the cost of cutting the shard bodies after a render (bench/README.md)."""

from __future__ import annotations

import statistics
import time

from bench import workload as W
from bench.harness import MB, Client, Context, Env, log

SHARDS = 4
REQUESTS = 40  # per kind and run


def _cpu_per_request(proc, client: Client, paths: list[str]) -> float:
    """Server CPU seconds per request, over ``paths`` requested in turn."""
    before = proc.cpu()
    for path in paths:
        status, _, _ = client.get(path)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    return (proc.cpu() - before) / len(paths)


def run(ctx: Context) -> None:
    runs, sc = ctx.runs, "sharding"
    m_bytes = ctx.metric(sc, f"bytes per request, shard of N={SHARDS} vs full", "MB", f"<= {1 / SHARDS + 0.05:.2f}x",
                         lambda o, b, r: r is not None and r <= 1 / SHARDS + 0.05,
                         note=f"mean body of ?shards={SHARDS}&shard=I over I, vs /targets/kubelet")
    m_cpu = ctx.metric(sc, "server CPU per request, shard vs full", "ms", "<= 0.5x",
                       lambda o, b, r: r is not None and r <= 0.5,
                       note=f"utime+stime of the server over {REQUESTS} requests of each kind (cached shard bodies)")
    m_cut = ctx.metric(sc, "first shard request after a render vs a cached one", "ms", "-", None,
                       note=f"one Ready flip re-renders the set; the next shard request cuts all {SHARDS} bodies")
    env = Env(ctx)
    try:
        nodes = env.load(sc, pods=False)
        proc, port, _ = env.spawn_synced()
        client = Client(port)
        shard_paths = [f"/targets/kubelet?shards={SHARDS}&shard={i}" for i in range(SHARDS)]
        full = client.get("/targets/kubelet")[2]
        for run in range(runs):
            sizes = [len(client.get(p)[2]) for p in shard_paths]
            m_bytes.add(statistics.mean(sizes) / MB, len(full) / MB)
            shard_cpu = _cpu_per_request(proc, client, [shard_paths[i % SHARDS] for i in range(REQUESTS)])
            full_cpu = _cpu_per_request(proc, client, ["/targets/kubelet"] * REQUESTS)
            m_cpu.add(shard_cpu * 1e3, full_cpu * 1e3)
            # Re-render: flip one node's Ready, wait for the full body's ETag to change.
            etag = client.get("/targets/kubelet")[1].getheader("etag")
            env.api.modify(W.with_heartbeat(nodes[run], run + 1, ready="False"))  # a different node each run: always a change
            deadline = time.monotonic() + 10
            while client.get("/targets/kubelet")[1].getheader("etag") == etag:
                if time.monotonic() > deadline:
                    raise RuntimeError("no re-render after a Ready flip")
                time.sleep(0.005)
            t0 = time.perf_counter()
            client.get(shard_paths[0])
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            client.get(shard_paths[1])
            cached = time.perf_counter() - t0
            m_cut.add(first * 1e3, cached * 1e3)
            log(f"{sc} run {run + 1}/{runs}: shard {statistics.mean(sizes) / MB:.2f} MB vs full {len(full) / MB:.2f} MB; "
                f"CPU {shard_cpu * 1e3:.2f} vs {full_cpu * 1e3:.2f} ms/request; cut {first * 1e3:.1f} ms, cached {cached * 1e3:.1f} ms")
        client.close()
    finally:
        env.stop()
