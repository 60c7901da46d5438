"""Reachability probes for ``ip_family: reachable``: which of a pod's IPs answer on the metrics port.

Fluentd's prometheus plugin listens on one IP family at a time (``0.0.0.0`` by
default; ``[::]`` is IPv6-only on Fluentd 1.18+), so in a dual-stack cluster
one of a pod's two targets is often down. ``Prober`` GETs each watched
endpoint, remembers the last result per IP, and tells its owner (``on_change``)
when an IP starts or stops answering; the owner then publishes only the IPs in
``reachable(key)``, or the primary IP while that is still ``None``.

Scheduling: one heap of (due time, slot) entries for every watched endpoint and
one loop that starts the due ones, at most ``concurrency`` at a time, then
sleeps until the next due time or a wake-up (``watch()`` or a finished probe).
New and changed endpoints are due at once, ahead of periodic re-probes; after a
probe the endpoint is due again ``interval`` later. Replaced or forgotten
endpoints are marked dead and dropped when they reach the top of the heap, so
``watch()`` and ``forget()`` cost only the endpoints of that key.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import ipaddress
import itertools
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Callable

import httpx

from sd.kinds.ips import hostport

log = logging.getLogger("sd.probe")

# (ip, port, path, scheme); the ip as the index stores it (normalized, IPv6 unbracketed).
Endpoint = tuple[str, int, str, str]

REFUSED = "connection refused"
_ERRNO_DETAILS = {
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ECONNRESET: "connection reset",
}
_FIRST = float("-inf")  # due time of new endpoints: before every periodic re-probe

IPV6_REFUSED_ADVICE = "IPv6 refused — Fluentd bound to IPv4 only; set bind '[::]' or add a second prometheus source"
IPV4_REFUSED_ADVICE = (
    "IPv4 refused — Fluentd bound to IPv6 only (bind '[::]' on Fluentd 1.18+ is IPv6-only); "
    "add a second prometheus source bound to 0.0.0.0"
)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str  # short human text: "HTTP 200", "connection refused", "timeout after 2.0s", "HTTP 404"
    checked_at: float  # the prober's clock (time.monotonic) when the probe finished


class _Slot:
    """One watched endpoint. Replacing or forgetting it sets ``live`` False; the
    heap entry and any in-flight probe then see that and drop out."""

    __slots__ = ("key", "endpoint", "live")

    def __init__(self, key: str, endpoint: Endpoint) -> None:
        self.key = key
        self.endpoint = endpoint
        self.live = True


class Prober:
    """Probes (ip, port, path, scheme) endpoints with bounded concurrency; results cached until re-probed.

    ``run()`` does the probing; everything else is synchronous and cheap, meant
    to be called from the code that applies watch events. ``on_change(key)`` is
    called from ``run()`` after a probe that changed whether an IP of ``key``
    answers (including its first result), never from ``watch()``/``forget()``:
    after those, read ``reachable(key)`` directly.
    """

    def __init__(
        self,
        *,
        interval: float = 60.0,
        timeout: float = 2.0,
        concurrency: int = 32,
        on_change: Callable[[str], None] = lambda key: None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or timeout <= 0 or concurrency < 1:
            raise ValueError(f"need interval > 0, timeout > 0, concurrency >= 1; got {interval}, {timeout}, {concurrency}")
        self.interval = interval
        self.timeout = timeout
        self.concurrency = concurrency
        self.on_change = on_change
        self._clock = clock
        self._slots: dict[str, dict[str, _Slot]] = {}  # key → ip → slot, in watch() order
        self._results: dict[str, dict[str, ProbeResult]] = {}  # key → ip → last result
        self._heap: list[tuple[float, int, _Slot]] = []
        self._seq = itertools.count()  # FIFO among equal due times
        self._tasks: set[asyncio.Task[None]] = set()  # in-flight probes, at most `concurrency`
        # Probes finished since the last summary line (debug), written once per interval.
        self._round_start = clock()
        self._round = {True: 0, False: 0}
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            # Pod metrics endpoints serve self-signed certificates, if any, and are
            # reached by IP, which no certificate names; the question is "does this
            # family answer?", not "who is this?", and no credentials are sent.
            verify=False,
            trust_env=False,  # pod IPs are never reached through HTTP(S)_PROXY
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            # No keep-alive: every probe opens a new connection, so it tests the
            # listener (a pooled connection could outlive a rebound socket), and
            # 10,000 pods do not leave idle sockets behind.
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=0),
            headers={"User-Agent": "kube-http-sd-probe"},
            transport=transport,
        )

    def watch(self, key: str, endpoints: list[Endpoint]) -> None:
        """Replace the endpoints of ``key``. New or changed ones (by IP) are probed
        first thing; unchanged ones keep their result and schedule. A changed or
        removed IP loses its result (it was about another port, path or scheme)."""
        old = self._slots.get(key, {})
        results = self._results.get(key, {})
        new: dict[str, _Slot] = {}
        for endpoint in endpoints:
            ip = endpoint[0]
            if ip in new:
                continue
            slot = old.get(ip)
            if slot is None or slot.endpoint != endpoint:
                slot = _Slot(key, endpoint)
                heapq.heappush(self._heap, (_FIRST, next(self._seq), slot))
                results.pop(ip, None)
                self._wake.set()
            new[ip] = slot
        for ip, slot in old.items():
            if new.get(ip) is not slot:
                slot.live = False
                if ip not in new:
                    results.pop(ip, None)
        self._slots[key] = new

    def forget(self, key: str) -> None:
        """Stop probing ``key`` and drop its results; a probe in flight is discarded."""
        for slot in self._slots.pop(key, {}).values():
            slot.live = False
        self._results.pop(key, None)

    def results(self, key: str) -> dict[str, ProbeResult]:
        """ip → last result, in watch() order, for the IPs probed at least once."""
        results = self._results.get(key)
        if not results:
            return {}
        return {ip: results[ip] for ip in self._slots.get(key, {}) if ip in results}

    def advice(self, key: str) -> str | None:
        """What to change when one family of ``key`` answers and the other is refused."""
        return advice(self.results(key))

    def reachable(self, key: str) -> tuple[str, ...] | None:
        """The IPs whose last probe succeeded, in watch() order; None while no IP of
        ``key`` has a result (the caller falls back to the primary IP)."""
        results = self.results(key)
        if not results:
            return None
        return tuple(ip for ip, result in results.items() if result.ok)

    async def run(self) -> None:
        """Probe due endpoints until cancelled; cancelling also cancels probes in flight."""
        try:
            while True:
                self._wake.clear()
                delay = self._start_due()
                if delay is None:
                    await self._wake.wait()
                else:
                    try:
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Close the HTTP client; cancel ``run()`` first."""
        await self._client.aclose()

    def _start_due(self) -> float | None:
        """Start due probes up to the concurrency bound. Returns seconds until the
        next one is due, or None to wait for a wake-up (nothing watched, or no free
        slot: a finishing probe wakes the loop)."""
        now = self._clock()
        while self._heap:
            due, _, slot = self._heap[0]
            if not slot.live:
                heapq.heappop(self._heap)
                continue
            if len(self._tasks) >= self.concurrency:
                return None
            if due > now:
                return due - now
            heapq.heappop(self._heap)
            task = asyncio.create_task(self._probe(slot))
            self._tasks.add(task)
            task.add_done_callback(self._probe_done)
        return None

    def _probe_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("probe task failed", exc_info=task.exception())
        self._wake.set()

    async def _probe(self, slot: _Slot) -> None:
        ok, detail = await self._check(slot.endpoint)
        if not slot.live:
            return
        result = ProbeResult(ok, detail, self._clock())
        heapq.heappush(self._heap, (result.checked_at + self.interval, next(self._seq), slot))
        results = self._results.setdefault(slot.key, {})
        ip = slot.endpoint[0]
        previous = results.get(ip)
        results[ip] = result
        self._count(ok, result.checked_at)
        if previous is not None and previous.ok == ok:
            return
        if previous is not None:  # a family started or stopped answering
            log.info("probe changed key=%s ip=%s ok=%s detail=%r was=%r", slot.key, ip, ok, detail, previous.detail)
        try:
            self.on_change(slot.key)
        except Exception:
            log.exception("on_change failed key=%s", slot.key)

    def _count(self, ok: bool, now: float) -> None:
        """Count a finished probe; once per interval, summarize the round at debug (no line per probe)."""
        self._round[ok] += 1
        if now - self._round_start >= self.interval:
            log.debug(
                "probe round seconds=%.1f probes=%d ok=%d failed=%d endpoints=%d",
                now - self._round_start, self._round[True] + self._round[False], self._round[True], self._round[False],
                sum(len(slots) for slots in self._slots.values()),
            )
            self._round_start, self._round = now, {True: 0, False: 0}

    async def _check(self, endpoint: Endpoint) -> tuple[bool, str]:
        ip, port, path, scheme = endpoint
        url = f"{scheme}://{hostport(ip, port)}{path if path.startswith('/') else '/' + path}"
        try:
            # httpx's timeout bounds each phase; this bounds the whole probe.
            async with asyncio.timeout(self.timeout):
                # Streaming: only the status line and headers are read, never the body.
                async with self._client.stream("GET", url) as response:
                    status = response.status_code
        except Exception as exc:
            return False, describe_error(exc, self.timeout)
        return 200 <= status < 300, f"HTTP {status}"


def describe_error(exc: BaseException, timeout: float) -> str:
    """A probe failure in a few words: "connection refused", "timeout after 2.0s",
    "TLS error (wrong version number)", "network unreachable", ..., else the exception class."""
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return f"timeout after {float(timeout)}s"
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError):  # before OSError: SSLError is one
            reason = getattr(cause, "reason", None)
            return f"TLS error ({reason.lower().replace('_', ' ')})" if reason else "TLS error"
        if isinstance(cause, ConnectionRefusedError):
            return REFUSED
        if isinstance(cause, OSError) and cause.errno in _ERRNO_DETAILS:
            return _ERRNO_DETAILS[cause.errno]
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return REFUSED if "refused" in str(exc).lower() else "connect error"
    return type(exc).__name__


def advice(result_by_ip: dict[str, ProbeResult]) -> str | None:
    """What an operator should change when exactly one family answers and the other is refused."""
    answers = {4: False, 6: False}
    refused = {4: False, 6: False}
    for ip, result in result_by_ip.items():
        try:
            version = ipaddress.ip_address(ip).version
        except ValueError:
            continue
        answers[version] |= result.ok
        refused[version] |= result.detail == REFUSED
    if answers[4] and not answers[6] and refused[6]:
        return IPV6_REFUSED_ADVICE
    if answers[6] and not answers[4] and refused[4]:
        return IPV4_REFUSED_ADVICE
    return None
