"""The parts of an object a kind's parser reads, as msgspec types for the watch decoder
(``sd.kube.events``): each part raw JSON (``msgspec.Raw``), decoded and compared only as
bytes until it changes. A kind declares its own on top of ``Watched`` (metadata), naming
each part once with ``parts``; its ``parse`` must read nothing else (tests/test_cost.py
checks that it makes the same record of them as of the whole object)."""

from __future__ import annotations

from typing import Any

import msgspec

RawPart = msgspec.Raw
NO_PART = msgspec.Raw()  # absent (JSON null is b"null")


def parts(*names: str) -> list[tuple[str, Any, Any]]:
    """Raw parts named ``names``, each absent until the object has it (``msgspec.defstruct`` fields)."""
    return [(name, RawPart, NO_PART) for name in names]


WatchedCondition = msgspec.defstruct("WatchedCondition", parts("type", "status"))

# name, namespace and resourceVersion as strings: the event's key and version, not parts.
WatchedMeta = msgspec.defstruct(
    "WatchedMeta",
    [
        ("name", str, ""),
        ("namespace", str, ""),
        ("resourceVersion", str, ""),
        *parts("uid", "creationTimestamp", "deletionTimestamp", "labels", "annotations", "ownerReferences"),
    ],
)


class Watched(msgspec.Struct):
    """The base of each kind's watched object (``metadata`` plus its own parts)."""

    metadata: WatchedMeta = msgspec.field(default_factory=WatchedMeta)  # type: ignore[valid-type]


def watched(name: str, status: list[tuple[str, Any, Any]]) -> type[Watched]:
    """A kind's watched object: metadata, the raw ``spec``, and a ``status`` of the given fields."""
    status_type = msgspec.defstruct(f"{name}Status", status)
    return msgspec.defstruct(name, [*parts("spec"), ("status", status_type | None, None)], bases=(Watched,))
