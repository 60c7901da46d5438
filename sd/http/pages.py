"""Pages for people: the plain-text index of sets and the explain view as text."""

from __future__ import annotations

from typing import Iterable

from sd._table import table
from sd.kinds.common import IPFamily
from sd.targets import TargetSet


def index_text(sets: Iterable[TargetSet], debug: bool) -> str:
    """The table at ``/`` for curl: one row per set."""
    rows = []
    for ts in sorted(sets, key=lambda s: s.name):
        fam = ts.targets_by_family()
        status = "ready" if ts.synced else "syncing"
        rows.append(
            (ts.name, ts.config.source, status, len(ts), fam[IPFamily.IPV4], fam[IPFamily.IPV6], f"/targets/{ts.name}")
        )
    text = table(("SET", "SOURCE", "STATUS", "TARGETS", "IPV4", "IPV6", "URL"), rows)
    also = "/readyz /healthz /metrics" + (" /debug/sets/<set>" if debug else "")
    return f"kube-http-sd: Prometheus http_sd target sets\n\n{text}\nalso: {also}\n"


def explain_text(view: dict) -> str:
    """The explain view as tables."""
    out = [f"set {view['set']} (source {view['source']}, {'synced' if view['synced'] else 'waiting for first sync'})", ""]
    rows = []
    for entry in view["ips"]:
        losers = "; ".join(f"{lo['object']}: {lo['why']}" for lo in entry["losers"]) or "-"
        rows.append((entry["ip"], entry["target"], entry["winner"], losers))
    out.append(table(("IP", "TARGET", "WINNER", "LOSERS (WHY)"), rows))
    out.append(f"not candidates: {len(view['excluded'])}")
    out.append(table(("OBJECT", "REASON", "WHY"), [(e["object"], e["reason"], e["why"]) for e in view["excluded"]]))
    if "probes" in view:
        probes = [
            (p["object"], ip, "ok" if r["ok"] else "FAILED", r["detail"])
            for p in view["probes"]
            for ip, r in p["results"].items()
        ]
        out.append(f"reachability probes: {len(probes)}")
        out.append(table(("OBJECT", "IP", "RESULT", "DETAIL"), probes))
        out += [f"advice: {p['object']}: {p['advice']}" for p in view["probes"] if p["advice"]]
        out.append("")
    out.append(f"skipped bad data: {len(view['skipped'])}")
    out.append(table(("OBJECT", "REASON", "DETAIL"), [(e["object"], e["reason"], e["detail"]) for e in view["skipped"]]))
    return "\n".join(out)
