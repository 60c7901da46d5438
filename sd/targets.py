"""Target sets: index winners → Prometheus http_sd groups → JSON bytes + ETag.

One builder per source kind (``node_labels``, ``pod_labels``), every ``__meta_*``
name declared once below, label-name sanitizing in ``sanitize``. A set renders
its body only when something it publishes changed; the HTTP layer only reads
``body``/``etag``.
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable

import orjson

from sd.config import SetConfig
from sd.index import Index, Policy
from sd.model import NodeRecord, PodRecord, Port, Record, ip_family

if TYPE_CHECKING:
    from sd.probe import Prober

META = "__meta_kubernetes_"
NODE_NAME = META + "node_name"
NODE_PROVIDER_ID = META + "node_provider_id"
NODE_LABEL = META + "node_label_"
NODE_LABEL_PRESENT = META + "node_labelpresent_"
NODE_ADDRESS = META + "node_address_"
NODE_CONDITION = META + "node_condition_"
NAMESPACE = META + "namespace"
POD_NAME = META + "pod_name"
POD_IP = META + "pod_ip"
POD_LABEL = META + "pod_label_"
POD_LABEL_PRESENT = META + "pod_labelpresent_"
POD_READY = META + "pod_ready"
POD_PHASE = META + "pod_phase"
POD_NODE_NAME = META + "pod_node_name"
POD_HOST_IP = META + "pod_host_ip"
POD_UID = META + "pod_uid"
POD_CONTROLLER_KIND = META + "pod_controller_kind"
POD_CONTROLLER_NAME = META + "pod_controller_name"
POD_CONTAINER_NAME = META + "pod_container_name"
POD_CONTAINER_PORT_NAME = META + "pod_container_port_name"
POD_CONTAINER_PORT_NUMBER = META + "pod_container_port_number"
POD_CONTAINER_PORT_PROTOCOL = META + "pod_container_port_protocol"
POD_CONTAINER_INIT = META + "pod_container_init"
IP_FAMILY = "__meta_sd_ip_family"
INSTANCE = "instance"
METRICS_PATH = "__metrics_path__"
SCHEME = "__scheme__"

# Why a record is not a candidate; shown in /metrics and the explain view.
NOT_READY = "not_ready"
TERMINATING = "terminating"
NOT_RUNNING = "not_running"
FINISHED = "finished"
NO_ADDRESS = "no_address"

_INVALID = re.compile(r"[^a-zA-Z0-9_]")

# (object key, target, ip, start, end, blake2b-128 of the group JSON as an int); sorts by
# key, target. The JSON lives only in the body, at body[start:end]; start is -1 until
# the group has been rendered.
_Fragment = tuple[str, str, str, int, int, int]


@lru_cache(maxsize=16384)
def sanitize(name: str) -> str:
    """The suffix of a label name as Prometheus writes it: other characters become '_'."""
    return _INVALID.sub("_", name)


def select_ips(ips: tuple[str, ...], family: str) -> tuple[str, ...]:
    """Apply the ip_family policy to an object's IPs (primary first)."""
    if not ips:
        return ()
    if family == "primary":
        return ips[:1]
    v4 = next((ip for ip in ips if ":" not in ip), None)
    v6 = next((ip for ip in ips if ":" in ip), None)
    if family == "ipv4":
        return (v4,) if v4 else ()
    if family == "ipv6":
        return (v6,) if v6 else ()
    return tuple(dict.fromkeys(ip for ip in ips if ip in (v4, v6)))  # both: one per family, primary first


def _node_excluded(require_ready: bool) -> Callable[[NodeRecord], str | None]:
    def exclude(node: NodeRecord) -> str | None:
        if not require_ready:
            return None
        if node.terminating:
            return TERMINATING
        return None if node.ready == "True" else NOT_READY

    return exclude


def _pod_excluded(require_ready: bool) -> Callable[[PodRecord], str | None]:
    def exclude(pod: PodRecord) -> str | None:
        if pod.phase in ("Succeeded", "Failed"):
            return FINISHED  # its IP may already belong to another pod
        if not require_ready:
            return None
        if pod.terminating:
            return TERMINATING
        if pod.phase != "Running":
            return NOT_RUNNING
        return None if pod.ready == "True" else NOT_READY

    return exclude


def node_labels(node: NodeRecord) -> dict[str, str]:
    """kubernetes_sd node-role labels for one node (same for each of its targets)."""
    labels = {NODE_NAME: node.name, NODE_PROVIDER_ID: node.provider_id}
    for key, value in node.labels:
        name = sanitize(key)
        labels[NODE_LABEL + name] = value
        labels[NODE_LABEL_PRESENT + name] = "true"
    for kind, value in node.addresses:
        labels.setdefault(NODE_ADDRESS + sanitize(kind), value)  # first address of each type
    for kind, status in node.conditions:
        labels[NODE_CONDITION + sanitize(kind.lower())] = status.lower()
    return labels


def pod_labels(pod: PodRecord) -> dict[str, str]:
    """kubernetes_sd pod-role labels for one pod (same for each of its targets)."""
    labels = {
        NAMESPACE: pod.namespace,
        POD_NAME: pod.name,
        POD_UID: pod.uid,
        POD_READY: pod.ready.lower() if pod.ready else "unknown",
        POD_PHASE: pod.phase,
        POD_NODE_NAME: pod.node_name,
        POD_HOST_IP: pod.host_ip,
    }
    if pod.controller_kind:
        labels[POD_CONTROLLER_KIND] = pod.controller_kind
        labels[POD_CONTROLLER_NAME] = pod.controller_name
    for key, value in pod.labels:
        name = sanitize(key)
        labels[POD_LABEL + name] = value
        labels[POD_LABEL_PRESENT + name] = "true"
    return labels


class TargetSet:
    """One served target set: its index, per-IP group fragments and rendered body.

    With ``ip_family: reachable`` the set asks ``prober`` which of a candidate's IPs
    answer, publishes those (the primary IP until one answers) and re-claims a
    record's IPs when its probe results change (``refresh``).
    """

    def __init__(self, config: SetConfig, prober: Prober | None = None) -> None:
        self.config = config
        self.name = config.name
        is_nodes = config.source == "nodes"
        exclude = _node_excluded(config.require_ready) if is_nodes else _pod_excluded(config.require_ready)
        types = config.address_types
        family = config.ip_family
        self.prober = prober if family == "reachable" else None
        if self.prober is not None:
            claims = self._reachable_claims
        else:
            claims = lambda r: select_ips(r.ips(types), family)  # noqa: E731
        self._exclude = exclude
        self.index: Index[Record] = Index(Policy(exclude=exclude, claims=claims))
        self._object_labels = node_labels if is_nodes else pod_labels
        # A node has one name for all its targets: use it as instance unless one
        # node can emit two targets (ip_family both), where that would clash.
        self._instance = is_nodes and family != "both"
        self._static = dict(config.labels)
        if config.metrics_path:
            self._static[METRICS_PATH] = config.metrics_path
        if config.scheme:
            self._static[SCHEME] = config.scheme
        self._fragments: dict[str, _Fragment] = {}  # ip → fragment
        self._digest_sum = 0
        self.body = b"[]"
        self.etag = _etag(0)
        self.renders = 0
        self.dirty = False
        self.pending_sources: set[str] = set()  # sources that have not finished a first list
        self.on_dirty: Callable[[], None] = lambda: None

    @property
    def synced(self) -> bool:
        """Every source finished its first list and that state is rendered: serving
        before the render would answer 200 [] and make Prometheus drop all targets."""
        return not self.pending_sources and self.renders > 0

    # -- changes (called by sources) ------------------------------------------------

    def upsert(self, record: Record) -> None:
        if self.prober is not None:
            self._probe(record)
        self._apply(self.index.upsert(record))

    def delete(self, key: str) -> None:
        if self.prober is not None:
            self.prober.forget(key)
        self._apply(self.index.delete(key))

    def replace(self, records: list[Record], keys: set[str] | None = None) -> None:
        if self.prober is not None:
            for record in records:
                self._probe(record)
            for key in set(self.index.records if keys is None else keys) - {r.key for r in records}:
                self.prober.forget(key)
        self._apply(self.index.replace(records, keys))

    def refresh(self, key: str) -> None:
        """The record's probe results changed: claim its IPs again."""
        self._apply(self.index.refresh(key))

    def _probe(self, record: Record) -> None:
        assert self.prober is not None
        if self._exclude(record) is not None:
            self.prober.forget(record.key)
            return
        port = self._port(record)[1]
        path, scheme = self.config.metrics_path or "/metrics", self.config.scheme or "http"
        self.prober.watch(record.key, [(ip, port, path, scheme) for ip in record.ips(self.config.address_types)])

    def _reachable_claims(self, record: Record) -> tuple[str, ...]:
        assert self.prober is not None
        ips = record.ips(self.config.address_types)
        answering = self.prober.reachable(record.key)
        # Until some IP answers (not probed yet, or all failing), serve the primary.
        return tuple(ip for ip in ips if ip in answering) if answering else ips[:1]

    def _port(self, record: Record) -> tuple[Port | None, int]:
        """The named port when the object has it, and the number to scrape."""
        name = self.config.port_name
        port = dict(record.ports).get(name) if name else None
        return port, port.number if port is not None else self.config.port

    def _apply(self, changed: set[str]) -> None:
        if not changed:
            return
        winners, fragments = self.index.winners, self._fragments
        for ip in changed:
            old = fragments.pop(ip, None)
            if old is not None:
                self._digest_sum -= old[5]
            record = winners.get(ip)
            if record is not None:
                # The group's JSON is built by the next render, straight into the body.
                fragments[ip] = (record.key, self._target(record, ip), ip, -1, -1, 0)
        self._mark_dirty()

    def _mark_dirty(self) -> None:
        if not self.dirty:
            self.dirty = True
            self.on_dirty()

    def source_synced(self, source: str) -> None:
        """A source finished its first full list; the set is ready once rendered."""
        self.pending_sources.discard(source)
        if not self.pending_sources:
            self._mark_dirty()  # render even an empty set, so it turns ready

    def _target(self, record: Record, ip: str) -> str:
        number = self._port(record)[1]
        return f"[{ip}]:{number}" if ":" in ip else f"{ip}:{number}"

    def _group(self, record: Record, ip: str, target: str) -> bytes:
        labels = self._object_labels(record)  # type: ignore[arg-type]
        labels[IP_FAMILY] = ip_family(ip)
        if isinstance(record, PodRecord):
            labels[POD_IP] = ip
            port = self._port(record)[0]
            if port is not None:
                labels[POD_CONTAINER_NAME] = port.container
                labels[POD_CONTAINER_PORT_NAME] = self.config.port_name  # type: ignore[assignment]
                labels[POD_CONTAINER_PORT_NUMBER] = str(port.number)
                labels[POD_CONTAINER_PORT_PROTOCOL] = port.protocol
                labels[POD_CONTAINER_INIT] = "false"
        elif self._instance:
            labels[INSTANCE] = record.name
        labels.update(self._static)
        return orjson.dumps({"targets": [target], "labels": labels}, option=orjson.OPT_SORT_KEYS)

    # -- output ---------------------------------------------------------------------

    def render(self) -> bool:
        """Rebuild body and ETag if anything changed since the last render.

        New groups are serialized straight into the new body, unchanged ones copied
        from the old body; the set then remembers only each group's span, so it holds
        its targets' JSON once (plus the previous body while it is being replaced)."""
        if not self.dirty:
            return False
        self.dirty = False
        winners, fragments = self.index.winners, self._fragments
        old = memoryview(self.body)
        buf = io.BytesIO()
        buf.write(b"[")
        for key, target, ip, start, end, digest in sorted(fragments.values()):
            if start < 0:
                group = self._group(winners[ip], ip, target)
                digest = int.from_bytes(hashlib.blake2b(group, digest_size=16).digest(), "big")
                self._digest_sum += digest
                start = buf.tell()
                buf.write(group)
            else:
                group_view = old[start:end]
                start = buf.tell()
                buf.write(group_view)
            fragments[ip] = (key, target, ip, start, buf.tell(), digest)
            buf.write(b",")
        if fragments:
            buf.seek(-1, io.SEEK_CUR)
        buf.write(b"]")
        del old
        self.body = buf.getvalue()  # shares the buffer: no copy
        # The body is the sorted set of groups, so the (order-free) sum of their
        # digests identifies it: no hashing of megabytes per render.
        self.etag = _etag(self._digest_sum)
        self.renders += 1
        return True

    def explain(self) -> dict[str, Any]:
        """Every contested or served IP with its winner and why the others lost, plus the
        indexed objects that are not candidates and why. For people, not Prometheus."""
        index = self.index
        ips = []
        for ip in sorted(index.winners):
            winner, *losers = index.candidates(ip)
            ips.append(
                {
                    "ip": ip,
                    "target": self._fragments[ip][1],
                    "winner": winner.key,
                    "losers": [{"object": c.key, "why": why_lost(c, winner)} for c in losers],
                }
            )
        excluded = []
        for key in sorted(index.records):
            reason = index.excluded(key)
            if reason is None and index.claims(key):
                continue
            record = index.records[key]
            excluded.append(
                {"object": key, "reason": reason or NO_ADDRESS, "why": _EXCLUDED_WHY[reason or NO_ADDRESS](record)}
            )
        return {"set": self.name, "source": self.config.source, "synced": self.synced, "ips": ips, "excluded": excluded}

    def targets_by_family(self) -> dict[str, int]:
        counts = {"ipv4": 0, "ipv6": 0}
        for ip in self._fragments:
            counts[ip_family(ip)] += 1
        return counts

    def __len__(self) -> int:
        return len(self._fragments)


_EXCLUDED_WHY: dict[str, Callable[[Any], str]] = {
    NOT_READY: lambda r: f"not ready (Ready={r.ready or 'missing'})",
    TERMINATING: lambda r: "terminating (has a deletionTimestamp)",
    NOT_RUNNING: lambda r: f"phase {r.phase or 'missing'}, not Running",
    FINISHED: lambda r: f"phase {r.phase}: finished, its IP may belong to another pod",
    NO_ADDRESS: lambda r: "no usable IP for this set's address types and ip_family",
}


def why_lost(loser: Record, winner: Record) -> str:
    """The first rule of the IP-reuse ranking that decided between the two."""
    if winner.ready == "True" and loser.ready != "True":
        return f"not ready (Ready={loser.ready or 'missing'}) while {winner.key} is Ready"
    if loser.created < winner.created:
        return f"older: created {_iso(loser.created)}, {winner.key} created {_iso(winner.created)}"
    return f"same readiness and creation time; {winner.key} wins by greater name"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else "unknown"


def _etag(digest_sum: int) -> str:
    return '"%032x"' % (digest_sum % (1 << 128))

