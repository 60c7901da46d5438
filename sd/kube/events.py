"""A watch line → one ``Event``, decoded once (client-go gives its reflector an expected
type and a decoder; this is that decoder).

Most watch events change nothing a record is built from: a node's status heartbeat moves
lastHeartbeatTime, managedFields and resourceVersion. A kind declares, as a subclass of
``Watched`` (a msgspec type), the parts of an object its parser reads, as raw JSON
(``msgspec.Raw``). The decoder builds just those (everything else, a node's images and
managedFields above all, is skipped, not built) and their ``digest``, a pure function of
their raw bytes: equal digests mean the parts read the same, byte for byte, so any
difference, even one that would parse the same, counts as a change. Only a changed
event's parts are turned into the dicts and lists a parser reads (``Event.whole``).

Every event type goes through the same decoder, and the whole line must be valid UTF-8:
a line is rejected (``Malformed``) whichever of its parts holds the bad bytes, and
whether or not its parts turn out to have changed. Numbers in parts nobody reads are
not checked: JSON does not bound them, and reading them all would cost the whole parse.

Generic: nothing here knows a kind; the informer and the kinds both build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

RawPart = msgspec.Raw
NO_PART = msgspec.Raw()  # absent (JSON null is b"null")
EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
# Between the parts of a digest: a byte raw JSON never holds outside a string, nor in one
# unescaped, so that no two sequences of parts join to the same bytes.
_SEPARATOR = b"\x00"


class Malformed(Exception):
    """A watch line that cannot be trusted; the message says why."""


class WatchedCondition(msgspec.Struct):
    type: RawPart = NO_PART
    status: RawPart = NO_PART


class WatchedMeta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""  # not part of the digest: it changes with every event
    uid: RawPart = NO_PART
    creationTimestamp: RawPart = NO_PART
    deletionTimestamp: RawPart = NO_PART
    labels: RawPart = NO_PART
    annotations: RawPart = NO_PART
    ownerReferences: RawPart = NO_PART


class Watched(msgspec.Struct):
    """The base of each kind's watched object (``metadata`` plus its own parts)."""

    metadata: WatchedMeta = msgspec.field(default_factory=WatchedMeta)


def object_key(name: Any, namespace: Any, namespaced: bool) -> str | None:
    """An object's key ("n1", "ns/p1"), or None when its metadata cannot make one."""
    if not isinstance(name, str) or not name:
        return None
    if not namespaced:
        return name
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else None


def digest(parts: msgspec.Struct) -> int:
    """The digest of the watched parts' raw bytes, the resourceVersion left out. Python's
    hash, SipHash keyed at random per process, so that nobody who can label an object can
    aim two of its states at one value."""
    pieces: list[bytes] = []
    _pieces(parts, pieces)
    return hash(_SEPARATOR.join(pieces))


def _pieces(value: Any, out: list[bytes]) -> None:
    for name in value.__struct_fields__:
        part = getattr(value, name)
        if isinstance(part, msgspec.Raw):
            out.append(bytes(part))
        elif isinstance(part, msgspec.Struct):
            _pieces(part, out)
        elif isinstance(part, list):
            out.append(b"[%d" % len(part))
            for item in part:
                _pieces(item, out)
        elif name != "resourceVersion":
            out.append(b"" if part is None else part.encode())


def whole(parts: msgspec.Struct) -> dict[str, Any]:
    """The watched parts as the raw object's dicts and lists (what ``orjson.loads`` of the
    whole object holds there); parts the object did not have stay out. ``Malformed`` when
    a part is not JSON a parser can read."""
    try:
        return _whole(parts)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"a watched part is not valid JSON: {exc}") from None


def _whole(obj: msgspec.Struct) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if isinstance(value, msgspec.Raw):
            if value:
                out[name] = orjson.loads(memoryview(value))
        elif isinstance(value, msgspec.Struct):
            out[name] = _whole(value)
        elif isinstance(value, list):
            out[name] = [_whole(v) for v in value]
        elif value:  # a str; "" is absent
            out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class Event:
    """One watch event: its type, its object's key and resourceVersion, and its object's
    watched parts with their digest (an ERROR: the Status' code and message, no digest)."""

    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK | ERROR
    key: str | None  # None for BOOKMARK and ERROR, and for an object without a name
    version: str  # "" for ERROR
    parts: Any  # the kind's Watched struct; for ERROR {"code": ..., "message": ...}
    digest: int | None = None

    def whole(self) -> dict[str, Any]:
        """The object as its parser reads it (``whole``)."""
        return whole(self.parts) if isinstance(self.parts, msgspec.Struct) else self.parts


class Decoder:
    """Decodes the watch lines of one kind: ``watched`` is its ``Watched`` subclass.

    A line whose object the kind's type cannot hold (a watched part of another shape,
    which its parser reports and skips, or an ERROR event's Status) is decoded whole
    instead, and its event carries the whole object, without a digest."""

    def __init__(self, watched: type[Watched], namespaced: bool) -> None:
        event = msgspec.defstruct("WatchEvent", [("type", str, ""), ("object", watched | None, None)])
        self._decode = msgspec.json.Decoder(event).decode
        self._namespaced = namespaced

    def __call__(self, line: bytes | bytearray) -> Event:
        """The line's event; ``Malformed`` when it is not JSON (in UTF-8), has an unknown
        type or no object, or (but for ERROR) no resourceVersion."""
        if not line.isascii():
            try:
                bytes(line).decode()
            except UnicodeDecodeError as exc:
                raise Malformed(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
        try:
            event = self._decode(line)
        except msgspec.ValidationError:
            return self._whole(line)
        except msgspec.DecodeError as exc:
            raise Malformed(str(exc)) from None
        kind, obj = event.type, event.object
        if kind == "ERROR":
            return self._whole(line)
        if kind not in EVENT_TYPES:
            raise Malformed(f"unknown event type {kind!r}")
        if obj is None:
            raise Malformed(f"a {kind} event without an object")
        meta = obj.metadata
        if not meta.resourceVersion:
            raise Malformed("resourceVersion is not a non-empty string")
        if kind == "BOOKMARK":
            return Event(kind, None, meta.resourceVersion, obj)
        return Event(kind, object_key(meta.name, meta.namespace, self._namespaced), meta.resourceVersion, obj, digest(obj))

    def _whole(self, line: bytes | bytearray) -> Event:
        try:
            event = orjson.loads(line)
            kind = event["type"]
            obj = event["object"]
            if kind not in EVENT_TYPES:
                raise ValueError(f"unknown event type {kind!r}")
            if kind == "ERROR":
                return Event(kind, None, "", obj if isinstance(obj, dict) else {"message": repr(obj)})
            meta = obj["metadata"]
            version = meta["resourceVersion"]
            if not isinstance(version, str) or not version:
                raise ValueError(f"resourceVersion is not a non-empty string: {version!r}")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise Malformed(f"{type(exc).__name__}: {exc}") from None
        key = None if kind == "BOOKMARK" else object_key(meta.get("name"), meta.get("namespace"), self._namespaced)
        return Event(kind, key, version, obj)
