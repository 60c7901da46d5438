"""What every object kind shares: the ``Kind`` interface, label naming, IP handling,
readiness reasons, and tolerant readers for raw API fields.

Kind modules (``nodes.py``, ``pods.py``) build on these and never re-implement them:
one ``sanitize``, one label/labelpresent helper, one ``hostport`` that brackets IPv6,
one IP normalization. Nothing here raises on malformed input: bad fields are skipped
and reported through ``Report``, and ``Fields`` lets a kind keep a malformed field's
last good value, so that only well-formed data changes what is served.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from operator import eq, itemgetter
from typing import Any, Callable, ClassVar, Generic, Mapping, Protocol, TypeVar

import msgspec
import orjson

# (reason, detail): reason is a short, stable metric label value; detail says
# where and why ("node/n1: status.addresses[2].address: not an IP: 'x'").
Report = Callable[[str, str], None]

# Bad-data reasons, the `reason` label of kube_http_sd_skipped_total.
INVALID_IP = "invalid_ip"
UNSPECIFIED_IP = "unspecified_ip"
LINK_LOCAL_IP = "link_local_ip"
SCOPED_IP = "scoped_ip"
BAD_FIELD = "bad_field"
BAD_OBJECT = "bad_object"

# Why an object is not a candidate of a set: the `reason` label of
# kube_http_sd_excluded_objects and the explain view.
NOT_READY = "not_ready"
TERMINATING = "terminating"
NO_ADDRESS = "no_address"

META = "__meta_kubernetes_"
IP_FAMILY_LABEL = "__meta_sd_ip_family"

_intern = sys.intern

# Equal label pairs and condition lists recur across thousands of objects (a zone, an
# instance type, "Ready": "True"): records share one tuple of each instead of holding
# their own (5 MB of 110 at 5,000 nodes + 5,000 pods). The table is emptied when it
# grows past SHARED_MAX, so unique pairs (hostnames) cost at most that much; a pair
# seen after that gets a new shared copy.
_SHARED: dict[tuple[Any, ...], tuple[Any, ...]] = {}
SHARED_MAX = 20_000


def _shared(value: T) -> T:
    kept = _SHARED.setdefault(value, value)  # type: ignore[arg-type]
    if len(_SHARED) > SHARED_MAX:
        _SHARED.clear()
    return kept  # type: ignore[return-value]


def ignore(reason: str, detail: str) -> None:
    """A ``Report`` that drops everything (callers that only want the record)."""


_first, _second = itemgetter(0), itemgetter(1)
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


class IPFamily(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


def ip_family(ip: str) -> IPFamily:
    """The family of a canonical IP (as ``normalize_ip`` returns it)."""
    return IPFamily.IPV6 if ":" in ip else IPFamily.IPV4


def hostport(ip: str, port: int) -> str:
    """``ip:port``, IPv6 in brackets (Go's net.JoinHostPort)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@lru_cache(maxsize=16384)
def sanitize(name: str) -> str:
    """The suffix of a label name as Prometheus writes it: other characters become '_'."""
    return _INVALID_LABEL_CHARS.sub("_", name)


def add_pairs(labels: dict[str, str], value_prefix: str, present_prefix: str, pairs: tuple[tuple[str, str], ...]) -> None:
    """Kubernetes labels (or annotations) as ``<prefix><name>`` = value plus
    ``<present_prefix><name>`` = "true", as Prometheus' kubernetes_sd writes them."""
    for key, value in pairs:
        name = sanitize(key)
        labels[value_prefix + name] = value
        labels[present_prefix + name] = "true"


# Human text of the shared exclusion reasons, for each kind's ``why_excluded``.
READINESS_WHY: Mapping[str, Callable[[Any], str]] = {
    NOT_READY: lambda r: f"not ready (Ready={r.ready or 'missing'})",
    TERMINATING: lambda r: "terminating (has a deletionTimestamp)",
}
NO_ADDRESS_WHY = "no usable IP for this set's address types and ip_family"


def listed(pairs: tuple[tuple[str, str], ...], allow: Allowlist) -> tuple[tuple[str, str], ...]:
    """The (key, value) pairs whose key ``allow`` lists."""
    return tuple(p for p in pairs if p[0] in allow) if pairs and allow else ()


def readiness(terminating: bool, ready: str) -> str | None:
    """The common tail of every kind's exclusion rules (with require_ready)."""
    if terminating:
        return TERMINATING
    return None if ready == "True" else NOT_READY


@dataclass(frozen=True, slots=True)
class Port:
    number: int
    container: str = ""
    protocol: str = "TCP"
    image: str = ""
    init: bool = False  # the container is in spec.initContainers
    container_id: str = ""  # from the container's status, once it has one


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Which annotations to keep: exact keys, and prefixes written ``"prefix/*"`` (``"*"``: all).
    Unlisted annotations are never stored."""

    keys: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: tuple[str, ...]) -> Allowlist:
        keys = frozenset(p for p in patterns if not p.endswith("*"))
        prefixes = tuple(sorted({p[:-1] for p in patterns if p.endswith("*")}))
        return cls(keys, prefixes)

    def __bool__(self) -> bool:
        return bool(self.keys or self.prefixes)

    def __contains__(self, key: str) -> bool:
        return key in self.keys or key.startswith(self.prefixes)

    def __or__(self, other: Allowlist) -> Allowlist:
        return Allowlist(self.keys | other.keys, tuple(sorted(set(self.prefixes) | set(other.prefixes))))


NOTHING = Allowlist()


class Record(Protocol):
    """What the index, target sets and the conflict rule read of any kind's record."""

    @property
    def key(self) -> str: ...
    @property
    def ready(self) -> str: ...  # "True" | "False" | "Unknown" | "" (no Ready condition)
    @property
    def created(self) -> float: ...  # creationTimestamp as epoch seconds (0 when missing)
    @property
    def terminating(self) -> bool: ...
    @property
    def ports(self) -> tuple[tuple[str, Port], ...]: ...
    @property
    def labels(self) -> tuple[tuple[str, str], ...]: ...  # the object's own labels, sorted by key
    def ips(self, address_types: tuple[str, ...]) -> tuple[str, ...]: ...


R = TypeVar("R", bound=Record)
T = TypeVar("T")


# -- what a record is built from: the parts of a watch event that count ---------------------
#
# Most watch events change nothing a record holds: a node's status heartbeat moves
# lastHeartbeatTime, managedFields and resourceVersion. Each kind declares, as a msgspec
# type, the parts of an object its ``parse`` reads, as raw JSON (``msgspec.Raw``): the feed
# decodes just those (everything else, a node's images and managedFields above all, is
# skipped, not built) and compares their digest with that of the event the current record
# came from. Raw bytes are compared, so any difference, even one that would parse the
# same, counts as a change. A changed event is parsed from those parts alone
# (``watched_object``), so ``parse`` must read nothing else: tests/test_cost.py checks
# that it makes the same record of them as of the whole object.

RawPart = msgspec.Raw
NO_PART = msgspec.Raw()  # absent (JSON null is b"null")


class WatchedCondition(msgspec.Struct):
    type: RawPart = NO_PART
    status: RawPart = NO_PART


class WatchedMeta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""  # not part of the digest
    uid: RawPart = NO_PART
    creationTimestamp: RawPart = NO_PART
    deletionTimestamp: RawPart = NO_PART
    labels: RawPart = NO_PART
    annotations: RawPart = NO_PART
    ownerReferences: RawPart = NO_PART


class Watched(msgspec.Struct):
    """The base of each kind's watched object (``metadata`` plus its own parts)."""

    metadata: WatchedMeta = msgspec.field(default_factory=WatchedMeta)


_DIGEST = msgspec.msgpack.Encoder()


def watched_object(obj: msgspec.Struct) -> dict[str, Any]:
    """The watched parts as the raw object's dicts and lists (what ``orjson.loads`` of the
    whole object holds there); parts the object did not have stay out."""
    out: dict[str, Any] = {}
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if isinstance(value, msgspec.Raw):
            if value:
                out[name] = orjson.loads(memoryview(value))
        elif isinstance(value, msgspec.Struct):
            out[name] = watched_object(value)
        elif isinstance(value, list):
            out[name] = [watched_object(v) for v in value]
        elif value:  # a str; "" is absent
            out[name] = value
    return out


def watched_digest(obj: Watched) -> int:
    """The digest of what a record is built from, the resourceVersion left out (it is
    blanked in ``obj``: read it first). Python's hash of its encoding, SipHash keyed at
    random per process, so that nobody who can label an object can aim two of its states
    at one value; a tenth of blake2b's cost here."""
    obj.metadata.resourceVersion = ""
    return hash(_DIGEST.encode(obj))


class Kind(Generic[R]):
    """One watched object kind: everything the rest of the program needs to know of it.

    Subclasses set the class attributes and implement the methods; ``sd.kinds.KINDS``
    lists one instance of each. Nothing outside ``sd/kinds/`` branches on a kind.
    """

    name: ClassVar[str]  # the config `source` value, the API resource and the RBAC resource
    singular: ClassVar[str]  # "node": object references in reports ("node/n1")
    object_kind: ClassVar[str]  # "Node": the `kind` of one object in a snapshot file
    list_kind: ClassVar[str]  # "NodeList"
    namespaced: ClassVar[bool]
    # The API group/version path the resource `name` is served under.
    api_prefix: ClassVar[str] = "/api/v1"
    # Field selectors the API server accepts for this kind, each with how to read
    # the field from a raw object as the API server renders it (for snapshots).
    fields: ClassVar[Mapping[str, Callable[[Mapping[str, Any]], str]]]
    # Address types a set may choose among, in default priority order; () when the
    # kind's IPs are not typed (pods).
    address_types: ClassVar[tuple[str, ...]] = ()
    # ip_family: reachable (probe each IP's metrics endpoint) is offered.
    probes: ClassVar[bool] = False
    # Objects run on a node (node_of), so attach_metadata: {node: true} is offered.
    runs_on_nodes: ClassVar[bool] = False
    # Human text per exclusion reason this kind produces.
    why_excluded: ClassVar[Mapping[str, Callable[[Any], str]]]
    # The parts of an object ``parse`` reads (see ``Watched``).
    watched: ClassVar[type[Watched]]

    def watched_key(self, meta: WatchedMeta) -> str | None:
        """``key`` of a watched object."""
        if not meta.name or (self.namespaced and not meta.namespace):
            return None
        return f"{meta.namespace}/{meta.name}" if self.namespaced else meta.name

    def key(self, obj: Any) -> str | None:
        """The object's key (as its record's ``key``) from a raw object, or None."""
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            return None
        return f"{meta.get('namespace')}/{meta['name']}" if self.namespaced else meta["name"]

    def parse(self, raw: Any, report: Report = ignore, previous: R | None = None, annotations: Allowlist = NOTHING) -> R | None:
        """A raw object → record, or None (reported) when it cannot be one.
        ``previous`` (the stored record of the same object) lets unchanged parts be reused;
        only the ``annotations`` listed are kept."""
        raise NotImplementedError

    def exclude(self, record: R, require_ready: bool) -> str | None:
        """Why the record is not a candidate (a reason constant), or None."""
        raise NotImplementedError

    def labels(self, record: R, annotations: Allowlist = NOTHING) -> dict[str, str]:
        """The kubernetes_sd ``__meta_*`` labels of the object (a new dict), with the
        ``annotations`` it holds that are listed."""
        raise NotImplementedError

    def node_of(self, record: R) -> str | None:
        """The node the object runs on, for ``attach_metadata: {node: true}``; None: not offered."""
        return None

    def target_labels(self, record: R, ip: str, port: Port | None, port_name: str | None) -> dict[str, str]:
        """Labels that depend on the target: the IP, and the named port when it was found."""
        return {}

    def instance(self, record: R) -> str | None:
        """The `instance` label when the object has one name for all its targets."""
        return None


# -- IPs ---------------------------------------------------------------------------


def is_ip(value: str) -> bool:
    """Whether a stored address value is an IP. Canonical IPs are the only values
    that contain ':' or are all digits and dots (hostnames are kept as given)."""
    return ":" in value or (value[:1].isdigit() and value.replace(".", "").isdigit())


def normalize_ip(value: Any, where: str, report: Report = ignore) -> str | None:
    """Canonical compressed form, IPv4-mapped IPv6 as IPv4; None (reported) when unusable."""
    if not isinstance(value, str):
        report(INVALID_IP, f"{where}: not an IP: {value!r}")
        return None
    ip, reason, why = _canonical(value)
    if ip is None:
        report(reason, f"{where}: {why}")
    return ip


@lru_cache(maxsize=65536)
def _canonical(value: str) -> tuple[str | None, str, str]:
    """(canonical IP, "", "") or (None, reason, why). Cached: a node's IPs repeat in every event."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None, INVALID_IP, f"not an IP: {value!r}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # "fd00::5%eth0": the zone only means something on the host that wrote it, and kept
        # it would make a second target for fd00::5 and put a '%' into __address__.
        return None, SCOPED_IP, f"scoped address {value!r} (with a zone id) is not a target"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return None, UNSPECIFIED_IP, f"unspecified address {value!r} is not a target"
    if ip.is_link_local:
        return None, LINK_LOCAL_IP, f"link-local address {value!r} is unusable without a zone"
    return _intern(str(ip)), "", ""


# -- tolerant field readers ------------------------------------------------------------

# Reports that mean "this field is malformed" (as opposed to an IP we do not use).
_MALFORMED = frozenset({BAD_FIELD, INVALID_IP})


class Fields:
    """The report for one parse, remembering which record fields were malformed.

    Set ``at`` to the record fields the value being read fills, read it with this as the report, then
    build the record and pass it to ``finish``: a malformed field of an object we already
    know gets the previous record's value back (a new object keeps the well-formed part).
    A malformed section (``spec: "x"``; ``status`` null or absent, which the API server
    never sends) makes every field read from it malformed. Well-formed objects, nearly
    all of them, pay one attribute store per field and nothing else.
    """

    __slots__ = ("_report", "previous", "at", "bad")

    def __init__(self, report: Report, previous: Any) -> None:
        self._report, self.previous = report, previous
        self.at: tuple[str, ...] = ()  # the record fields the value being read fills
        self.bad: set[str] | None = None

    def __call__(self, reason: str, detail: str) -> None:
        if reason in _MALFORMED:
            self._mark(self.at)
            if self.previous is not None:
                detail += "; keeping the last good value"
        self._report(reason, detail)

    def _mark(self, attrs: tuple[str, ...]) -> None:
        if self.bad is None:
            self.bad = set()
        self.bad.update(attrs)

    def section(self, raw: Mapping[str, Any], field: str, where: str, attrs: tuple[str, ...], required: bool = False) -> dict:
        """A top-level object (``spec``, ``status``) whose values fill ``attrs``; ``{}`` when it
        is absent and not ``required``, ``{}`` (reported, ``attrs`` malformed) when it is bad."""
        value = raw.get(field)
        if isinstance(value, dict):
            return value
        if value is None and not required:
            return {}
        self.at = ()
        self(BAD_FIELD, f"{where}: {field}: expected an object, got {preview(value)}")
        self._mark(attrs)
        return {}

    def finish(self, record: T) -> T:
        """``record`` with each malformed field's previous value."""
        if not self.bad or self.previous is None:
            return record
        return replace(record, **{a: getattr(self.previous, a) for a in self.bad})  # type: ignore[type-var]


def get_dict(obj: Mapping[str, Any], field: str, where: str = "", report: Report | None = None, path: str = "") -> dict | None:
    value = obj.get(field)
    if value is None or isinstance(value, dict):
        return value
    if report is not None:
        report(BAD_FIELD, f"{where}: {path or field}: expected an object, got {preview(value)}")
    return None


def get_list(obj: Mapping[str, Any], field: str, where: str, report: Report, path: str = "") -> list:
    value = obj.get(field)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    report(BAD_FIELD, f"{where}: {path or field}: expected a list, got {preview(value)}")
    return []


def text(obj: Mapping[str, Any], field: str, where: str, report: Report, path: str = "") -> str:
    """A string field; "" when absent; "" (reported) when it is not a string."""
    value = obj.get(field)
    if value is None or isinstance(value, str):
        return value or ""
    report(BAD_FIELD, f"{where}: {path or field}: expected a string, got {preview(value)}")
    return ""


def get_str(obj: Mapping[str, Any] | None, field: str) -> str:
    value = obj.get(field) if obj is not None else None
    return value if isinstance(value, str) else ""


def preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def port_number(value: Any, where: str, report: Report) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    report(BAD_FIELD, f"{where}: expected a port 1-65535, got {preview(value)}")
    return None


def timestamp(meta: Mapping[str, Any], field: str, where: str, report: Report) -> float:
    """An RFC 3339 metadata time as epoch seconds; 0 when missing or malformed (reported)."""
    value = meta.get(field)
    if value is None:
        return 0.0
    seconds = _epoch(value) if isinstance(value, str) else None
    if seconds is None:
        report(BAD_FIELD, f"{where}: metadata.{field}: not an RFC 3339 time: {preview(value)}")
        return 0.0
    return seconds


@lru_cache(maxsize=16384)
def _epoch(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


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
    return _string_pairs(labels, "labels", where, report, None, _intern)


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
        out.append(_shared((_intern(key), share(value))))
    out.sort()
    return tuple(out)


def conditions(
    status: Mapping[str, Any], where: str, report: Report, previous: tuple[tuple[str, str], ...] | None
) -> tuple[tuple[str, str], ...]:
    """status.conditions as (type, status) pairs in API order; ``previous`` when equal."""
    raw = get_list(status, "conditions", where, report, "status.conditions")
    if previous is not None and len(raw) == len(previous):
        try:
            if all(c["type"] == t and c["status"] == v for c, (t, v) in zip(raw, previous)):
                return previous
        except (KeyError, TypeError):
            pass  # malformed: the full path below reports it
    out: list[tuple[str, str]] = []
    for i, cond in enumerate(raw):
        if not isinstance(cond, dict) or not isinstance(cond.get("type"), str) or not isinstance(cond.get("status"), str):
            report(BAD_FIELD, f"{where}: status.conditions[{i}]: expected {{type, status}} strings, got {preview(cond)}")
            continue
        out.append((_intern(cond["type"]), _intern(cond["status"])))
    return _shared(tuple(out))


def field_reader(*path: str) -> Callable[[Mapping[str, Any]], str]:
    """Read a field as the API server's field-selector sets render it: missing "",
    booleans lowercase ("false" when a boolean field is missing)."""
    boolean = path[-1] in ("unschedulable", "hostNetwork")

    def read(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for part in path:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, bool) or (cur is None and boolean):
            return "true" if cur else "false"
        return "" if cur is None else str(cur)

    return read
