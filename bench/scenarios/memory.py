"""5. memory: RSS of synced servers with 0 objects, the nodes, the nodes + pods; bytes per
indexed object (bench/README.md)."""

from __future__ import annotations

import time

import orjson

from bench import workload as W
from bench.harness import MB, Context, Env, log


def _measure(env: Env) -> dict[str, float]:
    """A fresh server synced with what the double holds, idle 1 s: VmRSS and VmHWM in MB."""
    proc, _, _ = env.spawn_synced()
    try:
        time.sleep(1.0)
        mem = proc.mem()
        return {"rss": mem["VmRSS"] / MB, "hwm": mem["VmHWM"] / MB}
    finally:
        proc.stop()


def run(ctx: Context) -> None:
    sz, runs, sc = ctx.sizes, ctx.runs, "memory"
    m_empty = ctx.metric(sc, "idle RSS: synced, 0 objects", "MB", "< 55 MB", lambda o, b, r: o < 55)
    m_nodes = ctx.metric(sc, f"RSS synced, {sz.nodes} nodes", "MB", "-", None)
    m_all = ctx.metric(sc, f"RSS synced, {sz.nodes} nodes + {sz.pods} pods", "MB", "-", None)
    m_hwm = ctx.metric(sc, f"peak RSS (VmHWM), {sz.nodes} nodes + {sz.pods} pods", "MB", "< 110 MB",
                       lambda o, b, r: o < 110,
                       note="baseline: the floor list process (kubernetes-asyncio + orjson, keeps nothing) on the same data")
    m_per_node = ctx.metric(sc, "bytes per indexed node", "B", "-", None,
                            note="(RSS 5000 nodes - RSS empty) / nodes, after sync + 1 s; baseline: the node's JSON size")
    m_per_pod = ctx.metric(sc, "bytes per indexed pod", "B", "-", None,
                           note="(RSS nodes+pods - RSS nodes) / pods; baseline: the pod's JSON size")
    nodes, pods = W.nodes(sz.nodes), W.pods(sz.pods)
    node_json = sum(len(orjson.dumps(n)) for n in nodes) / len(nodes)
    pod_json = sum(len(orjson.dumps(p)) for p in pods) / len(pods)

    for run in range(runs):
        env = Env(ctx)
        try:
            empty = _measure(env)
            env.api.add_many(nodes)
            with_nodes = _measure(env)
            env.api.add_many(pods)
            with_all = _measure(env)
            doc, _ = env.list_baseline("raw")
            floor_hwm = doc["maxrss_kb"] * 1024 / MB
        finally:
            env.stop()
        m_empty.add(empty["rss"])
        m_nodes.add(with_nodes["rss"])
        m_all.add(with_all["rss"])
        m_hwm.add(with_all["hwm"], floor_hwm)
        m_per_node.add((with_nodes["rss"] - empty["rss"]) * MB / sz.nodes, node_json)
        m_per_pod.add((with_all["rss"] - with_nodes["rss"]) * MB / sz.pods, pod_json)
        log(f"{sc} run {run + 1}/{runs}: RSS empty {empty['rss']:.0f} MB, nodes {with_nodes['rss']:.0f} MB "
            f"(HWM {with_nodes['hwm']:.0f}), all {with_all['rss']:.0f} MB (HWM {with_all['hwm']:.0f}); "
            f"floor list HWM {floor_hwm:.0f} MB")
