"""What a set may attach (Prometheus' ``attach_metadata``), per kind: for each option, the
kind whose objects it looks up, the key of the object a record relates to, and the
labels that puts on the record's targets. ``sd/attach.py`` keeps them current.

The semantics are those of Prometheus 3.16's pod role (discovery/kubernetes/pod.go):

- ``node``: the labels of the pod's node (``spec.nodeName``); a pod whose node is not
  known is held back until it is (Prometheus 3.11+, #18006).
- ``namespace``: the labels and listed annotations of the pod's namespace; absent while
  the namespace is not known.
- ``deployment``: the pod's controller is a ReplicaSet (by ownerReference with
  ``controller: true``, kind ``ReplicaSet``), looked up by the pod's namespace and that
  name, whose controller is a Deployment: ``_pod_deployment_name`` is its name. Absent
  while the ReplicaSet is unknown, or when any link is not a controller of that kind;
  the pod is served either way. ownerReference UIDs are not compared.
- ``job``: the pod's controller is a Job: ``_pod_job_name`` is its name, read from the
  pod alone (Prometheus watches Jobs for it too, and reads nothing from them).
- ``cronjob``: the pod's controller Job, looked up likewise, has a CronJob controller:
  ``_pod_cronjob_name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sd.kinds import namespaces, nodes, pods, workloads
from sd.kinds.kind import Kind
from sd.kinds.labels import META, Allowlist
from sd.kinds.pods import PodRecord
from sd.kinds.workloads import OwnedRecord

POD_DEPLOYMENT_NAME = META + "pod_deployment_name"
POD_JOB_NAME = META + "pod_job_name"
POD_CRONJOB_NAME = META + "pod_cronjob_name"

# Why a record is held back by a required relation (the explain view and /metrics).
NODE_UNKNOWN = "node_unknown"


@dataclass(frozen=True, slots=True)
class Relation:
    """One ``attach_metadata`` option of a kind."""

    option: str
    # The kind whose objects are looked up (one unfiltered watch of all of them, shared by
    # every set that attaches it); None: the labels come from the record alone.
    kind: Kind | None
    # The key of the related object (in ``kind``'s keys), or None when there is none.
    related: Callable[[Any], str | None]
    # The labels for the record's targets, given the related record (None: not known).
    labels: Callable[[Any, Any, Allowlist], dict[str, str]]
    # Records whose related object is not known are not served, for this reason.
    required: str | None = None
    why: Callable[[Any], str] | None = None  # the explain view's text for ``required``


def _owner(record: PodRecord, kind: str) -> str | None:
    return f"{record.namespace}/{record.controller_name}" if record.controller_kind == kind else None


def _owner_name(kind: str, label: str) -> Callable[[Any, Any, Allowlist], dict[str, str]]:
    def labels(record: PodRecord, owned: OwnedRecord | None, annotations: Allowlist) -> dict[str, str]:
        return {label: owned.controller_name} if owned is not None and owned.controller_kind == kind else {}

    return labels


POD_RELATIONS = (
    Relation(
        "node",
        nodes.KIND,
        lambda r: r.node_name or None,
        lambda r, node, allow: nodes.KIND.attached_labels(node, allow) if node is not None else {},
        required=NODE_UNKNOWN,
        why=lambda r: f"its node {r.node_name or '(none: not scheduled)'} is not known (attach_metadata: node)",
    ),
    Relation(
        "namespace",
        namespaces.KIND,
        lambda r: r.namespace,
        lambda r, ns, allow: namespaces.KIND.attached_labels(ns, allow) if ns is not None else {},
    ),
    Relation("deployment", workloads.REPLICASETS, lambda r: _owner(r, "ReplicaSet"), _owner_name("Deployment", POD_DEPLOYMENT_NAME)),
    Relation(
        "job",
        None,
        lambda r: None,
        lambda r, _, allow: {POD_JOB_NAME: r.controller_name} if r.controller_kind == "Job" else {},
    ),
    Relation("cronjob", workloads.JOBS, lambda r: _owner(r, "Job"), _owner_name("CronJob", POD_CRONJOB_NAME)),
)

# Kind name → its options by name, in the order their labels are added.
RELATIONS: dict[str, dict[str, Relation]] = {pods.KIND.name: {r.option: r for r in POD_RELATIONS}}

# Every option of any kind (the config's attach_metadata keys).
OPTIONS = tuple(dict.fromkeys(option for relations in RELATIONS.values() for option in relations))
