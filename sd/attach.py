"""Attached metadata: the labels of related objects on a set's targets (Prometheus'
``attach_metadata``): a pod's node, its namespace, its Deployment, Job and CronJob
(``sd/kinds/relations.py`` says which object and which labels).

A ``Directory`` holds the objects one unfiltered watch of a kind delivers (nodes,
namespaces, ReplicaSets, Jobs), keyed like the kind's records; its feed reads it like a
target set, and every set attaching that kind shares it. Each set has an ``Attachment``
per option: its objects keyed by the related object's key (the pod role's node,
namespace, replicaset and job indexes), so that when a related object's attached labels
change, appear or go, exactly the objects that relate to it are re-queued (their groups
rebuilt), as Prometheus' pod role re-queues them.
"""

from __future__ import annotations

from typing import Any, Callable

from sd.kinds.kind import Kind, Record
from sd.kinds.labels import Allowlist
from sd.kinds.relations import Relation
from sd.status import SourceStatus

# requeue(key, held_may_change): rebuild object ``key``'s groups; with True, decide again
# whether it is served (a required related object appeared or went).
Requeue = Callable[[str, bool], None]


class Directory:
    """One kind's objects by key, for the sets attached to it. Only as current as its feed:
    a service whose sets stop attaching drops it, and makes a new one when they attach again."""

    def __init__(self, kind: Kind[Any]) -> None:
        self.kind = kind
        self.records: dict[str, Any] = {}
        self.statuses: list[SourceStatus] = []  # its feed's
        self.attachments: list[Attachment] = []

    def get(self, key: str | None) -> Any:
        return self.records.get(key) if key is not None else None

    # -- read by its feed, like a target set ---------------------------------------------

    def add_status(self, status: SourceStatus) -> None:
        self.statuses.append(status)

    def source_synced(self) -> None:
        for attachment in self.attachments:
            attachment.source_synced()

    def record(self, key: str) -> Any:
        return self.records.get(key)

    def upsert(self, record: Any) -> None:
        key = record.key
        old = self.records.get(key)
        self.records[key] = record
        if old is None or not self.kind.same_attached(old, record):
            self._changed(key, old is None)

    def delete(self, key: str) -> None:
        if self.records.pop(key, None) is not None:
            self._changed(key, True)

    def replace(self, records: list[Any], keys: set[str] | None = None) -> None:
        seen = set()
        for record in records:
            seen.add(record.key)
            self.upsert(record)
        for key in set(self.records if keys is None else keys) - seen:
            self.delete(key)

    def _changed(self, key: str, presence: bool) -> None:
        for attachment in self.attachments:
            attachment.related_changed(key, presence)


class Attachment:
    """One set's attached metadata of one option: which of its objects relate to which
    object of the directory.

    ``requeue`` rebuilds a set object's groups; ``synced()`` tells the set that the
    directory's source finished a list (the set waits for it: targets never start
    without their attached labels). An option whose labels come from the object alone
    (``job``) has no directory and only adds labels."""

    def __init__(
        self, relation: Relation, directory: Directory | None, annotations: Allowlist, requeue: Requeue, synced: Callable[[], None]
    ) -> None:
        self.relation, self.directory, self._annotations = relation, directory, annotations
        self._requeue, self._synced = requeue, synced
        self._related: dict[str, set[str]] = {}  # related key → keys of the set's objects that relate to it
        if directory is not None:
            directory.attachments.append(self)

    @property
    def statuses(self) -> list[SourceStatus]:
        return self.directory.statuses if self.directory is not None else []

    def labels(self, record: Record) -> dict[str, str]:
        related = self.directory.get(self.relation.related(record)) if self.directory is not None else None
        return self.relation.labels(record, related, self._annotations)

    def held(self, record: Record) -> str | None:
        """Why ``record`` is not served (its required related object is not known), or None."""
        relation = self.relation
        if relation.required is None or self.directory is None or self.directory.get(relation.related(record)) is not None:
            return None
        return relation.required

    def place(self, key: str, old: Record | None, new: Record | None) -> bool:
        """Object ``key`` was ``old`` and is now ``new`` (None: absent): index it by the key
        of the object it relates to. True when that key changed (the object moved)."""
        if self.directory is None:
            return False
        related = self.relation.related
        before = related(old) if old is not None else None
        after = related(new) if new is not None else None
        if before == after:
            return False
        if before is not None:
            keys = self._related[before]
            keys.discard(key)
            if not keys:
                del self._related[before]
        if after is not None:
            self._related.setdefault(after, set()).add(key)
        return True

    def related_changed(self, key: str, presence: bool) -> None:
        refresh = presence and self.relation.required is not None
        for obj in tuple(self._related.get(key, ())):
            self._requeue(obj, refresh)

    def source_synced(self) -> None:
        self._synced()

    def detach(self) -> None:
        if self.directory is not None:
            self.directory.attachments.remove(self)
