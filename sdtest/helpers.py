"""Test utilities: poll with a deadline, free ports, and the server as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import httpx

from sd.config import KubeSettings
from sdtest.factories import make_pod

ROOT = Path(__file__).resolve().parent.parent

# A config for tests against the API double: small pages (pagination is exercised),
# short watch timeouts and fast retries.
FAST = textwrap.dedent(
    """
    kubernetes:
      page_size: 3
      watch_timeout_seconds: [5, 10]
      read_timeout_seconds: 5
      backoff_initial_seconds: 0.05
      backoff_max_seconds: 0.5
    """
)
# The same settings for an informer run in the test process.
FAST_SETTINGS = KubeSettings(page_size=10, watch_timeout_seconds=(5, 10), read_timeout_seconds=5,
                             backoff_initial_seconds=0.05, backoff_max_seconds=0.2)

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Call ``check`` until it returns a truthy value without raising; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except (AssertionError, httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s{': ' + what if what else ''}; last: {last!r}")
        time.sleep(interval)


async def until(check: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Yield to the event loop until ``check()`` is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s{': ' + what if what else ''}")
        await asyncio.sleep(0.01)


def terminate(proc: subprocess.Popen[Any], grace: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``grace`` seconds; True when it ended by itself (or had)."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Server:
    """``kube-http-sd serve`` in a subprocess, as users run it.

    ``command`` is what precedes ``--listen`` and ``args``: this interpreter's
    ``python -m sd serve`` unless given (sdtest.container runs the image's instead).
    """

    def __init__(
        self,
        *args: str,
        port: int | None = None,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        command: Sequence[str] = (sys.executable, "-m", "sd", "serve"),
    ) -> None:
        self.port = port or free_port("::" if host in ("::", "[::]") else host)
        listen_host = f"[{host.strip('[]')}]" if ":" in host else host
        self.args = [*command, "--listen", f"{listen_host}:{self.port}", *args]
        self.base = f"http://127.0.0.1:{self.port}" if host in ("::", "[::]", "127.0.0.1") else f"http://{listen_host}:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="kube-http-sd-", suffix=".log", delete=False)
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=full_env)

    def wait_healthy(self, timeout: float = 15.0) -> "Server":
        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            return httpx.get(self.base + "/healthz", timeout=1).status_code == 200

        try:
            eventually(up, timeout, what="server /healthz")
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None
        return self

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.base + path, timeout=5, **kwargs)

    def log(self) -> str:
        return Path(self._log.name).read_text()

    def stop(self) -> int:
        terminate(self.proc)
        return self.proc.returncode

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        os.unlink(self._log.name)


class Sampler:
    """Reads a URL over and over in a thread, keeping every (status, parsed body) seen.

    Used to prove what never happened in between (an empty list, a 503, an IP
    served twice) while a fault plays out.
    """

    def __init__(self, url: str, interval: float = 0.01) -> None:
        self.url = url
        self.interval = interval
        self.samples: list[tuple[int, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                try:
                    resp = client.get(self.url)
                    body = resp.json() if resp.status_code == 200 else None
                    self.samples.append((resp.status_code, body))
                except httpx.HTTPError as exc:
                    self.samples.append((0, repr(exc)))
                self._stop.wait(self.interval)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        eventually(lambda: self.samples, what=f"a first sample of {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def metric_sum(srv: "Server", selector: str) -> float:
    """Sum of the /metrics samples matching ``selector``, written like a series' start:
    ``name`` or ``name{label="value",...`` (labels in any order; unnamed labels match any)."""
    name, _, rest = selector.partition("{")
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    total = 0.0
    for line in srv.get("/metrics").text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        sample, _, labels = series.partition("{")
        have = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if sample == name and all(have.get(k) == v for k, v in wanted.items()):
            total += float(value)
    return total


def probed_pod(tmp_path: Path, port: int) -> tuple[str, str]:
    """(snapshot, config) paths: one Fluentd pod on 127.0.0.1 and ::1 whose metrics port is
    ``port``, and a fluentd set that probes both every second (``ip_family: reachable``)."""
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "PodList", "items": [make_pod("fluentd-a", ["127.0.0.1", "::1"], port=port)]}))
    config = tmp_path / "sd.yaml"
    config.write_text(
        "probe: {interval_seconds: 1, timeout_seconds: 1}\n"
        "targets:\n  fluentd: {source: pods, port_name: monitor, port: 24231, ip_family: reachable}\n"
    )
    return str(snapshot), str(config)

