"""The snapshot reader: the objects an API server would list, read from a file.

Accepts what ``kubectl get nodes,pods -A -o json`` (or ``-o yaml``) prints: a
``List`` or a list of one kind (``NodeList``, ...), or a single object. The caller
says which kinds it knows; objects of other kinds (Services in a ``kubectl get all``
dump) are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import orjson
import yaml


class SnapshotError(Exception):
    pass


def read_snapshot(
    path: str | Path, kinds: Mapping[str, str], list_kinds: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Objects in the file grouped by ``kinds[object kind]`` (e.g. "Node" → "nodes");
    ``list_kinds`` maps a typed list's kind to its items' kind ("NodeList" → "Node").
    Raises SnapshotError with the file and the reason."""
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
    accepted = ", ".join([*list_kinds, *kinds])
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        raise SnapshotError(f"{name}: expected a Kubernetes List (or {accepted}) with a 'kind'")
    kind = doc["kind"]
    if kind in kinds:
        items, default_kind = [doc], None
    elif kind == "List" or kind in list_kinds:
        items, default_kind = doc.get("items") or [], list_kinds.get(kind)
        if not isinstance(items, list):
            raise SnapshotError(f"{name}: items: expected a list")
    else:
        raise SnapshotError(f"{name}: kind {kind!r} is not List, {accepted}")
    out: dict[str, list[dict[str, Any]]] = {group: [] for group in kinds.values()}
    for i, item in enumerate(items):
        item_kind = item.get("kind", default_kind) if isinstance(item, dict) else None
        if item_kind in kinds:
            out[kinds[item_kind]].append(item)
        elif item_kind is None:
            raise SnapshotError(f"{name}: items[{i}]: no 'kind' (expected one of {', '.join(kinds)})")
    return out
