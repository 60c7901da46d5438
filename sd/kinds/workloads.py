"""ReplicaSets and Jobs, watched only to name a pod's workload (``attach_metadata:
{deployment: true}``, ``{cronjob: true}``): a pod's controller is a ReplicaSet or a Job,
and theirs a Deployment or a CronJob. A record holds just that controller reference, so
the ten old ReplicaSets a Deployment keeps cost a few hundred bytes each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sd.kinds.fields import Fields, field_reader
from sd.kinds.kind import Kind
from sd.kinds.labels import Allowlist
from sd.kinds.meta import Identity, controller_of
from sd.kinds.shared import intern
from sd.kinds.watched import Watched


@dataclass(frozen=True, slots=True)
class OwnedRecord:
    namespace: str
    name: str
    controller_kind: str  # of its ownerReference with controller: true; "" when none
    controller_name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class _Owned(Kind[OwnedRecord]):
    namespaced = True
    serves_targets = False
    fields = {"metadata.name": field_reader("metadata", "name"), "metadata.namespace": field_reader("metadata", "namespace")}
    why_excluded: dict = {}
    # Metadata only: a scale or a rollout's status changes no controller reference.
    watched = Watched
    record = OwnedRecord

    def read(self, raw: dict[str, Any], who: Identity, f: Fields) -> dict[str, Any]:
        kind, name = controller_of(who.meta, who.where, f.filling("controller_kind", "controller_name"))
        return {"namespace": who.namespace, "name": who.name, "controller_kind": intern(kind), "controller_name": name}

    def read_meta(self, who: Identity, f: Fields, annotations: Allowlist) -> dict[str, Any]:
        return {}  # labels, annotations, uid: nothing attached reads them


class ReplicaSets(_Owned):
    name = "replicasets"
    object_kind = "ReplicaSet"
    api_prefix = "/apis/apps/v1"


class Jobs(_Owned):
    name = "jobs"
    object_kind = "Job"
    api_prefix = "/apis/batch/v1"


REPLICASETS = ReplicaSets()
JOBS = Jobs()
