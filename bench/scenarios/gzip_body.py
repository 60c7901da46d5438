"""gzip: a 20,000-node /targets/kubelet with and without Accept-Encoding: gzip (bytes on the wire,
the client's time for the first gzip request after a render and the next), and the CPU of making
the gzip body (the first, full one, and after one Ready flip) against gzip.compress of the whole
body in the same run (bench/README.md)."""

from __future__ import annotations

import gc
import gzip
import statistics
import time

from bench import workload as W
from bench.harness import MB, Client, Context, Env, log, scrape
from sd.config import default_config
from sd.gzip_body import LEVEL
from sd.kinds import nodes as node_kind
from sd.targets import TargetSet

RENDERS = 'kube_http_sd_renders_total{set="kubelet"}'
GZIP = {"Accept-Encoding": "gzip"}
FLIPS = 10


def _cpu(fn) -> tuple[float, object]:
    """Seconds of this thread's CPU that ``fn()`` took, and what it returned."""
    start = time.thread_time()
    out = fn()
    return time.thread_time() - start, out


def _timed_get(client: Client, headers: dict[str, str]) -> tuple[float, bytes, dict[str, str]]:
    start = time.monotonic()
    status, resp, body = client.get("/targets/kubelet", headers)
    if status != 200:
        raise RuntimeError(f"/targets/kubelet answered {status}")
    return time.monotonic() - start, body, {k.lower(): v for k, v in resp.getheaders()}


def _wire(env: Env, nodes: list[dict]) -> dict[str, float]:
    """Through the real server: body sizes without and with gzip, and the client's time of the
    first gzip request after the sync (the full compress) and after one flip, and the next one."""
    proc, port, _ = env.spawn_synced()
    client = Client(port, timeout=120)
    try:
        _, plain, headers = _timed_get(client, {})
        if "content-encoding" in headers:
            raise RuntimeError("a request without Accept-Encoding got a content coding")
        first, gz, headers = _timed_get(client, GZIP)
        if headers.get("content-encoding") != "gzip" or gzip.decompress(gz) != plain:
            raise RuntimeError("the gzip answer does not decode to the plain body")
        cached, _, _ = _timed_get(client, GZIP)
        renders = scrape(client).get(RENDERS, 0.0)
        env.api.push_prepared(env.api.prepare_modifies(W.ready_flip_updates(nodes[:1], 1)))
        deadline = time.monotonic() + 30
        while scrape(client).get(RENDERS, 0.0) < renders + 1:
            if time.monotonic() > deadline:
                raise RuntimeError("no render after the flip")
            time.sleep(0.01)
        after_flip, _, _ = _timed_get(client, GZIP)
        again, _, _ = _timed_get(client, GZIP)
        env.api.push_prepared(env.api.prepare_modifies([W.node(0)]))  # Ready again, for the next run
    finally:
        client.close()
        proc.stop()
    return {"plain": len(plain), "gzip": len(gz), "first": first, "cached": cached, "after_flip": after_flip, "again": again}


def _cpu_per_render(raw_nodes: list[dict]) -> dict[str, float]:
    """In this process, on a set built from the same nodes: thread CPU of the set's gzip body
    (full, then after each of FLIPS single-node Ready flips) and of gzip.compress of the whole body."""
    ts = TargetSet(default_config().targets["kubelet"])
    ts.replace([node_kind.KIND.parse(obj) for obj in raw_nodes])
    ts.render()
    gc.collect()
    full, gz = _cpu(ts.gzipped)
    whole_cpu, whole = _cpu(lambda: gzip.compress(ts.body, LEVEL, mtime=0))
    ours, base = [], []
    for update in W.ready_flip_updates(raw_nodes[::997][:FLIPS], FLIPS):
        ts.upsert(node_kind.KIND.parse(update))
        ts.render()
        ours.append(_cpu(ts.gzipped)[0])
        base.append(_cpu(lambda: gzip.compress(ts.body, LEVEL, mtime=0))[0])
    if gzip.decompress(bytes(ts.gzipped())) != ts.body:
        raise RuntimeError("the incremental gzip body does not decode to the plain body")
    return {"full": full, "whole_cpu": whole_cpu, "ours_size": gz.length, "whole_size": len(whole),
            "flip": statistics.median(ours), "flip_base": statistics.median(base)}


def run(ctx: Context) -> None:
    sz, runs, sc = ctx.sizes, ctx.runs, "gzip"
    n = sz.large_nodes
    m_bytes = ctx.metric(sc, f"/targets/kubelet on the wire, {n} nodes, gzip vs plain", "MB", "-", None,
                         note="Content-Length with Accept-Encoding: gzip (ours) and without (baseline, as Prometheus asks)")
    m_ratio = ctx.metric(sc, "gzip body vs gzip.compress of the whole body", "MB", "<= 1.05x",
                         lambda o, b, r: r is not None and r <= 1.05,
                         note=f"size of our segmented gzip body against one gzip.compress(body, {LEVEL}) of it")
    m_full = ctx.metric(sc, "CPU of the first gzip body (full)", "ms", "<= 1.5x", lambda o, b, r: r is not None and r <= 1.5,
                        note="thread CPU in the runner, on a set built from the same nodes; baseline: "
                             f"gzip.compress(body, {LEVEL}) of the whole body, same run")
    m_flip = ctx.metric(sc, "CPU of the gzip body after one Ready flip", "ms", "<= 0.1x", lambda o, b, r: r is not None and r <= 0.1,
                        note=f"median of {FLIPS} single-node flips, each rendered then gzipped; baseline: gzip.compress "
                             "of the whole body after the same flip (what compressing each render would cost)")
    m_first = ctx.metric(sc, "first gzip request after sync vs the next", "ms", "-", None,
                         note="client time through the real server: the first makes the gzip body, the next is served it")
    m_after = ctx.metric(sc, "first gzip request after a flip vs the next", "ms", "-", None)
    env = Env(ctx)
    try:
        log(f"{sc}: loading {n} nodes into the double")
        raw_nodes = W.nodes(n)
        env.api.add_many(raw_nodes)
        for run in range(runs):
            wire = _wire(env, raw_nodes)
            cpu = _cpu_per_render(raw_nodes)
            m_bytes.add(wire["gzip"] / MB, wire["plain"] / MB)
            m_ratio.add(cpu["ours_size"] / MB, cpu["whole_size"] / MB)
            m_full.add(cpu["full"] * 1000, cpu["whole_cpu"] * 1000)
            m_flip.add(cpu["flip"] * 1000, cpu["flip_base"] * 1000)
            m_first.add(wire["first"] * 1000, wire["cached"] * 1000)
            m_after.add(wire["after_flip"] * 1000, wire["again"] * 1000)
            log(f"{sc} run {run + 1}/{runs}: plain {wire['plain'] / MB:.1f} MB, gzip {wire['gzip'] / MB:.2f} MB; "
                f"CPU full {cpu['full'] * 1000:.0f} ms (gzip.compress {cpu['whole_cpu'] * 1000:.0f} ms), "
                f"after a flip {cpu['flip'] * 1000:.1f} ms (gzip.compress {cpu['flip_base'] * 1000:.0f} ms)")
    finally:
        env.stop()
