"""The informer's own life cycle, in the test process against the API double: time comes
from the injected clock, backoff sleeps included."""

from __future__ import annotations

import asyncio
import random

from sd.config import default_config
from sd.kinds import nodes
from sd.kube.client import ClusterConfig, api_client, list_call
from sd.kube.informer import Informer
from sd.metrics import Metrics
from sd.service import Service
from sdtest.factories import make_node
from sdtest.helpers import FAST_SETTINGS, until
from sdtest.kubeapi import FakeKubeAPI


class StepClock:
    """Time that passes only when the informer waits: its sleeps are recorded, not slept."""

    def __init__(self) -> None:
        self.time = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds
        await asyncio.sleep(0)


async def test_the_injected_clock_drives_the_backoff_between_failed_requests(tmp_path):
    with FakeKubeAPI() as api:
        api.add(make_node("n1", ["192.0.2.1"]))
        api.fail_next(4, 500)
        service = Service(default_config(), Metrics())
        feed = next(f for f in service.feeds.values() if f.kind is nodes.KIND)
        client = await api_client(ClusterConfig("kubeconfig", str(api.write_kubeconfig(tmp_path / "kubeconfig"))))
        clock = StepClock()
        call = list_call(client, feed.list_watch.api_path)
        informer = Informer(feed.name, call, feed.decode, feed, FAST_SETTINGS, random.Random(7), clock)
        task = asyncio.create_task(informer.run())
        try:
            await until(lambda: feed.status.synced, what="synced after the failures")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
    assert len(clock.sleeps) == 4, clock.sleeps
    for i, delay in enumerate(clock.sleeps):
        base = min(FAST_SETTINGS.backoff_initial_seconds * 2**i, FAST_SETTINGS.backoff_max_seconds)
        assert base <= delay <= min(base * 1.5, FAST_SETTINGS.backoff_max_seconds), (i, clock.sleeps)
