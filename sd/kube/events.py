"""A watch line → one ``Event``, decoded once (client-go gives its reflector an expected
type and a decoder; this is that decoder).

Most watch events change nothing a record is built from: a node's status heartbeat moves
lastHeartbeatTime, managedFields and resourceVersion. A kind declares, as a msgspec type
(``sd.kinds.watched``), the parts of an object its parser reads, as raw JSON
(``msgspec.Raw``), under ``metadata`` with its name, namespace and resourceVersion. The
decoder builds just those (everything else, a node's images and
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

from functools import cache
from typing import Any, Callable, NamedTuple, get_args

import msgspec
import orjson

EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
_lay_out = msgspec.msgpack.Encoder().encode
_decode_part = msgspec.json.Decoder().decode


class Malformed(Exception):
    """A watch line that cannot be trusted; the message says why."""


class _Layout:
    """Where a watched type's parts are, worked out once per type: each field's name, what it
    holds ("raw", "str", a "struct" section, or a "list" of them) and, for those, their layout."""

    def __init__(self, struct: type[msgspec.Struct]) -> None:
        self.fields: list[tuple[str, str, _Layout | None]] = []
        for field in msgspec.structs.fields(struct):
            name, kind = field.name, field.type
            args = [t for t in get_args(kind) if t is not type(None)]
            if kind is msgspec.Raw:
                self.fields.append((name, "raw", None))
            elif kind is str:
                self.fields.append((name, "str", None))  # name, namespace, resourceVersion: not parts
            elif isinstance(kind, type) and issubclass(kind, msgspec.Struct) or len(args) == 1 and issubclass(args[0], msgspec.Struct):
                self.fields.append((name, "struct", _layout(args[0] if args else kind)))  # a section, or a nullable one
            else:  # list[<struct>] | None
                (item,) = get_args(args[0])
                self.fields.append((name, "list", _layout(item)))


@cache
def _layout(struct: type[msgspec.Struct]) -> _Layout:
    return _Layout(struct)


def digest(parts: Any) -> int:
    """The digest of the watched parts' raw bytes, the resourceVersion left out (blanked in a
    copy: ``parts`` is not changed). msgspec's msgpack encoder lays the raw parts end to end
    as they are, copied, not re-encoded, within framing fixed by the type. Python's hash,
    SipHash keyed at random per process, so that nobody who can label an object can aim two
    of its states at one value."""
    meta = msgspec.structs.replace(parts.metadata, resourceVersion="")
    return hash(_lay_out(msgspec.structs.replace(parts, metadata=meta)))


def whole(parts: msgspec.Struct) -> dict[str, Any]:
    """The watched parts as the raw object's dicts and lists (what a JSON decoder makes of
    the whole object there); parts the object did not have stay out. ``Malformed`` when a
    part is not JSON a parser can read."""
    try:
        return _whole(parts, _layout(type(parts)))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Malformed(f"a watched part is not valid JSON: {exc}") from None


def _whole(obj: Any, layout: _Layout) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind, sub in layout.fields:
        value = getattr(obj, name)
        if kind == "raw":
            if value:
                out[name] = _decode_part(value)
        elif value is None:
            continue
        elif kind == "struct":
            out[name] = _whole(value, sub)  # type: ignore[arg-type]
        elif kind == "list":
            out[name] = [_whole(v, sub) for v in value]  # type: ignore[arg-type]
        elif value:  # a str; "" is absent
            out[name] = value
    return out


class Event(NamedTuple):
    """One watch event: its type, its object's key and resourceVersion, and its object's
    watched parts with their digest (an ERROR: the Status' code and message, no digest)."""

    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK | ERROR
    key: str | None  # None for BOOKMARK and ERROR, and for an object without a name
    version: str  # "" for ERROR
    parts: Any  # the kind's watched parts (a msgspec struct), or the whole object; for ERROR {"code": ..., "message": ...}
    digest: int | None = None

    def whole(self) -> dict[str, Any]:
        """The object as its parser reads it (``whole``)."""
        return whole(self.parts) if isinstance(self.parts, msgspec.Struct) else self.parts


class Decoder:
    """Decodes the watch lines of one kind: ``watched`` is the type of its watched parts,
    ``key`` makes an object's key of its name and namespace.

    A line whose object the kind's type cannot hold (a watched part of another shape,
    which its parser reports and skips, or an ERROR event's Status) is decoded whole
    instead, and its event carries the whole object, without a digest."""

    def __init__(self, watched: type[msgspec.Struct], key: Callable[[Any, Any], str | None]) -> None:
        event = msgspec.defstruct("WatchEvent", [("type", str, ""), ("object", watched | None, None)])
        self._decode = msgspec.json.Decoder(event).decode
        self._key = key

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
        return Event(kind, self._key(meta.name, meta.namespace), meta.resourceVersion, obj, digest(obj))

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
        key = None if kind == "BOOKMARK" else self._key(meta.get("name"), meta.get("namespace"))
        return Event(kind, key, version, obj)
