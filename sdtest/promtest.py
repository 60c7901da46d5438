"""A real Prometheus process for end-to-end tests, and a dual-stack loopback metrics endpoint.

Tests read Prometheus only through its HTTP API (`/api/v1/targets`, `/api/v1/query`).
The Prometheus is 3.x, built from its Go module (`tools/prometheus`); one smoke test runs
Debian's 2.42 (`debian_prometheus`), installed by `scripts/test.sh`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, TypeVar

import httpx
import pytest
import yaml

from sdtest.helpers import eventually, free_port, terminate
from sdtest.upstream import program

T = TypeVar("T")
DEBIAN_PROMETHEUS = "/usr/bin/prometheus"


def prometheus_binary() -> str:
    """The end-to-end Prometheus: ``$PROMETHEUS_BIN`` when set, else Prometheus 3 built from its
    Go module by tools/build.sh (sdtest.upstream: CI fails rather than skips without it)."""
    override = os.environ.get("PROMETHEUS_BIN")
    if override:
        if not os.access(override, os.X_OK):
            pytest.fail(f"PROMETHEUS_BIN={override} is not an executable", pytrace=False)
        return override
    return program("prometheus")


def debian_prometheus() -> str:
    """Debian's prometheus (2.42, what distribution users run), installed by scripts/test.sh;
    a test failure (not a skip) naming the fix when it is missing."""
    if not os.access(DEBIAN_PROMETHEUS, os.X_OK):
        pytest.fail(
            f"the Debian Prometheus smoke test needs {DEBIAN_PROMETHEUS}: `apt-get install prometheus`, "
            "or run ./scripts/test.sh, which installs it",
            pytrace=False,
        )
    return DEBIAN_PROMETHEUS


def _supports_flag(binary: str, flag: str) -> bool:
    """Whether this prometheus accepts `flag` (kingpin rejects unknown flags before --version)."""
    try:
        return subprocess.run([binary, flag, "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Prometheus:
    """`prometheus` on 127.0.0.1:<free port> with its storage and log under `workdir`."""

    def __init__(self, config: dict[str, Any], workdir: Path, binary: str | None = None) -> None:
        self.binary = binary or prometheus_binary()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.workdir / "prometheus.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
        ]
        # Hidden flag (2.41+): how often the scrape manager applies discovery updates
        # (default 5s). The discovery manager's own 5s batching is not configurable.
        flag = "--scrape.discovery-reload-interval=1s"
        if _supports_flag(self.binary, flag):
            args.append(flag)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self._client = httpx.Client(base_url=self.base, timeout=5, trust_env=False)

    # -- lifecycle -------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30) -> "Prometheus":
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}")
            return self._client.get("/-/ready").status_code == 200

        try:
            eventually(ready, timeout, interval=0.05, what="prometheus /-/ready")
        except (RuntimeError, AssertionError) as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def stop(self) -> None:
        try:
            terminate(self.proc, 15)
        finally:
            self._client.close()
            self._log.close()

    def __enter__(self) -> "Prometheus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no prometheus log: {exc})"
        return f"--- prometheus log ({self.log_path}), last {lines} lines ---\n" + "\n".join(text[-lines:])

    # -- HTTP API ----------------------------------------------------------------------

    def _api(self, path: str, **params: str) -> Any:
        resp = self._client.get(path, params=params)
        resp.raise_for_status()
        doc = resp.json()
        assert doc.get("status") == "success", doc
        return doc["data"]

    def active_targets(self, job: str | None = None) -> list[dict[str, Any]]:
        """`activeTargets` of /api/v1/targets, optionally of one scrape pool."""
        targets = self._api("/api/v1/targets", state="active")["activeTargets"]
        return [t for t in targets if job is None or t["scrapePool"] == job]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector result of /api/v1/query."""
        data = self._api("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def eventually(self, check: Callable[[], T], what: str, timeout: float = 30, extra: Callable[[], str] | None = None) -> T:
        """helpers.eventually, with the Prometheus log (and `extra`) in the failure message."""
        try:
            return eventually(check, timeout, interval=0.1, what=what)
        except AssertionError as exc:
            more = extra() if extra else ""
            raise AssertionError(f"{exc}\n{self.log_tail()}\n{more}") from None


# -- a metrics endpoint on 127.0.0.1 and ::1, one port -----------------------------------


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


class DualStackMetrics:
    """Serves a few Prometheus text lines at /metrics on 127.0.0.1:<port> and [::1]:<port>.

    Each sample carries a `listener` label (`ipv4`/`ipv6`) naming the socket that answered,
    and `peers` records every scrape's client address, so a test can tell which family
    Prometheus really used for each target.
    """

    def __init__(self) -> None:
        self.peers: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                family = "ipv6" if self.server.address_family == socket.AF_INET6 else "ipv4"
                outer.peers.append(self.client_address[0])
                body = (
                    "# HELP e2e_fluentd_records_total Records seen (test endpoint).\n"
                    "# TYPE e2e_fluentd_records_total counter\n"
                    f'e2e_fluentd_records_total{{listener="{family}"}} 42\n'
                    "# HELP e2e_fluentd_buffer_bytes Buffer size (test endpoint).\n"
                    "# TYPE e2e_fluentd_buffer_bytes gauge\n"
                    f'e2e_fluentd_buffer_bytes{{listener="{family}"}} 1024\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.servers: list[ThreadingHTTPServer] = []
        last: OSError | None = None
        for _ in range(50):  # find a port free on both loopbacks
            v6 = _V6Server(("::1", 0), Handler)
            port = v6.server_address[1]
            try:
                v4 = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            except OSError as exc:
                v6.server_close()
                last = exc
                continue
            self.servers = [v4, v6]
            self.port = port
            break
        else:
            raise RuntimeError(f"no port free on both 127.0.0.1 and ::1: {last}")
        for srv in self.servers:
            srv.daemon_threads = True
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True) for s in self.servers]

    def __enter__(self) -> "DualStackMetrics":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(5)
