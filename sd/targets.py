"""Target sets: index winners → Prometheus http_sd groups → JSON bytes + ETag.

A set reads one kind of object; the kind (``sd/kinds/``) builds each object's
labels, the set adds the per-target and static ones. A set renders its body only
when something it publishes changed, and the ``Renderer`` task coalesces renders
during bursts (``sd/body.py`` keeps the body as blocks and rebuilds only those that
changed); the HTTP layer only reads ``current`` (and ``shard``, ``gzipped``), and
``sd/views.py`` what people and /metrics see of a set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import orjson

from sd.attach import Attachment, Directory
from sd.body import EMPTY, Blocks, Body, Entry
from sd.config import IPFamilyPolicy, PortsPolicy, SetConfig
from sd.gzip_body import GzipBody
from sd.index import Index, Policy
from sd.kinds import KINDS
from sd.kinds.ips import host_of, hostport, ip_family, target_address
from sd.kinds.kind import Port, Record
from sd.kinds.labels import CLUSTER_LABEL, IP_FAMILY_LABEL, Allowlist
from sd.kinds.relations import Relation
from sd.shards import Shards
from sd.status import SourceStatus

if TYPE_CHECKING:
    from sd.probe import Prober

INSTANCE = "instance"
METRICS_PATH = "__metrics_path__"
SCHEME = "__scheme__"


def select_ips(ips: tuple[str, ...], family: IPFamilyPolicy) -> tuple[str, ...]:
    """Apply the ip_family policy to an object's IPs (primary first)."""
    if not ips:
        return ()
    if family == IPFamilyPolicy.PRIMARY:
        return ips[:1]
    v4 = next((ip for ip in ips if ":" not in ip), None)
    v6 = next((ip for ip in ips if ":" in ip), None)
    if family == IPFamilyPolicy.IPV4:
        return (v4,) if v4 else ()
    if family == IPFamilyPolicy.IPV6:
        return (v6,) if v6 else ()
    return tuple(dict.fromkeys(ip for ip in ips if ip in (v4, v6)))  # both: one per family, primary first


class TargetSet:
    """One served target set: its index, the groups of each claim and the rendered body.

    A claim is what the conflict rule resolves: an IP, one target on it (the named port, or
    the set's port); with ``ports: all`` an address (``ip:port``, or the bare IP of a
    container without ports), whose winner serves a target per container port on it.

    With ``ip_family: reachable`` the set asks ``prober`` which of a candidate's IPs
    answer, publishes those (the primary IP until one answers) and re-claims a
    record's IPs when its probe results change (``refresh``).

    With a ``cluster`` it is that cluster's part of a set served over several clusters
    (``sd/clusters.py``): its index resolves conflicts within the cluster only, and every
    group carries ``__meta_sd_cluster``.
    """

    def __init__(self, config: SetConfig, prober: Prober | None = None, cluster: str | None = None) -> None:
        self.config = config
        self.name = config.name
        self.kind = kind = KINDS[config.source]
        self._types = types = config.address_types or kind.address_types
        family = config.ip_family
        self.prober = prober if family == IPFamilyPolicy.REACHABLE else None
        require_ready = config.require_ready
        self.attached: list[Attachment] = []  # attach_metadata, one per option
        held = self._held

        def exclude(record: Record) -> str | None:
            return kind.exclude(record, require_ready) or held(record)

        self._exclude: Callable[[Record], str | None] = exclude
        self.every_port = config.ports == PortsPolicy.ALL
        self._ip_of: Callable[[str], str] = host_of if self.every_port else str
        if self.prober is not None:
            claims = self._reachable_claims
        elif self.every_port:
            claims = self._addresses
        else:
            claims = lambda r: select_ips(r.ips(types), family)  # noqa: E731
        self.index: Index[Record] = Index(Policy(exclude=self._exclude, claims=claims))
        # An object with one name for all its targets gets it as instance, unless one
        # object can emit two targets (ip_family both), where that would clash.
        self.instance_label = family != IPFamilyPolicy.BOTH
        self.annotations = Allowlist.of(config.annotations)
        self._static = dict(config.labels)
        if cluster is not None:
            self._static[CLUSTER_LABEL] = cluster
        if config.metrics_path:
            self._static[METRICS_PATH] = config.metrics_path
        if config.scheme:
            self._static[SCHEME] = str(config.scheme)
        self._fragments: dict[str, tuple[Entry, ...]] = {}  # claim → its groups in the body
        # Groups that left the body (a node that turned NotReady), by key and place in the body,
        # with the record they were built from: one that comes back unchanged is served as it
        # was, not built again. At most one per group an indexed object had: dropped with it.
        self._left: dict[str, dict[tuple[str, ...], tuple[Record, bytes]]] = {}
        self._blocks = Blocks()
        self.current: Body = EMPTY  # the last rendered body
        self.renders = 0
        self.dirty = False
        self._shards = Shards(self._blocks)
        self._gzip = GzipBody()
        self.statuses: list[SourceStatus] = []  # of the list/watches it reads; their feeds write them
        self.on_dirty: Callable[[], None] = lambda: None

    @property
    def synced(self) -> bool:
        """Every source finished its first list and that state is rendered: serving
        before the render would answer 200 [] and make Prometheus drop all targets."""
        return self.renders > 0 and all(s.synced for s in self.statuses)

    def waiting_for(self) -> list[str]:
        """The sources that have not finished a first full list."""
        return sorted(s.name for s in self.statuses if not s.synced)

    def record(self, key: str) -> Record | None:
        return self.index.records.get(key)

    def targets(self) -> Iterable[tuple[str, str]]:
        """(IP, target) of every target served."""
        for claim, entries in self._fragments.items():
            ip = self._ip_of(claim)
            for entry in entries:
                yield ip, entry.target

    def ip_of(self, claim: str) -> str:
        """The IP of a claim (an IP, or with ``ports: all`` an address)."""
        return self._ip_of(claim)

    def target(self, claim: str) -> str:
        """The target served for a claim the index resolved (one of its winners)."""
        return self._fragments[claim][0].target

    # -- changes (called by feeds) ------------------------------------------------------

    def add_status(self, status: SourceStatus) -> None:
        self.statuses.append(status)

    def source_synced(self) -> None:
        """A source finished its first full list; the set is ready once rendered."""
        if all(s.synced for s in self.statuses):
            self._mark_dirty()  # render even an empty set, so it turns ready

    def upsert(self, record: Record) -> None:
        if self.prober is not None:
            self._probe(record)
        moved = self._place(record.key, self.index.records.get(record.key), record) if self.attached else False
        self._apply(self.index.upsert(record))
        if moved:
            self._left.pop(record.key, None)

    def delete(self, key: str) -> None:
        if self.prober is not None:
            self.prober.forget(key)
        if self.attached:
            self._place(key, self.index.records.get(key), None)
        self._apply(self.index.delete(key))
        # After _apply, which keeps the groups leaving: nothing re-queues a deleted object
        # when its attached labels change, so one coming back must be built again.
        self._left.pop(key, None)

    def replace(self, records: list[Record], keys: set[str] | None = None) -> None:
        gone = set(self.index.records if keys is None else keys) - {r.key for r in records}
        if self.prober is not None:
            for record in records:
                self._probe(record)
            for key in gone:
                self.prober.forget(key)
        stored = self.index.records
        moved = [r.key for r in records if self._place(r.key, stored.get(r.key), r)] if self.attached else []
        for key in gone:
            self._place(key, stored.get(key), None)
        self._apply(self.index.replace(records, keys))
        for key in (*gone, *moved):  # after _apply, as in delete and upsert
            self._left.pop(key, None)

    # -- attached metadata ------------------------------------------------------------------

    def attach(self, relation: Relation, directory: Directory | None) -> None:
        """Serve each target with the labels ``relation`` attaches, from ``directory`` (the
        related kind's objects; None for an option read from the object alone); the set
        waits for the directory's source's first sync too, so targets never start without them."""
        attachment = Attachment(relation, directory, self.annotations, self._requeue, self.source_synced)
        self.attached.append(attachment)
        for status in attachment.statuses:
            if status not in self.statuses:
                self.add_status(status)
        # Objects already here (a set added by a reload, filled from a running source):
        # index them, decide again which are served, and build their groups again.
        for key, record in self.index.records.items():
            attachment.place(key, None, record)
        if relation.required is not None:
            for key in list(self.index.records):
                self._apply(self.index.refresh(key))
        self._left.clear()
        if self._fragments:
            self._blocks.rebuild_all()
            self._mark_dirty()

    def detach(self) -> None:
        """Stop reading attached metadata (the set is no longer served)."""
        for attachment in self.attached:
            attachment.detach()

    def why_excluded(self, reason: str, record: Record) -> str:
        """The explain view's text for an exclusion ``reason`` of ``record``."""
        for attachment in self.attached:
            relation = attachment.relation
            if relation.required == reason and relation.why is not None:
                return relation.why(record)
        return self.kind.why_excluded[reason](record)

    def _place(self, key: str, old: Record | None, new: Record | None) -> bool:
        """Index object ``key`` in each attachment; True when it moved in any (it relates to
        another object now). Its groups kept from before then carry labels nothing re-queues
        when they change, so the caller drops them after ``_apply``, as for a deleted object."""
        moved = False
        for attachment in self.attached:
            moved = attachment.place(key, old, new) or moved
        return moved

    def _held(self, record: Record) -> str | None:
        for attachment in self.attached:
            reason = attachment.held(record)
            if reason is not None:
                return reason
        return None

    def _requeue(self, key: str, refresh: bool = False) -> None:
        """Build the groups object ``key`` wins again (its attached labels changed); with
        ``refresh``, decide again whether it is served first (a required object came or went)."""
        self._left.pop(key, None)
        if refresh:
            self._apply(self.index.refresh(key))
        fragments = self._fragments
        for claim in self.index.claims(key):
            entries = fragments.get(claim, ())
            if entries and entries[0].order[0] == key:
                for entry in entries:
                    self._blocks.rebuild(entry)
                self._mark_dirty()

    def refresh(self, key: str) -> None:
        """The record's probe results changed: claim its IPs again."""
        self._apply(self.index.refresh(key))

    def _probe(self, record: Record) -> None:
        assert self.prober is not None
        if self._exclude(record) is not None:
            self.prober.forget(record.key)
            return
        port = self._port(record)[1]
        path, scheme = self.config.metrics_path or "/metrics", str(self.config.scheme or "http")
        self.prober.watch(record.key, [(ip, port, path, scheme) for ip in record.ips(self._types)])

    def _reachable_claims(self, record: Record) -> tuple[str, ...]:
        assert self.prober is not None
        ips = record.ips(self._types)
        answering = self.prober.reachable(record.key)
        # Until some IP answers (not probed yet, or all failing), serve the primary.
        return tuple(ip for ip in ips if ip in answering) if answering else ips[:1]

    def _addresses(self, record: Record) -> tuple[str, ...]:
        """``ports: all``: the addresses of the record's targets, each once, primary IP first."""
        ports = self.kind.all_ports(record)
        ips = select_ips(record.ips(self._types), self.config.ip_family)
        return tuple(dict.fromkeys(target_address(ip, port.number) for ip in ips for _, port in ports))

    def _orders(self, record: Record, claim: str) -> tuple[tuple[str, ...], ...]:
        """Where each group of the record at ``claim`` sorts in the body: (key, target), and
        with ``ports: all`` the port's place among ``all_ports``, so that the groups of one
        address (TCP and UDP on one port, containers without ports) keep kubernetes_sd's order."""
        if not self.every_port:
            return ((record.key, hostport(claim, self._port(record)[1])),)
        ip = host_of(claim)
        return tuple(
            (record.key, claim, "%05d" % i)
            for i, (_, port) in enumerate(self.kind.all_ports(record))
            if target_address(ip, port.number) == claim
        )

    def _port(self, record: Record) -> tuple[Port | None, int]:
        """The named port when the object has it, and the number to scrape."""
        name = self.config.port_name
        port = dict(record.ports).get(name) if name else None
        return port, port.number if port is not None else self.config.port

    def _apply(self, changed: set[str]) -> None:
        if not changed:
            return
        winners, fragments, blocks = self.index.winners, self._fragments, self._blocks
        for claim in changed:
            old = fragments.get(claim, ())
            record = winners.get(claim)
            if record is None:
                if old:
                    del fragments[claim]
                    for entry in old:
                        self._leave(entry)
                continue
            # The groups' JSON is built by the next render, straight into their blocks.
            orders = self._orders(record, claim)
            if tuple(entry.order for entry in old) == orders:
                for entry in old:
                    blocks.rebuild(entry)
                continue
            for entry in old:
                self._leave(entry)
            fragments[claim] = entries = tuple(Entry(order, claim) for order in orders)
            for entry in entries:
                blocks.add(entry)
        self._mark_dirty()

    def _leave(self, entry: Entry) -> None:
        built = self._blocks.remove(entry)
        if built is not None:
            self._left.setdefault(entry.order[0], {})[entry.order] = (entry.source, built)

    def _build(self, entry: Entry) -> bytes:
        """An entry's JSON: as it left the body if its record is the same again, else built."""
        record = entry.source = self.index.winners[entry.claim]
        key = entry.order[0]
        left = self._left.get(key)
        if left is not None:
            kept = left.pop(entry.order, None)
            if not left:
                del self._left[key]
            if kept is not None and kept[0] == record:
                return kept[1]
        return self._group(record, entry)

    def _mark_dirty(self) -> None:
        if not self.dirty:
            self.dirty = True
            self.on_dirty()

    def _group(self, record: Record, entry: Entry) -> bytes:
        kind = self.kind
        ip = self._ip_of(entry.claim)
        labels = kind.labels(record, self.annotations)
        for attachment in self.attached:
            labels.update(attachment.labels(record))
        labels[IP_FAMILY_LABEL] = ip_family(ip)
        if self.every_port:
            name, port = kind.all_ports(record)[int(entry.order[2])]
            labels.update(kind.target_labels(record, ip, port, name))
        else:
            labels.update(kind.target_labels(record, ip, self._port(record)[0], self.config.port_name))
        if self.instance_label and (instance := kind.instance(record)) is not None:
            labels[INSTANCE] = instance
        labels.update(self._static)
        return orjson.dumps({"targets": [entry.target], "labels": labels}, option=orjson.OPT_SORT_KEYS)

    # -- output ---------------------------------------------------------------------

    def render(self) -> bool:
        """Rebuild the changed blocks of the body, if anything changed since the last render.

        New groups are serialized straight into their block, unchanged ones copied from
        the block's old data; the set then remembers only each group's span, so it holds
        its targets' JSON once (plus, during a render, the old data of the blocks rebuilt)."""
        if not self.dirty:
            return False
        self.dirty = False
        self.current = self._blocks.render(self._build)
        self._shards.clear()
        self._gzip.render(self.current)
        self.renders += 1
        return True

    @property
    def body(self) -> bytes:
        """The last rendered body in one piece (for tests and tools; requests send ``current``)."""
        return bytes(self.current)

    @property
    def etag(self) -> str:
        return self.current.etag

    def shard(self, shards: int, shard: int) -> Body:
        """The body of the groups whose target ``t`` has ``hashmod(t, shards) == shard``
        (``sd/shards.py``)."""
        return self._shards.body(shards, shard)

    def gzipped(self, selected: tuple[int, int] | None = None) -> Body:
        """The gzip of the last rendered body, or of shard ``selected`` = (shards, shard) of it:
        made on the first request that asks after a render, then kept until the next
        (``sd/gzip_body.py``)."""
        return self._gzip.of(self.current) if selected is None else self._shards.gzip(*selected)

    def __len__(self) -> int:
        """Targets served."""
        if not self.every_port:
            return len(self._fragments)  # one per claim
        return sum(map(len, self._fragments.values()))
