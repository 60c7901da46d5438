"""HTTP: Starlette routes that serve the target sets' latest rendered bytes, and the
uvicorn server on a dual-stack socket.

Requests never render: each set's body and ETag are rebuilt by a background task
after a change (bursts coalesce into one render), and handlers only read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import AsyncIterator, Awaitable, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sd.metrics import Metrics
from sd.targets import TargetSet

log = logging.getLogger("sd.app")

RETRY_AFTER_SECONDS = "5"
ROUTES = ("/", "/healthz", "/readyz", "/metrics", "/targets/{name}")


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
            self.render_all()
            await self._wake.wait()
            self._wake.clear()
            # Let the rest of this burst (events already read) apply first.
            await asyncio.sleep(0)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def create_app(
    sets: dict[str, TargetSet],
    metrics: Metrics,
    background: Callable[[], Awaitable[None]] | None = None,
) -> Starlette:
    """The ASGI app. ``background`` (the sources) runs for the app's lifetime."""
    renderer = Renderer(sets, metrics)
    metrics.watch_sets(sets.values())

    async def targets(request: Request) -> Response:
        name = request.path_params["name"]
        ts = sets.get(name)
        if ts is None:
            return _error(404, f"no target set {name!r}; sets: {', '.join(sorted(sets))}")
        if not ts.synced:
            return _error(
                503,
                f"target set {name!r} is waiting for its first full list from: {', '.join(sorted(ts.pending_sources))}",
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
        body, etag = ts.body, ts.etag
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        waiting = sorted(name for name, ts in sets.items() if not ts.synced)
        if waiting:
            return PlainTextResponse(f"waiting for first sync: {', '.join(waiting)}\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def metrics_route(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def index(request: Request) -> Response:
        lines = ["kube-http-sd: Prometheus http_sd target sets", ""]
        lines.append(f"{'set':<16} {'source':<8} {'status':<8} {'targets':>7} {'ipv4':>6} {'ipv6':>6}  url")
        for name in sorted(sets):
            ts = sets[name]
            fam = ts.targets_by_family()
            status = "ready" if ts.synced else "syncing"
            lines.append(
                f"{name:<16} {ts.config.source:<8} {status:<8} {len(ts):>7} {fam['ipv4']:>6} {fam['ipv6']:>6}  /targets/{name}"
            )
        lines += ["", "also: /readyz /healthz /metrics", ""]
        return PlainTextResponse("\n".join(lines))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        message = "method not allowed" if exc.status_code == 405 else exc.detail
        if exc.status_code == 404:
            message = f"no route {request.url.path!r}; see / for the target sets"
        return _error(exc.status_code, message, headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(renderer.run(), name="renderer")]
        if background is not None:
            tasks.append(asyncio.create_task(background(), name="sources"))
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
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.add_middleware(_RequestMetrics, metrics=metrics)
    return app


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


async def serve(app: Starlette, sock: socket.socket) -> None:
    """Run uvicorn on ``sock`` until SIGINT/SIGTERM (graceful shutdown)."""
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    log.info("listening address=%s", format_address(sock))
    await server.serve(sockets=[sock])
