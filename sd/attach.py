"""Attached metadata: the labels of related objects on a set's targets (Prometheus'
``attach_metadata``). Today a pod's node; namespaces and workloads follow the same pattern.

A ``NodeIndex`` holds the nodes one unfiltered node watch delivers, keyed by name; its
feed reads it like a target set. Each set that attaches node metadata has an
``Attachment``: its objects keyed by the node they run on (the pod role's node index),
so that when a node's attached labels change, appear or go, exactly the objects on it
are re-queued (their groups rebuilt), as Prometheus' pod role re-queues a node's pods.
"""

from __future__ import annotations

from typing import Any, Callable

from sd.kinds import nodes
from sd.kinds.kind import Kind, Record
from sd.kinds.labels import Allowlist
from sd.kinds.nodes import NodeRecord
from sd.status import SourceStatus


class NodeIndex:
    """Nodes by name, for the sets attached to it. Only as current as its feed: a service
    whose sets stop attaching drops it, and makes a new one when they attach again."""

    def __init__(self) -> None:
        self.records: dict[str, NodeRecord] = {}
        self.statuses: list[SourceStatus] = []  # its feed's
        self.attachments: list[Attachment] = []

    def labels(self, name: str, annotations: Allowlist) -> dict[str, str]:
        """The attached labels of node ``name``; {} while it is not known."""
        node = self.records.get(name)
        return nodes.KIND.attached_labels(node, annotations) if node is not None else {}

    # -- read by its feed, like a target set ---------------------------------------------

    def add_status(self, status: SourceStatus) -> None:
        self.statuses.append(status)

    def source_synced(self) -> None:
        for attachment in self.attachments:
            attachment.source_synced()

    def record(self, key: str) -> NodeRecord | None:
        return self.records.get(key)

    def upsert(self, record: NodeRecord) -> None:
        old = self.records.get(record.name)
        self.records[record.name] = record
        # Heartbeats reuse the stored label tuples: `is` settles almost every event.
        if old is None or not (old.labels is record.labels or old.labels == record.labels) or old.annotations != record.annotations:
            self._changed(record.name)

    def delete(self, key: str) -> None:
        if self.records.pop(key, None) is not None:
            self._changed(key)

    def replace(self, records: list[NodeRecord], keys: set[str] | None = None) -> None:
        seen = set()
        for record in records:
            seen.add(record.name)
            self.upsert(record)
        for key in set(self.records if keys is None else keys) - seen:
            self.delete(key)

    def _changed(self, name: str) -> None:
        for attachment in self.attachments:
            attachment.node_changed(name)


class Attachment:
    """One set's attached node metadata: which of its objects run on which node.

    ``requeue(key)`` rebuilds the groups of object ``key``; ``synced()`` tells the set
    that the node source finished a list (the set waits for it: targets never start
    without their node labels)."""

    def __init__(
        self, index: NodeIndex, kind: Kind[Any], annotations: Allowlist, requeue: Callable[[str], None], synced: Callable[[], None]
    ) -> None:
        self.index, self._kind, self._annotations = index, kind, annotations
        self._requeue, self._synced = requeue, synced
        self._on_node: dict[str, set[str]] = {}  # node name → keys of the objects on it
        self._node_of: dict[str, str] = {}  # key → its node name
        index.attachments.append(self)

    def labels(self, record: Record) -> dict[str, str]:
        node = self._kind.node_of(record)
        return self.index.labels(node, self._annotations) if node else {}

    def place(self, key: str, record: Record | None) -> None:
        """Object ``key`` is now ``record`` (None: gone): index it by its node."""
        node = self._kind.node_of(record) if record is not None else None
        old = self._node_of.get(key)
        if old == node:
            return
        if old is not None:
            keys = self._on_node[old]
            keys.discard(key)
            if not keys:
                del self._on_node[old]
        if node:
            self._node_of[key] = node
            self._on_node.setdefault(node, set()).add(key)
        else:
            self._node_of.pop(key, None)

    def node_changed(self, name: str) -> None:
        for key in self._on_node.get(name, ()):
            self._requeue(key)

    def source_synced(self) -> None:
        self._synced()

    def detach(self) -> None:
        self.index.attachments.remove(self)
