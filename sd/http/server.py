"""The listening socket (dual-stack), TLS with certificate reload, and uvicorn."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from typing import Callable

import uvicorn
from starlette.applications import Starlette

from sd.config import ServerSettings
from sd.kinds.ips import hostport

log = logging.getLogger("sd.http")

TLS_CHECK_SECONDS = 1.0  # two stat() calls a second: cheap, and renewals show up at once


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
    return hostport(host, port)


class TlsFiles:
    """HTTPS from a certificate and key file pair, reloaded when the files change.

    The server listens with one fixed context whose SNI callback hands each new
    handshake the current pair's context. A changed pair is loaded into a *new*
    context and swapped in only when it loads, so a certificate written before its
    key (or a wrong key) never breaks HTTPS: the previous pair stays in use until a
    matching pair is on disk. Open connections keep what they negotiated.
    """

    def __init__(self, cert_file: str, key_file: str, on_reload: Callable[[bool], None] = lambda ok: None) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self._on_reload = on_reload
        self._stamp = self._stat()
        self._failed: object = None  # the stamp of a pair that did not load; retried once it changes
        self.current = self._load()
        self.context = self._load()
        self.context.sni_callback = self._select

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def _select(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        # Called for every ClientHello, with or without SNI.
        if self.current is not context:
            connection.context = self.current

    def _stat(self) -> tuple[float, ...]:
        return tuple(x for f in (self.cert_file, self.key_file) for x in (os.stat(f).st_mtime_ns, os.stat(f).st_size))

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._stat()
        except OSError as exc:  # mid-rotation, a file may be missing for a moment
            return self._failure("unreadable", exc)
        if stamp in (self._stamp, self._failed):
            return False
        try:
            context = self._load()
        except (OSError, ssl.SSLError) as exc:
            return self._failure(stamp, exc)
        self.current, self._stamp, self._failed = context, stamp, None
        self._on_reload(True)
        log.info("TLS certificate reloaded cert=%s", self.cert_file)
        return True

    def _failure(self, key: object, exc: Exception) -> bool:
        if key != self._failed:  # once per bad pair, not at every check
            log.error(
                "TLS reload failed, keeping the previous certificate cert=%s key=%s detail=%r",
                self.cert_file, self.key_file, str(exc),
            )
            self._on_reload(False)
        self._failed = key
        return False

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(TLS_CHECK_SECONDS)
            self.reload_if_changed()


class _IncompleteByDesign(logging.Filter):
    """uvicorn logs an error when a response ends unfinished; BodyResponse ends one that way
    on purpose, to close a connection that stopped reading, and has already said why."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


async def serve(
    app: Starlette,
    sock: socket.socket,
    server: ServerSettings = ServerSettings(),
    on_tls_reload: Callable[[bool], None] = lambda ok: None,
) -> None:
    """Run uvicorn on ``sock`` (HTTPS when configured) until SIGINT/SIGTERM (graceful shutdown)."""
    tls = TlsFiles(server.tls_cert_file, server.tls_key_file, on_tls_reload) if server.tls_cert_file else None
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        ssl_context_factory=(lambda cfg, default: tls.context) if tls else None,
    )
    logging.getLogger("uvicorn.error").addFilter(_IncompleteByDesign())
    log.info("listening address=%s scheme=%s", format_address(sock), "https" if tls else "http")
    watcher = asyncio.create_task(tls.watch()) if tls else None
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        if watcher is not None:
            watcher.cancel()
