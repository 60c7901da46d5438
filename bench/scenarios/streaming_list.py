"""7. streaming_list: the initial sync as a streaming list (the default) against the same sync
with pages (kubernetes.streaming_list: off): time, our peak RSS, and what the API double
served for each (bench/README.md)."""

from __future__ import annotations

from pathlib import Path

from bench.harness import CONFIG_YAML, MB, Context, Env, log, wait_synced


def _sync(ctx: Context, env: Env, config: str, run: int, label: str) -> tuple[float, float, int, int]:
    """(spawn → synced seconds, VmHWM MB, bytes and requests the double served meanwhile)."""
    env.config = config
    sent, requests = env.api.bytes_sent, len(env.api.requests)
    proc, port = env.start_server()
    try:
        with ctx.profiled(proc.pid, f"streaming_list-{label}-run{run}", run == 0):
            done = wait_synced(proc, port)
        return done - proc.t_spawn, proc.mem()["VmHWM"] / MB, env.api.bytes_sent - sent, len(env.api.requests) - requests
    finally:
        proc.stop()


def run(ctx: Context) -> None:
    runs, sc = ctx.runs, "streaming_list"
    m_time = ctx.metric(sc, "sync time, streaming vs paginated", "s", "<= 1.1x", lambda o, b, r: r is not None and r <= 1.1,
                        note="spawn -> first 200 on both sets; baseline: the same server with kubernetes.streaming_list: off")
    m_rss = ctx.metric(sc, "peak RSS after sync (VmHWM), streaming vs paginated", "MB", "<= 1.05x",
                       lambda o, b, r: r is not None and r <= 1.05)
    m_bytes = ctx.metric(sc, "bytes the API double served for the sync", "MB", "-", None,
                         note="list pages vs the initial-events stream (each object once either way)")
    m_reqs = ctx.metric(sc, "requests the API double served for the sync", "count", "-", None,
                        note="pages of 500 vs one watch per source")
    env = Env(ctx)
    paginated = str(Path(env.config).with_name("sd-paginated.yaml"))
    Path(paginated).write_text(CONFIG_YAML + "  streaming_list: \"off\"\n")
    streaming = env.config
    try:
        env.load(sc)
        for run in range(runs):
            s = _sync(ctx, env, streaming, run, "streaming")
            p = _sync(ctx, env, paginated, run, "paginated")
            m_time.add(s[0], p[0])
            m_rss.add(s[1], p[1])
            m_bytes.add(s[2] / MB, p[2] / MB)
            m_reqs.add(s[3], p[3])
            log(f"{sc} run {run + 1}/{runs}: streaming {s[0]:.2f}s {s[1]:.0f} MB {s[2] / MB:.1f} MB/{s[3]} requests; "
                f"paginated {p[0]:.2f}s {p[1]:.0f} MB {p[2] / MB:.1f} MB/{p[3]} requests")
    finally:
        env.config = streaming
        env.stop()
