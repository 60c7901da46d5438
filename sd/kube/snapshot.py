"""The snapshot source: the same objects as the API would list, read from a file.

Accepts what ``kubectl get nodes,pods -A -o json`` (or ``-o yaml``) prints: a
``List``, ``NodeList`` or ``PodList``, or a single Node/Pod. Each feed gets the
objects its source would get from the API server (resource, namespace,
selectors), then is marked synced.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml

from sd.kube.selectors import matcher
from sd.kube.sources import Feed

_KINDS = {"Node": "nodes", "Pod": "pods"}
_LIST_KINDS = {"List": None, "NodeList": "Node", "PodList": "Pod"}


class SnapshotError(Exception):
    pass


def read_snapshot(path: str | Path) -> dict[str, list[dict]]:
    """Objects in the file by resource ("nodes", "pods"); raises SnapshotError with the reason."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            doc = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise SnapshotError(f"{name}: neither JSON nor YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        raise SnapshotError(f"{name}: expected a Kubernetes List, NodeList, PodList, Node or Pod with a 'kind'")
    kind = doc["kind"]
    if kind in _KINDS:
        items, default_kind = [doc], None
    elif kind in _LIST_KINDS:
        items, default_kind = doc.get("items") or [], _LIST_KINDS[kind]
        if not isinstance(items, list):
            raise SnapshotError(f"{name}: items: expected a list")
    else:
        raise SnapshotError(f"{name}: kind {kind!r} is not List, NodeList, PodList, Node or Pod")
    out: dict[str, list[dict]] = {"nodes": [], "pods": []}
    for i, item in enumerate(items):
        item_kind = item.get("kind", default_kind) if isinstance(item, dict) else None
        resource = _KINDS.get(item_kind)  # type: ignore[arg-type]
        if resource is not None:
            out[resource].append(item)
        elif item_kind is None:
            raise SnapshotError(f"{name}: items[{i}]: no 'kind' (expected Node or Pod)")
        # Other kinds (Services, ...) in a `kubectl get all` dump are not ours: ignore.
    return out


def load_snapshot(path: str | Path, feeds: list[Feed]) -> None:
    objects = read_snapshot(path)
    for feed in feeds:
        src = feed.source
        match = matcher(src.label_selector, src.field_selector)
        feed.list_page(
            obj
            for obj in objects[src.resource]
            if (src.namespace is None or (obj.get("metadata") or {}).get("namespace") == src.namespace) and match(obj)
        )
        feed.list_done()
