"""Feeds: one list/watch's raw objects → records → the target sets reading it.

The informer or the snapshot reader drives a ``Feed``; the feed is the only writer of
its list/watch's ``SourceStatus`` (a *source*, as metrics and pages call it).
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from cachetools import TTLCache

from sd.kinds import Kind
from sd.kinds.kind import Record
from sd.kinds.labels import NOTHING, Allowlist
from sd.kinds.reports import BAD_OBJECT
from sd.kube.events import Decoder, Event
from sd.metrics import Metrics
from sd.status import Phase, SourceError, SourceStatus

log = logging.getLogger("sd.feed")

INTERNAL_ERROR = "internal_error"
_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")


class _ListingGC:
    """The cyclic collector stays off while any source lists: a list makes tens of
    thousands of acyclic objects (raw dicts, records), and collecting while they pile up
    found nothing and took a tenth of a 20,000-node sync. It is back on, and run once,
    when the last list in progress ends (if it was on when the first began)."""

    def __init__(self) -> None:
        self._listing: set[Feed] = set()
        self._was_enabled = False

    def start(self, feed: Feed) -> None:
        if not self._listing:
            self._was_enabled = gc.isenabled()
            gc.disable()
        self._listing.add(feed)

    def end(self, feed: Feed) -> None:
        if feed not in self._listing:
            return
        self._listing.discard(feed)
        if not self._listing and self._was_enabled:
            gc.enable()
            gc.collect(0)


_LISTING_GC = _ListingGC()


@dataclass(frozen=True, slots=True)
class ListWatch:
    """One list/watch: a kind, an optional namespace and the selectors pushed to the API
    server. Sets with equal ones share one feed (one watch, one parse per event)."""

    kind: Kind
    namespace: str | None = None  # None: all namespaces
    label_selector: str = ""
    field_selector: str = ""

    def __str__(self) -> str:
        parts = [self.kind.name if self.namespace is None else f"{self.kind.name}@{self.namespace}"]
        if self.label_selector:
            parts.append(self.label_selector)
        if self.field_selector:
            parts.append(self.field_selector)
        return " ".join(parts)

    @property
    def api_path(self) -> str:
        """The collection's path: ``/api/v1/pods``, or ``/api/v1/namespaces/<ns>/pods``."""
        kind = self.kind
        if self.namespace is None or not kind.namespaced:
            return f"{kind.api_prefix}/{kind.name}"
        return f"{kind.api_prefix}/namespaces/{self.namespace}/{kind.name}"


class Reader(Protocol):
    """What a feed hands records to: target sets, and directories (``sd/attach.py``)."""

    def add_status(self, status: SourceStatus) -> None: ...
    def source_synced(self) -> None: ...
    def record(self, key: str) -> Any: ...
    def upsert(self, record: Any) -> None: ...
    def delete(self, key: str) -> None: ...
    def replace(self, records: list[Any], keys: set[str] | None = None) -> None: ...


class Feed:
    """Raw objects of one source → records → the target sets reading that source.

    Called by exactly one driver (informer or snapshot): ``list_page`` for each page
    of a (re)list, then ``list_done``, which replaces this source's objects in every
    set at once; ``event`` for each watch event in between. The driver also reports
    its progress and trouble (``relisting``, ``watching``, ``watch_ended``, ``failed``,
    ``report``), which the feed turns into the source's status and counters.
    """

    def __init__(
        self, list_watch: ListWatch, sets: list[Reader], metrics: Metrics, annotations: Allowlist = NOTHING,
        cluster: str | None = None,
    ) -> None:
        self.list_watch = list_watch
        self.annotations = annotations  # kept in records: the union of what readers list
        self.kind = list_watch.kind
        self.sets = sets
        self.metrics = metrics
        self.cluster = cluster  # its name in the clusters: map; None without one
        # "nodes", or with several clusters "prod/nodes": how pages, logs and readiness name it.
        self.name = f"{cluster}/{list_watch}" if cluster else str(list_watch)
        self.status = SourceStatus(self.name, cluster or "")
        # Its metrics' leading label values: the source, and its cluster when there are several.
        self._labels = (cluster, str(list_watch)) if cluster else (self.name,)
        self._keys: set[str] = set()  # keys this source delivered; a relist replaces exactly these
        self._pending: list[Record] = []
        self._logged: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=600)
        self._reports = 0
        self._key: str | None = None  # the object being parsed, for reports
        self._event_counters = {t: metrics.events.labels(*self._labels[:-1], self.kind.name, t) for t in _EVENT_TYPES}
        # Key → digest of the watched parts its current record was built from (records
        # built cleanly from a watch line only): a line with the same digest changes nothing.
        self._digests: dict[str, int] = {}
        self.decode = Decoder(self.kind.watched, self.kind.object_key)  # its watch lines' decoder
        for ts in sets:
            ts.add_status(self.status)

    def read_by(self, sets: list[Reader], annotations: Allowlist) -> bool:
        """From now on feed ``sets`` (a config reload), keeping ``annotations``. A set new to
        this source gets the source's current objects at once, so it is ready as soon as it
        renders. False when the records held lack annotations now listed: they need a relist."""
        current = [r for key in self._keys if (r := self.sets[0].record(key)) is not None] if self.sets else []
        for ts in sets:
            if ts in self.sets:
                continue
            ts.add_status(self.status)
            if self.status.synced:
                ts.replace(current, set())
                ts.source_synced()
        self.sets = sets
        held = self.annotations.covers(annotations)
        self.annotations = annotations
        return held

    # -- bad data ----------------------------------------------------------------------

    def report(self, where: str, reason: str, detail: str) -> None:
        """Bad data at ``where`` (an object, or the source's stream): counted every time,
        logged once per detail per 10 minutes, shown in the explain view."""
        self._reports += 1
        self.metrics.skipped.labels(*self._labels, reason).inc()
        self.status.skipped[where] = (reason, detail)
        if detail not in self._logged:
            self._logged[detail] = True
            log.warning("skipped bad data source=%r reason=%s detail=%s", self.name, reason, detail)

    def _where(self) -> str:
        """The object being parsed as reports name it ("node/n1"); built only when needed."""
        key = self._key
        return f"{self.kind.singular}/{key}" if key is not None else self.kind.singular

    def _report_current(self, reason: str, detail: str) -> None:
        self.report(self._where(), reason, detail)

    def _record(self, obj: Any) -> Record | None:
        reports = self._reports
        self._key = key = self.kind.key(obj)
        # Every set of this feed holds the same record per key: the first one's will do.
        previous = self.sets[0].record(key) if key is not None and self.sets else None
        try:
            record = self.kind.parse(obj, self._report_current, previous, self.annotations)
        except Exception as exc:  # a parser bug skips one object, never the watch
            log.exception("cannot parse object source=%r key=%r", self.name, key)
            self.report(self._where(), INTERNAL_ERROR, f"{self._where()}: parser failed: {exc!r}")
            return None
        if record is not None and self.status.skipped and self._reports == reports:
            self.status.skipped.pop(self._where(), None)
        return record

    # -- lists and events ----------------------------------------------------------------

    def relisting(self, reason: str, method: str = "paginated") -> None:
        """A (re)list starts: why, and how ("streaming" or "paginated"; a snapshot is neither)."""
        self.metrics.relists.labels(*self._labels, reason, method).inc()
        self.status.relists += 1
        self.status.listing = True
        self.status.phase = Phase.LISTING
        self.status.listed_objects = self.status.listed_pages = 0
        self._pending = []
        self._digests.clear()
        _LISTING_GC.start(self)

    def list_page(self, items: Iterable[Any]) -> None:
        pending = self._pending
        for obj in items:
            self.status.listed_objects += 1
            record = self._record(obj)
            if record is not None:
                pending.append(record)
        self.status.listed_pages += 1

    def list_fallback(self, why: str, message: str) -> None:
        """The streaming list of this attempt is off (the server refused or ignored it)."""
        self._pending = []
        _LISTING_GC.end(self)
        self.metrics.list_fallbacks.labels(*self._labels, why).inc()
        self.status.listing = False

    def list_done(self, then: Phase = Phase.WATCHING) -> None:
        """The pages since ``relisting`` are the whole collection; ``then``: what follows
        (a watch, or nothing for a snapshot)."""
        records, self._pending = self._pending, []
        for ts in self.sets:
            ts.replace(records, self._keys)
        _LISTING_GC.end(self)
        self._keys = {r.key for r in records}
        status = self.status
        status.listing = False
        status.phase = then
        status.last_sync = time.time()
        status.healthy = True
        if not status.synced:
            status.synced = True
            for ts in self.sets:
                ts.source_synced()
            log.info("source synced source=%r objects=%d", self.name, len(records))

    def event(self, event: Event) -> None:
        """A watch event. Parts that read the same, byte for byte, as those the current
        record came from (a node's heartbeat) change nothing and are only counted; others
        are parsed (``Malformed`` when they are not JSON: the informer reports it)."""
        self.status.last_sync = time.time()
        kind, key = event.type, event.key
        if kind == "BOOKMARK":  # progress only: the source is current up to its version
            return
        self._event_counters[kind].inc()
        if kind == "DELETED":
            if key is None:
                self.report(self.name, BAD_OBJECT, f"{self.name}: DELETED event without metadata.name")
                return
            self._digests.pop(key, None)
            self._keys.discard(key)
            for ts in self.sets:
                ts.delete(key)
            return
        if key is not None and event.digest is not None and self._digests.get(key) == event.digest:
            return
        reports = self._reports
        record = self._record(event.whole())
        if record is None:
            return
        if self._reports == reports and event.digest is not None:
            self._digests[record.key] = event.digest
        else:
            self._digests.pop(record.key, None)
        self._upsert(record)

    def _upsert(self, record: Record) -> None:
        self._keys.add(record.key)
        for ts in self.sets:
            ts.upsert(record)

    # -- the driver's progress ---------------------------------------------------------------

    def watching(self) -> None:
        """A watch request was answered: the source is healthy again. A streaming list's
        request is a watch too: its source is still listing until the end bookmark."""
        self.status.healthy = True
        self.status.phase = Phase.LISTING if self.status.listing else Phase.WATCHING

    def watch_ended(self, reason: str) -> None:
        self.metrics.restarts.labels(*self._labels, reason).inc()
        self.status.watch_restarts += 1

    def stopped(self) -> None:
        """Its driver is gone (cancelled: a reload dropped the source, or shutdown): a list in
        progress is abandoned, and no longer keeps the cyclic collector off."""
        self._pending = []
        self.status.listing = False
        _LISTING_GC.end(self)

    def failed(self, reason: str, message: str) -> None:
        """A request failed; a relist in progress is abandoned (the last state stays served)."""
        self._pending = []
        _LISTING_GC.end(self)
        self.metrics.source_errors.labels(*self._labels, reason).inc()
        status = self.status
        status.listing = False
        status.phase = Phase.BACKING_OFF
        status.healthy = False
        status.last_error = SourceError(reason, message, time.time())
