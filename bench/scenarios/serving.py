"""3. serving: wrk on /targets/kubelet, ours vs a one-route Starlette app on the same uvicorn
serving the same bytes (bench/README.md)."""

from __future__ import annotations

import gc
import re
import subprocess
import time

from bench import workload as W
from bench.harness import MB, WRK, Client, Context, Env, Proc, RssSampler, free_port, log

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"wrk latency {text!r}")
    return float(m[1]) * _UNITS[m[2]]


def run_wrk(port: int, seconds: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/targets/kubelet"
    # --timeout 10s: wrk's default (2 s) would drop slow responses from the latency statistics.
    out = subprocess.run([WRK, "-t2", "-c64", f"-d{seconds}s", "--timeout", "10s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout
    res: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise RuntimeError(f"wrk output not understood:\n{text}\n{out.stderr}")
    res["rps"] = float(m[1])
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", text, re.M)
        res[f"p{q}"] = _ms(m[1]) if m else float("nan")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non2xx"] = int(m[1]) if m else 0
    return res


def _wait_healthy(proc: Proc, port: int, timeout: float = 30) -> None:
    client = Client(port)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if client.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            proc.alive()
            if time.monotonic() > deadline:
                raise RuntimeError("baseline server did not start")
            time.sleep(0.05)
    finally:
        client.close()


def run(ctx: Context) -> None:
    sz, runs, sc = ctx.sizes, ctx.runs, "serving"
    m_rps = ctx.metric(sc, "req/s /targets/kubelet", "req/s", ">= 0.8x", lambda o, b, r: r is not None and r >= 0.8,
                       note=f"wrk -t2 -c64 -d{sz.wrk_seconds}s --timeout 10s --latency (keep-alive); baseline: same "
                            "uvicorn serving the same bytes from a one-route Starlette app (bench/base_serve.py); "
                            "runs alternate")
    m_p50 = ctx.metric(sc, "p50 latency", "ms", "-", None)
    m_p99 = ctx.metric(sc, "p99 latency", "ms", "<= 1.25x", lambda o, b, r: r is not None and r <= 1.25)
    m_rss = ctx.metric(sc, "peak RSS after wrk (VmHWM)", "MB", "-", None,
                       note="response bytes buffered per connection by the asyncio transport count here")
    m_clients = ctx.metric(sc, "RSS with 64 clients downloading", "MB", "< 1.3x idle", lambda o, b, r: r is not None and r < 1.3,
                           note="peak VmRSS sampled every 20 ms during the wrk runs; baseline: the same server's VmRSS "
                                "just before them (synced, warmed up, no clients)")
    env = Env(ctx)
    procs: list[Proc] = []
    try:
        log(f"{sc}: loading {sz.nodes} nodes into the double")
        env.api.add_many(W.nodes(sz.nodes))
        gc.collect()
        proc, port, _ = env.spawn_synced()
        procs.append(proc)
        client = Client(port)
        status, _, body = client.get("/targets/kubelet")
        client.close()
        if status != 200:
            raise RuntimeError(f"/targets/kubelet answered {status}")
        body_file = ctx.tmp / "kubelet-body.json"
        body_file.write_bytes(body)
        bport = free_port()
        bproc = ctx.baseline("serve-baseline", "base_serve", "--body", str(body_file), "--listen", f"127.0.0.1:{bport}")
        procs.append(bproc)
        _wait_healthy(bproc, bport)
        log(f"{sc}: body {len(body) / MB:.1f} MB; warming up both servers")
        run_wrk(port, 2)
        run_wrk(bport, 2)
        for run in range(runs):
            order = [("ours", port), ("baseline", bport)]
            if run % 2:
                order.reverse()
            res = {}
            for who, p in order:
                idle = proc.mem()["VmRSS"]
                with ctx.profiled(proc.pid, f"serving-run{run}", run == 0 and who == "ours"), RssSampler(proc) as rss:
                    res[who] = run_wrk(p, sz.wrk_seconds)
                if who == "ours":
                    m_clients.add(rss.peak / MB, idle / MB)
                r = res[who]
                log(f"{sc} run {run + 1}/{runs} {who}: {r['rps']:.1f} req/s, p50 {r['p50']:.1f} ms, "
                    f"p99 {r['p99']:.1f} ms, errors {r['errors']:.0f}, non-2xx {r['non2xx']:.0f}")
            m_rps.add(res["ours"]["rps"], res["baseline"]["rps"])
            m_p50.add(res["ours"]["p50"], res["baseline"]["p50"])
            m_p99.add(res["ours"]["p99"], res["baseline"]["p99"])
            if res["ours"]["errors"] or res["baseline"]["errors"]:
                ctx.notes.append(f"serving run {run + 1}: wrk socket errors ours={res['ours']['errors']:.0f} "
                                 f"baseline={res['baseline']['errors']:.0f}")
        m_rss.add(proc.mem()["VmHWM"] / MB, bproc.mem()["VmHWM"] / MB)
        ctx.notes.append(f"serving: /targets/kubelet body is {len(body) / MB:.1f} MB for {sz.nodes} nodes "
                         f"({len(body) / max(sz.nodes, 1):,.0f} B/target)")
    finally:
        for p in procs:
            p.stop()
        env.stop()
