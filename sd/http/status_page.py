"""The status pages for people in a browser: the overview at ``/`` and one page per set.

Rendered here, whole, from the sets' read-only views (``stats``, ``explain``, each
source's ``view()``); the script only swaps in a newer copy and filters rows. Every
string that is not a literal of this module goes through ``_e`` (``html.escape``):
label values, object names and error messages are written by whoever can create or
label a pod. Nothing inline (no ``style=``, no ``<script>`` body, no handlers), so the
page works under ``CSP``.
"""

from __future__ import annotations

import hashlib
import html
import re
import time
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from sd.kinds.ips import IPFamily
from sd.clusters import Served
from sd.views import cluster_states, explain, set_state, stats as set_stats, statuses

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

PAGE_ROWS = 100  # rows of a set page's table shown at once; the pager and filter reach the rest

# The fields of SourceStatus.view() shown in their own way; any other field is shown
# as it comes, under its own name, so a field added there appears without a change here.
_SOURCE_FIELDS = ("source", "state", "listing", "last_sync", "last_error", "relists", "watch_restarts")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _when(epoch: float | None) -> str:
    """A time the script shows as an age ("12 s ago"); the absolute time without it."""
    if not epoch:
        return "never"
    stamp = time.gmtime(epoch)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)
    return f'<time datetime="{iso}" title="{time.strftime("%Y-%m-%d %H:%M:%S UTC", stamp)}">{time.strftime("%H:%M:%S UTC", stamp)}</time>'


def _state(state: str) -> str:
    return f'<span class="state state-{re.sub(r"[^a-z0-9]+", "-", state.lower())}">{_e(state)}</span>'


def _plain(value: Any) -> str:
    """A value of unknown shape as text: dicts and lists flattened, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "", shown: int | None = None) -> str:
    """A table of cells that are already HTML; rows after the first ``shown`` start hidden."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        ("<tr>" if shown is None or i < shown else "<tr hidden>") + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _section(anchor: str, title: str, rows: list[Sequence[str]], headers: Sequence[str], note: str = "") -> str:
    """A titled table the filter box narrows, shown ``PAGE_ROWS`` rows at a time (a
    browser lays out 5,000 rows in seconds, 100 at once); nothing when it has no rows."""
    if not rows:
        return ""
    note_html = f'<p class="note">{note}</p>' if note else ""
    pager = (
        '<div class="pager"><button type="button" data-step="-1">‹ previous</button>'
        f'<span class="range">1–{PAGE_ROWS} of {len(rows)}</span>'
        '<button type="button" data-step="1">next ›</button></div>'
        if len(rows) > PAGE_ROWS
        else ""
    )
    return (
        f'<section id="{anchor}" data-filterable data-page-rows="{PAGE_ROWS}">'
        f'<h2>{_e(title)} <span class="count">{len(rows)}</span></h2>'
        f"{note_html}{pager}{_table(headers, rows, anchor, PAGE_ROWS)}</section>"
    )


def _sources_table(views: list[dict[str, Any]]) -> str:
    extra = list(dict.fromkeys(k for view in views for k in view if k not in _SOURCE_FIELDS))
    headers = ["source", "state", "list in progress", "last sync", "last error", "relists", "watch restarts"]
    headers += [k.replace("_", " ") for k in extra]
    rows = []
    for view in views:
        listing = view.get("listing")
        progress = f"{_n(listing['objects'], 'object')} in {_n(listing['pages'], 'page')} so far" if listing else "–"
        error = view.get("last_error")
        error_html = (
            f'<span class="error-reason">{_e(error["reason"])}</span> {_when(error["at"])}'
            f'<div class="error-message">{_e(error["message"])}</div>'
            if error
            else "–"
        )
        rows.append(
            [
                f'<span class="name">{_e(view["source"])}</span>',
                _state(str(view["state"])),
                _e(progress),
                _when(view.get("last_sync")),
                error_html,
                _e(view.get("relists", "–")),
                _e(view.get("watch_restarts", "–")),
                *(_e(_plain(view.get(k))) for k in extra),
            ]
        )
    return _table(headers, rows, "sources")


def overview_main(sets: Iterable[Served], debug: bool) -> str:
    sets = sorted(sets, key=lambda s: s.name)
    waiting = [ts.name for ts in sets if not ts.synced]
    sources = statuses(sets)
    failing = [name for name, s in sources.items() if s.failing]
    summary = [f"waiting for a first full list: {', '.join(waiting)}" if waiting else "every set is ready"]
    if failing:
        summary.append(f"sources failing: {', '.join(failing)} (last error below)")
    rows = []
    for ts in sets:
        stats = set_stats(ts)
        fam = stats.targets
        name = quote(ts.name, safe="")
        link = f'<a href="/sets/{name}">{_e(ts.name)}</a>' if debug else _e(ts.name)
        excluded = ", ".join(f"{_e(r)} {n}" for r, n in stats.excluded.items()) or "–"
        rows.append(
            [
                f'<span class="name">{link}</span>',
                _state(set_state(ts)),
                "<br>".join(_e(s.name) for s in ts.statuses),
                str(fam[IPFamily.IPV4] + fam[IPFamily.IPV6]),
                str(fam[IPFamily.IPV4]),
                str(fam[IPFamily.IPV6]),
                str(stats.objects),
                excluded,
                str(stats.conflicts),
                f'<a href="/targets/{name}">/targets/{_e(ts.name)}</a>',
            ]
        )
    headers = ["set", "state", "sources", "targets", "IPv4", "IPv6", "objects", "excluded", "IP conflicts", "http_sd URL"]
    views = [s.view() for s in sources.values()]
    return (
        f'<p class="summary{" failing" if failing else ""}">{_e("; ".join(summary))}</p>'
        f'<section id="sets"><h2>Target sets</h2>{_table(headers, rows, "sets")}</section>'
        f'<section id="sources"><h2>Sources</h2>{_sources_table(views)}</section>'
    )


def set_main(ts: Served) -> str:
    view, stats = explain(ts), set_stats(ts)
    # Over several clusters every row starts with its cluster.
    clusters = cluster_states(ts)
    cl = ["cluster"] if clusters else []

    def at(entry: dict[str, Any]) -> list[str]:
        return [_e(entry["cluster"])] if clusters else []

    fam = stats.targets
    total = fam[IPFamily.IPV4] + fam[IPFamily.IPV6]
    summary = (
        f"{_n(total, 'target')} ({fam[IPFamily.IPV4]:,} IPv4, {fam[IPFamily.IPV6]:,} IPv6) from {_n(stats.objects, 'object')} · "
        f"{_n(stats.conflicts, 'contested IP')} · {_n(len(view['excluded']), 'object')} not candidates · "
        f"{_n(len(view['skipped']), 'object')} with bad data skipped"
    )
    contested = [
        [*at(entry), _e(entry["ip"]), f'<span class="winner">{_e(entry["winner"])}</span>',
         f'<span class="loser">{_e(loser["object"])}</span>', _e(loser["why"])]
        for entry in view["ips"]
        for loser in entry["losers"]
    ]
    excluded = [[*at(e), _e(e["object"]), _e(e["reason"]), _e(e["why"])] for e in view["excluded"]]
    skipped = [[*at(e), _e(e["object"]), _e(e["reason"]), _e(e["detail"])] for e in view["skipped"]]
    probes = [
        [*at(p), _e(p["object"]), _e(ip), '<span class="ok">ok</span>' if r["ok"] else '<span class="failed">failed</span>',
         _e(r["detail"]), _e(p["advice"] or "–")]
        for p in view.get("probes", ())
        for ip, r in p["results"].items()
    ]
    targets = [
        [*at(entry), _e(entry["target"]), _e(entry["family"]), _e(entry["winner"]), _e(entry["node"] or "–"),
         _e(entry["instance"] or "–"),
         " ".join(f'<span class="label">{_e(k)}={_e(v)}</span>' for k, v in entry["labels"].items())]
        for entry in view["ips"]
    ]
    timeout = ts.config.cluster_sync_timeout_seconds
    cluster_rows = [
        [f'<span class="name">{_e(name)}</span>', _state("ready" if state.synced else "missing" if ts.synced else "syncing"),
         _e(f"{state.targets:,}"), _e(", ".join(state.waiting_for) or "–")]
        for name, state in clusters.items()
    ]
    return (
        f'<p class="summary">{_state(set_state(ts))} {_e(summary)}</p>'
        + _section("clusters", "Clusters", cluster_rows, ["cluster", "state", "targets", "waiting for a first list"],
                   _e(f"the set waits up to {timeout:g} s (cluster_sync_timeout_seconds) for every cluster's first list, "
                      "then serves the clusters that have one and shows the others as missing"))
        + f'<section id="sources"><h2>Sources</h2>{_sources_table(view["sources"])}</section>'
        + _section("contested", "Contested IPs", contested, [*cl, "IP", "winner", "loser", "why it lost"],
                   "each IP is served once per cluster: by the winner of the conflict rule" if cl
                   else "each IP is served once: by the winner of the conflict rule")
        + _section("excluded", "Not candidates", excluded, [*cl, "object", "reason", "why"])
        + _section("skipped", "Bad data skipped", skipped, [*cl, "object", "reason", "detail"],
                   "the object keeps its last good value of the field")
        + _section("probes", "Reachability probes", probes, [*cl, "object", "IP", "result", "detail", "advice"])
        + _section("targets", "Targets", targets, [*cl, "target", "family", "object", "node", "instance", "object labels"])
    )


def version(main: str) -> str:
    """What the page's ETag and ``data-version`` are: a digest of its content."""
    return hashlib.blake2b(main.encode(), digest_size=12).hexdigest()


def page(title: str, main: str, main_version: str, nav: Sequence[tuple[str, str]], filter_box: bool = False) -> str:
    """The whole document around ``main``, carrying its ``version`` for the refresh."""
    links = " ".join(f'<a href="{_e(href)}">{_e(text)}</a>' for href, text in nav)
    box = (
        '<input id="filter" type="search" placeholder="filter rows: IP, object, node, reason, label…" autocomplete="off">'
        if filter_box
        else ""
    )
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · kube-http-sd</title>"
        '<link rel="icon" href="/static/icon.svg"><link rel="stylesheet" href="/static/status.css">'
        '<script src="/static/status.js" defer></script></head>'
        f'<body><header><h1><a href="/">kube-http-sd</a> · {_e(title)}</h1><nav>{links}</nav>{box}<p id="refresh" class="refresh"></p></header>'
        f'<main data-version="{main_version}">{main}</main></body></html>'
    )
