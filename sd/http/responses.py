"""Responses: the shared target body in chunks and slices, the JSON error body every route and
middleware answers with, and ETag matching."""

from __future__ import annotations

import asyncio
import logging
from typing import Mapping

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from sd.body import Body

log = logging.getLogger("sd.http")

# Handed to the server a slice at a time, a body is never copied whole into a
# connection's buffer: on Python 3.11 asyncio copies whatever the socket does not take
# at once, so 64 clients of a 10 MB body held 64 copies. A slice is written only once
# the previous one has drained (uvicorn's flow control), so a connection holds at most
# about one slice plus the transport's high-water mark (64 KiB).
SLICE_BYTES = 256 * 1024


class BodyResponse(Response):
    """A rendered body, shared by every connection, sent chunk by chunk (its blocks), each
    in ``SLICE_BYTES`` views at most.

    A connection that takes nothing for ``write_timeout`` seconds (a client that stopped
    reading) is closed: it would otherwise hold its slice and its socket forever.
    """

    media_type = "application/json"

    def __init__(self, body: Body, headers: Mapping[str, str], write_timeout: float) -> None:
        super().__init__(b"", headers={**headers, "content-length": str(body.length)})
        self.shared = body
        self.write_timeout = write_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        sent, total = 0, self.shared.length
        for chunk in self.shared.chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), SLICE_BYTES):
                piece = view[start : start + SLICE_BYTES]
                try:
                    async with asyncio.timeout(self.write_timeout):
                        await send({"type": "http.response.body", "body": piece, "more_body": sent + len(piece) < total})
                except TimeoutError:
                    client = scope.get("client") or ("?", 0)
                    log.warning(
                        "closing a connection that stopped reading path=%s client=%s sent=%d of=%d timeout=%gs",
                        scope["path"], client[0], sent, total, self.write_timeout,
                    )
                    return  # uvicorn closes a connection whose response was not completed
                sent += len(piece)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, ``*`` matches)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))
