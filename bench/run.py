#!/usr/bin/env python3
"""kube-http-sd benchmarks: one command, one table (see bench/README.md).

    /tmp/venv/bin/python bench/run.py [--quick] [--only NAME[,NAME]] [--runs N]
                                      [--json FILE] [--profile DIR]

Scenarios: initial_sync, event_throughput, serving, freshness, memory. Every number comes from
real processes: the server (`python -m sd serve`) and the baselines run as subprocesses against
the loopback Kubernetes API double (tests/kubeapi.py, running in this process). Each scenario
reports the median of --runs runs (per-run ratios to a baseline measured in the same run, then
their median). Nothing is asserted: the table says which budgets hold; the exit status is 0.
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import json
import os
import queue
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import workload as W  # noqa: E402
from double import BenchKubeAPI  # noqa: E402

PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
WRK = "/usr/bin/wrk"
PYSPY = str(Path(PY).parent / "py-spy")
T_START = time.monotonic()
ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
       "PYTHONUNBUFFERED": "1"}
for _k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    ENV.pop(_k, None)

KUBELET_EVENTS = 'kube_http_sd_watch_events_total{resource="nodes",type="MODIFIED"}'
KUBELET_RENDERS = 'kube_http_sd_renders_total{set="kubelet"}'

CONFIG_YAML = """\
kubernetes:
  page_size: 500
  watch_timeout_seconds: [3000, 3600]   # no server-side watch end during a measurement
  read_timeout_seconds: 120
  backoff_initial_seconds: 0.8
  backoff_max_seconds: 30
"""


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- sizes


@dataclass
class Sizes:
    nodes: int = 5000
    pods: int = 5000
    events: int = 20_000          # heartbeat stream
    flips: int = 10_000           # Ready-flip stream
    model_events: int = 2_000     # kubernetes-asyncio model watch baseline (slow: ~1k ev/s)
    warmup_events: int = 2_000
    wrk_seconds: int = 10
    fresh_samples: int = 50
    fresh_heartbeat_rate: int = 500

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(nodes=1000, pods=1000, events=5000, flips=2000, model_events=500, warmup_events=500,
                   wrk_seconds=3, fresh_samples=10)


# --------------------------------------------------------------------------- processes

LIVE: set["Proc"] = set()


class Proc:
    """A subprocess with a log file, optional line-reader on stdout, /proc readings."""

    def __init__(self, name: str, args: list[str], *, pipe_stdout: bool = False, pipe_stdin: bool = False) -> None:
        self.name = name
        self.logfile = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.t_spawn = time.monotonic()
        self.p = subprocess.Popen(
            args, cwd=ROOT, env=ENV, text=True,
            stdin=subprocess.PIPE if pipe_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else self.logfile,
            stderr=self.logfile,
            start_new_session=True,
        )
        LIVE.add(self)
        if pipe_stdout:
            threading.Thread(target=self._read, daemon=True, name=f"read-{name}").start()

    @property
    def pid(self) -> int:
        return self.p.pid

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no output within {timeout:.0f}s\n{self.tail()}") from None
        if line is None:
            raise RuntimeError(f"{self.name}: exited ({self.p.poll()}) before answering\n{self.tail()}")
        return line

    def alive(self) -> None:
        if self.p.poll() is not None:
            raise RuntimeError(f"{self.name}: exited with {self.p.returncode}\n{self.tail()}")

    def cpu(self) -> float:
        """utime + stime (all threads), seconds."""
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def mem(self) -> dict[str, int]:
        """VmRSS, VmHWM in bytes."""
        out = {}
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
        return out

    def tail(self, n: int = 15) -> str:
        try:
            text = Path(self.logfile.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-n:])

    def stop(self) -> None:
        try:
            if self.p.stdin is not None:
                with contextlib.suppress(OSError):
                    self.p.stdin.close()
            if self.p.poll() is None:
                self.p.send_signal(signal.SIGTERM)
                try:
                    self.p.wait(10)
                except subprocess.TimeoutExpired:
                    self.p.kill()
                    self.p.wait(10)
        finally:
            LIVE.discard(self)
            with contextlib.suppress(OSError):
                self.logfile.close()
                os.unlink(self.logfile.name)


def kill_all() -> None:
    for proc in list(LIVE):
        with contextlib.suppress(Exception):
            proc.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """Keep-alive HTTP/1.1 client (http.client); reconnects after any error."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, headers=headers or {})
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        return resp.status, resp, body

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
        return self.request("GET", path, headers)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def scrape(client: Client) -> dict[str, float]:
    status, _, body = client.get("/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


# --------------------------------------------------------------------------- fixtures


class Env:
    """One API double plus the files the server needs."""

    def __init__(self, tmp: Path) -> None:
        self.api = BenchKubeAPI(history_limit=60_000).start()
        self.kubeconfig = self.api.write_kubeconfig(tmp / f"kubeconfig-{self.api.port}")
        self.config = str(tmp / "sd.yaml")
        Path(self.config).write_text(CONFIG_YAML)

    def stop(self) -> None:
        self.api.stop()


def start_server(env: Env) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc("server", [PY, "-m", "sd", "serve", "--kubeconfig", env.kubeconfig, "--config", env.config,
                           "--listen", f"127.0.0.1:{port}", "--log-level", "warning"])
    return proc, port


def wait_synced(proc: Proc, port: int, timeout: float = 120.0, interval: float = 0.005) -> float:
    """Poll HEAD /targets/kubelet and /targets/fluentd every `interval` until both answer 200;
    returns the monotonic time of the second 200."""
    client = Client(port, timeout=30)
    pending = ["/targets/kubelet", "/targets/fluentd"]
    deadline = time.monotonic() + timeout
    try:
        while True:
            path = pending[0]
            try:
                status, _, _ = client.request("HEAD", path)
            except (OSError, http.client.HTTPException):
                status = 0
            if status == 200:
                pending.pop(0)
                if not pending:
                    return time.monotonic()
                continue
            proc.alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not synced within {timeout}s (last {path}: {status})\n{proc.tail()}")
            time.sleep(interval)
    finally:
        client.close()


def spawn_synced(env: Env) -> tuple[Proc, int, float]:
    proc, port = start_server(env)
    done = wait_synced(proc, port)
    return proc, port, done - proc.t_spawn


@contextlib.contextmanager
def profiled(pid: int, name: str, profile_dir: Path | None) -> Iterator[None]:
    """py-spy record (raw folded stacks) of `pid` while the block runs, when --profile is given."""
    if profile_dir is None or not Path(PYSPY).exists():
        yield
        return
    out = profile_dir / f"{name}.txt"
    spy = subprocess.Popen([PYSPY, "record", "--pid", str(pid), "--rate", "200", "--nonblocking",
                            "--format", "raw", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(20)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
        log(f"profile written: {out}")


# --------------------------------------------------------------------------- results


@dataclass
class Metric:
    scenario: str
    name: str
    unit: str
    budget: str = ""
    check: Callable[[float, float | None, float | None], bool] | None = None
    ours: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    note: str = ""
    ratio: bool = True  # False: the two columns are not comparable (no ratio printed)

    def add(self, ours: float, base: float | None = None) -> None:
        self.ours.append(ours)
        if base is not None:
            self.base.append(base)

    def summary(self) -> dict[str, Any]:
        ours = statistics.median(self.ours) if self.ours else None
        base = statistics.median(self.base) if self.base else None
        ratios = [o / b for o, b in zip(self.ours, self.base) if b] if self.ratio else []
        ratio = statistics.median(ratios) if ratios and len(self.base) == len(self.ours) else (
            ours / base if ours is not None and base and self.ratio else None)
        ok = None
        if self.check is not None and ours is not None:
            ok = bool(self.check(ours, base, ratio))
        return {"scenario": self.scenario, "metric": f"{self.name} ({self.unit})" if self.unit else self.name,
                "ours": ours, "baseline": base, "ratio": ratio, "budget": self.budget, "ok": ok,
                "runs_ours": self.ours, "runs_baseline": self.base, "note": self.note}


RESULTS: list[Metric] = []
NOTES: list[str] = []
LOADS: list[str] = []


def metric(*args: Any, **kwargs: Any) -> Metric:
    m = Metric(*args, **kwargs)
    RESULTS.append(m)
    return m


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def print_table(out=sys.stdout) -> None:
    rows = [("scenario", "metric", "ours", "baseline", "ratio", "budget", "ok?")]
    for m in RESULTS:
        s = m.summary()
        if s["ours"] is None:
            continue
        ratio = f"{s['ratio']:.2f}x" if s["ratio"] is not None else "-"
        ok = "-" if s["ok"] is None else ("yes" if s["ok"] else "NO")
        rows.append((s["scenario"], s["metric"], fmt(s["ours"]), fmt(s["baseline"]), ratio, s["budget"] or "-", ok))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {2, 3, 4}

    def line(r: tuple[str, ...]) -> str:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        return "| " + " | ".join(cells) + " |"

    print(line(rows[0]), file=out)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for r in rows[1:]:
        print(line(r), file=out)
    for m in RESULTS:
        if m.note and m.ours:
            print(f"  * {m.scenario} / {m.name}: {m.note}", file=out)
    for note in NOTES:
        print(f"  * {note}", file=out)


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (q in 0..100)."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


MB = 1024 * 1024  # "MB" in the table is MiB


# --------------------------------------------------------------------------- 1. initial_sync


def bench_initial_sync(sz: Sizes, runs: int, tmp: Path, profile: Path | None) -> None:
    sc = "initial_sync"
    m_floor = metric(sc, "sync time vs floor", "s", "<= 1.5x", lambda o, b, r: r is not None and r <= 1.5,
                     note="spawn -> first 200 on /targets/kubelet and /targets/fluentd (ours) vs spawn -> "
                          "all pages fetched + orjson-parsed (floor, bench/base_list.py --mode raw)")
    m_model = metric(sc, "sync time vs model", "s", "<= 0.33x (>= 3x faster)", lambda o, b, r: r is not None and r <= 1 / 3,
                     note="baseline: same pages with kubernetes-asyncio models (_preload_content=True)")
    m_abs = metric(sc, "sync time", "s", "< 3 s", lambda o, b, r: o < 3.0)
    m_rss = metric(sc, "peak RSS after sync (VmHWM)", "MB", "< 150 MB", lambda o, b, r: o < 150,
                   note="baseline: the floor list process's peak RSS (its VmHWM)")
    env = Env(tmp)
    try:
        log(f"{sc}: loading {sz.nodes} nodes + {sz.pods} pods into the double")
        env.api.add_many(W.nodes(sz.nodes))
        env.api.add_many(W.pods(sz.pods))
        gc.collect()
        for run in range(runs):
            # ours
            proc, port = start_server(env)
            try:
                with profiled(proc.pid, f"initial_sync-run{run}", profile if run == 0 else None):
                    done = wait_synced(proc, port)
                ours = done - proc.t_spawn
                hwm = proc.mem()["VmHWM"] / MB
            finally:
                proc.stop()
            # baselines
            base = {}
            for mode in ("raw", "model"):
                bp = Proc(f"list-{mode}", [PY, str(BENCH / "base_list.py"), "--kubeconfig", env.kubeconfig,
                                           "--mode", mode, "--page-size", "500"], pipe_stdout=True)
                try:
                    doc = json.loads(bp.line(timeout=300))
                    base[mode] = (doc["done"] - bp.t_spawn, doc["maxrss_kb"] * 1024 / MB)
                    if doc["nodes"] != sz.nodes or doc["pods"] != sz.pods:
                        raise RuntimeError(f"baseline listed {doc['nodes']} nodes, {doc['pods']} pods")
                finally:
                    bp.stop()
            m_floor.add(ours, base["raw"][0])
            m_model.add(ours, base["model"][0])
            m_abs.add(ours)
            m_rss.add(hwm, base["raw"][1])
            log(f"{sc} run {run + 1}/{runs}: ours {ours:.3f}s (VmHWM {hwm:.0f} MB), floor {base['raw'][0]:.3f}s, "
                f"model {base['model'][0]:.3f}s")
    finally:
        env.stop()


# --------------------------------------------------------------------------- 2. event_throughput


class Pusher:
    """Pushes prepared MODIFIED events into the double from a thread, as fast as it can."""

    def __init__(self, api: BenchKubeAPI, prepared: list, batch: int = 200) -> None:
        self.api, self.prepared, self.batch = api, prepared, batch
        self.t_first = self.t_last = 0.0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="pusher")

    def _run(self) -> None:
        try:
            self.t_first = time.monotonic()
            for chunk in W.chunks(self.prepared, self.batch):
                self.api.push_prepared(chunk)
            self.t_last = time.monotonic()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def start(self) -> "Pusher":
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(120)
        if self.error is not None:
            raise self.error

    @property
    def rate(self) -> float:
        return len(self.prepared) / max(self.t_last - self.t_first, 1e-9)


def _wait_counter(client: Client, proc: Proc, series: str, target: float, timeout: float,
                  min_interval: float = 0.01, max_interval: float = 0.25) -> tuple[float, int]:
    """Poll /metrics until `series` >= target; (time reached, number of scrapes).

    A scrape costs the server several ms of CPU at 5,000 objects, so polls are adaptive: sleep
    half the estimated remaining time (from the rate seen so far), between 10 and 250 ms."""
    deadline = time.monotonic() + timeout
    polls = 0
    first: tuple[float, float] | None = None
    while True:
        value = scrape(client).get(series, 0.0)
        polls += 1
        now = time.monotonic()
        if value >= target:
            return now, polls
        proc.alive()
        if now > deadline:
            raise RuntimeError(f"{series} = {value}, wanted {target}, after {timeout}s\n{proc.tail()}")
        if first is None:
            first = (now, value)
            interval = min_interval * 5
        else:
            rate = (value - first[1]) / max(now - first[0], 1e-6)
            interval = (target - value) / rate / 2 if rate > 0 else max_interval
        time.sleep(min(max(interval, min_interval), max_interval))


def _scrape_cost(client: Client, proc: Proc, n: int = 40) -> float:
    """CPU seconds one /metrics scrape costs the server (subtracted from event CPU)."""
    c0 = proc.cpu()
    for _ in range(n):
        scrape(client)
    return (proc.cpu() - c0) / n


def _ours_stream(env: Env, proc: Proc, client: Client, updates: list[dict], warm: list[dict],
                 scrape_cpu: float, label: str) -> tuple[float, float, float, float, float]:
    """Push `warm` then `updates` through the server's watch; returns
    (events/s, CPU s per 10k events net of /metrics scrapes, raw CPU s per 10k, renders, double push rate)."""
    api = env.api
    prep_warm, prep = api.prepare_modifies(warm), api.prepare_modifies(updates)
    n = len(prep)
    m0 = scrape(client)
    base = m0.get(KUBELET_EVENTS, 0.0)
    Pusher(api, prep_warm).start().join()
    _wait_counter(client, proc, KUBELET_EVENTS, base + len(prep_warm), timeout=120)
    time.sleep(0.2)  # let the renderer settle after warm-up
    m1 = scrape(client)
    start_events, start_renders = m1.get(KUBELET_EVENTS, 0.0), m1.get(KUBELET_RENDERS, 0.0)
    gc.disable()
    try:
        c0 = proc.cpu()
        pusher = Pusher(api, prep).start()
        t_done, polls = _wait_counter(client, proc, KUBELET_EVENTS, start_events + n, timeout=max(120, n / 200))
        c1 = proc.cpu()
        pusher.join()
    finally:
        gc.enable()
    time.sleep(0.3)  # renders triggered by the last events
    renders = scrape(client).get(KUBELET_RENDERS, 0.0) - start_renders
    rate = n / (t_done - pusher.t_first)
    cpu_raw = (c1 - c0) / n * 10_000
    cpu_net = max(c1 - c0 - polls * scrape_cpu, 0.0) / n * 10_000
    log(f"  ours {label}: {rate:,.0f} ev/s, CPU {cpu_net:.3f}s/10k net ({cpu_raw:.3f} raw, {polls} scrapes), "
        f"renders {renders:.0f}, double pushed {pusher.rate:,.0f} ev/s")
    return rate, cpu_net, cpu_raw, renders, pusher.rate


def _baseline_stream(env: Env, mode: str, updates: list[dict], warm: list[dict], label: str) -> tuple[float, float, float]:
    """The same stream into a baseline watcher process; (events/s, CPU s per 10k, double push rate)."""
    api = env.api
    prep_warm, prep = api.prepare_modifies(warm), api.prepare_modifies(updates)
    n = len(prep)
    settle_watches(api, 0)
    bp = Proc(f"watch-{mode}", [PY, str(BENCH / "base_watch.py"), "--kubeconfig", env.kubeconfig, "--mode", mode,
                                "--rv", api.resource_version, "--warmup", str(len(prep_warm)), "--count", str(n)],
              pipe_stdout=True, pipe_stdin=True)
    try:
        api.wait_for_watches(1, timeout=60)
        Pusher(api, prep_warm).start().join()
        line = bp.line(timeout=120)
        if not line.startswith("warm "):
            raise RuntimeError(f"baseline said {line!r}")
        time.sleep(0.1)
        gc.disable()
        try:
            c0 = bp.cpu()
            pusher = Pusher(api, prep).start()
            line = bp.line(timeout=max(120, n / 100))
            c1 = bp.cpu()
            pusher.join()
        finally:
            gc.enable()
        kind, t_done, count = line.split()
        if kind != "done":
            raise RuntimeError(f"baseline said {line!r}")
        rate = n / (float(t_done) - pusher.t_first)
        cpu = (c1 - c0) / n * 10_000
        log(f"  {mode} baseline {label}: {rate:,.0f} ev/s, CPU {cpu:.3f}s/10k, double pushed {pusher.rate:,.0f} ev/s")
        return rate, cpu, pusher.rate
    finally:
        bp.stop()
        settle_watches(api, 0)


def settle_watches(api: BenchKubeAPI, n: int, timeout: float = 10.0) -> None:
    """Wait until the double has noticed closed watches (at most `n` left open)."""
    deadline = time.monotonic() + timeout
    while api.open_watches() > n and time.monotonic() < deadline:
        time.sleep(0.01)


def bench_event_throughput(sz: Sizes, runs: int, tmp: Path, profile: Path | None) -> None:
    sc = "event_throughput"
    hb_rate = metric(sc, f"heartbeat events/s (N={sz.events})", "ev/s", ">= 10,000/s", lambda o, b, r: o >= 10_000,
                     note="first push -> /metrics watch_events_total grew by N (ours) / the process printed 'done' "
                          "(baseline); floor = raw watch + orjson.loads per line (bench/base_watch.py --mode raw)")
    hb_cpu = metric(sc, "heartbeat CPU per 10k events", "s", "<= 2x floor", lambda o, b, r: r is not None and r <= 2.0,
                    note="utime+stime from /proc/<pid>/stat over the window; ours net of the /metrics polls "
                         "(scrape cost measured beforehand)")
    hb_renders = metric(sc, "heartbeat renders (kubelet)", "count", "== 0", lambda o, b, r: o == 0)
    model_rate = metric(sc, f"heartbeat events/s vs model (N={sz.model_events})", "ev/s", "-", None,
                        note="baseline: kubernetes-asyncio watch.Watch().stream(list_node) with V1Node models")
    model_cpu = metric(sc, "heartbeat CPU per 10k vs model", "s", "-", None)
    fl_rate = metric(sc, f"ready-flip events/s (N={sz.flips})", "ev/s", ">= 10,000/s", lambda o, b, r: o >= 10_000,
                     note="every event flips one node's Ready (True<->False): each changes /targets/kubelet")
    fl_cpu = metric(sc, "ready-flip CPU per 10k events", "s", "<= 2x floor", lambda o, b, r: r is not None and r <= 2.0)
    fl_renders = metric(sc, "ready-flip renders (kubelet)", "count", "-", None,
                        note="bursts coalesce; more renders = more full-body rebuilds")
    push = metric(sc, "API double push rate (ours run; floor run)", "ev/s", ">= 30,000/s",
                  lambda o, b, r: min(o, b if b is not None else o) >= 30_000, ratio=False,
                  note="prepared MODIFIED events/s committed by the double's producer thread while ours (ours "
                       "column) / the floor (baseline column) consumed the heartbeat stream. The floor's events/s "
                       "(~15 us CPU/event = ~65k/s capacity) is bounded by the double's delivery (~30-65k/s), not by itself")
    env = Env(tmp)
    try:
        log(f"{sc}: loading {sz.nodes} nodes into the double")
        base_nodes = W.nodes(sz.nodes)
        env.api.add_many(base_nodes)
        gc.collect()
        offset = 0

        def hb(n: int) -> list[dict]:
            nonlocal offset
            offset += n
            return W.heartbeat_updates(base_nodes, n, start=offset)

        # a whole number of True->False->True cycles, so every consumer starts from all-Ready
        n_flips = max(1, round(sz.flips / (2 * sz.nodes))) * 2 * sz.nodes
        flips = W.ready_flip_updates(base_nodes, n_flips)
        for run in range(runs):
            proc, port, sync = spawn_synced(env)
            client = Client(port, timeout=60)
            try:
                scrape_cpu = _scrape_cost(client, proc)
                log(f"{sc} run {run + 1}/{runs}: server synced in {sync:.2f}s; /metrics scrape costs "
                    f"{scrape_cpu * 1000:.2f} ms CPU")
                with profiled(proc.pid, f"event_throughput-heartbeat-run{run}", profile if run == 0 else None):
                    o_hb = _ours_stream(env, proc, client, hb(sz.events), hb(sz.warmup_events), scrape_cpu, "heartbeat")
                with profiled(proc.pid, f"event_throughput-flip-run{run}", profile if run == 0 else None):
                    o_fl = _ours_stream(env, proc, client, flips, hb(sz.warmup_events), scrape_cpu, "ready-flip")
            finally:
                client.close()
                proc.stop()
            f_hb = _baseline_stream(env, "raw", hb(sz.events), hb(sz.warmup_events), "heartbeat")
            f_fl = _baseline_stream(env, "raw", flips, hb(sz.warmup_events), "ready-flip")
            mod = _baseline_stream(env, "model", hb(sz.model_events), hb(min(200, sz.warmup_events)), "heartbeat")
            hb_rate.add(o_hb[0], f_hb[0])
            hb_cpu.add(o_hb[1], f_hb[1])
            hb_renders.add(o_hb[3])
            model_rate.add(o_hb[0], mod[0])
            model_cpu.add(o_hb[1], mod[1])
            fl_rate.add(o_fl[0], f_fl[0])
            fl_cpu.add(o_fl[1], f_fl[1])
            fl_renders.add(o_fl[3])
            push.add(o_hb[4], f_hb[2])
    finally:
        env.stop()


# --------------------------------------------------------------------------- 3. serving

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


def bench_serving(sz: Sizes, runs: int, tmp: Path, profile: Path | None) -> None:
    sc = "serving"
    m_rps = metric(sc, "req/s /targets/kubelet", "req/s", ">= 0.8x", lambda o, b, r: r is not None and r >= 0.8,
                   note=f"wrk -t2 -c64 -d{sz.wrk_seconds}s --timeout 10s --latency (keep-alive); baseline: same uvicorn serving the "
                        "same bytes from a one-route Starlette app (bench/base_serve.py); runs alternate")
    m_p50 = metric(sc, "p50 latency", "ms", "-", None)
    m_p99 = metric(sc, "p99 latency", "ms", "<= 1.25x", lambda o, b, r: r is not None and r <= 1.25)
    m_rss = metric(sc, "peak RSS after wrk (VmHWM)", "MB", "-", None,
                   note="response bytes buffered per connection by the asyncio transport count here")
    env = Env(tmp)
    procs: list[Proc] = []
    try:
        log(f"{sc}: loading {sz.nodes} nodes into the double")
        env.api.add_many(W.nodes(sz.nodes))
        gc.collect()
        proc, port, _ = spawn_synced(env)
        procs.append(proc)
        client = Client(port)
        status, _, body = client.get("/targets/kubelet")
        client.close()
        if status != 200:
            raise RuntimeError(f"/targets/kubelet answered {status}")
        body_file = tmp / "kubelet-body.json"
        body_file.write_bytes(body)
        bport = free_port()
        bproc = Proc("serve-baseline", [PY, str(BENCH / "base_serve.py"), "--body", str(body_file),
                                        "--listen", f"127.0.0.1:{bport}"])
        procs.append(bproc)
        bclient = Client(bport)
        deadline = time.monotonic() + 30
        while True:
            try:
                if bclient.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            bproc.alive()
            if time.monotonic() > deadline:
                raise RuntimeError("baseline server did not start")
            time.sleep(0.05)
        bclient.close()
        log(f"{sc}: body {len(body) / MB:.1f} MB; warming up both servers")
        run_wrk(port, 2)
        run_wrk(bport, 2)
        for run in range(runs):
            order = [("ours", port), ("baseline", bport)]
            if run % 2:
                order.reverse()
            res = {}
            for who, p in order:
                with profiled(proc.pid, f"serving-run{run}", profile if (run == 0 and who == "ours") else None):
                    res[who] = run_wrk(p, sz.wrk_seconds)
                r = res[who]
                log(f"{sc} run {run + 1}/{runs} {who}: {r['rps']:.1f} req/s, p50 {r['p50']:.1f} ms, "
                    f"p99 {r['p99']:.1f} ms, errors {r['errors']:.0f}, non-2xx {r['non2xx']:.0f}")
            m_rps.add(res["ours"]["rps"], res["baseline"]["rps"])
            m_p50.add(res["ours"]["p50"], res["baseline"]["p50"])
            m_p99.add(res["ours"]["p99"], res["baseline"]["p99"])
            if res["ours"]["errors"] or res["baseline"]["errors"]:
                NOTES.append(f"serving run {run + 1}: wrk socket errors ours={res['ours']['errors']:.0f} "
                             f"baseline={res['baseline']['errors']:.0f}")
        m_rss.add(proc.mem()["VmHWM"] / MB, bproc.mem()["VmHWM"] / MB)
        NOTES.append(f"serving: /targets/kubelet body is {len(body) / MB:.1f} MB for {sz.nodes} nodes "
                     f"({len(body) / max(sz.nodes, 1):,.0f} B/target)")
    finally:
        for p in procs:
            p.stop()
        env.stop()


# --------------------------------------------------------------------------- 4. freshness


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


def bench_freshness(sz: Sizes, runs: int, tmp: Path, profile: Path | None) -> None:
    sc = "freshness"
    m_p50 = metric(sc, "modify() -> visible p50", "ms", "-", None,
                   note=f"{sz.fresh_samples} changes/run, one per ~100 ms, under {sz.fresh_heartbeat_rate} heartbeat "
                        "events/s; ours: polled GET /targets/kubelet with If-None-Match; floor baseline: raw watch "
                        "consumer process receiving the event (bench/base_watch.py --names)")
    m_p99 = metric(sc, "modify() -> visible p99", "ms", "< 250 ms", lambda o, b, r: o < 250)
    m_max = metric(sc, "modify() -> visible max", "ms", "-", None)
    m_polls = metric(sc, "polls per change (ours; 304s + 200s)", "count", "-", None)
    n_change = max(10, sz.nodes // 5)
    change_ids = list(range(sz.nodes - n_change, sz.nodes))
    env = Env(tmp)
    try:
        log(f"{sc}: loading {sz.nodes} nodes into the double")
        base_nodes = W.nodes(sz.nodes)
        env.api.add_many(base_nodes)
        hb_nodes = base_nodes[: sz.nodes - n_change]  # heartbeats never touch the change set
        prepared_hb = env.api.prepare_modifies(W.heartbeat_updates(hb_nodes, max(len(hb_nodes), 2000)))
        gc.collect()
        names_file = tmp / "fresh-names.txt"
        names_file.write_text("\n".join(W.node_name(j) for j in change_ids))
        seq = ChangeSeq(change_ids)
        for run in range(runs):
            # ---- ours
            proc, port, _ = spawn_synced(env)
            ours: list[float] = []
            polls_per: list[int] = []
            timeouts = 0
            try:
                client = Client(port)
                status, resp, body = client.get("/targets/kubelet")
                etag = resp.getheader("ETag") or ""
                with HeartbeatLoad(env.api, prepared_hb, sz.fresh_heartbeat_rate) as load, \
                        profiled(proc.pid, f"freshness-run{run}", profile if run == 0 else None):
                    time.sleep(0.5)
                    next_at = time.monotonic()
                    for _ in range(sz.fresh_samples):
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
                        next_at = max(next_at + 0.1, time.monotonic())
                        time.sleep(max(0.0, next_at - time.monotonic()))
                    if load.error:
                        raise load.error
                client.close()
            finally:
                proc.stop()
            # ---- floor baseline: a raw watcher sees the event
            settle_watches(env.api, 0)
            bp = Proc("watch-fresh", [PY, str(BENCH / "base_watch.py"), "--kubeconfig", env.kubeconfig,
                                      "--mode", "raw", "--rv", env.api.resource_version, "--names", str(names_file)],
                      pipe_stdout=True, pipe_stdin=True)
            base: list[float] = []
            try:
                env.api.wait_for_watches(1, timeout=60)
                seen: dict[str, float] = {}
                with HeartbeatLoad(env.api, prepared_hb, sz.fresh_heartbeat_rate) as load:
                    time.sleep(0.5)
                    next_at = time.monotonic()
                    for _ in range(sz.fresh_samples):
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
                        next_at = max(next_at + 0.1, time.monotonic())
                        time.sleep(max(0.0, next_at - time.monotonic()))
                hb_achieved = load.achieved
            finally:
                bp.stop()
            m_p50.add(pct(ours, 50), pct(base, 50))
            m_p99.add(pct(ours, 99), pct(base, 99))
            m_max.add(max(ours), max(base))
            m_polls.add(statistics.median(polls_per))
            if timeouts:
                NOTES.append(f"freshness run {run + 1}: {timeouts} changes not visible within 5 s (counted as 5000 ms)")
            log(f"{sc} run {run + 1}/{runs}: ours p50 {pct(ours, 50):.1f} ms p99 {pct(ours, 99):.1f} ms "
                f"max {max(ours):.1f} ms (median {statistics.median(polls_per):.0f} polls); floor p50 "
                f"{pct(base, 50):.1f} ms p99 {pct(base, 99):.1f} ms; heartbeat load {hb_achieved:.0f} ev/s")
    finally:
        env.stop()


# --------------------------------------------------------------------------- 5. memory


def bench_memory(sz: Sizes, runs: int, tmp: Path, profile: Path | None) -> None:
    sc = "memory"
    m_empty = metric(sc, "RSS synced, 0 objects", "MB", "-", None)
    m_nodes = metric(sc, f"RSS synced, {sz.nodes} nodes", "MB", "-", None)
    m_all = metric(sc, f"RSS synced, {sz.nodes} nodes + {sz.pods} pods", "MB", "-", None)
    m_hwm = metric(sc, f"peak RSS (VmHWM), {sz.nodes} nodes + {sz.pods} pods", "MB", "< 150 MB", lambda o, b, r: o < 150,
                   note="baseline: the floor list process (kubernetes-asyncio + orjson, keeps nothing) on the same data")
    m_per_node = metric(sc, "bytes per indexed node", "B", "-", None,
                        note="(RSS 5000 nodes - RSS empty) / nodes, after sync + 1 s; baseline: the node's JSON size")
    m_per_pod = metric(sc, "bytes per indexed pod", "B", "-", None,
                       note="(RSS nodes+pods - RSS nodes) / pods; baseline: the pod's JSON size")
    import orjson

    nodes, pods = W.nodes(sz.nodes), W.pods(sz.pods)
    node_json = sum(len(orjson.dumps(n)) for n in nodes) / len(nodes)
    pod_json = sum(len(orjson.dumps(p)) for p in pods) / len(pods)

    def measure(env: Env) -> dict[str, float]:
        proc, _, _ = spawn_synced(env)
        try:
            time.sleep(1.0)
            mem = proc.mem()
            return {"rss": mem["VmRSS"] / MB, "hwm": mem["VmHWM"] / MB}
        finally:
            proc.stop()

    for run in range(runs):
        env = Env(tmp)
        try:
            empty = measure(env)
            env.api.add_many(nodes)
            with_nodes = measure(env)
            env.api.add_many(pods)
            with_all = measure(env)
            bp = Proc("list-raw", [PY, str(BENCH / "base_list.py"), "--kubeconfig", env.kubeconfig, "--mode", "raw"],
                      pipe_stdout=True)
            try:
                floor_hwm = json.loads(bp.line(timeout=300))["maxrss_kb"] * 1024 / MB
            finally:
                bp.stop()
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


# --------------------------------------------------------------------------- machine load


def _system_busy() -> float:
    """Busy CPU seconds of the whole machine (all CPUs), from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _own_cpu() -> float:
    """CPU seconds of this process and its reaped children (server, baselines, wrk)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class MachineLoad:
    """How much CPU *other* processes on the machine used while a scenario ran (noise indicator)."""

    def __enter__(self) -> "MachineLoad":
        self.t0, self.busy0, self.own0 = time.monotonic(), _system_busy(), _own_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.t0
        foreign = max(0.0, (_system_busy() - self.busy0) - (_own_cpu() - self.own0))
        self.share = foreign / max(wall * (os.cpu_count() or 1), 1e-9)


# --------------------------------------------------------------------------- main

SCENARIOS: dict[str, Callable[[Sizes, int, Path, Path | None], None]] = {
    "initial_sync": bench_initial_sync,
    "event_throughput": bench_event_throughput,
    "serving": bench_serving,
    "freshness": bench_freshness,
    "memory": bench_memory,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run, smaller sizes: a smoke test")
    parser.add_argument("--only", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--runs", type=int, help="runs per scenario (default 3; --quick: 1)")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--profile", help="write py-spy raw profiles of the server (first run) into this directory "
                                          "(numbers taken while profiling are slightly pessimistic)")
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    runs = args.runs or (1 if args.quick else 3)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    profile = Path(args.profile).resolve() if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
        if not Path(PYSPY).exists():
            log(f"--profile: {PYSPY} not found (pip install py-spy); profiling disabled")
    failed: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    log(f"sizes: {sizes}; runs: {runs}; scenarios: {', '.join(names)}; {os.cpu_count()} CPUs")
    try:
        with tempfile.TemporaryDirectory(prefix="kube-http-sd-bench-") as tmpdir:
            for name in names:
                log(f"=== {name}")
                t0 = time.monotonic()
                load = MachineLoad()
                try:
                    with load:
                        SCENARIOS[name](sizes, runs, Path(tmpdir), profile)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - report, keep going, exit 0
                    failed.append(name)
                    NOTES.append(f"{name}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                    log(f"{name} failed:\n{traceback.format_exc()}")
                finally:
                    kill_all()
                share = getattr(load, "share", None)
                if share is not None:
                    LOADS.append(f"{name} {share * 100:.0f}%")
                log(f"=== {name} took {time.monotonic() - t0:.0f}s; other processes used "
                    f"{(share or 0) * 100:.0f}% of the machine meanwhile")
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        kill_all()
    print()
    print(f"kube-http-sd benchmarks: {'quick, ' if args.quick else ''}{runs} run(s), median; "
          f"{sizes.nodes} nodes, {sizes.pods} pods; {os.cpu_count()} CPUs; total {time.monotonic() - T_START:.0f}s")
    print()
    print_table()
    if LOADS:
        print(f"  * machine noise: CPU used by processes outside this benchmark, share of {os.cpu_count()} CPUs: "
              + ", ".join(LOADS))
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes.__dict__, "runs": runs,
                                               "results": [m.summary() for m in RESULTS], "notes": NOTES,
                                               "machine_noise": LOADS},
                                              indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
