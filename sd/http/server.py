"""The listening socket (dual-stack), TLS with certificate reload, and uvicorn."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl

import uvicorn
from starlette.applications import Starlette

from sd.config import ServerSettings

log = logging.getLogger("sd.http")

TLS_CHECK_SECONDS = 5.0


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


class TlsFiles:
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
    tls = TlsFiles(server.tls_cert_file, server.tls_key_file) if server.tls_cert_file else None
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
