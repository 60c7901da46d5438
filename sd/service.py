"""The running service: target sets, the feeds that fill them, what drives the feeds
(informers, or a snapshot file), the renderer and the prober, built from a config and
rebuilt by ``reload``.

With a ``clusters:`` map every cluster has its own feeds, node index and prober
(``sd/clusters.py``), and each served set has a part per cluster it serves; a reload adds
and removes clusters, and keeps the ones whose settings did not change, with their
feeds, untouched (no relist).

A reload keeps every set whose settings did not change and every list/watch still
needed, with their state: an unchanged set keeps serving the same bytes, and only new or
changed list/watches list the API server. The HTTP app reads ``sets``, which is updated
in place.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from sd.attach import Directory
from sd.clusters import Cluster, ClusterSets, Served
from sd.config import Config, ConfigError, IPFamilyPolicy, SetConfig
from sd.feed import Feed, ListWatch, Reader
from sd.kinds import KINDS
from sd.kinds.labels import NOTHING, Allowlist
from sd.kinds.relations import RELATIONS, Relation
from sd.kube.snapshot import read_snapshot
from sd.metrics import Metrics
from sd.renderer import Renderer
from sd.selectors import matcher
from sd.status import Phase
from sd.targets import TargetSet

if TYPE_CHECKING:
    from sd.probe import Prober

log = logging.getLogger("sd.service")

# What drives a feed: ``driver(feed)`` is its informer's ``run``.
Driver = Callable[[Feed], Callable[[], Awaitable[None]]]


def relations(config: Config) -> dict[str, list[Relation]]:
    """The attach_metadata options each set uses, by set name."""
    return {
        name: [RELATIONS[sc.source][option] for option in sc.attach_metadata.options]
        for name, sc in config.targets.items()
    }


def watched_kinds(config: Config) -> set[str]:
    """The kinds whose objects some set attaches metadata of (one directory each)."""
    return {r.kind.name for rs in relations(config).values() for r in rs if r.kind is not None}


def plan(config: Config, sets: dict[str, TargetSet], directories: dict[str, Directory]) -> dict[ListWatch, list[Reader]]:
    """Each distinct list/watch the config needs, with what reads it: sets, and the
    directory of each kind some set attaches metadata of, fed by one unfiltered watch of
    all its objects (which a set of that kind without selectors shares: the node set)."""
    readers: dict[ListWatch, list[Reader]] = {}
    for name, sc in config.targets.items():
        for ns in sc.namespaces or (None,):
            lw = ListWatch(KINDS[sc.source], ns, sc.label_selector, sc.field_selector)
            readers.setdefault(lw, []).append(sets[name])
    for kind_name in sorted(watched_kinds(config)):
        readers.setdefault(ListWatch(KINDS[kind_name]), []).append(directories[kind_name])
    return readers


def annotations_for(readers: list[Reader], sets: dict[str, TargetSet], attaching: dict[str, list[Relation]]) -> Allowlist:
    """The annotations a list/watch's feed must keep: what its sets list, and for a
    directory what the sets attaching its kind list."""
    allow = NOTHING
    for reader in readers:
        if isinstance(reader, TargetSet):
            allow |= reader.annotations
        elif isinstance(reader, Directory):
            for name, options in attaching.items():
                if any(r.kind is reader.kind for r in options):
                    allow |= sets[name].annotations
    return allow


def read_objects(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The objects of a snapshot file by kind name; raises SnapshotError."""
    return read_snapshot(path, {kind.object_kind: kind.name for kind in KINDS.values()},
                         {kind.list_kind: kind.object_kind for kind in KINDS.values()})


def load_snapshot(objects: dict[str, list[dict[str, Any]]], feeds: list[Feed]) -> None:
    """Give each feed the snapshot's objects its list/watch would get from the API server
    (kind, namespace, selectors), as one full list."""
    for feed in feeds:
        lw = feed.list_watch
        match = matcher(lw.label_selector, lw.field_selector, lw.kind.fields)
        feed.list_page(
            obj
            for obj in objects.get(lw.kind.name, ())
            if (lw.namespace is None or (obj.get("metadata") or {}).get("namespace") == lw.namespace) and match(obj)
        )
        feed.list_done(Phase.SNAPSHOT)


class Service:
    def __init__(self, config: Config, metrics: Metrics, snapshot: str | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.snapshot = snapshot
        self.sets: dict[str, Served] = {}
        self.clusters: dict[str, Cluster] = {}  # "" alone without a clusters: map
        self.feeds: dict[tuple[str, ListWatch], Feed] = {}  # by (cluster name, list/watch)
        self._driver: Driver | None = None
        self._tasks: dict[Any, asyncio.Task[None]] = {}
        self._crashed: asyncio.Future[None] | None = None
        self._relist: set[tuple[str, ListWatch]] = set()  # running list/watches to list again
        self._build(config)
        self.renderer = Renderer(self.sets, metrics.rendered)

    # -- building -------------------------------------------------------------------

    def _build(self, config: Config) -> None:
        """Make clusters, sets and feeds match ``config``, keeping what is unchanged."""
        clusters = {}
        for name in config.clusters or [""]:
            settings = config.clusters.get(name)
            old_cluster = self.clusters.get(name)
            clusters[name] = old_cluster if old_cluster is not None and old_cluster.settings == settings else Cluster(name, settings)
        sets: dict[str, Served] = {}
        for name, sc in config.targets.items():
            old = self.sets.get(name)
            if config.clusters:
                sets[name] = old if isinstance(old, ClusterSets) and old.config == sc else ClusterSets(sc)
            else:
                kept = isinstance(old, TargetSet) and old.config == sc and self.clusters.get("") is clusters[""]
                sets[name] = old if kept else TargetSet(sc, self._prober(clusters[""], sc))
        for ts in self.sets.values():
            if ts not in sets.values():
                ts.detach()
        wanted: dict[tuple[str, ListWatch], list[Reader]] = {}
        annotations: dict[tuple[str, ListWatch], Allowlist] = {}
        to_attach: list[tuple[Cluster, dict[str, TargetSet], dict[str, list[Relation]]]] = []
        for cluster in clusters.values():
            parts = self._parts(config, cluster, sets)
            served = replace(config, targets={n: sc for n, sc in config.targets.items() if n in parts})
            # A directory no set attaches would go stale (nothing feeds it): it is dropped, and
            # a set that attaches that kind again later gets a new one, filled from a new watch.
            needed = watched_kinds(served)
            cluster.directories = {k: d for k, d in cluster.directories.items() if k in needed}
            for kind_name in needed:
                cluster.directories.setdefault(kind_name, Directory(KINDS[kind_name]))
            attaching = relations(served)
            for lw, readers in plan(served, parts, cluster.directories).items():
                wanted[(cluster.name, lw)] = readers
                annotations[(cluster.name, lw)] = annotations_for(readers, parts, attaching)
            to_attach.append((cluster, parts, attaching))
        for key, readers in wanted.items():
            feed = self.feeds.get(key)
            if feed is None or self.clusters.get(key[0]) is not clusters[key[0]]:
                # New, or of a cluster now reached another way: a feed and a list of its own
                # (the running one, if any, is stopped).
                self.feeds[key] = Feed(key[1], readers, self.metrics, annotations[key], key[0] or None)
                self._relist.add(key)
            elif not feed.read_by(readers, annotations[key]):
                # Its records were parsed keeping fewer annotations, and the others were
                # never stored: only a new list brings them.
                self._relist.add(key)
        # After the feeds: a set attached to a directory waits for the directory's source.
        for cluster, parts, attaching in to_attach:
            for name, options in attaching.items():
                ts = parts[name]
                if options and not ts.attached:  # a new set (a kept one is attached already)
                    for relation in options:
                        ts.attach(relation, cluster.directories[relation.kind.name] if relation.kind is not None else None)
        for key in [key for key in self.feeds if key not in wanted]:
            del self.feeds[key]
        for name, cluster in self.clusters.items():
            if clusters.get(name) is not cluster and cluster.prober is not None:
                self._stop(("probe", name))
        self.clusters = clusters
        self.sets.clear()
        self.sets.update(sets)
        self.config = config

    def _parts(self, config: Config, cluster: Cluster, sets: dict[str, Served]) -> dict[str, TargetSet]:
        """The sets (parts of sets, with several clusters) that read ``cluster``, by set name."""
        if not config.clusters:
            return sets  # type: ignore[return-value]
        parts = {}
        for name, sc in config.targets.items():
            cs = sets[name]
            assert isinstance(cs, ClusterSets)
            served = sc.clusters or tuple(config.clusters)
            cs.keep_only(set(served))
            if cluster.name in served:
                parts[name] = cs.part(cluster, lambda sc=sc: TargetSet(sc, self._prober(cluster, sc), cluster.name))
        return parts

    def _prober(self, cluster: Cluster, sc: SetConfig) -> Prober | None:
        """The cluster's prober, made on first need (one per cluster: object keys repeat across
        clusters, and results are by key)."""
        if sc.ip_family != IPFamilyPolicy.REACHABLE:
            return None
        if cluster.prober is None:
            # Imported only here: the prober's HTTP client (httpx) is 2.4 MB of a 48 MB idle
            # process, and most configurations probe nothing.
            from sd.probe import Prober

            p = self.config.probe
            cluster.prober = Prober(interval=p.interval_seconds, timeout=p.timeout_seconds, concurrency=p.concurrency)
            cluster.prober.on_change = lambda key: self._probe_changed(cluster, key)
        return cluster.prober

    def _probe_changed(self, cluster: Cluster, key: str) -> None:
        for ts in self.sets.values():
            part = ts.parts.get(cluster.name) if isinstance(ts, ClusterSets) else ts
            if part is not None and part.prober is cluster.prober:
                part.refresh(key)

    # -- running --------------------------------------------------------------------

    def load_snapshot(self, objects: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """(Re)read the snapshot file into every feed (raises SnapshotError, changing nothing)."""
        assert self.snapshot is not None
        load_snapshot(objects if objects is not None else read_objects(self.snapshot), list(self.feeds.values()))

    async def run(self, driver: Driver | None) -> None:
        """Render, drive every feed (``driver(feed)``: its informer's run; None for a
        snapshot) and probe until cancelled; raises if one of them stops by itself (a
        bug: liveness then fails)."""
        self._driver = driver
        self._crashed = asyncio.get_running_loop().create_future()
        self._spawn("render", self.renderer.run(), "renderer")
        self._start_tasks()
        try:
            await self._crashed
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def stopped(self) -> list[str]:
        """The names of the tasks that ended by themselves."""
        return [t.get_name() for t in self._tasks.values() if t.done() and not t.cancelled()]

    def _start_tasks(self) -> None:
        if self._driver is not None:
            for key in self._relist:
                self._stop(key)
            for key, feed in self.feeds.items():
                if key not in self._tasks:
                    self._spawn(key, self._drive(feed), feed.name)
        self._relist.clear()
        for name, cluster in self.clusters.items():
            if cluster.prober is not None and ("probe", name) not in self._tasks:
                self._spawn(("probe", name), self._probe(cluster.prober), f"prober {name}" if name else "prober")

    def _stop(self, key: Any) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    @staticmethod
    async def _probe(prober: Prober) -> None:
        try:
            await prober.run()
        finally:
            await prober.aclose()

    async def _drive(self, feed: Feed) -> None:
        assert self._driver is not None
        try:
            await self._driver(feed)()
        finally:
            feed.stopped()

    def _spawn(self, key: Any, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks[key] = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._crashed is None or self._crashed.done():
            return
        exc = task.exception() or RuntimeError(f"task {task.get_name()} returned")
        log.error("background task stopped task=%s", task.get_name(), exc_info=exc)
        self._crashed.set_exception(exc)

    # -- reloading ------------------------------------------------------------------

    def reload(self, config: Config) -> None:
        """Apply a new, valid config: keep unchanged sets and list/watches, start new ones,
        stop the ones no longer configured. Settings read only at start are reported."""
        old = self.config
        if bool(config.clusters) != bool(old.clusters):
            raise ConfigError(["clusters: a reload cannot switch between one cluster and a clusters: map; restart for that"])
        # With a clusters: map, each cluster's list/watch settings are its own: a cluster
        # whose settings changed is replaced (listed again), the others keep running.
        for section in ("server", "probe") if config.clusters else ("server", "kubernetes", "probe"):
            if getattr(config, section) != getattr(old, section):
                log.warning("config reload: %s settings changed; they take effect after a restart", section)
        kube = config.kubernetes if config.clusters else old.kubernetes
        config = Config(targets=config.targets, kubernetes=kube, server=old.server, probe=old.probe, clusters=config.clusters)
        # The snapshot file may have changed too: read it before changing anything, so
        # that an unreadable one refuses the whole reload.
        objects = read_objects(self.snapshot) if self.snapshot is not None else None
        before_sets, before, clusters = dict(self.sets), dict(self.feeds), set(self.clusters)
        self._build(config)
        for key in before.keys() - self.feeds.keys():
            self._stop(key)
        added = [key for key, feed in self.feeds.items() if before.get(key) is not feed]
        if objects is not None:
            self.load_snapshot(objects)
        self._start_tasks()
        self.renderer.adopt()
        kept = [n for n, ts in self.sets.items() if before_sets.get(n) is ts]
        log.info(
            "config reloaded sets=%s kept=%s sources_added=%s sources_removed=%s%s",
            ",".join(self.sets), ",".join(kept) or "-", len(added), len(before.keys() - self.feeds.keys()),
            f" clusters_added={','.join(sorted(self.clusters.keys() - clusters)) or '-'}"
            f" clusters_removed={','.join(sorted(clusters - self.clusters.keys())) or '-'}" if config.clusters else "",
        )
