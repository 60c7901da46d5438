"""The state of each source (one list/watch), as people and /metrics see it.

A ``SourceStatus`` has one writer, the source's feed (which hears from the informer
or the snapshot reader); target sets, HTTP pages and the metrics collector only read
it. Times are wall-clock epoch seconds, for display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cachetools import LRUCache


class Phase(StrEnum):
    """What a source is doing right now."""

    LISTING = "listing"  # a (re)list is in progress: the first one, or one after 410 Gone or an error
    WATCHING = "watching"  # listed; following changes (reconnecting after a clean end included)
    BACKING_OFF = "backing_off"  # a request failed; waiting to retry
    SNAPSHOT = "snapshot"  # filled from a snapshot file: nothing to watch


# A metric's label values: every phase, so each source always has one series per phase.
PHASES = tuple(Phase)


@dataclass(frozen=True, slots=True)
class SourceError:
    reason: str  # short and stable: "connection", "unauthorized", "http_5xx", ...
    message: str
    at: float


@dataclass(eq=False, slots=True)
class SourceStatus:
    name: str
    cluster: str = ""  # its cluster's name with a clusters: map
    synced: bool = False  # finished a first full list
    phase: Phase = Phase.LISTING
    healthy: bool = False  # the last list or watch request succeeded, and no error since
    last_sync: float = 0.0  # last full list finished, or watch event or bookmark received
    listing: bool = False  # a (re)list is in progress...
    listed_objects: int = 0  # ...and has received this many objects...
    listed_pages: int = 0  # ...in this many pages
    last_error: SourceError | None = None
    relists: int = 0
    watch_restarts: int = 0
    # Latest bad data per object ("node/n1" → (reason, detail)), for the explain view;
    # an object that parses cleanly again is dropped from it.
    skipped: LRUCache[str, tuple[str, str]] = field(default_factory=lambda: LRUCache(maxsize=1000))

    def view(self) -> dict[str, object]:
        """For the explain view (JSON): everything but the skipped data, which sets list."""
        error = self.last_error
        cluster = {"cluster": self.cluster} if self.cluster else {}
        return {
            "source": self.name,
            **cluster,
            "state": self.state,
            "phase": self.phase.value,
            "failing": self.failing,
            "last_sync": self.last_sync or None,
            "listing": {"objects": self.listed_objects, "pages": self.listed_pages} if self.listing else None,
            "last_error": {"reason": error.reason, "message": error.message, "at": error.at} if error else None,
            "relists": self.relists,
            "watch_restarts": self.watch_restarts,
        }

    @property
    def source(self) -> str:
        """Its list/watch, without the cluster: the ``source`` label of metrics."""
        return self.name.removeprefix(f"{self.cluster}/") if self.cluster else self.name

    @property
    def failing(self) -> bool:
        """A request failed and none succeeded since. Never true while a list that has not
        failed is still in progress, however slow: "failing" is for errors, not for time."""
        return self.last_error is not None and not self.healthy

    @property
    def state(self) -> str:
        """"syncing" until the first full list, then "ready", or "stale" while retrying after errors."""
        if not self.synced:
            return "syncing"
        return "ready" if self.healthy else "stale"
