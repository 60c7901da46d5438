"""The routes: target bodies, health, metrics, the index, the status pages and the explain view.

Requests never render: each set's body and ETag are rebuilt by the service's
``Renderer`` after a change (bursts coalesce into one render), and handlers only read
them. Handlers are plain functions over ``request.app.state``: ``service`` (its sets,
and whether its tasks run), ``metrics``, ``server`` (the settings) and ``pages`` (the
status pages rendered last).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib.resources import files
from typing import Any, AsyncIterator, Callable
from urllib.parse import quote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sd.config import ServerSettings
from sd.gzip_body import gzip_etag
from sd.http import status_page
from sd.http.middleware import Auth, RequestMetrics
from sd.http.negotiation import GZIP, content_coding, prefers_html
from sd.http.pages import explain_text, index_text, readyz_text
from sd.http.responses import BodyResponse, error, etag_matches
from sd.metrics import Metrics
from sd.service import Driver, Service
from sd.clusters import Served
from sd.views import explain

log = logging.getLogger("sd.http")

RETRY_AFTER_SECONDS = "5"


# On every answer of /targets/<set> but errors: a cache must not hand a gzip body to a
# client that did not ask for one (Prometheus), nor the plain one to one that did.
VARY_ENCODING = {"Vary": "Accept-Encoding"}
MAX_SHARDS = 1024
EXPLAIN_FORMATS = ("json", "text")
PAGE_SECONDS = 1.0  # a status page is rendered at most this often (see html_page)
# The status pages' own files (sd/http/static/), served from memory: no other host is
# ever asked for anything, and the CSP allows only our own origin.
STATIC_TYPES = {"status.js": "text/javascript", "status.css": "text/css", "icon.svg": "image/svg+xml"}


def _static_files() -> dict[str, bytes]:
    root = files("sd.http") / "static"
    return {name: (root / name).read_bytes() for name in STATIC_TYPES}


def _shard_params(request: Request) -> tuple[int, int] | None | Response:
    """(shards, shard) from ``?shards=N&shard=I``, None without them, or the 400 to answer."""
    query = request.query_params
    shards, shard = query.get("shards"), query.get("shard")
    if shards is None and shard is None:
        return None
    allowed = f"shards=N&shard=I with integers 1 <= N <= {MAX_SHARDS} and 0 <= I < N"
    if shards is None or shard is None:
        return error(400, f"shards and shard go together: {allowed}")
    if not all(v.isascii() and v.isdigit() for v in (shards, shard)):
        return error(400, f"not integers: shards={shards!r} shard={shard!r}; {allowed}")
    n, i = int(shards), int(shard)
    if not 1 <= n <= MAX_SHARDS or not 0 <= i < n:
        return error(400, f"out of range: shards={n} shard={i}; {allowed}")
    return n, i


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def _lookup(request: Request) -> Served | Response:
    """The set named in the path, or the 404 to answer."""
    sets = _service(request).sets
    name = request.path_params["name"]
    ts = sets.get(name)
    return ts if ts is not None else error(404, f"no target set {name!r}; sets: {', '.join(sorted(sets))}")


async def targets(request: Request) -> Response:
    ts = _lookup(request)
    if isinstance(ts, Response):
        return ts
    if not ts.synced:
        waiting = ", ".join(ts.waiting_for()) or "(listed, rendering)"
        return error(
            503,
            f"target set {ts.name!r} is waiting for its first full list from: {waiting}",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )
    selected = _shard_params(request)
    if isinstance(selected, Response):
        return selected
    coding = content_coding(request.headers.get("accept-encoding"))
    if coding is None:
        return error(406, "Accept-Encoding refuses both codings served: gzip and identity", VARY_ENCODING)
    body = ts.current if selected is None else ts.shard(*selected)
    tag = gzip_etag(body.etag) if coding == GZIP else body.etag
    headers = {"ETag": tag, "Cache-Control": "no-cache", **VARY_ENCODING}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)  # a 304 never compresses anything
    if coding == GZIP:
        body = ts.gzipped(selected)
        headers["Content-Encoding"] = GZIP
    return BodyResponse(body, headers, request.app.state.server.write_timeout_seconds)


async def healthz(request: Request) -> Response:
    # The service's tasks run forever; if one ended, the process no longer tracks the
    # cluster and a restart (liveness failure) is the fix.
    stopped = _service(request).stopped()
    if stopped:
        return PlainTextResponse(f"background task stopped: {', '.join(stopped)}\n", status_code=500)
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    ready, text = readyz_text(_service(request).sets.values())
    return PlainTextResponse(text, status_code=200 if ready else 503)


async def metrics_route(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _html_page(
    request: Request, page: str, build: Callable[[], str], title: str, nav: list[tuple[str, str]], filter_box: bool = False
) -> Response:
    """A status page, or 304 when the copy the page's script holds is current. Its
    content is rendered at most once per PAGE_SECONDS whoever asks: a set page of
    5,000 targets takes ~0.1 s to render, and every open tab polls it."""
    rendered: dict[str, tuple[float, str, str]] = request.app.state.pages  # page → (when, its <main>, its digest)
    now = time.monotonic()
    hit = rendered.get(page)
    if hit is None or now - hit[0] >= PAGE_SECONDS:
        main = build()
        hit = rendered[page] = (now, main, status_page.version(main))
    _, main, version = hit
    headers = {**status_page.HEADERS, "ETag": f'"{version}"', "Vary": "Accept"}
    if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return HTMLResponse(status_page.page(title, main, version, nav, filter_box), headers=headers)


async def index(request: Request) -> Response:
    sets, debug = _service(request).sets, request.app.state.server.debug
    # Browsers get the overview page; curl (*/*), scripts and no Accept the same plain text as always.
    if prefers_html(request.headers.get("accept")):
        nav = [("/readyz", "/readyz"), ("/metrics", "/metrics"), ("/healthz", "/healthz")]
        return _html_page(request, "/", lambda: status_page.overview_main(sets.values(), debug), "status", nav)
    return PlainTextResponse(index_text(sets.values(), debug), headers={"Vary": "Accept"})


async def set_page(request: Request) -> Response:
    ts = _lookup(request)
    if isinstance(ts, Response):
        return ts
    name, path = ts.name, quote(ts.name, safe="")
    nav = [
        ("/", "overview"),
        (f"/targets/{path}", f"/targets/{name}"),
        (f"/debug/sets/{path}", "explain (JSON)"),
        (f"/debug/sets/{path}?format=text", "(text)"),
    ]
    return _html_page(request, f"/sets/{name}", lambda: status_page.set_main(ts), f"set {name}", nav, filter_box=True)


_STATIC = _static_files()


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:
        return error(404, f"no file {name!r}")
    return Response(_STATIC[name], media_type=STATIC_TYPES[name], headers=status_page.HEADERS)


async def debug_set(request: Request) -> Response:
    ts = _lookup(request)
    if isinstance(ts, Response):
        return ts
    fmt = request.query_params.get("format", "json")
    if fmt not in EXPLAIN_FORMATS:
        return error(400, f"unknown format {fmt!r}; formats: {', '.join(EXPLAIN_FORMATS)}")
    view = explain(ts)
    if fmt == "text":
        return PlainTextResponse(explain_text(view))
    return JSONResponse(view)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    message = "method not allowed" if exc.status_code == 405 else exc.detail
    if exc.status_code == 404:
        message = f"no route {request.url.path!r}; see / for the target sets"
    return error(exc.status_code, message, headers)


ROUTES = [
    Route("/", index),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics_route),
    Route("/targets/{name}", targets),
    Route("/static/{name}", static_file),
]
DEBUG_ROUTES = [Route("/sets/{name}", set_page), Route("/debug/sets/{name}", debug_set)]


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """The service runs (its sources, prober and renderer) for the app's lifetime."""
    task = asyncio.create_task(app.state.service.run(app.state.driver), name="service")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def create_app(service: Service, metrics: Metrics, driver: Driver | None = None, *, server: ServerSettings = ServerSettings()) -> Starlette:
    """The ASGI app over ``service``; ``driver`` (None: a snapshot) runs its sources."""
    routes = ROUTES + DEBUG_ROUTES if server.debug else ROUTES
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=_lifespan)
    # Starlette would answer /targets/kubelet/ with a redirect built from the request's Host
    # header: a redirect to wherever the client (or an attacker) says. A 404 says what is wrong.
    app.router.redirect_slashes = False
    metrics.watch_sets(service.sets)
    state: Any = app.state
    state.service, state.metrics, state.server, state.driver, state.pages = service, metrics, server, driver, {}
    if server.bearer_token_file or server.basic_auth_username:
        app.add_middleware(Auth, settings=server)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app
