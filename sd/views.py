"""What people and /metrics see of the target sets: read-only, computed on demand.

One definition each: a set's state ("syncing", "ready", "stale"), its numbers
(``stats``), the explain view, and the sources behind a group of sets. The HTTP pages
and the metrics collector read these; nothing here changes a set.
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from sd.clusters import ClusterSets, Served
from sd.index import why_lost
from sd.kinds.ips import IPFamily, ip_family
from sd.kinds.kind import NO_ADDRESS, NO_ADDRESS_WHY
from sd.status import SourceStatus
from sd.targets import TargetSet

SYNCING, READY, STALE, PARTIAL = "syncing", "ready", "stale", "partial"


def parts(ts: Served) -> list[tuple[str, TargetSet]]:
    """(cluster name, its part) of a set over several clusters; ("", the set) otherwise."""
    return list(ts.parts.items()) if isinstance(ts, ClusterSets) else [("", ts)]


def set_state(ts: Served) -> str:
    """"syncing" until the first full list is served, then "ready", or "stale" while one of
    its sources retries after errors (the last state is served meanwhile), or "partial"
    while it serves without a cluster that has not synced (past its sync timeout)."""
    if not ts.synced:
        return SYNCING
    if any(s.state == STALE for s in ts.statuses):
        return STALE
    return PARTIAL if isinstance(ts, ClusterSets) and ts.missing() else READY


@dataclass(frozen=True, slots=True)
class ClusterState:
    """One cluster's part of a set over several clusters."""

    synced: bool  # its first list is served
    waiting_for: list[str]  # its sources that have not finished a first list
    targets: int


def cluster_states(ts: Served) -> dict[str, ClusterState]:
    """By cluster name, for a set over several clusters; {} for one cluster's set."""
    if not isinstance(ts, ClusterSets):
        return {}
    return {name: ClusterState(part.synced, part.waiting_for(), len(part)) for name, part in ts.parts.items()}


def missing_clusters(ts: Served) -> list[str]:
    """The clusters of a set over several clusters that have not synced (in name order)."""
    return [name for name, state in cluster_states(ts).items() if not state.synced]


def statuses(sets: Iterable[Served]) -> dict[str, SourceStatus]:
    """The sources the sets read, each once, by name in name order."""
    found = {s.name: s for ts in sets for s in ts.statuses}
    return dict(sorted(found.items()))


def targets_by_family(ts: Served) -> dict[IPFamily, int]:
    counts = dict.fromkeys(IPFamily, 0)
    for _, part in parts(ts):
        for ip, _ in part.targets():
            counts[ip_family(ip)] += 1
    return counts


@dataclass(frozen=True, slots=True)
class SetStats:
    """A set's numbers for /metrics and the index page, read in one go."""

    targets: dict[IPFamily, int]
    objects: int
    excluded: dict[str, int]  # reason → objects
    conflicts: int  # IPs claimed by more than one candidate now
    conflicts_resolved: int
    synced: bool
    probes: dict[tuple[IPFamily, str], int]  # (family, "ok" | "failed") → endpoints


def stats(ts: Served) -> SetStats:
    """The set's numbers; over several clusters, the sum of its clusters'."""
    excluded: Counter[str] = Counter()
    probes: Counter[tuple[IPFamily, str]] = Counter()
    objects = conflicts = resolved = 0
    for _, part in parts(ts):
        index, prober = part.index, part.prober
        excluded.update(reason for key in index.records if (reason := index.excluded(key)) is not None)
        if prober is not None:
            probes.update(
                (ip_family(ip), "ok" if r.ok else "failed") for key in index.records for ip, r in prober.results(key).items()
            )
        objects += len(index)
        conflicts += index.conflicts()
        resolved += index.conflicts_resolved
    return SetStats(
        targets=targets_by_family(ts),
        objects=objects,
        excluded=dict(sorted(excluded.items())),
        conflicts=conflicts,
        conflicts_resolved=resolved,
        synced=ts.synced,
        probes=dict(sorted(probes.items())),
    )


def address_order(ip: str) -> bytes:
    """Sort key of a canonical IP by its value: IPv4 before IPv6, then numerically
    (as strings, ``2001:db8::21:3`` would come before ``2001:db8::2:7``). inet_pton,
    not ipaddress: 2 ms against 23 ms for 5,000, sorted on every view of a set's page."""
    if ":" in ip:
        return b"\x06" + socket.inet_pton(socket.AF_INET6, ip)
    return b"\x04" + socket.inet_pton(socket.AF_INET, ip)


def explain(ts: Served) -> dict[str, Any]:
    """Every served IP (in address order; with ``ports: all``, every address; by cluster first
    over several clusters) with its target, family, winner (its node, instance and Kubernetes
    labels) and why the others lost; the indexed objects that are not candidates and why; bad
    data skipped by its sources; probe results. Over several clusters every entry names its
    cluster, and ``clusters`` says which have synced. For people, not Prometheus."""
    ips: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    for cluster, part in parts(ts):
        named = {"cluster": cluster} if cluster else {}
        index, kind = part.index, part.kind
        for claim in sorted(index.winners, key=lambda c: (address_order(part.ip_of(c)), c)):
            winner, *losers = index.candidates(claim)
            ip = part.ip_of(claim)
            ips.append(
                {
                    **named,
                    "ip": ip,
                    "target": part.target(claim),
                    "family": str(ip_family(ip)),
                    "winner": winner.key,
                    "node": kind.node_of(winner),
                    "instance": kind.instance(winner) if part.instance_label else None,
                    "labels": dict(winner.labels),
                    "losers": [{"object": c.key, "why": why_lost(c, winner)} for c in losers],
                }
            )
        for key in sorted(index.records):
            reason = index.excluded(key)
            if reason is None and index.claims(key):
                continue
            record = index.records[key]
            why = NO_ADDRESS_WHY if reason is None else part.why_excluded(reason, record)
            excluded.append({**named, "object": key, "reason": reason or NO_ADDRESS, "why": why})
        if part.prober is not None:
            probes += [
                {
                    **named,
                    "object": key,
                    "results": {ip: {"ok": r.ok, "detail": r.detail} for ip, r in results.items()},
                    "advice": part.prober.advice(key),
                }
                for key in sorted(index.records)
                if (results := part.prober.results(key))
            ]
    view: dict[str, Any] = {
        "set": ts.name,
        "source": str(ts.config.source),
        "synced": ts.synced,
        "sources": [status.view() for status in ts.statuses],
        "ips": ips,
        "excluded": excluded,
        "skipped": [
            {**({"cluster": status.cluster} if status.cluster else {}), "object": obj, "reason": reason, "detail": detail}
            for status in ts.statuses
            for obj, (reason, detail) in sorted(status.skipped.items())
        ],
    }
    if isinstance(ts, ClusterSets):
        view["clusters"] = [
            {"cluster": name, "synced": state.synced, "waiting_for": state.waiting_for, "targets": state.targets}
            for name, state in cluster_states(ts).items()
        ]
        view["cluster_sync_timeout_seconds"] = ts.config.cluster_sync_timeout_seconds
    if any(part.prober is not None for _, part in parts(ts)):
        view["probes"] = probes
    return view
