"""ASGI middleware: access control (bearer token / basic auth from files) and request metrics."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import time
from typing import Callable

from sd.config import ServerSettings
from sd.http.responses import error
from sd.logs import ACCESS
from sd.metrics import Metrics

log = logging.getLogger("sd.http")
access = logging.getLogger(ACCESS)

# Liveness must answer without credentials: the kubelet's probe sends none.
UNAUTHENTICATED_PATHS = frozenset({"/healthz"})


class SecretFile:
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
            log.error("cannot read secret file, denying requests path=%s detail=%r", self.path, str(exc))
            self._stamp, self._value = None, b""
        return self._value


class Auth:
    """Bearer token and/or basic auth on every route but /healthz, as Prometheus'
    http_sd_configs can send them (authorization, basic_auth). Comparisons are
    constant-time; a 401 never says which part was wrong."""

    def __init__(self, app: Callable, settings: ServerSettings) -> None:
        self.app = app
        self.token = SecretFile(settings.bearer_token_file) if settings.bearer_token_file else None
        self.user = settings.basic_auth_username.encode()
        self.password = SecretFile(settings.basic_auth_password_file) if settings.basic_auth_password_file else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUTHENTICATED_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer realm="kube-http-sd"' if self.token else 'Basic realm="kube-http-sd"'
        await error(401, "unauthorized", {"WWW-Authenticate": challenge})(scope, receive, send)

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


class RequestMetrics:
    """Counts requests by route template (not raw path: unknown URLs must not explode label
    cardinality), status and content coding (only ours: identity or gzip), and writes the access log line of each request (at debug)."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, encoding = 500, "identity"

        async def send_wrapper(message: dict) -> None:
            nonlocal status, encoding
            if message["type"] == "http.response.start":
                status = message["status"]
                encoding = next((v.decode("latin-1") for k, v in message["headers"] if k == b"content-encoding"), encoding)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "other")
            seconds = time.perf_counter() - start
            self.metrics.requests.labels(template, str(status), encoding).inc()
            self.metrics.request_seconds.labels(template).observe(seconds)
            if access.isEnabledFor(logging.DEBUG):
                client = scope.get("client") or ("-", 0)
                access.debug(
                    "request method=%s path=%s query=%s status=%d seconds=%.4f client=%s",
                    scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"),
                    status, seconds, client[0],
                )
