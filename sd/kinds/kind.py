"""The ``Kind`` interface every watched object kind implements, the ``Record`` protocol
every record meets, and the exclusion reasons kinds share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generic, Mapping, Protocol, TypeVar

from sd.kinds.fields import Fields
from sd.kinds.labels import NOTHING, Allowlist
from sd.kinds.meta import Identity, identify, read_meta
from sd.kinds.reports import Report, ignore
from sd.kinds.watched import Watched

# Why an object is not a candidate of a set: the `reason` label of
# kube_http_sd_excluded_objects and the explain view.
NOT_READY = "not_ready"
TERMINATING = "terminating"
NO_ADDRESS = "no_address"

# Human text of the shared exclusion reasons, for each kind's ``why_excluded``.
READINESS_WHY: Mapping[str, Callable[[Any], str]] = {
    NOT_READY: lambda r: f"not ready (Ready={r.ready or 'missing'})",
    TERMINATING: lambda r: "terminating (has a deletionTimestamp)",
}
NO_ADDRESS_WHY = "no usable IP for this set's address types and ip_family"


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


class Kind(Generic[R]):
    """One watched object kind: everything the rest of the program needs to know of it.

    Subclasses set the class attributes and implement the methods; ``sd.kinds.KINDS``
    lists one instance of each. Nothing outside ``sd/kinds/`` branches on a kind.
    """

    name: ClassVar[str]  # the config `source` value, the API resource and the RBAC resource
    object_kind: ClassVar[str]  # "Node": the `kind` of one object in a snapshot file
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
    # Objects declare ports of their own (all_ports), so `ports: all` is offered.
    declares_ports: ClassVar[bool] = False
    # Target sets may read it (`source:`); False for kinds watched only for attached
    # metadata (namespaces, ReplicaSets, Jobs).
    serves_targets: ClassVar[bool] = True
    # Human text per exclusion reason this kind produces.
    why_excluded: ClassVar[Mapping[str, Callable[[Any], str]]]
    # The parts of an object ``parse`` reads (``sd.kinds.watched``): watch lines are decoded
    # to just these, and ``parse`` must read nothing else (tests/test_cost.py checks it).
    watched: ClassVar[type[Watched]]

    def __init__(self) -> None:
        self._fields = Fields()  # one parse at a time: parse never calls parse

    @property
    def singular(self) -> str:
        """"node": object references in reports ("node/n1")."""
        return self.object_kind.lower()

    @property
    def api_group(self) -> str:
        """The API group its RBAC rule names: "" for the core group, "apps" for /apis/apps/v1."""
        return self.api_prefix.split("/")[2] if self.api_prefix.startswith("/apis/") else ""

    @property
    def list_kind(self) -> str:
        """"NodeList": the `kind` of a list of them in a snapshot file."""
        return self.object_kind + "List"

    def key(self, obj: Any) -> str | None:
        """The object's key (as its record's ``key``) from a raw object, or None."""
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        return self.object_key(meta.get("name"), meta.get("namespace")) if isinstance(meta, dict) else None

    def object_key(self, name: Any, namespace: Any) -> str | None:
        """The key of an object with this name and namespace ("n1", "ns/p1"), or None when
        they cannot make one."""
        if not isinstance(name, str) or not name:
            return None
        if not self.namespaced:
            return name
        return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else None

    # The record type: its fields are what ``read`` returns plus those of ``read_meta``.
    record: ClassVar[Callable[..., Any]]

    def parse(self, raw: Any, report: Report = ignore, previous: R | None = None, annotations: Allowlist = NOTHING) -> R | None:
        """A raw object → record, or None (reported) when it cannot be one.
        ``previous`` (the stored record of the same object) lets unchanged parts be reused
        and keeps the last good value of a malformed field; only the ``annotations`` listed
        are kept. The kind's own fields are read first, the metadata's after them."""
        who = identify(raw, self.singular, self.namespaced, report)
        if who is None:
            return None
        f = self._fields.start(report, previous)
        fields = self.read(raw, who, f)
        fields.update(self.read_meta(who, f, annotations))
        return f.finish(self.record(**fields))  # type: ignore[no-any-return]

    def read_meta(self, who: Identity, f: Fields, annotations: Allowlist) -> dict[str, Any]:
        """The record fields taken from metadata besides name and namespace (``read_meta``);
        a kind whose records need none of them returns {}."""
        return read_meta(who, f, annotations)

    def read(self, raw: dict[str, Any], who: Identity, f: Fields) -> dict[str, Any]:
        """The record fields of the kind's own (not metadata's), each read with the report
        ``f.filling(<the fields it fills>)``; ``f.previous`` is the stored record or None."""
        raise NotImplementedError

    def exclude(self, record: R, require_ready: bool) -> str | None:
        """Why the record is not a candidate (a reason constant), or None."""
        raise NotImplementedError

    def labels(self, record: R, annotations: Allowlist = NOTHING) -> dict[str, str]:
        """The kubernetes_sd ``__meta_*`` labels of the object (a new dict), with the
        ``annotations`` it holds that are listed."""
        raise NotImplementedError

    def node_of(self, record: R) -> str | None:
        """The node the object runs on (pages show it); None when it has none."""
        return None

    def all_ports(self, record: R) -> tuple[tuple[str, Port], ...]:
        """Every port the object declares, (name or "", port), for `ports: all`; a port
        numbered 0 is a target at the bare IP (kubernetes_sd's container without ports)."""
        return record.ports

    def same_attached(self, old: R, new: R) -> bool:
        """Whether two records of one object put the same labels on the targets they are
        attached to (``sd/kinds/relations.py``): a change that does not is not propagated."""
        return old == new

    def target_labels(self, record: R, ip: str, port: Port | None, port_name: str | None) -> dict[str, str]:
        """Labels that depend on the target: the IP, and the port when it was found (by
        name, or one of ``all_ports``) with its name ("" when it has none)."""
        return {}

    def instance(self, record: R) -> str | None:
        """The `instance` label when the object has one name for all its targets."""
        return None
