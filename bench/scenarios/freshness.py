"""4. freshness: modify() -> the change visible at /targets/kubelet under heartbeat load, ours
vs a raw watch process receiving the event (bench/README.md)."""

from __future__ import annotations

import gc
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from bench import workload as W
from bench.double import BenchKubeAPI
from bench.harness import Client, Context, Env, log, pct, settle_watches


class HeartbeatLoad:
    """Background thread: `rate` heartbeat-only node updates per second, in 10 ms ticks."""

    def __init__(self, api: BenchKubeAPI, prepared: list, rate: int) -> None:
        self.api, self.prepared, self.rate = api, prepared, rate
        self.stop_event = threading.Event()
        self.pushed = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="heartbeats")

    def _run(self) -> None:
        tick = 0.01
        per_tick = max(1, round(self.rate * tick))
        i = 0
        nxt = time.monotonic()
        try:
            while not self.stop_event.is_set():
                batch = [self.prepared[(i + k) % len(self.prepared)] for k in range(per_tick)]
                i += per_tick
                self.api.push_prepared(batch)
                self.pushed += per_tick
                nxt += tick
                delay = nxt - time.monotonic()
                if delay > 0:
                    self.stop_event.wait(delay)
                elif delay < -1:
                    nxt = time.monotonic()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def __enter__(self) -> "HeartbeatLoad":
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(10)
        self.achieved = self.pushed / max(time.monotonic() - self.t0, 1e-9)


class ChangeSeq:
    """Real changes on the nodes reserved for them: label marker, Ready=False, Ready=True, ..."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.i = 0

    def next(self) -> tuple[dict, Callable[[bytes], bool], str]:
        i, self.i = self.i, self.i + 1
        j = self.ids[(i // 3) % len(self.ids)]
        marker = f"fresh-{i // 3:05d}"
        name_key = b'"__meta_kubernetes_node_name":"' + W.node_name(j).encode() + b'"'
        step = i % 3
        if step == 0:
            obj = W.node(j, extra_labels={"bench-fresh": marker})
            needle = f'"{marker}"'.encode()
            return obj, lambda body: needle in body, "label"
        if step == 1:
            obj = W.node(j, ready="False", extra_labels={"bench-fresh": marker})
            return obj, lambda body: name_key not in body, "not-ready"
        obj = W.node(j, ready="True", extra_labels={"bench-fresh": marker})
        return obj, lambda body: name_key in body, "ready"


def paced(n: int, interval: float = 0.1) -> Iterator[int]:
    """After 0.5 s (the heartbeat load gets going), yield 0..n-1 one per ~`interval`."""
    time.sleep(0.5)
    next_at = time.monotonic()
    for i in range(n):
        yield i
        next_at = max(next_at + interval, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))


def _ours(ctx: Context, env: Env, seq: ChangeSeq, prepared_hb: list, run: int) -> tuple[list[float], list[int], int]:
    """Latencies (ms) seen by polling the server, polls per change, changes not seen in 5 s."""
    sz = ctx.sizes
    proc, port, _ = env.spawn_synced()
    ours: list[float] = []
    polls_per: list[int] = []
    timeouts = 0
    client = Client(port)
    try:
        status, resp, body = client.get("/targets/kubelet")
        etag = resp.getheader("ETag") or ""
        with HeartbeatLoad(env.api, prepared_hb, sz.fresh_heartbeat_rate) as load, \
                ctx.profiled(proc.pid, f"freshness-run{run}", run == 0):
            for _ in paced(sz.fresh_samples):
                obj, visible, _kind = seq.next()
                t0 = time.monotonic()
                env.api.modify(obj)
                polls = 0
                deadline = t0 + 5.0
                while True:
                    status, resp, body = client.get("/targets/kubelet", {"If-None-Match": etag})
                    polls += 1
                    if status == 200:
                        etag = resp.getheader("ETag") or etag
                        if visible(body):
                            ours.append((time.monotonic() - t0) * 1000)
                            break
                    elif status != 304:
                        raise RuntimeError(f"/targets/kubelet answered {status}")
                    if time.monotonic() > deadline:
                        timeouts += 1
                        ours.append(5000.0)
                        break
                polls_per.append(polls)
            if load.error:
                raise load.error
    finally:
        client.close()
        proc.stop()
    return ours, polls_per, timeouts


def _floor(ctx: Context, env: Env, seq: ChangeSeq, prepared_hb: list, names_file: Path) -> tuple[list[float], float]:
    """Latencies (ms) until a raw watcher prints the event; the heartbeat rate achieved."""
    sz = ctx.sizes
    settle_watches(env.api, 0)
    bp = env.watch_baseline("watch-fresh", "raw", "--names", str(names_file))
    base: list[float] = []
    try:
        env.api.wait_for_watches(1, timeout=60)
        seen: dict[str, float] = {}
        with HeartbeatLoad(env.api, prepared_hb, sz.fresh_heartbeat_rate) as load:
            for _ in paced(sz.fresh_samples):
                obj, _visible, _kind = seq.next()
                t0 = time.monotonic()
                rv = env.api.modify(obj)
                deadline = t0 + 5.0
                while rv not in seen:
                    try:
                        kind, srv, st = bp.line(timeout=max(0.01, deadline - time.monotonic())).split()
                        seen[srv] = float(st)
                    except RuntimeError:
                        break
                base.append((seen[rv] - t0) * 1000 if rv in seen else 5000.0)
        return base, load.achieved
    finally:
        bp.stop()


def run(ctx: Context) -> None:
    sz, runs, sc = ctx.sizes, ctx.runs, "freshness"
    m_p50 = ctx.metric(sc, "modify() -> visible p50", "ms", "-", None,
                       note=f"{sz.fresh_samples} changes/run, one per ~100 ms, under {sz.fresh_heartbeat_rate} "
                            "heartbeat events/s; ours: polled GET /targets/kubelet with If-None-Match; floor "
                            "baseline: raw watch consumer process receiving the event (bench/base_watch.py --names)")
    m_p99 = ctx.metric(sc, "modify() -> visible p99", "ms", "< 250 ms", lambda o, b, r: o < 250)
    m_max = ctx.metric(sc, "modify() -> visible max", "ms", "-", None)
    m_polls = ctx.metric(sc, "polls per change (ours; 304s + 200s)", "count", "-", None)
    n_change = max(10, sz.nodes // 5)
    change_ids = list(range(sz.nodes - n_change, sz.nodes))
    env = Env(ctx)
    try:
        log(f"{sc}: loading {sz.nodes} nodes into the double")
        base_nodes = W.nodes(sz.nodes)
        env.api.add_many(base_nodes)
        hb_nodes = base_nodes[: sz.nodes - n_change]  # heartbeats never touch the change set
        prepared_hb = env.api.prepare_modifies(W.heartbeat_updates(hb_nodes, max(len(hb_nodes), 2000)))
        gc.collect()
        names_file = ctx.tmp / "fresh-names.txt"
        names_file.write_text("\n".join(W.node_name(j) for j in change_ids))
        seq = ChangeSeq(change_ids)
        for run in range(runs):
            ours, polls_per, timeouts = _ours(ctx, env, seq, prepared_hb, run)
            base, hb_achieved = _floor(ctx, env, seq, prepared_hb, names_file)
            m_p50.add(pct(ours, 50), pct(base, 50))
            m_p99.add(pct(ours, 99), pct(base, 99))
            m_max.add(max(ours), max(base))
            m_polls.add(statistics.median(polls_per))
            if timeouts:
                ctx.notes.append(f"freshness run {run + 1}: {timeouts} changes not visible within 5 s "
                                 "(counted as 5000 ms)")
            log(f"{sc} run {run + 1}/{runs}: ours p50 {pct(ours, 50):.1f} ms p99 {pct(ours, 99):.1f} ms "
                f"max {max(ours):.1f} ms (median {statistics.median(polls_per):.0f} polls); floor p50 "
                f"{pct(base, 50):.1f} ms p99 {pct(base, 99):.1f} ms; heartbeat load {hb_achieved:.0f} ev/s")
    finally:
        env.stop()
