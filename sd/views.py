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

from sd.index import why_lost
from sd.kinds.ips import IPFamily, ip_family
from sd.kinds.kind import NO_ADDRESS, NO_ADDRESS_WHY
from sd.status import SourceStatus
from sd.targets import TargetSet

SYNCING, READY, STALE = "syncing", "ready", "stale"


def set_state(ts: TargetSet) -> str:
    """"syncing" until the first full list is served, then "ready", or "stale" while one of
    its sources retries after errors (the last state is served meanwhile)."""
    if not ts.synced:
        return SYNCING
    return STALE if any(s.state == STALE for s in ts.statuses) else READY


def statuses(sets: Iterable[TargetSet]) -> dict[str, SourceStatus]:
    """The sources the sets read, each once, by name in name order."""
    found = {s.name: s for ts in sets for s in ts.statuses}
    return dict(sorted(found.items()))


def targets_by_family(ts: TargetSet) -> dict[IPFamily, int]:
    counts = dict.fromkeys(IPFamily, 0)
    for ip, _ in ts.targets():
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


def stats(ts: TargetSet) -> SetStats:
    index, prober = ts.index, ts.prober
    excluded = Counter(reason for key in index.records if (reason := index.excluded(key)) is not None)
    probes: Counter[tuple[IPFamily, str]] = Counter()
    if prober is not None:
        probes.update(
            (ip_family(ip), "ok" if r.ok else "failed") for key in index.records for ip, r in prober.results(key).items()
        )
    return SetStats(
        targets=targets_by_family(ts),
        objects=len(index),
        excluded=dict(sorted(excluded.items())),
        conflicts=index.conflicts(),
        conflicts_resolved=index.conflicts_resolved,
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


def explain(ts: TargetSet) -> dict[str, Any]:
    """Every served IP (in address order; with ``ports: all``, every address) with its
    target, family, winner (its node, instance and Kubernetes labels) and why the others
    lost; the indexed objects
    that are not candidates and why; bad data skipped by its sources; probe results.
    For people, not Prometheus."""
    index, kind = ts.index, ts.kind
    ips = []
    for claim in sorted(index.winners, key=lambda c: (address_order(ts.ip_of(c)), c)):
        winner, *losers = index.candidates(claim)
        ip = ts.ip_of(claim)
        ips.append(
            {
                "ip": ip,
                "target": ts.target(claim),
                "family": str(ip_family(ip)),
                "winner": winner.key,
                "node": kind.node_of(winner),
                "instance": kind.instance(winner) if ts.instance_label else None,
                "labels": dict(winner.labels),
                "losers": [{"object": c.key, "why": why_lost(c, winner)} for c in losers],
            }
        )
    excluded = []
    for key in sorted(index.records):
        reason = index.excluded(key)
        if reason is None and index.claims(key):
            continue
        record = index.records[key]
        why = NO_ADDRESS_WHY if reason is None else ts.why_excluded(reason, record)
        excluded.append({"object": key, "reason": reason or NO_ADDRESS, "why": why})
    view: dict[str, Any] = {
        "set": ts.name,
        "source": str(ts.config.source),
        "synced": ts.synced,
        "sources": [status.view() for status in ts.statuses],
        "ips": ips,
        "excluded": excluded,
        "skipped": [
            {"object": obj, "reason": reason, "detail": detail}
            for status in ts.statuses
            for obj, (reason, detail) in sorted(status.skipped.items())
        ],
    }
    if ts.prober is not None:
        view["probes"] = [
            {
                "object": key,
                "results": {ip: {"ok": r.ok, "detail": r.detail} for ip, r in results.items()},
                "advice": ts.prober.advice(key),
            }
            for key in sorted(index.records)
            if (results := ts.prober.results(key))
        ]
    return view
