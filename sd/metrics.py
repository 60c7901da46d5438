"""The server's own metrics (/metrics), all named ``kube_http_sd_*``.

Counters are updated where things happen (sources, renders, HTTP); gauges that
describe current state (targets, conflicts, excluded objects) are read from the
target sets at scrape time, so the pure core never imports prometheus_client.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sd.model import ip_family
from sd.targets import TargetSet

PREFIX = "kube_http_sd_"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.skipped = Counter(
            PREFIX + "skipped_total",
            "Objects or fields skipped for bad data, by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.events = Counter(
            PREFIX + "watch_events_total", "Watch events received, by resource and type.", ["resource", "type"], registry=r
        )
        self.relists = Counter(PREFIX + "relists_total", "Full lists of a source, by reason.", ["source", "reason"], registry=r)
        self.restarts = Counter(
            PREFIX + "watch_restarts_total", "Watch streams restarted, by reason.", ["source", "reason"], registry=r
        )
        self.source_up = Gauge(
            PREFIX + "source_up", "1 while the source's list/watch is healthy, 0 while it retries.", ["source"], registry=r
        )
        self.last_sync = Gauge(
            PREFIX + "source_last_sync_timestamp_seconds",
            "When the source last finished a full list or received a watch event.",
            ["source"],
            registry=r,
        )
        self.renders = Counter(PREFIX + "renders_total", "Target set bodies rendered.", ["set"], registry=r)
        self.render_seconds = Histogram(
            PREFIX + "render_duration_seconds",
            "Time to render a target set body.",
            ["set"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.requests = Counter(
            PREFIX + "http_requests_total", "HTTP requests, by route and status code.", ["route", "code"], registry=r
        )
        self.request_seconds = Histogram(
            PREFIX + "http_request_duration_seconds",
            "HTTP request latency, by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )

    def watch_sets(self, sets: Iterable[TargetSet]) -> None:
        self.registry.register(_SetCollector(list(sets)))


class _SetCollector(Collector):
    def __init__(self, sets: list[TargetSet]) -> None:
        self._sets = sets

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        targets = GaugeMetricFamily(PREFIX + "targets", "Targets served, by set and IP family.", labels=["set", "family"])
        objects = GaugeMetricFamily(PREFIX + "objects", "Objects indexed, by set.", labels=["set"])
        excluded = GaugeMetricFamily(
            PREFIX + "excluded_objects", "Indexed objects that are not candidates, by set and reason.", labels=["set", "reason"]
        )
        conflicts = GaugeMetricFamily(
            PREFIX + "ip_conflicts", "IPs claimed by more than one candidate right now (one wins).", labels=["set"]
        )
        resolved = CounterMetricFamily(
            PREFIX + "ip_conflicts_resolved", "Times a contested IP got a (new) winner.", labels=["set"]
        )
        synced = GaugeMetricFamily(PREFIX + "set_synced", "1 once every source of the set finished its first list.", labels=["set"])
        probes = GaugeMetricFamily(
            PREFIX + "probe_endpoints",
            "Reachability-probed endpoints by last result (ip_family: reachable sets).",
            labels=["set", "family", "result"],
        )
        for ts in self._sets:
            if ts.prober is not None:
                tally = Tally(
                    (ip_family(ip), "ok" if r.ok else "failed")
                    for key in ts.index.records
                    for ip, r in ts.prober.results(key).items()
                )
                for (family, result), count in sorted(tally.items()):
                    probes.add_metric([ts.name, family, result], count)
            for family, count in ts.targets_by_family().items():
                targets.add_metric([ts.name, family], count)
            objects.add_metric([ts.name], len(ts.index))
            reasons = Tally(ts.index.excluded(key) for key in ts.index.records)
            for reason, count in sorted(reasons.items(), key=lambda kv: str(kv[0])):
                if reason is not None:
                    excluded.add_metric([ts.name, reason], count)
            conflicts.add_metric([ts.name], ts.index.conflicts())
            resolved.add_metric([ts.name], ts.index.conflicts_resolved)
            synced.add_metric([ts.name], 1 if ts.synced else 0)
        return [targets, objects, excluded, conflicts, resolved, synced, probes]
