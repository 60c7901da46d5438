"""Object metadata, read once for every kind (Prometheus' ``addObjectMetaLabels`` serves
every role the same way): name and namespace, uid, creation and deletion, labels, and
the listed annotations."""

from __future__ import annotations

from operator import eq, itemgetter
from typing import Any, Callable, Mapping, NamedTuple

from sd.kinds.fields import Fields, get_dict, get_list, get_str, timestamp
from sd.kinds.labels import Allowlist
from sd.kinds.reports import BAD_FIELD, BAD_OBJECT, Report, preview
from sd.kinds.shared import intern, shared

_first, _second = itemgetter(0), itemgetter(1)


class Identity(NamedTuple):
    """Who an object is, read before anything else: every report names it."""

    meta: dict[str, Any]
    name: str
    namespace: str  # "" for cluster-scoped kinds
    where: str  # "node/n1", "pod/ns/p1"


def identify(raw: Any, singular: str, namespaced: bool, report: Report) -> Identity | None:
    """The object's metadata, name and namespace; None (reported) without them."""
    meta = get_dict(raw, "metadata") if isinstance(raw, dict) else None
    name, namespace = get_str(meta, "name"), get_str(meta, "namespace")
    if meta is None or not name or (namespaced and not namespace):
        what = "metadata.name/namespace" if namespaced else "metadata.name"
        report(BAD_OBJECT, f"{singular}: object without {what} skipped: {preview(raw)}")
        return None
    where = f"{singular}/{namespace}/{name}" if namespaced else f"{singular}/{name}"
    return Identity(meta, name, intern(namespace) if namespaced else "", where)


def read_meta(who: Identity, f: Fields, allow: Allowlist) -> dict[str, Any]:
    """The record fields every kind takes from metadata besides name and namespace: uid,
    created (epoch seconds, 0 when missing), terminating (has a deletionTimestamp), labels
    and the listed annotations (sorted pairs; ``f.previous``'s tuples when equal)."""
    meta, where, previous = who.meta, who.where, f.previous
    return {
        "uid": get_str(meta, "uid"),
        "created": timestamp(meta, "creationTimestamp", where, f.filling("created")),
        "terminating": meta.get("deletionTimestamp") is not None,
        "labels": object_labels(meta, where, f.filling("labels"), previous.labels if previous else None),
        "annotations": object_annotations(
            meta, allow, where, f.filling("annotations"), previous.annotations if previous else None
        ),
    }


def controller_of(meta: Mapping[str, Any], where: str, report: Report) -> tuple[str, str]:
    """The (kind, name) of the object's controller: its ownerReference with ``controller:
    true`` (client-go's GetControllerOf), or ("", "")."""
    for ref in get_list(meta, "ownerReferences", where, report, "metadata.ownerReferences"):
        if isinstance(ref, dict) and ref.get("controller") is True:
            return get_str(ref, "kind"), get_str(ref, "name")
    return "", ""


def object_labels(
    meta: Mapping[str, Any], where: str, report: Report, previous: tuple[tuple[str, str], ...] | None
) -> tuple[tuple[str, str], ...]:
    """metadata.labels as sorted (key, value) pairs; ``previous`` is returned when equal."""
    labels = _string_map(meta, "labels", where, report)
    if not labels:
        return ()
    # Same keys, same values: reuse. Written with map() so the loop runs in C; this
    # check runs for every watch event (bench/: ~5 -> ~1 us per heartbeat).
    if (
        previous is not None
        and len(labels) == len(previous)
        and all(map(eq, map(labels.get, map(_first, previous)), map(_second, previous)))
    ):
        return previous
    # Label keys and values repeat across thousands of objects: share them.
    return _string_pairs(labels, "labels", where, report, None, intern)


def object_annotations(
    meta: Mapping[str, Any], allow: Allowlist, where: str, report: Report, previous: tuple[tuple[str, str], ...] | None
) -> tuple[tuple[str, str], ...]:
    """The listed metadata.annotations as sorted (key, value) pairs (``previous`` when equal)."""
    annotations = _string_map(meta, "annotations", where, report) if allow else None
    if not annotations:
        return ()
    result = _string_pairs(annotations, "annotations", where, report, allow, str)
    return previous if previous == result else result


def _string_map(meta: Mapping[str, Any], field: str, where: str, report: Report) -> dict | None:
    value = meta.get(field)
    if value is None or isinstance(value, dict):
        return value
    report(BAD_FIELD, f"{where}: metadata.{field}: expected a map, got {preview(value)}")
    return None


def _string_pairs(
    mapping: dict, field: str, where: str, report: Report, allow: Allowlist | None, share: Callable[[str], str]
) -> tuple[tuple[str, str], ...]:
    """The (allowed) entries of a string map, sorted; non-string values are reported and skipped."""
    out = []
    for key, value in mapping.items():
        if allow is not None and key not in allow:
            continue
        if not isinstance(value, str):
            report(BAD_FIELD, f"{where}: metadata.{field}[{key!r}]: expected a string, got {preview(value)}")
            continue
        out.append(shared((intern(key), share(value))))
    out.sort()
    return tuple(out)
