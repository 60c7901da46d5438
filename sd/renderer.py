"""Renders dirty target sets in the background, once per burst of changes."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from sd.targets import TargetSet


class Renderer:
    """Renders dirty sets in the background, once per burst of changes."""

    INTERVAL_SECONDS = 0.1

    def __init__(self, sets: dict[str, TargetSet], on_render: Callable[[str, float], None]) -> None:
        self.sets = sets
        self._on_render = on_render  # (set name, seconds) after each render
        self._wake = asyncio.Event()
        self.adopt()

    def adopt(self) -> None:
        """Watch the sets now in ``sets`` (after a config reload), and render any that changed."""
        for ts in self.sets.values():
            ts.on_dirty = self._wake.set
        self._wake.set()

    def render_all(self) -> None:
        for ts in self.sets.values():
            start = time.perf_counter()
            if ts.render():
                self._on_render(ts.name, time.perf_counter() - start)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            self.render_all()
            await self._wake.wait()
            # A change after a quiet period renders at once; during a burst (a relist, a
            # wave of Ready flips) at most every INTERVAL_SECONDS, so a multi-MB body is
            # not rebuilt for every watch read.
            await asyncio.sleep(max(0.0, started + self.INTERVAL_SECONDS - time.monotonic()))
            self._wake.clear()
