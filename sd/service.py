"""The running service: target sets, the feeds that fill them and what drives the feeds
(informers, or a snapshot file), built from a config and rebuilt by ``reload``.

A reload keeps every set whose settings did not change and every source still needed,
with their state: an unchanged set keeps serving the same bytes, and only new or
changed sources list the API server. The HTTP app reads ``sets``, which is updated in
place.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from sd.config import Config, IPFamilyPolicy
from sd.feed import Feed, Source, annotations_for, attach, load_snapshot, plan_sources, read_objects
from sd.kinds.nodes import Directory
from sd.metrics import Metrics
from sd.targets import TargetSet

if TYPE_CHECKING:
    from sd.probe import Prober

log = logging.getLogger("sd.service")

class Service:
    def __init__(self, config: Config, metrics: Metrics, snapshot: str | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.snapshot = snapshot
        self.sets: dict[str, TargetSet] = {}
        self.feeds: dict[Source, Feed] = {}
        self.prober: Prober | None = None
        self.nodes = Directory()  # node metadata for sets with attach_metadata: {node: true}
        self._driver: Callable[[Feed], Callable[[], Any]] | None = None
        self._tasks: dict[Source, asyncio.Task[None]] = {}
        self._crashed: asyncio.Future[None] | None = None
        self._build(config)

    # -- building -------------------------------------------------------------------

    def _build(self, config: Config) -> None:
        """Make sets and feeds match ``config``, keeping what is unchanged."""
        if any(sc.ip_family == IPFamilyPolicy.REACHABLE for sc in config.targets.values()) and self.prober is None:
            # Imported only here: the prober's HTTP client (httpx) is 2.4 MB of a 48 MB idle
            # process, and most configurations probe nothing.
            from sd.probe import Prober

            p = config.probe
            self.prober = Prober(interval=p.interval_seconds, timeout=p.timeout_seconds, concurrency=p.concurrency)
            self.prober.on_change = self._probe_changed
        sets = {}
        for name, sc in config.targets.items():
            old = self.sets.get(name)
            sets[name] = old if old is not None and old.config == sc else TargetSet(sc, self.prober)
        wanted = plan_sources(config, sets, self.nodes)
        for source, readers in wanted.items():
            feed = self.feeds.get(source)
            annotations = annotations_for(source, readers, sets)
            if feed is None:
                self.feeds[source] = Feed(source, readers, self.metrics, annotations)
            else:
                feed.read_by(readers, annotations)
        self.nodes.listeners = [ts for ts in self.nodes.listeners if ts in sets.values()]
        attach(config, sets, self.nodes)
        for source in [s for s in self.feeds if s not in wanted]:
            del self.feeds[source]
        self.sets.clear()
        self.sets.update(sets)
        self.config = config

    def _probe_changed(self, key: str) -> None:
        for ts in self.sets.values():
            if ts.prober is not None:
                ts.refresh(key)

    # -- running --------------------------------------------------------------------

    def load_snapshot(self, objects: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """(Re)read the snapshot file into every feed (raises SnapshotError, changing nothing)."""
        assert self.snapshot is not None
        load_snapshot(objects if objects is not None else read_objects(self.snapshot), list(self.feeds.values()))

    async def run(self, driver: Callable[[Feed], Callable[[], Any]] | None) -> None:
        """Drive every feed (``driver(feed)`` → its informer's run) and the prober until
        cancelled; raises if one of them stops by itself (a bug: liveness then fails)."""
        self._driver = driver
        self._crashed = asyncio.get_running_loop().create_future()
        self._start_tasks()
        try:
            await self._crashed
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            if self.prober is not None:
                await self.prober.aclose()

    def _start_tasks(self) -> None:
        if self._driver is not None:
            for source, feed in self.feeds.items():
                if source not in self._tasks:
                    self._spawn(source, self._drive(feed), str(source))
        if self.prober is not None and "probe" not in self._tasks:
            self._spawn("probe", self.prober.run(), "prober")

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
        self._crashed.set_exception(exc)

    # -- reloading ------------------------------------------------------------------

    def reload(self, config: Config) -> None:
        """Apply a new, valid config: keep unchanged sets and sources, start new ones,
        stop the ones no longer configured. Settings read only at start are reported."""
        old = self.config
        for section in ("server", "kubernetes", "probe"):
            if getattr(config, section) != getattr(old, section):
                log.warning("config reload: %s settings changed; they take effect after a restart", section)
        config = Config(targets=config.targets, kubernetes=old.kubernetes, server=old.server, probe=old.probe)
        # The snapshot file may have changed too: read it before changing anything, so
        # that an unreadable one refuses the whole reload.
        objects = read_objects(self.snapshot) if self.snapshot is not None else None
        before_sets, before_sources = dict(self.sets), set(self.feeds)
        self._build(config)
        for source in before_sources - set(self.feeds):
            task = self._tasks.pop(source, None)
            if task is not None:
                task.cancel()
        added = [s for s in self.feeds if s not in before_sources]
        if objects is not None:
            self.load_snapshot(objects)
        self._start_tasks()
        kept = [n for n, ts in self.sets.items() if before_sets.get(n) is ts]
        log.info(
            "config reloaded sets=%s kept=%s sources_added=%s sources_removed=%s",
            ",".join(self.sets), ",".join(kept) or "-", len(added), len(before_sources - set(self.feeds)),
        )
