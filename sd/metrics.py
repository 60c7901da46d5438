"""The server's own metrics (/metrics), all named ``kube_http_sd_*``.

Counters are updated where things happen (feeds, renders, HTTP); gauges that
describe current state (targets, conflicts, excluded objects, source health) are
read at scrape time from ``sd.views`` (each set's ``stats``, the sources' ``SourceStatus``),
each written in one place, so the pure core never imports prometheus_client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sd.status import PHASES
from sd.version import versions

if TYPE_CHECKING:
    from sd.clusters import ClusterSets
    from sd.targets import TargetSet

PREFIX = "kube_http_sd_"

# A `*_created` series per counter and histogram child (32 of 210 series) only says when
# this process made it, which process_start_time_seconds already says. The switch is
# process-wide: this module is where the process' metrics are made.
disable_created_metrics()


class Metrics:
    """``clusters``: the config has a clusters: map, and every source metric (and the
    watch events) carries a ``cluster`` label first; without one they are as they were."""

    def __init__(self, clusters: bool = False) -> None:
        self.clusters = clusters
        source = ("cluster", "source") if clusters else ("source",)
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, _cpu_seconds_total, _open_fds, ...
        build = Gauge(
            PREFIX + "build_info", "Always 1; the running version, Python and kubernetes-asyncio as labels.",
            ["version", "python", "kubernetes_asyncio"], registry=r,
        )
        v = versions()
        build.labels(v["version"], v["python"], v["kubernetes_asyncio"]).set(1)
        counter = self._counter
        self.skipped = counter("skipped_total", "Objects or fields skipped for bad data, by source and reason.", *source, "reason")
        self.events = counter("watch_events_total", "Watch events received, by resource and type.", *source[:-1], "resource", "type")
        self.relists = counter(
            "relists_total",
            "Full lists of a source, by reason and method (streaming: a watch with sendInitialEvents; paginated).",
            *source, "reason", "method",
        )
        self.list_fallbacks = counter(
            "streaming_list_fallbacks_total",
            "Streaming lists given up for a paginated one, by why (rejected_422, rejected_400, ignored).", *source, "reason",
        )
        self.source_errors = counter(
            "source_errors_total",
            "Failed list/watch requests and untrustworthy streams, by source and reason (each is backed off).", *source, "reason",
        )
        self.restarts = counter("watch_restarts_total", "Watch streams restarted, by reason.", *source, "reason")
        self.tls_reloads = counter("tls_reloads_total", "Certificate reloads after the files changed, by result.", "result")
        self.config_reloads = counter("config_reloads_total", "Config reloads (SIGHUP), by result.", "result")
        self.config_reload_ok = Gauge(
            PREFIX + "config_last_reload_successful", "1 if the last config reload applied, 0 if it was refused.", registry=r
        )
        self.config_reload_ok.set(1)
        self.renders = counter("renders_total", "Target set bodies rendered.", "set")
        self.render_seconds = Histogram(
            PREFIX + "render_duration_seconds",
            "Time to render a target set body.",
            ["set"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.requests = counter(
            "http_requests_total", "HTTP requests, by route, status code and content coding (identity, gzip).",
            "route", "code", "encoding",
        )
        self.request_seconds = Histogram(
            PREFIX + "http_request_duration_seconds",
            "HTTP request latency, by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(PREFIX + name, documentation, labels, registry=self.registry)

    def watch_sets(self, sets: Mapping[str, TargetSet | ClusterSets]) -> None:
        """Report the state of the sets in ``sets`` (as it is at each scrape), and their sources'."""
        self.registry.register(_StateCollector(sets, self.clusters))

    def rendered(self, set_name: str, seconds: float) -> None:
        self.renders.labels(set_name).inc()
        self.render_seconds.labels(set_name).observe(seconds)


class _StateCollector(Collector):
    def __init__(self, sets: Mapping[str, TargetSet | ClusterSets], clusters: bool) -> None:
        self._sets = sets
        self._source = ["cluster", "source"] if clusters else ["source"]

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
        cluster_synced = GaugeMetricFamily(
            PREFIX + "set_cluster_synced",
            "With several clusters: 1 once the cluster's part of the set finished its first list, 0 while the set "
            "waits for it or (after cluster_sync_timeout_seconds) serves without it.",
            labels=["set", "cluster"],
        )
        probes = GaugeMetricFamily(
            PREFIX + "probe_endpoints",
            "Reachability-probed endpoints by last result (ip_family: reachable sets).",
            labels=["set", "family", "result"],
        )
        phase = GaugeMetricFamily(
            PREFIX + "source_phase",
            "1 for what the source is doing now: listing, watching, backing_off (after an error), snapshot.",
            labels=[*self._source, "phase"],
        )
        failing = GaugeMetricFamily(
            PREFIX + "source_failing",
            "1 from a failed list/watch request until one succeeds; 0 otherwise, however long a first list takes.",
            labels=[*self._source],
        )
        up = GaugeMetricFamily(
            PREFIX + "source_up", "1 - source_failing: 0 only while the source's requests fail.", labels=[*self._source]
        )
        last_sync = GaugeMetricFamily(
            PREFIX + "source_last_sync_timestamp_seconds",
            "When the source last finished a full list or received a watch event or bookmark.",
            labels=[*self._source],
        )
        from sd.views import cluster_states, stats as set_stats, statuses

        sets = list(self._sets.values())
        for ts in sets:
            stats = set_stats(ts)
            for (family, result), count in stats.probes.items():
                probes.add_metric([ts.name, family, result], count)
            for family, count in stats.targets.items():
                targets.add_metric([ts.name, family], count)
            objects.add_metric([ts.name], stats.objects)
            for reason, count in stats.excluded.items():
                excluded.add_metric([ts.name, reason], count)
            conflicts.add_metric([ts.name], stats.conflicts)
            resolved.add_metric([ts.name], stats.conflicts_resolved)
            synced.add_metric([ts.name], 1 if stats.synced else 0)
            for cluster, state in cluster_states(ts).items():
                cluster_synced.add_metric([ts.name, cluster], 1 if state.synced else 0)
        for status in statuses(sets).values():
            source = [status.cluster, status.source] if len(self._source) == 2 else [status.name]
            for p in PHASES:
                phase.add_metric([*source, p.value], 1 if status.phase == p else 0)
            failing.add_metric(source, 1 if status.failing else 0)
            up.add_metric(source, 0 if status.failing else 1)
            if status.last_sync:
                last_sync.add_metric(source, status.last_sync)
        families = [targets, objects, excluded, conflicts, resolved, synced, probes, phase, failing, up, last_sync]
        return families + [cluster_synced] if len(self._source) == 2 else families
