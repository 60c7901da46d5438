"""What the hot paths skip, and only when it is safe: watch events that change nothing a
record holds (node heartbeats) are counted, not parsed, while any change to a part a record
is built from is parsed, from those parts alone, into the record the whole object makes;
the cyclic collector is off while lists run."""

from __future__ import annotations

import asyncio
import copy
import gc
from typing import Any, Callable

import orjson
import pytest

from sd.config import default_config
from sd.kinds import nodes, pods
from sd.kinds.labels import Allowlist
from sd.kube.client import api_client, list_call
from sd.kube.informer import Informer
from sd.metrics import Metrics
from sd.service import Service
from sdtest.factories import make_node, make_pod
from sdtest.helpers import FAST_SETTINGS, until
from sdtest.kubeapi import FakeKubeAPI



class CountingParse:
    """Counts a kind's parse calls (it still parses)."""

    def __init__(self, kind: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = kind.parse

        def parse(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(kind, "parse", parse)




def heartbeat(node: dict[str, Any], at: str) -> dict[str, Any]:
    beat = copy.deepcopy(node)
    for condition in beat["status"]["conditions"]:
        condition["lastHeartbeatTime"] = at
    beat["metadata"]["managedFields"] = [{"manager": "kubelet", "time": at}]
    return beat


async def test_a_heartbeat_is_not_parsed_once_its_object_was_seen_in_a_watch_event(tmp_path, monkeypatch):
    with FakeKubeAPI() as api:
        node = make_node("n1", ["192.0.2.1"])
        api.add(node)
        service = Service(default_config(), Metrics())
        feed = next(f for f in service.feeds.values() if f.kind is nodes.KIND)
        client = await api_client(_kubeconfig(api, tmp_path))
        informer = Informer(feed.name, list_call(client, feed.list_watch.api_path), feed.decode, feed, FAST_SETTINGS)
        task = asyncio.create_task(informer.run())
        try:
            await until(lambda: feed.status.synced)
            parses = CountingParse(nodes.KIND, monkeypatch)
            api.modify(heartbeat(node, "2026-12-01T00:00:10Z"))  # parsed: the first of this object in the watch
            version = api.modify(heartbeat(node, "2026-12-01T00:00:20Z"))
            await until(lambda: informer.resource_version == version)
            assert parses.calls == 1
            assert feed.metrics.registry.get_sample_value(
                "kube_http_sd_watch_events_total", {"resource": "nodes", "type": "MODIFIED"}) == 2
            api.modify(heartbeat(make_node("n1", ["192.0.2.1"], ready="False"), "2026-12-01T00:00:30Z"))
            ts = service.sets["kubelet"]
            await until(lambda: "192.0.2.1" not in ts.index.winners)
            assert parses.calls == 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()


def _kubeconfig(api: FakeKubeAPI, tmp_path: Any) -> Any:
    from sd.kube.client import ClusterConfig

    return ClusterConfig("kubeconfig", str(api.write_kubeconfig(tmp_path / "kubeconfig")))


def deliver(feed: Any, obj: dict[str, Any], version: str) -> None:
    """One MODIFIED watch line, as the informer hands it over."""
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = version
    feed.event(feed.decode(orjson.dumps({"type": "MODIFIED", "object": obj})))


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        target = obj
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return change


NODE_CHANGES = {
    "label": _set(("metadata", "labels", "zone"), "b"),
    "annotation": _set(("metadata", "annotations"), {"a": "1"}),
    "uid": _set(("metadata", "uid"), "other"),
    "creationTimestamp": _set(("metadata", "creationTimestamp"), "2026-06-01T00:00:00Z"),
    "deletionTimestamp": _set(("metadata", "deletionTimestamp"), "2026-12-01T00:00:00Z"),
    "Ready": _set(("status", "conditions", -1, "status"), "Unknown"),
    "condition type": _set(("status", "conditions", 0, "type"), "NetworkUnavailable"),
    "address": _set(("status", "addresses", 0, "address"), "192.0.2.9"),
    "kubelet port": _set(("status", "daemonEndpoints", "kubeletEndpoint", "Port"), 10255),
    "providerID": _set(("spec", "providerID"), "aws:///other"),
}


@pytest.mark.parametrize("change", NODE_CHANGES.values(), ids=NODE_CHANGES.keys())
def test_a_change_to_any_part_a_node_record_is_built_from_is_parsed(change):
    service = Service(default_config(), Metrics())
    feed = next(f for f in service.feeds.values() if f.kind is nodes.KIND)
    feed.read_by(feed.sets, Allowlist.of(["a"]))
    node = make_node("n1", ["192.0.2.1"], labels={"zone": "a"})
    feed.relisting("initial")
    feed.list_page([node])
    feed.list_done()
    deliver(feed, heartbeat(node, "2026-12-01T00:00:10Z"), "2")
    before = feed.sets[0].record("n1")
    deliver(feed, heartbeat(node, "2026-12-01T00:00:20Z"), "3")
    assert feed.sets[0].record("n1") is before, "a heartbeat changes nothing"
    changed = heartbeat(node, "2026-12-01T00:00:30Z")
    change(changed)
    deliver(feed, changed, "4")
    assert feed.sets[0].record("n1") == nodes.KIND.parse(changed, previous=before, annotations=feed.annotations) != before


POD_CHANGES = {
    "phase": _set(("status", "phase"), "Succeeded"),
    "podIPs": _set(("status", "podIPs"), [{"ip": "192.0.2.7"}]),
    "hostIP": _set(("status", "hostIP"), "192.0.2.200"),
    "Ready": _set(("status", "conditions", -1, "status"), "False"),
    "container port": _set(("spec", "containers", 0, "ports", 0, "containerPort"), 24232),
    "node": _set(("spec", "nodeName"), "n9"),
    "owner": _set(("metadata", "ownerReferences"), [{"kind": "DaemonSet", "name": "other", "controller": True}]),
}


@pytest.mark.parametrize("change", POD_CHANGES.values(), ids=POD_CHANGES.keys())
def test_a_change_to_any_part_a_pod_record_is_built_from_is_parsed(change):
    service = Service(default_config(), Metrics())
    feed = next(f for f in service.feeds.values() if f.kind is pods.KIND)
    pod = make_pod("f1", ["192.0.2.5", "2001:db8::5"])
    feed.relisting("initial")
    feed.list_page([pod])
    feed.list_done()
    deliver(feed, pod, "2")
    before = feed.sets[0].record("logging/f1")
    assert before is not None
    deliver(feed, pod, "3")
    assert feed.sets[0].record("logging/f1") is before
    changed = copy.deepcopy(pod)
    change(changed)
    deliver(feed, changed, "4")
    assert feed.sets[0].record("logging/f1") == pods.KIND.parse(changed, previous=before) != before


def test_after_a_relist_the_next_event_is_parsed_again():
    """A relist rebuilds records from the list: an event equal to one from before it must
    not be taken as unchanged (the list may have brought another state)."""
    service = Service(default_config(), Metrics())
    feed = next(f for f in service.feeds.values() if f.kind is nodes.KIND)
    node = make_node("n1", ["192.0.2.1"])
    feed.relisting("initial")
    feed.list_page([node])
    feed.list_done()
    deliver(feed, node, "2")
    feed.relisting("expired")
    feed.list_page([make_node("n1", ["192.0.2.1"], ready="False")])
    feed.list_done()
    assert feed.sets[0].record("n1").ready == "False"
    deliver(feed, node, "5")
    assert feed.sets[0].record("n1").ready == "True"


def test_the_cyclic_collector_is_off_while_any_source_lists_and_back_on_after():
    service = Service(default_config(), Metrics())
    node_feed = next(f for f in service.feeds.values() if f.kind is nodes.KIND)
    pod_feed = next(f for f in service.feeds.values() if f.kind is pods.KIND)
    assert gc.isenabled()
    try:
        node_feed.relisting("initial")
        pod_feed.relisting("initial")
        assert not gc.isenabled()
        node_feed.list_page([make_node("n1", ["192.0.2.1"])])
        node_feed.list_done()
        assert not gc.isenabled(), "the pods are still listing"
        pod_feed.failed("connection", "refused")
        assert gc.isenabled()
        pod_feed.relisting("retry")
        pod_feed.list_fallback("rejected_422", "no WatchList")
        assert gc.isenabled()
    finally:
        gc.enable()


def _objects() -> list[dict[str, Any]]:
    """Real-shaped objects of both kinds, and each with parts of the wrong shape."""
    from pathlib import Path

    from bench import workload as W
    from sd.service import read_objects

    example = read_objects(Path(__file__).parent.parent / "examples" / "cluster.json")
    base = [*example["nodes"], *example["pods"], *W.nodes(3), *W.pods(3),
            make_node("n1", ["192.0.2.1", "2001:db8::1"], external=["203.0.113.9"], deleting=True, ready="Unknown"),
            make_pod("f1", ["192.0.2.5", "2001:db8::5"], phase="Pending", ready=None, deleting=True)]
    broken = []
    for obj in base:
        for path, value in [(("metadata", "labels"), {"a": 1}), (("metadata", "creationTimestamp"), "yesterday"),
                            (("metadata", "annotations"), "x"), (("metadata", "uid"), None),
                            (("status", "addresses"), [{"type": "InternalIP", "address": "not-an-ip"}]),
                            (("status", "podIPs"), [{"ip": 5}]), (("status", "phase"), 7),
                            (("spec",), None), (("status", "containerStatuses"), "x"), (("metadata", "ownerReferences"), [1])]:
            changed = copy.deepcopy(obj)
            _set(path, value)(changed)
            broken.append(changed)
    return base + broken


@pytest.mark.parametrize("kind", [nodes.KIND, pods.KIND], ids=["nodes", "pods"])
def test_the_watched_parts_make_the_record_and_the_reports_the_whole_object_makes(kind):
    from sd.kube.events import Decoder, Malformed

    decode = Decoder(kind.watched, kind.object_key)
    objects = [o for o in _objects() if o.get("kind", kind.object_kind) == kind.object_kind]
    compared = 0
    for obj in objects:
        line = orjson.dumps({"type": "MODIFIED", "object": obj})
        try:
            parts = decode(line).whole()
        except Malformed:  # a part of the wrong JSON type: the line is dropped, whole or not
            continue
        whole_reports: list[tuple[str, str]] = []
        part_reports: list[tuple[str, str]] = []
        whole = kind.parse(orjson.loads(line)["object"], lambda r, d: whole_reports.append((r, d)), None, Allowlist.of(["*"]))
        part = kind.parse(parts, lambda r, d: part_reports.append((r, d)), None, Allowlist.of(["*"]))
        assert part == whole
        assert [r for r, _ in part_reports] == [r for r, _ in whole_reports]
        compared += 1
    assert compared >= len(objects) // 2


async def test_a_source_dropped_by_a_reload_while_listing_turns_the_collector_back_on():
    """Its informer is cancelled mid-list and never reports the list's end."""
    import dataclasses

    config = default_config()
    service = Service(config, Metrics())
    started: list[Any] = []

    def driver(feed: Any) -> Callable[[], Any]:
        async def lists_forever() -> None:
            feed.relisting("initial")
            started.append(feed)
            await asyncio.Event().wait()
        return lists_forever

    run = asyncio.create_task(service.run(driver))
    try:
        await until(lambda: len(started) == len(service.feeds))
        assert not gc.isenabled()
        service.reload(dataclasses.replace(config, targets={}))
        await until(gc.isenabled)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        gc.enable()
