"""Pages for people: the plain-text index of sets and the explain view as text."""

from __future__ import annotations

import time
from typing import Iterable

from sd._table import table
from sd.kinds.ips import IPFamily
from sd.status import SourceStatus
from sd.clusters import Served
from sd.views import READY, missing_clusters, set_state, statuses, targets_by_family


def index_text(sets: Iterable[Served], debug: bool) -> str:
    """The table at ``/`` for curl: one row per set."""
    rows = []
    for ts in sorted(sets, key=lambda s: s.name):
        fam = targets_by_family(ts)
        rows.append(
            (ts.name, ts.config.source, set_state(ts), len(ts), fam[IPFamily.IPV4], fam[IPFamily.IPV6], f"/targets/{ts.name}")
        )
    text = table(("SET", "SOURCE", "STATUS", "TARGETS", "IPV4", "IPV6", "URL"), rows)
    also = "/readyz /healthz /metrics" + (" /debug/sets/<set>" if debug else "")
    return f"kube-http-sd: Prometheus http_sd target sets\n\n{text}\nalso: {also}\n"


def source_line(status: SourceStatus, now: float | None = None) -> str:
    """One source's state in words: "nodes: stale, last error unauthorized 12s ago: 401 ..."."""
    now = time.time() if now is None else now
    parts = [f"{status.name}: {status.state}"]
    if status.listing:
        parts.append(f"listing ({status.listed_objects} objects in {status.listed_pages} pages so far)")
    error = status.last_error
    if error is not None and not status.healthy:
        parts.append(f"last error {error.reason} {max(0, now - error.at):.0f}s ago: {error.message}")
    return ", ".join(parts)


def readyz_text(sets: Iterable[Served]) -> tuple[bool, str]:
    """(ready, body): ready once every set synced; the body names what is waiting,
    listing or stale and why, and the clusters a set waits for or serves without (past
    its cluster_sync_timeout_seconds), so a failing readiness probe explains itself."""
    sets = sorted(sets, key=lambda s: s.name)
    waiting = [ts.name for ts in sets if not ts.synced]
    clusters = [
        f"{ts.name}: {'serving without' if ts.synced else 'waiting for'} cluster {', '.join(missing)} "
        f"(no first list yet; cluster_sync_timeout_seconds {ts.config.cluster_sync_timeout_seconds:g})"
        for ts in sets
        if (missing := missing_clusters(ts))
    ]
    troubled = [source_line(s) for s in statuses(sets).values() if s.state != READY or s.listing]
    head = f"waiting for first sync: {', '.join(waiting)}" if waiting else "ready"
    return not waiting, "\n".join([head, *clusters, *troubled]) + "\n"


def explain_text(view: dict) -> str:
    """The explain view as tables; a table with no rows is left out."""
    out = [f"set {view['set']} (source {view['source']}, {'synced' if view['synced'] else 'waiting for first sync'})"]
    for source in view["sources"]:
        error = source["last_error"]
        parts = [f"  {source['source']}: {source['state']}"]
        if listing := source["listing"]:
            parts.append(f"listing ({listing['objects']} objects in {listing['pages']} pages so far)")
        parts += [f"{source['relists']} lists", f"{source['watch_restarts']} watch restarts"]
        line = ", ".join(parts)
        if error is not None:
            line += f"; last error {error['reason']}: {error['message']}"
        out.append(line)
    out.append("")

    def section(title: str | None, headers: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
        if rows:
            out.extend([f"{title}: {len(rows)}"] if title else [])
            out.append(table(headers, rows))

    # Over several clusters every row starts with its cluster.
    cl: tuple[str, ...] = ("CLUSTER",) if "clusters" in view else ()

    def at(entry: dict) -> tuple[str, ...]:
        return (entry["cluster"],) if cl else ()

    if cl:
        section("clusters", ("CLUSTER", "SYNCED", "TARGETS", "WAITING FOR"),
                [(c["cluster"], "yes" if c["synced"] else "no", c["targets"], ", ".join(c["waiting_for"]) or "-")
                 for c in view["clusters"]])
    ips = []
    for entry in view["ips"]:
        losers = "; ".join(f"{lo['object']}: {lo['why']}" for lo in entry["losers"]) or "-"
        ips.append((*at(entry), entry["ip"], entry["target"], entry["winner"], losers))
    section(None, (*cl, "IP", "TARGET", "WINNER", "LOSERS (WHY)"), ips)
    section("not candidates", (*cl, "OBJECT", "REASON", "WHY"),
            [(*at(e), e["object"], e["reason"], e["why"]) for e in view["excluded"]])
    probes = [
        (*at(p), p["object"], ip, "ok" if r["ok"] else "FAILED", r["detail"])
        for p in view.get("probes", ())
        for ip, r in p["results"].items()
    ]
    section("reachability probes", (*cl, "OBJECT", "IP", "RESULT", "DETAIL"), probes)
    out += [f"advice: {'/'.join((*at(p), p['object']))}: {p['advice']}" for p in view.get("probes", ()) if p["advice"]]
    skipped = [(*at(e), e["object"], e["reason"], e["detail"]) for e in view["skipped"]]
    section("skipped bad data", (*cl, "OBJECT", "REASON", "DETAIL"), skipped)
    return "\n".join(out)
