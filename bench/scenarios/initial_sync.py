"""1. initial_sync: spawn -> synced, against the floor and model list baselines (bench/README.md)."""

from __future__ import annotations


from bench.harness import MB, Context, Env, log, wait_synced


def run(ctx: Context) -> None:
    sz, runs, sc = ctx.sizes, ctx.runs, "initial_sync"
    m_floor = ctx.metric(sc, "sync time vs floor", "s", "<= 1.5x", lambda o, b, r: r is not None and r <= 1.5,
                         note="spawn -> first 200 on /targets/kubelet and /targets/fluentd (ours) vs spawn -> "
                              "all pages fetched + orjson-parsed (floor, bench/base_list.py --mode raw)")
    m_model = ctx.metric(sc, "sync time vs model", "s", "<= 0.33x (>= 3x faster)",
                         lambda o, b, r: r is not None and r <= 1 / 3,
                         note="baseline: same pages with kubernetes-asyncio models (_preload_content=True)")
    m_abs = ctx.metric(sc, "sync time", "s", "< 3 s", lambda o, b, r: o < 3.0)
    m_rss = ctx.metric(sc, "peak RSS after sync (VmHWM)", "MB", "< 110 MB", lambda o, b, r: o < 110,
                       note="baseline: the floor list process's peak RSS (its VmHWM)")
    env = Env(ctx)
    try:
        env.load(sc)
        for run in range(runs):
            # ours
            proc, port = env.start_server()
            try:
                with ctx.profiled(proc.pid, f"initial_sync-run{run}", run == 0):
                    done = wait_synced(proc, port)
                ours = done - proc.t_spawn
                hwm = proc.mem()["VmHWM"] / MB
            finally:
                proc.stop()
            # baselines: (spawn -> done, peak RSS)
            base = {}
            for mode in ("raw", "model"):
                doc, secs = env.list_baseline(mode, "--page-size", "500")
                if doc["nodes"] != sz.nodes or doc["pods"] != sz.pods:
                    raise RuntimeError(f"baseline listed {doc['nodes']} nodes, {doc['pods']} pods")
                base[mode] = (secs, doc["maxrss_kb"] * 1024 / MB)
            m_floor.add(ours, base["raw"][0])
            m_model.add(ours, base["model"][0])
            m_abs.add(ours)
            m_rss.add(hwm, base["raw"][1])
            log(f"{sc} run {run + 1}/{runs}: ours {ours:.3f}s (VmHWM {hwm:.0f} MB), floor {base['raw'][0]:.3f}s, "
                f"model {base['model'][0]:.3f}s")
    finally:
        env.stop()
