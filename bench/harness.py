"""What every scenario shares: sizes, the run context, processes, readers, the table.

Processes: `Proc` is a subprocess with a log file, an optional line reader on stdout and
/proc readings (CPU, RSS); every one is stopped in a `finally` by the code that started it,
and the runner stops whatever is left after each scenario (`Context.stop_all`). `Env` is the
API double (in this process) plus the server's kubeconfig and config; it starts the server
(`python -m sd serve`) and the baselines (`python -m bench.base_*`), all with cwd = the
repository root.

Results: a scenario adds its rows (`Metric`) with `Context.metric` before its first run, so
the runs finished before a failure still reach the table and the JSON.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import os
import queue
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from bench import workload as W
from bench.double import BenchKubeAPI
from sdtest.helpers import terminate

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
WRK = "/usr/bin/wrk"
PYSPY = str(Path(PY).parent / "py-spy")
T_START = time.monotonic()
MB = 1024 * 1024  # "MB" in the table is MiB
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
    large_nodes: int = 20_000     # the `large` scenario (nodes only)
    paced_events: int = 4_000     # heartbeats written one per send, paced
    paced_rate: int = 2_000       # ... at this many per second
    real_flips: int = 100         # Ready flips through a real API server (`real_apiserver`)
    shard_counts: tuple[int, ...] = (1, 2, 4)  # Prometheus shards (`shards_cost`)
    churn_seconds: float = 300    # ... and how long the churn phase lasts
    cluster_counts: tuple[int, ...] = (2, 4, 8)  # clusters served by one server (`clusters`)
    cluster_objects: int = 2500   # ... each with this many nodes and this many pods
    real_cluster_counts: tuple[int, ...] = (2, 4, 8)  # ... as real API servers (`clusters_real`)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(nodes=1000, pods=1000, events=5000, flips=2000, model_events=500, warmup_events=500,
                   wrk_seconds=3, fresh_samples=10, large_nodes=4000, paced_events=4000,
                   real_flips=20, shard_counts=(1, 2), churn_seconds=15, cluster_counts=(2, 4), cluster_objects=250,
                   real_cluster_counts=(2,))


# --------------------------------------------------------------------------- processes


class Proc:
    """A subprocess with a log file, optional line-reader on stdout, /proc readings.

    While it runs it is a member of `live` (the context's set), so the runner can stop
    whatever a failed scenario left behind."""

    def __init__(self, name: str, args: list[str], live: set["Proc"], *,
                 pipe_stdout: bool = False, pipe_stdin: bool = False) -> None:
        self.name = name
        self.live = live
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
        live.add(self)
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
            terminate(self.p)
        finally:
            self.live.discard(self)
            with contextlib.suppress(OSError):
                self.logfile.close()
                os.unlink(self.logfile.name)


class RssSampler:
    """The highest VmRSS of a process, sampled every `interval` s while the block runs."""

    def __init__(self, proc: Proc, interval: float = 0.02) -> None:
        self.proc, self.interval = proc, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{proc.name}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.mem()["VmRSS"])
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self.peak = max(self.peak, self.proc.mem()["VmRSS"])


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
    """One row of the table: per-run values of ours and the baseline, and the budget."""

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


def print_table(results: list[Metric], notes: list[str], out: TextIO = sys.stdout) -> None:
    rows = [("scenario", "metric", "ours", "baseline", "ratio", "budget", "ok?")]
    for m in results:
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
    for m in results:
        if m.note and m.ours:
            print(f"  * {m.scenario} / {m.name}: {m.note}", file=out)
    for note in notes:
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


# --------------------------------------------------------------------------- context


@dataclass
class Context:
    """What one invocation shares with its scenarios: sizes, runs, the scratch directory,
    --profile, the rows and notes of the table, and the processes still running."""

    sizes: Sizes
    runs: int
    tmp: Path
    profile: Path | None = None
    results: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    live: set[Proc] = field(default_factory=set)

    def metric(self, *args: Any, **kwargs: Any) -> Metric:
        m = Metric(*args, **kwargs)
        self.results.append(m)
        return m

    def spawn(self, name: str, args: list[str], **kwargs: Any) -> Proc:
        return Proc(name, args, self.live, **kwargs)

    def baseline(self, name: str, module: str, *args: str, **kwargs: Any) -> Proc:
        """A baseline script of this package (`python -m bench.<module> ARGS`)."""
        return self.spawn(name, [PY, "-m", f"bench.{module}", *args], **kwargs)

    def profiled(self, pid: int, name: str, enabled: bool = True) -> contextlib.AbstractContextManager[None]:
        """`profiled` into --profile's directory when given and `enabled` (first runs only)."""
        return profiled(pid, name, self.profile if enabled else None)

    def stop_all(self) -> None:
        for proc in list(self.live):
            with contextlib.suppress(Exception):
                proc.stop()


# --------------------------------------------------------------------------- fixtures


class Env:
    """One API double plus the files the server needs."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.api = BenchKubeAPI(history_limit=60_000).start()
        self.kubeconfig = self.api.write_kubeconfig(ctx.tmp / f"kubeconfig-{self.api.port}")
        self.config = str(ctx.tmp / "sd.yaml")
        Path(self.config).write_text(CONFIG_YAML)

    def stop(self) -> None:
        self.api.stop()

    def load(self, scenario: str, pods: bool = True) -> list[dict[str, Any]]:
        """The generated cluster into the double (its nodes, and its pods unless not wanted);
        returns the nodes."""
        sz = self.ctx.sizes
        log(f"{scenario}: loading {sz.nodes} nodes{f' + {sz.pods} pods' if pods else ''} into the double")
        nodes = W.nodes(sz.nodes)
        self.api.add_many(nodes)
        if pods:
            self.api.add_many(W.pods(sz.pods))
        gc.collect()
        return nodes

    def start_server(self) -> tuple[Proc, int]:
        port = free_port()
        proc = self.ctx.spawn("server", [PY, "-m", "sd", "serve", "--kubeconfig", self.kubeconfig,
                                         "--config", self.config, "--listen", f"127.0.0.1:{port}",
                                         "--log-level", "warning"])
        return proc, port

    @contextlib.contextmanager
    def settled(self, config: str) -> Iterator[tuple[Proc, Client]]:
        """A server on ``config``, synced and left 1 s to settle (so RSS readings compare), and
        a client of it; both stopped on exit."""
        self.config = config
        proc, port = self.start_server()
        try:
            wait_synced(proc, port)
            time.sleep(1)
            client = Client(port)
            try:
                yield proc, client
            finally:
                client.close()
        finally:
            proc.stop()

    def spawn_synced(self) -> tuple[Proc, int, float]:
        proc, port = self.start_server()
        done = wait_synced(proc, port)
        return proc, port, done - proc.t_spawn

    def list_baseline(self, mode: str, *args: str) -> tuple[dict[str, Any], float]:
        """Run `base_list.py --mode MODE ARGS` to its end: (its JSON line, spawn -> its "done")."""
        bp = self.ctx.baseline(f"list-{mode}", "base_list", "--kubeconfig", self.kubeconfig, "--mode", mode,
                               *args, pipe_stdout=True)
        try:
            doc = json.loads(bp.line(timeout=300))
        finally:
            bp.stop()
        return doc, doc["done"] - bp.t_spawn

    def watch_baseline(self, name: str, mode: str, *args: str) -> Proc:
        """Start `base_watch.py --mode MODE` from the double's current resourceVersion."""
        return self.ctx.baseline(name, "base_watch", "--kubeconfig", self.kubeconfig, "--mode", mode,
                                 "--rv", self.api.resource_version, *args, pipe_stdout=True, pipe_stdin=True)


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


def settle_watches(api: BenchKubeAPI, n: int, timeout: float = 10.0) -> None:
    """Wait until the double has noticed closed watches (at most `n` left open)."""
    deadline = time.monotonic() + timeout
    while api.open_watches() > n and time.monotonic() < deadline:
        time.sleep(0.01)


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
