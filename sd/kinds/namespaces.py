"""Namespaces, watched only for the metadata pod sets attach (``attach_metadata:
{namespace: true}``): the record holds the name, labels and the listed annotations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sd.kinds.fields import Fields, field_reader
from sd.kinds.kind import Kind
from sd.kinds.labels import NOTHING, Allowlist, ObjectLabels, listed
from sd.kinds.meta import Identity
from sd.kinds.watched import Watched

# _namespace_label_<n>, _namespace_labelpresent_<n>, annotations likewise (Prometheus'
# addNamespaceMetaLabels: no name label, the pod role has __meta_kubernetes_namespace).
NAMESPACE_OBJECT = ObjectLabels.of("namespace")


@dataclass(frozen=True, slots=True)
class NamespaceRecord:
    name: str
    uid: str
    created: float
    terminating: bool
    labels: tuple[tuple[str, str], ...]  # sorted by key
    annotations: tuple[tuple[str, str], ...] = ()  # the listed ones only, sorted by key

    @property
    def key(self) -> str:
        return self.name


class Namespaces(Kind[NamespaceRecord]):
    name = "namespaces"
    object_kind = "Namespace"
    namespaced = False
    serves_targets = False
    fields = {"metadata.name": field_reader("metadata", "name"), "status.phase": field_reader("status", "phase")}
    why_excluded: dict = {}
    watched = Watched  # metadata only: a namespace's status never changes its labels
    record = NamespaceRecord

    def read(self, raw: dict[str, Any], who: Identity, f: Fields) -> dict[str, Any]:
        return {"name": who.name}

    def same_attached(self, old: NamespaceRecord, new: NamespaceRecord) -> bool:
        return old.labels == new.labels and old.annotations == new.annotations

    def attached_labels(self, record: NamespaceRecord, annotations: Allowlist = NOTHING) -> dict[str, str]:
        """What Prometheus' attach_metadata puts on a pod's targets from its namespace."""
        labels: dict[str, str] = {}
        NAMESPACE_OBJECT.add(labels, record.labels, listed(record.annotations, annotations))
        return labels


KIND = Namespaces()
