"""HTTP: Starlette routes that serve the target sets' latest rendered bytes, and the
uvicorn server on a dual-stack socket.

Requests never render: each set's body and ETag are rebuilt by a background task
after a change (bursts coalesce into one render), and handlers only read them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import socket
import ssl
import time
from typing import AsyncIterator, Awaitable, Callable, Sequence

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sd._table import table
from sd.config import ServerSettings
from sd.kube.sources import Feed
from sd.metrics import Metrics
from sd.probe import advice
from sd.targets import TargetSet

log = logging.getLogger("sd.app")

RETRY_AFTER_SECONDS = "5"
RENDER_INTERVAL_SECONDS = 0.1
TLS_CHECK_SECONDS = 5.0


class Renderer:
    """Renders dirty sets in the background, once per burst of changes."""

    def __init__(self, sets: dict[str, TargetSet], metrics: Metrics) -> None:
        self.sets = sets
        self.metrics = metrics
        self._wake = asyncio.Event()
        for ts in sets.values():
            ts.on_dirty = self._wake.set

    def render_all(self) -> None:
        for ts in self.sets.values():
            start = time.perf_counter()
            if ts.render():
                self.metrics.renders.labels(ts.name).inc()
                self.metrics.render_seconds.labels(ts.name).observe(time.perf_counter() - start)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            self.render_all()
            await self._wake.wait()
            # A change after a quiet period renders at once; during a burst (a relist, a
            # wave of Ready flips) at most every RENDER_INTERVAL_SECONDS, so a multi-MB
            # body is not rebuilt for every watch read.
            await asyncio.sleep(max(0.0, started + RENDER_INTERVAL_SECONDS - time.monotonic()))
            self._wake.clear()


def _report_stop(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task stopped task=%s", task.get_name(), exc_info=task.exception())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def create_app(
    sets: dict[str, TargetSet],
    metrics: Metrics,
    background: Callable[[], Awaitable[None]] | None = None,
    *,
    feeds: Sequence[Feed] = (),
    server: ServerSettings = ServerSettings(),
) -> Starlette:
    """The ASGI app. ``background`` (the sources) runs for the app's lifetime; ``feeds``
    supply the skipped-data part of the explain view."""
    renderer = Renderer(sets, metrics)
    metrics.watch_sets(sets.values())

    async def targets(request: Request) -> Response:
        name = request.path_params["name"]
        ts = sets.get(name)
        if ts is None:
            return _error(404, f"no target set {name!r}; sets: {', '.join(sorted(sets))}")
        if not ts.synced:
            waiting = ", ".join(sorted(ts.pending_sources)) or "(listed, rendering)"
            return _error(
                503,
                f"target set {name!r} is waiting for its first full list from: {waiting}",
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
        body, etag = ts.body, ts.etag
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    tasks: list[asyncio.Task[None]] = []

    async def healthz(request: Request) -> Response:
        # Renderer and sources run forever; if one ended, the process no longer tracks
        # the cluster and a restart (liveness failure) is the fix.
        stopped = [t.get_name() for t in tasks if t.done()]
        if stopped:
            return PlainTextResponse(f"background task stopped: {', '.join(stopped)}\n", status_code=500)
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        waiting = sorted(name for name, ts in sets.items() if not ts.synced)
        if waiting:
            return PlainTextResponse(f"waiting for first sync: {', '.join(waiting)}\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def metrics_route(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def index(request: Request) -> Response:
        rows = []
        for name in sorted(sets):
            ts = sets[name]
            fam = ts.targets_by_family()
            status = "ready" if ts.synced else "syncing"
            rows.append((name, ts.config.source, status, len(ts), fam["ipv4"], fam["ipv6"], f"/targets/{name}"))
        text = table(("SET", "SOURCE", "STATUS", "TARGETS", "IPV4", "IPV6", "URL"), rows)
        also = "/readyz /healthz /metrics" + (" /debug/sets/<set>" if server.debug else "")
        return PlainTextResponse(f"kube-http-sd: Prometheus http_sd target sets\n\n{text}\nalso: {also}\n")

    async def debug_set(request: Request) -> Response:
        name = request.path_params["name"]
        ts = sets.get(name)
        if ts is None:
            return _error(404, f"no target set {name!r}; sets: {', '.join(sorted(sets))}")
        view = ts.explain()
        view["skipped"] = [
            {"object": obj, "reason": reason, "detail": detail}
            for feed in feeds
            if ts in feed.sets
            for obj, (reason, detail) in sorted(feed.skipped.items())
        ]
        if ts.prober is not None:
            view["probes"] = [
                {
                    "object": key,
                    "results": {ip: {"ok": r.ok, "detail": r.detail} for ip, r in results.items()},
                    "advice": advice(results),
                }
                for key in sorted(ts.index.records)
                if (results := ts.prober.results(key))
            ]
        if request.query_params.get("format") == "text":
            return PlainTextResponse(explain_text(view))
        return JSONResponse(view)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        message = "method not allowed" if exc.status_code == 405 else exc.detail
        if exc.status_code == 404:
            message = f"no route {request.url.path!r}; see / for the target sets"
        return _error(exc.status_code, message, headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks.append(asyncio.create_task(renderer.run(), name="renderer"))
        if background is not None:
            tasks.append(asyncio.create_task(background(), name="sources"))
        for task in tasks:
            task.add_done_callback(_report_stop)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_route),
        Route("/targets/{name}", targets),
    ]
    if server.debug:
        routes.append(Route("/debug/sets/{name}", debug_set))
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    if server.bearer_token_file or server.basic_auth_username:
        app.add_middleware(_Auth, settings=server)
    app.add_middleware(_RequestMetrics, metrics=metrics)
    return app


def explain_text(view: dict) -> str:
    """The explain view as tables."""
    out = [f"set {view['set']} (source {view['source']}, {'synced' if view['synced'] else 'waiting for first sync'})", ""]
    rows = []
    for entry in view["ips"]:
        losers = "; ".join(f"{lo['object']}: {lo['why']}" for lo in entry["losers"]) or "-"
        rows.append((entry["ip"], entry["target"], entry["winner"], losers))
    out.append(table(("IP", "TARGET", "WINNER", "LOSERS (WHY)"), rows))
    out.append(f"not candidates: {len(view['excluded'])}")
    out.append(table(("OBJECT", "REASON", "WHY"), [(e["object"], e["reason"], e["why"]) for e in view["excluded"]]))
    if "probes" in view:
        probes = [
            (p["object"], ip, "ok" if r["ok"] else "FAILED", r["detail"])
            for p in view["probes"]
            for ip, r in p["results"].items()
        ]
        out.append(f"reachability probes: {len(probes)}")
        out.append(table(("OBJECT", "IP", "RESULT", "DETAIL"), probes))
        out += [f"advice: {p['object']}: {p['advice']}" for p in view["probes"] if p["advice"]]
        out.append("")
    out.append(f"skipped bad data: {len(view['skipped'])}")
    out.append(table(("OBJECT", "REASON", "DETAIL"), [(e["object"], e["reason"], e["detail"]) for e in view["skipped"]]))
    return "\n".join(out)


class _SecretFile:
    """A secret read from a file, re-read when the file changes (rotation without restart)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._value = b""

    def value(self) -> bytes:
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                with open(self.path, "rb") as fh:
                    self._value = fh.read().strip()
                self._stamp = (st.st_mtime_ns, st.st_size)
        except OSError as exc:
            log.error("cannot read secret file path=%s detail=%r: denying requests", self.path, str(exc))
            self._stamp, self._value = None, b""
        return self._value


class _Auth:
    """Bearer token and/or basic auth on every route but /healthz, as Prometheus'
    http_sd_configs can send them (authorization, basic_auth). Comparisons are
    constant-time; a 401 never says which part was wrong."""

    def __init__(self, app: Callable, settings: ServerSettings) -> None:
        self.app = app
        self.token = _SecretFile(settings.bearer_token_file) if settings.bearer_token_file else None
        self.user = settings.basic_auth_username.encode()
        self.password = _SecretFile(settings.basic_auth_password_file) if settings.basic_auth_password_file else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer realm="kube-http-sd"' if self.token else 'Basic realm="kube-http-sd"'
        await _error(401, "unauthorized", {"WWW-Authenticate": challenge})(scope, receive, send)

    def _allowed(self, scope: dict) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, credentials = header.partition(b" ")
        scheme = scheme.lower()
        if scheme == b"bearer" and self.token is not None:
            expected = self.token.value()
            return bool(expected) & hmac.compare_digest(credentials.strip(), expected)
        if scheme == b"basic" and self.password is not None:
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                return False
            expected = self.password.value()
            return bool(expected) & hmac.compare_digest(user, self.user) & hmac.compare_digest(password, expected)
        return False


class _RequestMetrics:
    """Counts requests by route template (not raw path: unknown URLs must not explode label cardinality)."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "other")
            self.metrics.requests.labels(template, str(status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - start)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port); raises ValueError with the reason."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen: expected HOST:PORT or [IPv6]:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"--listen: write IPv6 addresses in brackets, e.g. [::1]:8080, got {value!r}")
    return host or "::", int(port)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket; ``::`` also answers IPv4 (IPV6_V6ONLY off)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(addr)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def format_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _TlsFiles:
    """One SSLContext whose certificate chain is reloaded when the files change;
    new handshakes use the new certificate, open connections keep theirs."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._stamp = self._stat()
        self.context.load_cert_chain(cert_file, key_file)

    def _stat(self) -> tuple[float, ...]:
        return tuple(x for f in (self.cert_file, self.key_file) for x in (os.stat(f).st_mtime_ns, os.stat(f).st_size))

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS reload failed, keeping the previous certificate cert=%s detail=%r", self.cert_file, str(exc))
            return False
        self._stamp = stamp
        log.info("TLS certificate reloaded cert=%s", self.cert_file)
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(TLS_CHECK_SECONDS)
            self.reload_if_changed()


async def serve(app: Starlette, sock: socket.socket, server: ServerSettings = ServerSettings()) -> None:
    """Run uvicorn on ``sock`` (HTTPS when configured) until SIGINT/SIGTERM (graceful shutdown)."""
    tls = _TlsFiles(server.tls_cert_file, server.tls_key_file) if server.tls_cert_file else None
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        ssl_context_factory=(lambda cfg, default: tls.context) if tls else None,
    )
    log.info("listening address=%s scheme=%s", format_address(sock), "https" if tls else "http")
    watcher = asyncio.create_task(tls.watch()) if tls else None
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        if watcher is not None:
            watcher.cancel()
