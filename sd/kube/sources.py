"""Which collections to watch for the configured sets, and the feed that turns their raw
objects into records for the target sets reading them.

A *source* is one list/watch: a resource, an optional namespace and the selectors
pushed to the API server. Sets with the same source share it (one watch, one
parse per event). The informer (or the snapshot loader) drives a ``Feed``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from cachetools import LRUCache, TTLCache

from sd.config import Config
from sd.metrics import Metrics
from sd.model import Record, parse_node, parse_pod
from sd.targets import TargetSet

log = logging.getLogger("sd.sources")

# Config `source` value → core/v1 resource; with VERBS, exactly what RBAC must grant.
RESOURCES: dict[str, str] = {"nodes": "nodes", "pods": "pods"}
VERBS = ("get", "list", "watch")


@dataclass(frozen=True, slots=True)
class Source:
    resource: str  # "nodes" | "pods"
    namespace: str | None = None  # None: all namespaces
    label_selector: str = ""
    field_selector: str = ""

    def __str__(self) -> str:
        parts = [self.resource if self.namespace is None else f"{self.resource}@{self.namespace}"]
        if self.label_selector:
            parts.append(self.label_selector)
        if self.field_selector:
            parts.append(self.field_selector)
        return " ".join(parts)


def plan(config: Config, sets: dict[str, TargetSet], metrics: Metrics) -> list["Feed"]:
    """One feed per distinct source, each wired to the sets that read it."""
    readers: dict[Source, list[TargetSet]] = {}
    for name, sc in config.targets.items():
        for ns in sc.namespaces or (None,):
            src = Source(RESOURCES[sc.source], ns, sc.label_selector, sc.field_selector)
            readers.setdefault(src, []).append(sets[name])
    return [Feed(src, readers_, metrics) for src, readers_ in readers.items()]


def object_key(resource: str, obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    if resource == "pods":
        return f"{meta.get('namespace')}/{meta['name']}"
    return meta["name"]


class Feed:
    """Raw objects of one source → records → the target sets reading that source.

    Called by exactly one driver (informer or snapshot): ``list_page`` for each page
    of a (re)list, then ``list_done``, which replaces this source's objects in every
    set at once; ``event`` for each watch event in between.
    """

    def __init__(self, source: Source, sets: list[TargetSet], metrics: Metrics) -> None:
        self.source = source
        self.sets = sets
        self.metrics = metrics
        self.name = str(source)
        self._parse: Callable[..., Record | None] = parse_node if source.resource == "nodes" else parse_pod
        self._keys: set[str] = set()  # keys this source delivered; a relist replaces exactly these
        self._pending: list[Record] = []
        self._logged: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=600)
        # Latest bad data per object ("node/n1" → (reason, detail)), for the explain view;
        # an object that parses cleanly again is dropped from it.
        self.skipped: LRUCache[str, tuple[str, str]] = LRUCache(maxsize=1000)
        self._reports = 0
        self._event_counters = {t: metrics.events.labels(source.resource, t) for t in ("ADDED", "MODIFIED", "DELETED")}
        self._kind = "node" if source.resource == "nodes" else "pod"
        self.synced = False
        for ts in sets:
            ts.pending_sources.add(self.name)
        metrics.source_up.labels(self.name).set(0)

    def report(self, reason: str, detail: str) -> None:
        """Bad data: counted every time, logged once per detail per 10 minutes."""
        self._reports += 1
        self.metrics.skipped.labels(self.name, reason).inc()
        self.skipped[detail.split(":", 1)[0]] = (reason, detail)
        if detail not in self._logged:
            self._logged[detail] = True
            log.warning("skipped bad data source=%r reason=%s detail=%s", self.name, reason, detail)

    def _record(self, obj: Any) -> Record | None:
        reports = self._reports
        key = object_key(self.source.resource, obj)
        # Every set of this feed holds the same record per key: the first one's will do.
        previous = self.sets[0].index.records.get(key) if key is not None and self.sets else None
        try:
            record = self._parse(obj, self.report, previous)
        except Exception as exc:  # a parser bug skips one object, never the watch
            log.exception("cannot parse object source=%r key=%r", self.name, key)
            self.report("internal_error", f"{self._kind}/{key}: parser failed: {exc!r}")
            return None
        if record is not None and self.skipped and self._reports == reports:
            self.skipped.pop(f"{self._kind}/{record.key}", None)
        return record

    def list_page(self, items: Iterable[Any]) -> None:
        pending = self._pending
        for obj in items:
            record = self._record(obj)
            if record is not None:
                pending.append(record)

    def list_done(self) -> None:
        records, self._pending = self._pending, []
        for ts in self.sets:
            ts.replace(records, self._keys)
        self._keys = {r.key for r in records}
        self.metrics.last_sync.labels(self.name).set(time.time())
        self.metrics.source_up.labels(self.name).set(1)
        if not self.synced:
            self.synced = True
            for ts in self.sets:
                ts.source_synced(self.name)
            log.info("source synced source=%r objects=%d", self.name, len(records))

    def list_abandoned(self) -> None:
        """A relist failed part-way: forget its pages, keep serving the last state."""
        self._pending = []

    def event(self, kind: str, obj: Any) -> None:
        self._event_counters[kind].inc()
        if kind == "DELETED":
            key = object_key(self.source.resource, obj)
            if key is None:
                self.report("bad_object", f"{self.source.resource}: DELETED event without metadata.name")
                return
            self._keys.discard(key)
            for ts in self.sets:
                ts.delete(key)
            return
        record = self._record(obj)
        if record is None:
            return
        self._keys.add(record.key)
        for ts in self.sets:
            ts.upsert(record)
