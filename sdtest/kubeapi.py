"""A fake Kubernetes API server (core/v1 Nodes, Pods and Namespaces, apps/v1 ReplicaSets,
batch/v1 Jobs) for tests and benchmarks.

`FakeKubeAPI` is a real HTTP(S) server on loopback that speaks the list/watch protocol the
way kube-apiserver does: one global resourceVersion, consistent paginated lists, watches with
history replay, synthetic ADDED events, BOOKMARKs, `ERROR` 410 after compaction, label and
field selectors (with the watch cache's ADDED/DELETED transitions), and Status errors.
Faults are injectable: failing requests (500/429 + Retry-After), dropped streams, malformed
lines, crash-like stop/restart. Code under test talks to it with the unmodified
kubernetes-asyncio client.

The server runs its own asyncio loop in a background thread, so the state API (`add`,
`modify`, ...) is synchronous and callable from any thread, including a test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import functools
import re
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml
from aiohttp import web

__all__ = ["FakeKubeAPI"]

ADDED, MODIFIED, DELETED = b"ADDED", b"MODIFIED", b"DELETED"
_WRITE_BATCH = 256 * 1024  # bytes per write to a watch stream

# Field selectors the real apiserver supports for each kind; anything else is a 400.
_POD_FIELDS: dict[str, tuple[str, ...]] = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.restartPolicy": ("spec", "restartPolicy"),
    "spec.schedulerName": ("spec", "schedulerName"),
    "spec.serviceAccountName": ("spec", "serviceAccountName"),
    "spec.hostNetwork": ("spec", "hostNetwork"),
    "status.phase": ("status", "phase"),
    "status.podIP": ("status", "podIP"),
    "status.nominatedNodeName": ("status", "nominatedNodeName"),
}
_NODE_FIELDS: dict[str, tuple[str, ...]] = {
    "metadata.name": ("metadata", "name"),
    "spec.unschedulable": ("spec", "unschedulable"),
}


_NAMESPACE_FIELDS: dict[str, tuple[str, ...]] = {"metadata.name": ("metadata", "name"), "status.phase": ("status", "phase")}
_NAMESPACED_FIELDS: dict[str, tuple[str, ...]] = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
}


@dataclass(frozen=True, slots=True)
class _Resource:
    kind: str
    plural: str
    namespaced: bool
    fields: dict[str, tuple[str, ...]]
    api_version: str = "v1"  # "apps/v1": served under /apis/apps/v1

    @property
    def prefix(self) -> list[str]:
        """The path segments its collections are served under."""
        return ["api", "v1"] if self.api_version == "v1" else ["apis", *self.api_version.split("/")]


_RESOURCES: dict[str, _Resource] = {
    "Node": _Resource("Node", "nodes", False, _NODE_FIELDS),
    "Pod": _Resource("Pod", "pods", True, _POD_FIELDS),
    "Namespace": _Resource("Namespace", "namespaces", False, _NAMESPACE_FIELDS),
    "ReplicaSet": _Resource("ReplicaSet", "replicasets", True, _NAMESPACED_FIELDS, "apps/v1"),
    "Job": _Resource("Job", "jobs", True, _NAMESPACED_FIELDS, "batch/v1"),
}

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _truthy(value: str | None) -> bool:
    """A query bool as Go's strconv.ParseBool reads it (kubernetes-asyncio sends "True")."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field_value(obj: dict[str, Any], path: tuple[str, ...]) -> str:
    """A field as the apiserver's field-selector sets render it (bools lowercase, missing "")."""
    cur: Any = obj
    for part in path:
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if cur is None:
        return "false" if path[-1] in ("hostNetwork", "unschedulable") else ""
    return str(cur)


# --------------------------------------------------------------------------- stored state


@dataclass(slots=True, eq=False)
class _Version:
    """One immutable stored version of an object, serialized once."""

    kind: str
    ns: str
    name: str
    rv: int
    item: bytes  # JSON without kind/apiVersion, as list items are returned
    labels: dict[str, str]
    fields: dict[str, str]
    meta_kept: dict[str, Any]  # server-owned metadata a modify without it keeps

    @property
    def key(self) -> tuple[str, str]:
        return (self.ns, self.name)

    @property
    def body(self) -> memoryview:
        """`item` after its opening brace (never empty: metadata is always there), so an
        event is head + body + tail with a single copy when the batch is joined."""
        return memoryview(self.item)[1:]

    @property
    def obj(self) -> bytes:
        """JSON with kind/apiVersion first, as watch events and GETs carry it."""
        return b'{"kind":"%s","apiVersion":"%s",' % (self.kind.encode(), _RESOURCES[self.kind].api_version.encode()) + self.body


def _make_version(kind: str, obj: dict[str, Any], rv: int) -> _Version:
    """Copy the caller's dict shallowly (it may be reused as a template), stamp rv, serialize."""
    res = _RESOURCES[kind]
    body = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
    md = dict(body.get("metadata") or {})
    md["resourceVersion"] = str(rv)
    body["metadata"] = md
    fields = {name: _field_value(body, path) for name, path in res.fields.items()}
    return _Version(
        kind=kind,
        ns=md.get("namespace") or "",
        name=md["name"],
        rv=rv,
        item=orjson.dumps(body),
        labels=dict(md.get("labels") or {}),
        fields=fields,
        meta_kept={k: md[k] for k in ("uid", "creationTimestamp") if k in md},
    )


def _restamp(v: _Version, rv: int) -> _Version:
    """The same content under a new resourceVersion (DELETED events carry the delete's rv)."""
    return _make_version(v.kind, orjson.loads(v.item), rv)


_Pieces = tuple[bytes | memoryview, ...]
_EVENT_TAIL = b"}\n"


@functools.cache
def _event_head(etype: bytes, kind: str) -> bytes:
    return b'{"type":"%s","object":{"kind":"%s","apiVersion":"%s",' % (etype, kind.encode(), _RESOURCES[kind].api_version.encode())


def _event_pieces(etype: bytes, v: _Version) -> _Pieces:
    """One watch line as buffers to join; no per-event copy of the object bytes."""
    return (_event_head(etype, v.kind), v.body, _EVENT_TAIL)


@dataclass(slots=True, eq=False)
class _Event:
    """One change in the global history. For DELETED, `new` is the last state at the new rv."""

    type: bytes
    rv: int
    new: _Version
    prev: _Version | None
    _gone: _Version | None = None

    def pieces(self, etype: bytes | None = None) -> _Pieces:
        if etype is None or etype == self.type:
            return _event_pieces(self.type, self.new)
        if etype == DELETED:
            # Stopped matching a watch's selector: the previous content under this rv, as the
            # watch cache's cacheWatcher.convertToWatchEvent does. Built once for all watches.
            if self._gone is None:
                assert self.prev is not None
                self._gone = _restamp(self.prev, self.rv)
            return _event_pieces(DELETED, self._gone)
        return _event_pieces(etype, self.new)


@dataclass(slots=True, eq=False)
class _RawEvent:
    """A line in the history that is not a valid event (corruption, a buggy aggregated API):
    every watch of `kind` that starts before `rv` gets it verbatim, on every re-watch."""

    rv: int
    kind: str
    line: bytes


@dataclass(slots=True, eq=False)
class _Snapshot:
    """All objects of one collection at one rv, for consistent paginated lists."""

    rv: int
    versions: list[_Version]


# --------------------------------------------------------------------------- selectors

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VAL = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_RE_NOT_EXISTS = re.compile(rf"!\s*({_KEY})")
_RE_EQUALITY = re.compile(rf"({_KEY})\s*(==|=|!=)\s*({_VAL})")
_RE_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\(\s*({_VAL}(?:\s*,\s*{_VAL})*)\s*\)")
_RE_COMPARE = re.compile(rf"({_KEY})\s*([<>])\s*(-?\d+)")
_RE_EXISTS = re.compile(rf"({_KEY})")

_Predicate = Callable[[_Version], bool]


class _BadRequest(ValueError):
    """A request the apiserver would reject with 400 BadRequest."""


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b` is two terms)."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return [t.strip() for t in terms]


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    if m := _RE_NOT_EXISTS.fullmatch(term):
        key = m[1]
        return lambda labels: key not in labels
    if m := _RE_EQUALITY.fullmatch(term):
        key, op, val = m[1], m[2], m[3]
        if op == "!=":
            return lambda labels: labels.get(key) != val
        return lambda labels: labels.get(key) == val
    if m := _RE_SET.fullmatch(term):
        key, op = m[1], m[2]
        vals = frozenset(v.strip() for v in m[3].split(","))
        if op == "in":
            return lambda labels: key in labels and labels[key] in vals
        return lambda labels: key not in labels or labels[key] not in vals
    if m := _RE_COMPARE.fullmatch(term):
        key, op, num = m[1], m[2], int(m[3])

        def compare(labels: dict[str, str]) -> bool:
            try:
                value = int(labels[key])
            except (KeyError, ValueError):
                return False
            return value > num if op == ">" else value < num

        return compare
    if m := _RE_EXISTS.fullmatch(term):
        key = m[1]
        return lambda labels: key in labels
    raise _BadRequest(f"unable to parse requirement: {term!r}")


def _field_term(term: str, res: _Resource) -> Callable[[dict[str, str]], bool]:
    for op in ("!=", "==", "="):
        name, sep, val = term.partition(op)
        if sep:
            break
    else:
        raise _BadRequest(f"invalid selector: '{term}'; can't understand '{term}'")
    name = name.strip()
    if name not in res.fields:
        raise _BadRequest(f'field label not supported: {name}')
    if op == "!=":
        return lambda fields: fields[name] != val
    return lambda fields: fields[name] == val


def _compile_selectors(label_sel: str, field_sel: str, res: _Resource) -> _Predicate | None:
    """Both selectors as one predicate over a stored version; None matches everything."""
    label_terms = [_label_term(t) for t in _split_terms(label_sel)] if label_sel.strip() else []
    field_terms = ([_field_term(t, res) for t in _split_terms(field_sel)]
                   if field_sel.strip() else [])
    if not label_terms and not field_terms:
        return None

    def match(v: _Version) -> bool:
        return all(t(v.labels) for t in label_terms) and all(t(v.fields) for t in field_terms)

    return match


# --------------------------------------------------------------------------- watches


@dataclass(slots=True, eq=False)
class _Watch:
    """One open watch stream; lives in the server loop, fed by `_dispatch`."""

    kind: str
    ns: str | None
    match: _Predicate | None
    bookmarks: bool
    start_rv: int
    transport: asyncio.Transport | None
    buf: list[bytes | memoryview] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False

    def wants(self, v: _Version) -> bool:
        return v.kind == self.kind and (self.ns is None or v.ns == self.ns)

    def pieces_for(self, ev: _Event | _RawEvent) -> _Pieces | None:
        """The line this watch sees for `ev`, with selector transitions like the watch cache."""
        if isinstance(ev, _RawEvent):
            return (ev.line,) if ev.kind == self.kind else None
        if not self.wants(ev.new):
            return None
        if self.match is None:
            return ev.pieces()
        now = ev.type != DELETED and self.match(ev.new)
        before = ev.prev is not None and self.match(ev.prev)
        if now:
            return ev.pieces(MODIFIED if before else ADDED)
        if before:
            return ev.pieces(DELETED)
        return None

    def push(self, line: bytes) -> None:
        self.buf.append(line)
        self.wake.set()


@dataclass(slots=True)
class _Fault:
    remaining: int
    status: int
    retry_after: int | None
    path_contains: str | None


def _status_body(code: int, message: str, reason: str | None = None, **extra: Any) -> bytes:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": extra.pop("metadata", {}),
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, ""),
    }
    status.update(extra)
    status["code"] = code
    return orjson.dumps(status)


def _status(code: int, message: str, reason: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.Response(status=code, body=_status_body(code, message, reason, **extra),
                        content_type="application/json", headers=headers)


def _json(doc: Any) -> web.Response:
    return web.Response(body=orjson.dumps(doc), content_type="application/json")


def _encode_token(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not (isinstance(doc, dict) and isinstance(doc.get("after"), list)
                and isinstance(doc.get("rv"), int) and isinstance(doc.get("id"), int)):
            raise ValueError(token)
        return doc
    except ValueError as exc:
        raise _BadRequest(f"continue key is not valid: {exc}") from None


# --------------------------------------------------------------------------- the server


class FakeKubeAPI:
    """A loopback kube-apiserver double for the kinds sd/kinds watches (see module docstring)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 tls: tuple[str, str] | None = None, tokens: set[str] | None = None,
                 history_limit: int = 10_000) -> None:
        """Configure; nothing listens until `start()`.

        `tls` is (certfile, keyfile) to serve https. `tokens`, when not None, are the bearer
        tokens accepted (others get 401); reassign or mutate `.tokens` to rotate them.
        `history_limit` bounds the watch history like the watch cache's window: watching from
        an rv older than the last `history_limit` changes gets ERROR 410."""
        self.host = host
        self.port = port
        self.tls = tls
        self.tokens = tokens
        self.history_limit = history_limit
        self.requests: list[dict[str, Any]] = []

        self._lock = threading.Lock()
        self._rv = 1
        self._objects: dict[tuple[str, str, str], _Version] = {}  # (kind, ns, name)
        self._hist: list[_Event | _RawEvent] = []  # events with rv in (_floor, _rv], contiguous
        self._instant_closes = 0  # watch requests still to answer 200 and end at once
        # Streaming lists (KEP-3157): "on" validates and serves them like a 1.34+ apiserver;
        # "off" refuses sendInitialEvents with the 422 a server without the WatchList gate
        # gives; "ignore" is an old server that does not know the parameters: a watch from
        # "" still starts with the current objects as ADDED, but no end bookmark ever comes.
        self.watch_list = "on"
        self.hold_initial_events_end = False  # withhold end bookmarks until release_initial_events_end()
        self._held: list[tuple[_Watch, bytes]] = []
        self.bytes_sent = 0  # response bytes of lists and watch streams
        self._floor = self._rv  # oldest rv a watch may start from
        self._compacted = 0  # continue tokens of snapshots taken before this id are expired
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._next_snapshot = 0
        self._faults: list[_Fault] = []
        self._watches: set[_Watch] = set()  # mutated only in the server loop, under _lock

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self) -> FakeKubeAPI:
        """Serve from a background thread with its own loop; binds and sets `.port`."""
        if self._thread is not None:
            raise RuntimeError("FakeKubeAPI already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run_loop, args=(loop,), daemon=True,
                                  name="FakeKubeAPI")
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        except BaseException:
            with self._lock:
                self._loop = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            raise
        self._thread = thread
        return self

    def stop(self) -> None:
        """Crash-like stop: stop listening and abort every open connection."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            loop, self._loop = self._loop, None
        assert loop is not None
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None

    def restart(self, down_seconds: float = 0) -> None:
        """Stop, stay down `down_seconds`, start on the same port; state is kept.

        This blocks the calling thread. From async code whose client runs in the same loop,
        use `await restart_async(...)` so the client can observe the downtime."""
        self.stop()
        if down_seconds > 0:
            time.sleep(down_seconds)
        self.start()

    async def restart_async(self, down_seconds: float = 0) -> None:
        """`restart` that lets the caller's event loop run while the server is down."""
        self.stop()
        if down_seconds > 0:
            await asyncio.sleep(down_seconds)
        self.start()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Any, token: str | None = None,
                         ca_file: str | None = None) -> str:
        """Write a kubeconfig for `.url`; with TLS it trusts `ca_file`, or skips verification."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls:
            if ca_file:
                cluster["certificate-authority"] = str(ca_file)
            else:
                cluster["insecure-skip-tls-verify"] = True
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake", "user": {"token": token} if token else {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)
        return str(path)

    # ---------------------------------------------------------------- state

    def add(self, obj: dict[str, Any]) -> str:
        """Create an object (fills uid/creationTimestamp if missing); emits ADDED; returns rv."""
        return self.add_many([obj])[0]

    def modify(self, obj: dict[str, Any]) -> str:
        """Replace the stored object with the same kind/namespace/name; emits MODIFIED."""
        return self.modify_many([obj])[0]

    def delete(self, kind: str, name: str, namespace: str | None = None) -> str:
        """Remove an object; emits DELETED with its last state at the new rv."""
        return self.delete_many([(kind, name, namespace)])[0]

    def add_many(self, objs: Iterable[dict[str, Any]]) -> list[str]:
        """Bulk `add` under one lock acquisition; all-or-nothing validation."""
        prepared = []
        now = _now_rfc3339()
        for obj in objs:
            kind, key = self._key_of(obj)
            md = dict(obj.get("metadata") or {})
            if "uid" not in md:
                md["uid"] = str(uuid.uuid4())
            md.setdefault("creationTimestamp", now)
            if _RESOURCES[kind].namespaced:
                md["namespace"] = key[1]
            prepared.append((kind, key, {**obj, "metadata": md}))
        with self._lock:
            keys = [key for _, key, _ in prepared]
            if len(set(keys)) != len(keys) or any(k in self._objects for k in keys):
                dup = next(k for i, k in enumerate(keys) if k in self._objects or k in keys[:i])
                raise KeyError(f"already exists: {dup}")
            events = []
            for kind, key, obj in prepared:
                self._rv += 1
                v = _make_version(kind, obj, self._rv)
                self._objects[key] = v
                events.append(_Event(ADDED, self._rv, v, None))
            self._commit(events)
        return [str(e.rv) for e in events]

    def modify_many(self, objs: Iterable[dict[str, Any]]) -> list[str]:
        """Bulk `modify`; uid/creationTimestamp are kept from the stored object if missing."""
        prepared = [(self._key_of(obj), obj) for obj in objs]
        with self._lock:
            for (_, key), _ in prepared:
                if key not in self._objects:
                    raise KeyError(f"not found: {key}")
            events = []
            for (kind, key), obj in prepared:
                prev = self._objects[key]
                md = dict(obj.get("metadata") or {})
                for name, value in prev.meta_kept.items():
                    md.setdefault(name, value)
                if _RESOURCES[kind].namespaced:
                    md["namespace"] = key[1]
                self._rv += 1
                v = _make_version(kind, {**obj, "metadata": md}, self._rv)
                self._objects[key] = v
                events.append(_Event(MODIFIED, self._rv, v, prev))
            self._commit(events)
        return [str(e.rv) for e in events]

    def delete_many(self, refs: Iterable[tuple[str, str, str | None]]) -> list[str]:
        """Bulk `delete` of (kind, name, namespace) triples."""
        keys = [self._ref_key(kind, name, ns) for kind, name, ns in refs]
        with self._lock:
            for key in keys:
                if key not in self._objects:
                    raise KeyError(f"not found: {key}")
            events = []
            for key in keys:
                prev = self._objects.pop(key)
                self._rv += 1
                events.append(_Event(DELETED, self._rv, _restamp(prev, self._rv), prev))
            self._commit(events)
        return [str(e.rv) for e in events]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """A fresh copy of the stored object, with kind/apiVersion."""
        key = self._ref_key(kind, name, namespace)
        with self._lock:
            v = self._objects.get(key)
        if v is None:
            raise KeyError(f"not found: {key}")
        obj: dict[str, Any] = orjson.loads(v.obj)
        return obj

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        with self._lock:
            return str(self._rv)

    def compact(self) -> None:
        """Forget all history up to the current rv (like etcd compaction)."""
        with self._lock:
            self._hist.clear()
            self._floor = self._rv
            # Tokens handed out so far expire; a list started after compaction at the same
            # rv stays readable (etcd keeps the compaction revision itself).
            self._compacted = self._next_snapshot

    def bookmark(self) -> None:
        """Send a BOOKMARK at the current rv to every open watch that allowed bookmarks."""
        with self._lock:
            self._schedule(self._dispatch_bookmark, self._rv)

    def drop_streams(self) -> None:
        """Abort every open watch connection; the server stays up. Returns once they're gone."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._drop_watches(), loop).result(timeout=10)

    def fail_next(self, n: int, status: int = 500, retry_after: int | None = None,
                  path_contains: str | None = None) -> None:
        """Answer the next `n` requests whose path+query contains `path_contains` (any if None;
        case-insensitive) with `status` and a Status body; `Retry-After` header when given."""
        with self._lock:
            self._faults.append(_Fault(n, status, retry_after, path_contains))

    def send_malformed(self, line: bytes = b'{"type": "MODIFIED", "object": {not json\n') -> None:
        """Write `line` verbatim into every open watch stream (after anything queued)."""
        with self._lock:
            self._schedule(self._dispatch_raw, line)

    def poison(self, kind: str, line: bytes) -> str:
        """Put `line` (not a valid event) into `kind`'s watch history at the next rv: every watch
        from an older rv replays it, as a real server replays whatever sits in its history.
        Objects and lists are unaffected. Returns the rv it occupies."""
        if not line.endswith(b"\n"):
            line += b"\n"
        with self._lock:
            self._rv += 1
            self._commit([_RawEvent(self._rv, kind, line)])  # type: ignore[list-item]
            return str(self._rv)

    def close_watches_at_once(self, n: int) -> None:
        """Answer the next `n` watch requests 200, then end the stream with no events."""
        with self._lock:
            self._instant_closes = n

    def release_initial_events_end(self) -> None:
        """Send the end bookmarks withheld while `hold_initial_events_end` was set."""
        with self._lock:
            self.hold_initial_events_end = False
            held, self._held = self._held, []
            if self._loop is not None:
                for w, line in held:
                    self._loop.call_soon_threadsafe(w.push, line)

    def open_watches(self) -> int:
        """Number of currently open watch streams."""
        with self._lock:
            return len(self._watches)

    def wait_for_watches(self, n: int, timeout: float = 10) -> None:
        """Block until at least `n` watches are open. Blocks this thread: if the watcher runs
        in this thread's event loop, use `await await_watches(n)` instead."""
        deadline = time.monotonic() + timeout
        while self.open_watches() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(self._watch_timeout_message(n, timeout))
            time.sleep(0.005)

    async def await_watches(self, n: int, timeout: float = 10) -> None:
        """`wait_for_watches` for async code: polls without blocking the caller's loop."""
        deadline = time.monotonic() + timeout
        while self.open_watches() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(self._watch_timeout_message(n, timeout))
            await asyncio.sleep(0.005)

    def _watch_timeout_message(self, n: int, timeout: float) -> str:
        msg = f"{self.open_watches()} watches open after {timeout}s, wanted {n}"
        try:
            asyncio.get_running_loop()
            msg += " (called from a running event loop: use `await api.await_watches(n)`)"
        except RuntimeError:
            pass
        return msg

    # ---------------------------------------------------------------- state internals

    @staticmethod
    def _ref_key(kind: str, name: str, namespace: str | None) -> tuple[str, str, str]:
        res = _RESOURCES.get(kind)
        if res is None:
            raise ValueError(f"unsupported kind {kind!r}; known: {sorted(_RESOURCES)}")
        return (kind, (namespace or "default") if res.namespaced else "", name)

    def _key_of(self, obj: dict[str, Any]) -> tuple[str, tuple[str, str, str]]:
        kind = obj.get("kind")
        md = obj.get("metadata") or {}
        if not isinstance(kind, str) or not md.get("name"):
            raise ValueError("object needs kind and metadata.name")
        return kind, self._ref_key(kind, md["name"], md.get("namespace"))

    def _commit(self, events: list[_Event]) -> None:
        """Append to history and fan out to watches. Caller holds the lock."""
        if not events:
            return
        self._hist.extend(events)
        # Trim in chunks so the list copy is amortized over many events.
        excess = len(self._hist) - self.history_limit
        if excess > self.history_limit // 4:
            del self._hist[:excess]
            self._floor = self._hist[0].rv - 1 if self._hist else self._rv
        self._schedule(self._dispatch, events)

    def _schedule(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run `fn(arg)` in the server loop if any watch could care. Caller holds the lock, so
        callbacks are queued in rv order."""
        if self._watches and self._loop is not None:
            # RuntimeError: the loop was closed under us by a concurrent stop().
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, arg)

    # The _dispatch* callbacks run in the server loop, which alone mutates _watches.

    def _dispatch(self, events: list[_Event]) -> None:
        for w in list(self._watches):
            for ev in events:
                if ev.rv > w.start_rv and (pieces := w.pieces_for(ev)) is not None:
                    w.buf.extend(pieces)
            if w.buf:
                w.wake.set()

    def _dispatch_bookmark(self, rv: int) -> None:
        for w in list(self._watches):
            if w.bookmarks and rv >= w.start_rv:
                w.push(self._bookmark_line(w.kind, rv))

    def _dispatch_raw(self, line: bytes) -> None:
        for w in list(self._watches):
            w.push(line)

    @staticmethod
    def _bookmark_line(kind: str, rv: int, annotations: dict[str, str] | None = None) -> bytes:
        md: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
        if annotations:
            md["annotations"] = annotations
        obj = {"kind": kind, "apiVersion": "v1", "metadata": md}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    # ---------------------------------------------------------------- server loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Cancel leftovers (e.g. handlers of aborted connections) so nothing is destroyed
            # while pending.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    async def _serve(self) -> None:
        with self._lock:  # before binding, so no watch can register unseen by mutators
            self._loop = asyncio.get_running_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that goes away cancels its watch handler, which then
        # deregisters the watch.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                               shutdown_timeout=1.0)
        await runner.setup()
        ssl_ctx = None
        if self.tls:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(*self.tls)
        site = web.TCPSite(runner, self.host, self.port, ssl_context=ssl_ctx,
                           reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        await self._drop_watches()
        server = runner.server
        if server is not None:
            for conn in server.connections:
                if conn.transport is not None:
                    conn.transport.abort()
        await runner.cleanup()

    async def _drop_watches(self) -> None:
        with self._lock:
            watches = list(self._watches)
            self._watches.clear()
        for w in watches:
            w.dropped = True
            w.wake.set()
            if w.transport is not None:
                w.transport.abort()

    # ---------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        watch = _truthy(query.get("watch"))
        self.requests.append({"method": request.method, "path": request.path,
                              "query": query, "watch": watch,
                              "user_agent": request.headers.get("User-Agent", "")})

        tokens = self.tokens
        if tokens is not None:
            auth = request.headers.get("Authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in tokens:
                return _status(401, "Unauthorized")

        fault = self._take_fault(request.path_qs)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
            details = {"retryAfterSeconds": fault.retry_after} if fault.retry_after else {}
            message = ("Too many requests, please try again later." if fault.status == 429
                       else f"injected failure ({fault.status})")
            return _status(fault.status, message, headers=headers, details=details)

        if request.method not in ("GET", "HEAD"):
            return _status(405, f"the server does not allow this method on the requested "
                                f"resource ({request.method})")

        parts = [p for p in request.path.split("/") if p]
        match parts:
            case ["version"]:
                return _json(_VERSION_INFO)
            case ["healthz" | "livez" | "readyz"]:
                return web.Response(text="ok")
            case ["api"]:
                return _json({"kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [
                                  {"clientCIDR": "0.0.0.0/0",
                                   "serverAddress": f"{self.host}:{self.port}"}]})
            case ["api", "v1"]:
                return _json(self._discovery())
        for res in _RESOURCES.values():
            n = len(res.prefix)
            if parts[:n] != res.prefix:
                continue
            match parts[n:]:
                case [plural] if plural == res.plural:
                    return await self._collection(request, query, res, None, watch)
                case ["namespaces", ns, plural] if plural == res.plural and res.namespaced:
                    return await self._collection(request, query, res, ns, watch)
                case [plural, name] if plural == res.plural and not res.namespaced:
                    return self._get_one(res.kind, name, None)
                case ["namespaces", ns, plural, name] if plural == res.plural and res.namespaced:
                    return self._get_one(res.kind, name, ns)
        return _status(404, "the server could not find the requested resource")

    def _take_fault(self, path_qs: str) -> _Fault | None:
        # Case-insensitive: kubernetes-asyncio sends `watch=True`, people write `watch=true`.
        path_qs = path_qs.lower()
        with self._lock:
            for fault in self._faults:
                if fault.path_contains is None or fault.path_contains.lower() in path_qs:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _discovery() -> dict[str, Any]:
        verbs = ["get", "list", "watch"]
        return {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": verbs}
                for r in _RESOURCES.values() if r.api_version == "v1"
            ],
        }

    def _get_one(self, kind: str, name: str, ns: str | None) -> web.Response:
        key = self._ref_key(kind, name, ns)
        with self._lock:
            v = self._objects.get(key)
        if v is None:
            res = _RESOURCES[kind]
            return _status(404, f'{res.plural} "{name}" not found',
                           details={"name": name, "kind": res.plural})
        return web.Response(body=v.obj, content_type="application/json")

    async def _collection(self, request: web.Request, query: dict[str, str], res: _Resource,
                          ns: str | None, watch: bool) -> web.StreamResponse:
        try:
            match = _compile_selectors(query.get("labelSelector", ""),
                                       query.get("fieldSelector", ""), res)
            rv_param = query.get("resourceVersion", "")
            if rv_param and not rv_param.isdigit():
                raise _BadRequest(f"invalid resource version: {rv_param!r}")
            if watch:
                return await self._watch(request, query, res, ns, match)
            return self._list(query, res, ns, match)
        except _BadRequest as exc:
            return _status(400, str(exc))

    def _list(self, query: dict[str, str], res: _Resource, ns: str | None,
              match: _Predicate | None) -> web.Response:
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise _BadRequest(f"invalid limit: {query['limit']!r}") from None
        cont = query.get("continue", "")
        after: tuple[str, ...] = ()
        with self._lock:
            if not cont:
                snap = self._take_snapshot(res, ns)
                sid = self._remember(snap) if limit > 0 else -1
            else:
                tok = _decode_token(cont)
                after = tuple(tok["after"])
                if tok["rv"] == -1:  # an "inconsistent" token from a 410: current state
                    snap = self._take_snapshot(res, ns)
                    sid = self._remember(snap)
                else:
                    sid = tok["id"]
                    found = self._snapshots.get(sid)
                    if found is None or sid < self._compacted:
                        return self._continue_expired(after)
                    snap = found
        versions = snap.versions
        pos = bisect.bisect_right([v.key for v in versions], after) if after else 0
        items: list[bytes] = []
        while pos < len(versions) and (limit <= 0 or len(items) < limit):
            v = versions[pos]
            pos += 1
            if match is None or match(v):
                items.append(v.item)
        if limit > 0 and match is not None:
            # Only promise more pages when another match exists.
            while pos < len(versions) and not match(versions[pos]):
                pos += 1
        meta: dict[str, Any] = {"resourceVersion": str(snap.rv)}
        if limit > 0 and pos < len(versions):
            meta["continue"] = _encode_token(
                {"rv": snap.rv, "id": sid, "after": list(versions[pos - 1].key)})
            if match is None:  # the apiserver can't count remaining items under a selector
                meta["remainingItemCount"] = len(versions) - pos
        body = b"".join([
            b'{"kind":"', res.kind.encode(), b'List","apiVersion":"v1","metadata":',
            orjson.dumps(meta), b',"items":[', b",".join(items), b"]}",
        ])
        self.bytes_sent += len(body)
        return web.Response(body=body, content_type="application/json")

    @staticmethod
    def _continue_expired(after: tuple[str, ...]) -> web.Response:
        """410 like etcd's, carrying an "inconsistent" token that resumes after the same key."""
        return _status(
            410,
            "The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter, or use the continue "
            "token in this response to retrieve the remainder of the results. Continuing with "
            "the provided token results in an inconsistent list - objects that were created, "
            "modified, or deleted between the time the first chunk was returned and now may "
            "show up in the list.",
            metadata={"continue": _encode_token({"rv": -1, "id": -1, "after": list(after)})})

    def _take_snapshot(self, res: _Resource, ns: str | None) -> _Snapshot:
        """Caller holds the lock. Versions are immutable, so a snapshot is a list of refs."""
        versions = [v for (kind, vns, _), v in self._objects.items()
                    if kind == res.kind and (ns is None or vns == ns)]
        versions.sort(key=lambda v: v.key)
        return _Snapshot(self._rv, versions)

    def _remember(self, snap: _Snapshot) -> int:
        """Keep a snapshot for continue tokens; the oldest are forgotten (their tokens 410)."""
        sid = self._next_snapshot
        self._next_snapshot += 1
        self._snapshots[sid] = snap
        while len(self._snapshots) > 64:
            self._snapshots.popitem(last=False)
        return sid

    async def _watch(self, request: web.Request, query: dict[str, str], res: _Resource,
                     ns: str | None, match: _Predicate | None) -> web.StreamResponse:
        try:
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        except ValueError:
            raise _BadRequest(f"invalid timeoutSeconds: {query['timeoutSeconds']!r}") from None
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        initial_events = _truthy(query.get("sendInitialEvents"))
        rv_param = query.get("resourceVersion", "")
        if self.watch_list != "ignore":
            invalid = self._watch_list_problem(query, initial_events, bookmarks)
            if invalid:
                return _status(422, f"ListOptions.meta.k8s.io \"\" is invalid: {invalid}", details={"kind": "ListOptions"})
        else:
            initial_events = False
        lines: list[bytes | memoryview] = []
        expired: bytes | None = None
        with self._lock:
            instant_close = self._instant_closes > 0
            self._instant_closes -= instant_close
            cur = start = self._rv
            if rv_param in ("", "0") or initial_events:
                initial = sorted(
                    (v for (kind, vns, _), v in self._objects.items()
                     if kind == res.kind and (ns is None or vns == ns)
                     and (match is None or match(v))),
                    key=lambda v: v.key)
                replay: list[_Event] = []
            else:
                since = int(rv_param)
                initial = []
                if since < self._floor:
                    expired = _status_body(
                        410, f"too old resource version: {since} ({self._floor})")
                    replay = []
                else:
                    start = max(cur, since)
                    replay = self._hist[since - self._floor:] if since < cur else []
            w = _Watch(res.kind, ns, match, bookmarks, 0, request.transport)
            if expired is None:
                w.start_rv = start
                self._watches.add(w)
        # No await between registering and filling the buffer: _dispatch can't interleave,
        # so history replay comes first and live events (rv > start) follow without gaps.
        for v in initial:
            lines.extend(_event_pieces(ADDED, v))
        if initial_events and bookmarks:
            end = self._bookmark_line(res.kind, start, {"k8s.io/initial-events-end": "true"})
            with self._lock:
                if self.hold_initial_events_end:
                    self._held.append((w, end))
                else:
                    lines.append(end)
        for ev in replay:
            if (pieces := w.pieces_for(ev)) is not None:
                lines.extend(pieces)
        if expired is not None:
            lines.append(b'{"type":"ERROR","object":' + expired + b"}\n")
        w.buf[:0] = lines

        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            if instant_close:
                await resp.write_eof()
                return resp
            if expired is not None:
                await resp.write(b"".join(w.buf))
                await resp.write_eof()
                return resp
            try:
                async with asyncio.timeout(timeout):
                    await self._pump(w, resp)
            except TimeoutError:
                pass  # timeoutSeconds elapsed: end the stream cleanly, like the apiserver
            if w.dropped:
                return resp
            # Deregister before the terminator, so a client that saw the end never counts it.
            with self._lock:
                self._watches.discard(w)
            await resp.write_eof()
        except ConnectionError:
            pass  # client went away mid-write
        finally:
            with self._lock:
                self._watches.discard(w)
        return resp

    def _watch_list_problem(self, query: dict[str, str], initial_events: bool, bookmarks: bool) -> str:
        """What ValidateListOptions (apimachinery) says of a watch's streaming-list options."""
        match = query.get("resourceVersionMatch", "")
        if "sendInitialEvents" not in query:
            return "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided" if match else ""
        if self.watch_list == "off":
            return "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"
        problems = []
        if match != "NotOlderThan":
            problems.append("resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
        if not bookmarks:
            problems.append("allowWatchBookmarks: Required value: sendInitialEvents requires setting allowWatchBookmarks to true")
        return ", ".join(problems) if initial_events or problems else ""

    async def _pump(self, w: _Watch, resp: web.StreamResponse) -> None:
        """Write queued lines, batching whatever accumulated while the last write drained."""
        while not w.dropped:
            if not w.buf:
                w.wake.clear()
                await w.wake.wait()
                continue
            pending, w.buf = w.buf, []
            # Bounded writes: huge joins cost more in fresh memory than they save in calls.
            start = 0
            while start < len(pending) and not w.dropped:
                end, size = start, 0
                while end < len(pending) and size < _WRITE_BATCH:
                    size += len(pending[end])
                    end += 1
                chunk = b"".join(pending[start:end])
                self.bytes_sent += len(chunk)
                await resp.write(chunk)
                start = end
