"""Several clusters: what the service holds per cluster, and a target set served over several.

A ``Cluster`` is one cluster's side of the service: how to reach it, its directories for
attached metadata (node and namespace names repeat across clusters) and its prober. A ``ClusterSets``
is one served set over several clusters: one ``TargetSet`` per cluster (its *part*: its
own index, so the conflict rule applies within a cluster and never across, and every
group labelled ``__meta_sd_cluster``), served one after another in cluster-name order.

Readiness (docs/configure.md, "Several clusters"): the set answers 503 until every one of
its clusters finished a first list, or until ``cluster_sync_timeout_seconds`` passed and
at least one did: it then serves the clusters it has, names the missing ones
(``missing()``), and each missing cluster's targets join when its first list completes.
Once served, a set stays served (a cluster added by a reload never takes it back to 503).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from sd.attach import Directory
from sd.body import EMPTY, Body, etag
from sd.config import ClusterSettings, SetConfig
from sd.gzip_body import GzipBody, compress
from sd.shards import PerShardCount
from sd.status import SourceStatus
from sd.targets import TargetSet

if TYPE_CHECKING:
    from sd.probe import Prober


class Cluster:
    """One cluster of the service (``settings`` None: the single cluster of a config
    without ``clusters:``, named ""). Replaced, not changed, when its settings change."""

    def __init__(self, name: str, settings: ClusterSettings | None) -> None:
        self.name = name
        self.settings = settings
        # Kind name → its objects, for its sets' attach_metadata.
        self.directories: dict[str, Directory] = {}
        self.prober: Prober | None = None  # for its sets with ip_family: reachable


def _inner(body: Body) -> list[bytes | memoryview]:
    """A body's chunks without its enclosing ``[`` and ``]``; [] for an empty body. The chunks
    between the first and the last are the body's own objects (the gzip body keeps the
    segments of chunks it has seen)."""
    if body.length <= 2:
        return []
    chunks = list(body.chunks)
    chunks[0] = memoryview(chunks[0])[1:]
    chunks[-1] = memoryview(chunks[-1])[:-1]
    return [c for c in chunks if len(c)]


def _digest_sum(body: Body) -> int:
    """The sum of a body's group digests, which its ETag spells (``sd/body.py``)."""
    return int(body.etag.strip('"')[:32], 16)


def join(bodies: list[Body], suffix: str = "") -> Body:
    """The bodies' groups as one body, in the order given (no bytes are copied); its ETag
    is the sum of all their groups' digests, as one set holding all the groups would have."""
    chunks: list[bytes | memoryview] = [b"["]
    length, total = 2, 0
    for body in bodies:
        inner = _inner(body)
        if not inner:
            continue
        if len(chunks) > 1:
            chunks.append(b",")
            length += 1
        chunks.extend(inner)
        length += body.length - 2
        total += _digest_sum(body)
    if len(chunks) == 1:
        return EMPTY if not suffix else Body.of(b"[]", etag(0, suffix))
    chunks.append(b"]")
    return Body(tuple(chunks), length, etag(total, suffix))


class ClusterSets:
    """One served target set over several clusters: a part (``TargetSet``) per cluster.

    The HTTP layer reads it like a ``TargetSet`` (``synced``, ``current``, ``shard``);
    ``sd/views.py`` reads its ``parts``. ``clock`` gives the time the sync timeout counts.
    """

    def __init__(self, config: SetConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.name = config.name
        self.parts: dict[str, TargetSet] = {}  # cluster name → its part, in name order
        self.holders: dict[str, Cluster] = {}  # cluster name → the Cluster its part reads
        self.current: Body = EMPTY
        self.renders = 0
        self.dirty = False
        self.on_dirty: Callable[[], None] = lambda: None
        self._clock = clock
        self._since = clock()  # the sync timeout counts from here
        self._served = False
        self._gzip = GzipBody()
        self._gzipped: PerShardCount[list[Body | None]] = PerShardCount(lambda shards: [None] * shards)  # shards' gzip

    # -- parts ------------------------------------------------------------------------

    def part(self, cluster: Cluster, make: Callable[[], TargetSet]) -> TargetSet:
        """The part of ``cluster``, made by ``make`` if it has none (or had one of a cluster
        since replaced)."""
        part = self.parts.get(cluster.name)
        if part is not None and self.holders[cluster.name] is cluster:
            return part
        self._decide()  # before the parts change: a served set stays served
        if part is not None:
            part.detach()
        part = make()
        part.on_dirty = self._mark_dirty
        self.parts[cluster.name] = part
        self.holders[cluster.name] = cluster
        self.parts = dict(sorted(self.parts.items()))
        self._mark_dirty()
        return part

    def keep_only(self, clusters: set[str]) -> None:
        """Drop the parts of clusters no longer served (a reload)."""
        self._decide()  # before the parts change: a served set stays served
        for name in [n for n in self.parts if n not in clusters]:
            self.parts.pop(name).detach()
            del self.holders[name]
            self._mark_dirty()

    def detach(self) -> None:
        for part in self.parts.values():
            part.detach()

    # -- readiness --------------------------------------------------------------------

    @property
    def statuses(self) -> list[SourceStatus]:
        return [s for part in self.parts.values() for s in part.statuses]

    def missing(self) -> list[str]:
        """The clusters whose part has not finished a first list (and rendered it)."""
        return [name for name, part in self.parts.items() if not part.synced]

    def timed_out(self) -> bool:
        return self._clock() - self._since >= self.config.cluster_sync_timeout_seconds

    @property
    def synced(self) -> bool:
        """Every cluster synced, or the timeout passed and one did; then always."""
        return self._decide()

    def _decide(self) -> bool:
        """Whether the set is served, deciding it when it turns so."""
        if not self._served and self.renders > 0:
            missing = self.missing()
            if not missing or (len(missing) < len(self.parts) and self.timed_out()):
                self._served = True
        return self._served

    def waiting_for(self) -> list[str]:
        return sorted(s.name for s in self.statuses if not s.synced)

    # -- output -----------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        if not self.dirty:
            self.dirty = True
            self.on_dirty()

    def render(self) -> bool:
        """Render the parts that changed and join the parts' bodies."""
        if not self.dirty:
            return False
        self.dirty = False
        for part in self.parts.values():
            part.render()
        self.current = join([part.current for part in self.parts.values()])
        self._gzip.render(self.current)
        self._gzipped.clear()
        self.renders += 1
        self._decide()
        return True

    @property
    def body(self) -> bytes:
        return bytes(self.current)

    @property
    def etag(self) -> str:
        return self.current.etag

    def shard(self, shards: int, shard: int) -> Body:
        """The parts' shard bodies joined: the same groups as a shard of the whole body."""
        return join([part.shard(shards, shard) for part in self.parts.values()], f"-{shards}.{shard}")

    def gzipped(self, selected: tuple[int, int] | None = None) -> Body:
        """The gzip of the last rendered body, or of shard ``selected`` = (shards, shard): made
        on the first request that asks after a render, then kept until the next (for at most
        SHARD_COUNTS_KEPT shard counts, as the parts keep their shards)."""
        if selected is None:
            return self._gzip.of(self.current)
        shards, shard = selected
        kept = self._gzipped.get(shards)
        gz = kept[shard]
        if gz is None:
            gz = kept[shard] = compress(self.shard(shards, shard))
        return gz

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts.values())


# A served set: one cluster's, or one over several clusters (a clusters: map).
Served = TargetSet | ClusterSets
