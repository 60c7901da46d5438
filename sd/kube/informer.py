"""The list/watch loop for one collection (client-go's Reflector, in asyncio).

Life cycle:
1. **list**: a streaming list first (KEP-3157 WatchList: a watch with
   ``sendInitialEvents``; the current objects arrive as ADDED events, then a bookmark
   marked ``k8s.io/initial-events-end`` carries the resourceVersion of that state, and
   the same stream goes on as the watch). Where the server refuses it (400/422: no
   WatchList) or ignores it (an old server: any other event before the end bookmark, or
   no end bookmark within STREAM_END_SECONDS of the last object), this attempt falls
   back to a paginated list (``limit``/``continue``); the next relist tries streaming
   again. Either way objects go to ``handler.list_page`` as they arrive (never all held
   at once), then ``handler.list_done`` swaps the new state in atomically.
2. **watch** from that version with bookmarks and a randomized server-side
   timeout; every event and bookmark advances the version. A read-inactivity
   timeout (not a total one) notices a silently dead connection.
3. clean end of stream, read timeout → watch again from the last version (nothing
   is lost: the server replays everything after it).
4. ``ERROR`` 410 / HTTP 410 (version compacted) → relist (step 1).
5. any other failure (refused, reset, 5xx, 429, 401/403) → back off with jitter
   (~0.8 s doubling to 30 s, reset after a healthy minute; 429 honours
   Retry-After), then retry the step that failed. Never raises.
6. a line that cannot be trusted (not JSON, unknown type, no resourceVersion...) →
   back off, then watch again from the last good version; the server replays its
   history, so if the same version meets a bad line again the line is in that
   history for good, and the informer relists (a list holds objects, not the bad
   event) and watches from the list's version, past it.
7. a watch that ends within SHORT_WATCH_SECONDS without a single event or bookmark
   is a failure (client-go's "very short watch"): backed off, never a hot loop.

It knows nothing about nodes, pods, targets or metrics, and imports nothing from
the rest of the program: it reads raw JSON (no kubernetes-asyncio models, which
cost ~10× the parse) and tells its ``Handler`` what arrived and how it is going.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Awaitable, Callable, Protocol

import aiohttp
import orjson

from sd.kube.events import Event, Malformed

log = logging.getLogger("sd.informer")

# A GET of the collection with the source's selectors bound (``sd.kube.client.list_call``):
# called with the list/watch query parameters and the timeout, it returns the unread
# aiohttp response.
ListCall = Callable[[dict[str, str], aiohttp.ClientTimeout], Awaitable[aiohttp.ClientResponse]]

# Backoff: a failure after this long without one starts again from the initial delay.
HEALTHY_RESET_SECONDS = 60.0
# A watch shorter than this with no events is broken (a proxy or server that answers and
# hangs up at once); retried immediately it would be thousands of requests a second.
SHORT_WATCH_SECONDS = 1.0
MALFORMED_EVENT = "malformed_event"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# During a streaming list: this long without a line and still no end bookmark means the
# server ignored sendInitialEvents (an old server watching from "" sends the objects as
# ADDED and then only changes, never the bookmark).
STREAM_END_SECONDS = 10.0
STREAMING, PAGINATED = "streaming", "paginated"
CONNECT_TIMEOUT_SECONDS = 10.0
CHUNK = 100  # list items handled between yields to the event loop
# A watch read shorter than this means the stream is caught up: the socket is not read
# for COALESCE_SECONDS, so that a stream of single events is read a few at a time.
COALESCE_BELOW_BYTES = 64 * 1024
COALESCE_SECONDS = 0.02


class Settings(Protocol):
    """The informer's knobs (``sd.config.KubeSettings`` has them)."""

    @property
    def page_size(self) -> int: ...
    @property
    def watch_timeout_seconds(self) -> tuple[float, float]: ...
    @property
    def read_timeout_seconds(self) -> float: ...
    @property
    def backoff_initial_seconds(self) -> float: ...
    @property
    def backoff_max_seconds(self) -> float: ...
    @property
    def streaming_list(self) -> str: ...  # "auto": try streaming lists first; "off": paginated only


class Handler(Protocol):
    """What the informer drives: the objects, then its progress and trouble."""

    def list_page(self, items: list[Any]) -> None: ...  # whole objects, as a list or a streaming list has them
    def list_done(self) -> None: ...  # the pages since relisting() are the whole collection
    def event(self, event: Event) -> None: ...  # ADDED | MODIFIED | DELETED | BOOKMARK; Malformed if unusable
    def relisting(self, reason: str, method: str) -> None: ...  # a (re)list starts: why, and "streaming" | "paginated"
    def list_fallback(self, why: str, message: str) -> None: ...  # the streaming list is off for this attempt
    def watching(self) -> None: ...  # a watch request was answered
    def watch_ended(self, reason: str) -> None: ...  # and is being restarted
    def failed(self, reason: str, message: str) -> None: ...  # a request failed; a partial list is void
    def report(self, where: str, reason: str, detail: str) -> None: ...  # bad data, skipped


class Clock(Protocol):
    """Time for the informer: when (short watches, backoff resets) and waiting (backoff)."""

    def now(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Fallback(Exception):
    """The server cannot do a streaming list: do a paginated one. ``reason`` labels metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Expired(Exception):
    """The resourceVersion we asked for is gone: relist."""


class Failure(Exception):
    """A failed request; ``reason`` labels metrics, ``retry_after`` comes from a 429."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


class Backoff:
    """Exponential backoff with jitter: ``initial`` doubling to ``maximum``, each delay
    up to 50% longer at random so that many clients do not retry in step; back to
    ``initial`` after HEALTHY_RESET_SECONDS without a failure."""

    def __init__(self, initial: float, maximum: float, rng: random.Random, clock: Clock) -> None:
        self.initial, self.maximum, self._rng, self._clock = initial, maximum, rng, clock
        self._next = initial
        self._last_failure = -float("inf")

    def delay(self) -> float:
        now = self._clock.now()
        if now - self._last_failure > HEALTHY_RESET_SECONDS:
            self._next = self.initial
        self._last_failure = now
        base = self._next
        self._next = min(self._next * 2, self.maximum)
        return min(base * (1 + self._rng.random() * 0.5), self.maximum)


class _Stream:
    """A watch response, cut into lines read by read. Lines are cut where the newlines
    are, searching only the new bytes: an event split over many reads is neither
    re-copied nor re-scanned per read."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self._chunks = resp.content.iter_any().__aiter__()
        self._pending = bytearray()  # what arrived after the last newline
        self.caught_up = False  # the last read was short: the stream has nothing more yet

    async def lines(self, timeout: float | None = None) -> list[bytearray] | None:
        """The non-blank lines completed by the next read; None once the stream ended (its
        last unterminated line, if any, was the last one returned). TimeoutError when
        ``timeout`` passes without a read."""
        pending = self._pending
        try:
            if timeout is None:
                chunk = await self._chunks.__anext__()
            else:
                async with asyncio.timeout(timeout):
                    chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            if pending and not pending.isspace():
                self._pending = bytearray()
                return [pending]
            return None
        self.caught_up = len(chunk) < COALESCE_BELOW_BYTES
        searched = len(pending)
        pending += chunk
        lines = []
        start, end = 0, pending.find(b"\n", searched)
        while end >= 0:
            line = pending[start:end]
            if line and not line.isspace():
                lines.append(line)
            start, end = end + 1, pending.find(b"\n", end + 1)
        del pending[:start]
        return lines

    def close(self) -> None:
        self.resp.release()


class Informer:
    """The list/watch loop of one collection. ``decode`` is the kind's decoder
    (``sd.kube.events.Decoder``): every watch line is decoded by it, once."""

    def __init__(
        self,
        name: str,
        call: ListCall,
        decode: Callable[[bytes | bytearray], Event],
        handler: Handler,
        settings: Settings,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name, self._call, self._decode, self._handler, self._settings = name, call, decode, handler, settings
        self._rng = rng or random.Random()
        self._clock = clock or MonotonicClock()
        self._backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds, self._rng, self._clock)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT_SECONDS, sock_connect=CONNECT_TIMEOUT_SECONDS,
            sock_read=settings.read_timeout_seconds,
        )
        self.resource_version = ""
        self._malformed_at: str | None = None  # the version a bad line last followed
        self._fallback_logged = False

    async def run(self) -> None:
        """List and watch until cancelled."""
        relist: str | None = "initial"  # why the next step is a list; None: watch from resource_version
        while True:
            try:
                stream = await self._list(relist) if relist is not None else None
                relist = None
                self._handler.watch_ended(await self.watch(stream))
            except Malformed as exc:
                if relist is None:
                    self._handler.watch_ended(MALFORMED_EVENT)
                    if self._malformed_at == self.resource_version:
                        # The server replayed the same bad line after the same version: it is
                        # in its history and every re-watch from here would meet it. Relist.
                        log.warning("relisting source=%r reason=%s detail=%r", self.name, MALFORMED_EVENT, str(exc))
                        relist = MALFORMED_EVENT
                    self._malformed_at = self.resource_version
                else:
                    relist = MALFORMED_EVENT
                await self._fail(MALFORMED_EVENT, str(exc), None)
            except Expired as exc:
                if relist is not None:  # the list itself expired mid-pagination: retry it, but not in a hot loop
                    await self._fail("expired", str(exc), None)
                else:
                    log.info("relisting source=%r reason=expired detail=%r", self.name, str(exc))
                relist = "expired"
            except (Failure, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                if isinstance(exc, Failure):
                    why, message, retry_after = exc.reason, str(exc), exc.retry_after
                else:
                    why, message, retry_after = "connection", f"{type(exc).__name__}: {exc}", None
                await self._fail(why, message, retry_after)
                if relist is not None:
                    relist = "retry"
                else:
                    self._handler.watch_ended(why)
            except Exception as exc:  # a bug must not end the watch: log it, start over from a list
                log.exception("internal error source=%r", self.name)
                await self._fail("internal_error", repr(exc), None)
                relist = "internal_error"

    async def _list(self, reason: str) -> _Stream | None:
        """A (re)list: streaming where the server can, else paginated. Returns the streaming
        list's stream, which goes on as the watch (None after a paginated list)."""
        if self._settings.streaming_list != "off":
            self._handler.relisting(reason, STREAMING)
            try:
                return await self.streaming_list()
            except Fallback as exc:
                self._fell_back(exc)
        self._handler.relisting(reason, PAGINATED)
        await self.paginated_list()
        return None

    def _fell_back(self, exc: Fallback) -> None:
        self._handler.list_fallback(exc.reason, str(exc))
        if not self._fallback_logged:  # once per source: an old server stays old
            self._fallback_logged = True
            log.info("streaming list unavailable, listing with pages source=%r reason=%s detail=%r", self.name, exc.reason, str(exc))

    async def _fail(self, reason: str, message: str, retry_after: float | None) -> None:
        self._handler.failed(reason, message)
        delay = self._backoff.delay()
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.warning("source error source=%r reason=%s retry_in=%.1fs detail=%r", self.name, reason, delay, message)
        await self._clock.sleep(delay)

    async def _request(self, params: dict[str, str]) -> aiohttp.ClientResponse:
        resp = await self._call(params, self._timeout)
        if resp.status == 200:
            return resp
        body = await resp.read()
        resp.release()
        message = _status_message(body) or f"HTTP {resp.status}"
        if resp.status == 410:
            raise Expired(message)
        if resp.status == 429:
            raise Failure("throttled", message, _retry_after(resp.headers.get("Retry-After")))
        if resp.status in (401, 403):
            raise Failure("unauthorized" if resp.status == 401 else "forbidden", message, status=resp.status)
        raise Failure(f"http_{resp.status // 100}xx", message, status=resp.status)

    # -- the steps ------------------------------------------------------------------------

    async def paginated_list(self) -> None:
        """Paginated list. The next page is requested before this one is processed, and
        processing yields to the event loop every CHUNK items, so the API server
        serializes page n+1 (and HTTP requests get answered) while page n becomes
        records. Only one page is parsed at a time: the next waits as raw bytes."""
        fetch = asyncio.ensure_future(self._page(""))
        try:
            while True:
                items, meta = _parse_page(await fetch)
                token = meta.get("continue") or ""
                if token:
                    fetch = asyncio.ensure_future(self._page(token))
                for start in range(0, len(items), CHUNK):
                    self._handler.list_page(items[start : start + CHUNK])
                    await asyncio.sleep(0)
                del items
                if not token:
                    self.resource_version = meta.get("resourceVersion") or ""
                    self._handler.list_done()
                    return
        finally:
            if not fetch.done():
                fetch.cancel()

    async def _page(self, token: str) -> bytes:
        params = {"limit": str(self._settings.page_size)}
        if token:
            params["continue"] = token
        resp = await self._request(params)
        try:
            return await resp.read()
        finally:
            resp.release()

    async def streaming_list(self) -> _Stream:
        """A watch with ``sendInitialEvents``: its objects until the end bookmark are the
        list. Returns the stream, past that bookmark, to go on with as the watch; Fallback
        when the server refuses or ignores it."""
        stream = await self._open(initial=True)
        end_wait = min(STREAM_END_SECONDS, self._settings.read_timeout_seconds)
        try:
            while True:
                try:
                    lines = await stream.lines(end_wait)
                except TimeoutError:
                    raise Fallback("ignored", f"no {INITIAL_EVENTS_END} bookmark {end_wait:g}s after the last object") from None
                if lines is None:
                    raise Failure("list_incomplete", f"the streaming list ended before its {INITIAL_EVENTS_END} bookmark")
                objects = []
                for i, line in enumerate(lines):
                    event = self._event(line)
                    if event.type == "ADDED":
                        objects.append(self._object(event, line))
                        continue
                    if event.type == "BOOKMARK" and _ends_initial_events(event):
                        self._handler.list_page(objects)
                        self._handler.list_done()
                        self._handler.event(event)
                        self.resource_version = event.version
                        for rest in lines[i + 1 :]:
                            self._line(rest)
                        return stream
                    if event.type == "ERROR":
                        self._error(event.parts)
                    raise Fallback(
                        "ignored", f"a {event.type} event before the {INITIAL_EVENTS_END} bookmark: the server ignored sendInitialEvents"
                    )
                if objects:
                    self._handler.list_page(objects)
                    await asyncio.sleep(0)
        except BaseException:
            stream.close()
            raise

    async def watch(self, stream: _Stream | None = None) -> str:
        """Watch from ``resource_version`` (or go on with a streaming list's ``stream``)
        until the stream ends; returns why it ended (or raises)."""
        started, received = self._clock.now(), 0
        if stream is None:
            stream = await self._open(initial=False)
        else:
            received = 1  # the streaming list's lines came over it
        try:
            while (lines := await stream.lines()) is not None:
                for line in lines:
                    self._line(line)
                received += len(lines)
                if stream.caught_up:
                    await _coalesce(stream.resp)
        except asyncio.TimeoutError:
            return "read_timeout"
        finally:
            stream.close()
        if not received and self._clock.now() - started < SHORT_WATCH_SECONDS:
            raise Failure("short_watch", f"watch ended within {SHORT_WATCH_SECONDS:g}s without any event or bookmark")
        self._malformed_at = None
        return "closed"

    async def _open(self, initial: bool) -> _Stream:
        """A watch request from ``resource_version``, or a streaming list's (``initial``)."""
        low, high = self._settings.watch_timeout_seconds
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(int(self._rng.uniform(low, high)))}
        if initial:
            params.update(resourceVersion="", sendInitialEvents="true", resourceVersionMatch="NotOlderThan")
        else:
            params["resourceVersion"] = self.resource_version
        try:
            resp = await self._request(params)
        except Failure as exc:
            if initial and exc.status in (400, 422):  # no WatchList on this server
                raise Fallback(f"rejected_{exc.status}", str(exc)) from None
            raise
        self._handler.watching()
        return _Stream(resp)

    # -- lines ----------------------------------------------------------------------------

    def _line(self, line: bytes | bytearray) -> None:
        """Apply one watch line; raises Malformed when it cannot be trusted."""
        event = self._event(line)
        if event.type == "ERROR":
            self._error(event.parts)
        try:
            self._handler.event(event)
        except Malformed as exc:
            raise self._malformed(line, exc) from None
        self.resource_version = event.version

    def _event(self, line: bytes | bytearray) -> Event:
        try:
            return self._decode(line)
        except Malformed as exc:
            raise self._malformed(line, exc) from None

    def _object(self, event: Event, line: bytes | bytearray) -> Any:
        try:
            return event.whole()
        except Malformed as exc:
            raise self._malformed(line, exc) from None

    def _malformed(self, line: bytes | bytearray, exc: Malformed) -> Malformed:
        """Report a line that cannot be trusted; the Malformed to raise."""
        detail = f"{self.name}: watch line dropped after resourceVersion {self.resource_version!r}: {exc}: {bytes(line[:80])!r}"
        self._handler.report(self.name, MALFORMED_EVENT, detail)
        return Malformed(detail)

    @staticmethod
    def _error(status: dict[str, Any]) -> None:
        """An ERROR event (its object a Status): 410 → Expired (relist), anything else a Failure."""
        code, message = status.get("code"), status.get("message", "")
        if code == 410:
            raise Expired(message)
        raise Failure(f"watch_error_{code}", f"watch ERROR event: {message}")


def _ends_initial_events(bookmark: Event) -> bool:
    annotations = (bookmark.whole().get("metadata") or {}).get("annotations")
    return isinstance(annotations, dict) and annotations.get(INITIAL_EVENTS_END) == "true"


async def _coalesce(resp: aiohttp.ClientResponse) -> None:
    """Caught up with the stream: stop reading the socket for COALESCE_SECONDS, so that the
    events arriving meanwhile are read (and handed over) at once. Read one by one, as they
    arrive, each costs a loop wake-up, a recv and the HTTP parser more than it costs itself."""
    transport = resp.connection.transport if resp.connection is not None else None
    if transport is None:
        await asyncio.sleep(COALESCE_SECONDS)
        return
    transport.pause_reading()
    try:
        await asyncio.sleep(COALESCE_SECONDS)
    finally:
        if not transport.is_closing():
            transport.resume_reading()


def _parse_page(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    try:
        page = orjson.loads(body)
        items = page.get("items") or []
        meta = page.get("metadata") or {}
        if not isinstance(items, list) or not isinstance(meta, dict):
            raise TypeError("items is not a list")
    except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
        raise Failure("malformed_list", f"list response is not a Kubernetes list: {exc}") from None
    return items, meta


def _status_message(body: bytes) -> str:
    try:
        status = orjson.loads(body)
        return f"{status.get('code')} {status.get('reason')}: {status.get('message')}"
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode("utf-8", "replace")


def _retry_after(value: str | None) -> float | None:
    try:
        return min(float(value), 300.0) if value else None
    except ValueError:
        return None
