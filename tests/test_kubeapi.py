"""Tests of the fake Kubernetes API (sdtest/kubeapi.py) through the real kubernetes-asyncio
client, called the way production code calls it (`_preload_content=False`, raw dicts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api

from sdtest.kubeapi import FakeKubeAPI

Raw = aiohttp.ClientResponse


def node(name: str, ready: str = "True", **labels: str) -> dict[str, Any]:
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def pod(name: str, ns: str = "default", node_name: str = "", phase: str = "Running",
        **labels: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node_name},
        "status": {"phase": phase},
    }


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as server:
        yield server


@pytest.fixture
async def v1(api: FakeKubeAPI) -> AsyncIterator[CoreV1Api]:
    async with ApiClient(Configuration(host=api.url)) as client:
        yield CoreV1Api(client)


class RawCalls:
    """Calls a client method with `_preload_content=False`, as the production code does, and
    closes every response at teardown (an unreleased aiohttp connection warns when collected)."""

    def __init__(self) -> None:
        self.opened: list[Raw] = []

    async def __call__(self, method: Callable[..., Awaitable[Any]], *args: Any,
                       **kwargs: Any) -> Raw:
        # The client's annotations promise models; _preload_content=False returns the response.
        resp: Raw = await method(*args, _preload_content=False, **kwargs)
        self.opened.append(resp)
        return resp

    def close_all(self) -> None:
        """Close what was opened; call before closing an ApiClient made in the test."""
        for resp in self.opened:
            resp.close()
        self.opened.clear()


@pytest.fixture
def raw() -> Iterator[RawCalls]:
    calls = RawCalls()
    yield calls
    calls.close_all()


async def body(resp: Raw) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(await resp.read())
    return doc


async def next_event(resp: Raw, timeout: float = 5) -> dict[str, Any]:
    """The next watch event; fails (rather than hangs) if none arrives in time."""
    async with asyncio.timeout(timeout):
        line = await resp.content.readline()
    assert line, "watch stream ended"
    event: dict[str, Any] = orjson.loads(line)
    return event


async def events(resp: Raw, n: int) -> list[tuple[str, str, str]]:
    """(type, name, resourceVersion) of the next `n` events."""
    out = []
    for _ in range(n):
        ev = await next_event(resp)
        md = ev["object"]["metadata"]
        out.append((ev["type"], md.get("name", ""), md["resourceVersion"]))
    return out


async def assert_ends(resp: Raw, timeout: float = 5) -> None:
    """The stream ends cleanly (EOF, no transfer error) within `timeout`."""
    async with asyncio.timeout(timeout):
        rest = await resp.content.read()
    assert rest == b""


async def assert_aborted(resp: Raw, timeout: float = 5) -> None:
    """The stream is cut without a chunked terminator, like a crashed server."""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with asyncio.timeout(timeout):
            while True:
                if not await resp.content.readline():
                    break


# --------------------------------------------------------------------------- lists


async def test_pagination_is_a_consistent_snapshot(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    api.add_many([node(f"n{i}") for i in (4, 2, 6, 1, 3, 5, 0)])
    first = await body(await raw(v1.list_node, limit=3))
    list_rv = first["metadata"]["resourceVersion"]
    assert list_rv == api.resource_version
    assert first["kind"] == "NodeList" and first["metadata"]["remainingItemCount"] == 4
    assert all("kind" not in item and "apiVersion" not in item for item in first["items"])

    # Changes after the first page must not show up in later pages.
    api.add(node("n00"))
    api.delete("Node", "n6")
    pages, token = [first], first["metadata"]["continue"]
    while token:
        page = await body(await raw(v1.list_node, limit=3, _continue=token))
        assert page["metadata"]["resourceVersion"] == list_rv
        pages.append(page)
        token = page["metadata"].get("continue")
    names = [i["metadata"]["name"] for p in pages for i in p["items"]]
    assert names == [f"n{i}" for i in range(7)]
    assert "remainingItemCount" not in pages[-1]["metadata"]

    full = await body(await raw(v1.list_node))
    assert [i["metadata"]["name"] for i in full["items"]][:2] == ["n0", "n00"]
    assert "continue" not in full["metadata"]


async def test_objects_get_server_fields_and_modify_keeps_them(api: FakeKubeAPI) -> None:
    rv = api.add(node("a"))
    stored = api.get("Node", "a")
    md = stored["metadata"]
    assert stored["kind"] == "Node" and md["resourceVersion"] == rv
    assert md["uid"] and md["creationTimestamp"].endswith("Z")
    rv2 = api.modify(node("a", ready="False"))
    assert int(rv2) == int(rv) + 1
    after = api.get("Node", "a")["metadata"]
    assert (after["uid"], after["creationTimestamp"]) == (md["uid"], md["creationTimestamp"])
    with pytest.raises(KeyError):
        api.add(node("a"))
    with pytest.raises(KeyError):
        api.modify(node("missing"))


# --------------------------------------------------------------------------- watches


async def test_watch_from_list_rv_sees_later_changes_in_order(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    api.add_many([node("a"), node("b")])
    listed = await body(await raw(v1.list_node))
    rv = listed["metadata"]["resourceVersion"]
    # Changes between list and watch come from history; later ones live.
    rv_c = api.add(node("c"))
    watch = await raw(v1.list_node, watch=True, resource_version=rv, allow_watch_bookmarks=True)
    assert watch.status == 200 and watch.headers["Content-Type"] == "application/json"
    await api.await_watches(1)
    rv_mod = api.modify(node("a", ready="False"))
    rv_del = api.delete("Node", "b")
    assert await events(watch, 3) == [
        ("ADDED", "c", rv_c), ("MODIFIED", "a", rv_mod), ("DELETED", "b", rv_del)]


async def test_watch_events_carry_kind_and_deleted_last_state(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    rv = api.add(pod("p", ns="ns1", phase="Pending"))
    watch = await raw(v1.list_namespaced_pod, "ns1", watch=True, resource_version=rv)
    api.modify(pod("p", ns="ns1", phase="Running"))
    api.delete("Pod", "p", "ns1")
    modified, deleted = await next_event(watch), await next_event(watch)
    assert modified["object"]["kind"] == "Pod" and modified["object"]["apiVersion"] == "v1"
    assert deleted["type"] == "DELETED"
    assert deleted["object"]["status"]["phase"] == "Running"
    assert int(deleted["object"]["metadata"]["resourceVersion"]) == \
        int(modified["object"]["metadata"]["resourceVersion"]) + 1


async def test_watch_without_rv_gets_synthetic_added(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    api.add_many([node("b"), node("a")])
    for rv in (None, "0"):
        kwargs = {"resource_version": rv} if rv else {}
        watch = await raw(v1.list_node, watch=True, **kwargs)
        got = await events(watch, 2)
        assert [(t, n) for t, n, _ in got] == [("ADDED", "a"), ("ADDED", "b")]
        watch.close()
    watch = await raw(v1.list_node, watch=True)
    await next_event(watch)
    await next_event(watch)
    rv = api.add(node("c"))
    assert await events(watch, 1) == [("ADDED", "c", rv)]


async def test_send_initial_events_ends_with_marked_bookmark(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    rv = api.add(node("a"))
    watch = await raw(v1.list_node, watch=True, send_initial_events=True,
                      allow_watch_bookmarks=True, resource_version_match="NotOlderThan")
    assert (await next_event(watch))["type"] == "ADDED"
    done = await next_event(watch)
    assert done["type"] == "BOOKMARK"
    assert done["object"]["metadata"]["resourceVersion"] == rv
    assert done["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_compaction_expires_watch_and_continue(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    api.add_many([node(f"n{i}") for i in range(4)])
    page = await body(await raw(v1.list_node, limit=2))
    old_rv = page["metadata"]["resourceVersion"]
    api.modify(node("n0", ready="False"))
    api.compact()

    watch = await raw(v1.list_node, watch=True, resource_version=old_rv)
    assert watch.status == 200
    error = await next_event(watch)
    assert error["type"] == "ERROR"
    assert error["object"]["code"] == 410 and error["object"]["reason"] == "Expired"
    assert error["object"]["message"].startswith(f"too old resource version: {old_rv} (")
    await assert_ends(watch)

    resp = await raw(v1.list_node, limit=2, _continue=page["metadata"]["continue"])
    status = await body(resp)
    assert resp.status == 410 and status["kind"] == "Status" and status["reason"] == "Expired"
    # Like etcd, the 410 carries a token that continues inconsistently from the same key.
    token = status["metadata"]["continue"]
    rest = await body(await raw(v1.list_node, limit=5, _continue=token))
    assert [i["metadata"]["name"] for i in rest["items"]] == ["n2", "n3"]

    # Watching from the current rv still works after compaction.
    watch = await raw(v1.list_node, watch=True, resource_version=api.resource_version)
    rv = api.delete("Node", "n3")
    assert await events(watch, 1) == [("DELETED", "n3", rv)]


async def test_history_window_bounds_watch_resume(raw: RawCalls) -> None:
    with FakeKubeAPI(history_limit=4) as api:
        first = api.add(node("n0"))
        rvs = api.add_many([node(f"n{i}") for i in range(1, 10)])
        async with ApiClient(Configuration(host=api.url)) as client:
            v1 = CoreV1Api(client)
            watch = await raw(v1.list_node, watch=True, resource_version=first)
            assert (await next_event(watch))["object"]["code"] == 410
            watch = await raw(v1.list_node, watch=True, resource_version=rvs[-3])
            assert await events(watch, 2) == [
                ("ADDED", "n8", rvs[-2]), ("ADDED", "n9", rvs[-1])]
            raw.close_all()


async def test_bookmark_only_to_watches_that_asked(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    rv = api.add(node("a"))
    with_bm = await raw(v1.list_node, watch=True, resource_version=rv, allow_watch_bookmarks=True)
    without = await raw(v1.list_node, watch=True, resource_version=rv)
    await api.await_watches(2)
    api.bookmark()
    ev = await next_event(with_bm)
    assert ev == {"type": "BOOKMARK", "object": {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"resourceVersion": rv, "creationTimestamp": None}}}
    rv2 = api.modify(node("a", ready="False"))
    assert await events(without, 1) == [("MODIFIED", "a", rv2)]  # no bookmark before it
    assert await events(with_bm, 1) == [("MODIFIED", "a", rv2)]


async def test_timeout_seconds_closes_cleanly(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    watch = await raw(v1.list_node, watch=True, timeout_seconds=0.3)
    await assert_ends(watch)
    assert api.open_watches() == 0


async def test_client_closing_a_watch_deregisters_it(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    watch = await raw(v1.list_node, watch=True)
    await api.await_watches(1)
    watch.close()
    async with asyncio.timeout(5):
        while api.open_watches():
            await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- selectors


async def test_label_selectors_filter_lists(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    api.add_many([
        node("a", role="web", tier="1"),
        node("b", role="db"),
        node("c", role="cache", tier="2"),
        node("d"),
    ])

    async def names(selector: str) -> list[str]:
        resp = await raw(v1.list_node, label_selector=selector)
        return [i["metadata"]["name"] for i in (await body(resp))["items"]]

    assert await names("role=web") == ["a"]
    assert await names("role==db") == ["b"]
    assert await names("role!=web") == ["b", "c", "d"]
    assert await names("role in (web, db)") == ["a", "b"]
    assert await names("role notin (web)") == ["b", "c", "d"]
    assert await names("tier") == ["a", "c"]
    assert await names("!tier") == ["b", "d"]
    assert await names("role in (web,cache),tier=2") == ["c"]
    assert await names("") == ["a", "b", "c", "d"]
    resp = await raw(v1.list_node, label_selector="role in web")
    assert resp.status == 400 and (await body(resp))["reason"] == "BadRequest"


async def test_field_selectors_and_namespaces(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    api.add_many([
        pod("p1", ns="a", node_name="n1"),
        pod("p2", ns="a", node_name="n2", phase="Pending"),
        pod("p3", ns="b", node_name="n1"),
    ])

    async def names(selector: str) -> list[str]:
        data = await body(await raw(v1.list_pod_for_all_namespaces, field_selector=selector))
        return [f'{i["metadata"]["namespace"]}/{i["metadata"]["name"]}' for i in data["items"]]

    assert await names("spec.nodeName=n1") == ["a/p1", "b/p3"]
    assert await names("status.phase!=Running") == ["a/p2"]
    assert await names("metadata.namespace==b,metadata.name=p3") == ["b/p3"]
    assert await names("") == ["a/p1", "a/p2", "b/p3"]
    in_a = await body(await raw(v1.list_namespaced_pod, "a"))
    assert [i["metadata"]["name"] for i in in_a["items"]] == ["p1", "p2"]
    resp = await raw(v1.list_node, field_selector="spec.nodeName=n1")
    assert resp.status == 400  # not a Node field, as on a real apiserver


async def test_selector_transitions_on_watch(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    api.add_many([pod("f", app="fluentd"), pod("x", app="other")])
    watch = await raw(v1.list_pod_for_all_namespaces, watch=True,
                      label_selector="app=fluentd", field_selector="status.phase=Running")
    rv_f = api.get("Pod", "f")["metadata"]["resourceVersion"]
    assert await events(watch, 1) == [("ADDED", "f", rv_f)]
    api.modify(pod("x", app="other", phase="Failed"))  # never matches: not sent
    rv_out = api.modify(pod("f", app="fluentd", phase="Succeeded"))
    rv_in = api.modify(pod("x", app="fluentd"))
    rv_mod = api.modify(pod("x", app="fluentd", extra="1"))
    api.delete("Pod", "f")  # no longer matching: not sent
    rv_del = api.delete("Pod", "x")
    got = await events(watch, 4)
    assert got == [("DELETED", "f", rv_out), ("ADDED", "x", rv_in),
                   ("MODIFIED", "x", rv_mod), ("DELETED", "x", rv_del)]


# --------------------------------------------------------------------------- faults


async def test_fail_next_500_and_429(api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    api.fail_next(1)
    resp = await raw(v1.list_node)
    status = await body(resp)
    assert resp.status == 500 and status["kind"] == "Status" and status["code"] == 500

    api.fail_next(2, status=429, retry_after=3)
    for _ in range(2):
        resp = await raw(v1.list_node)
        assert resp.status == 429 and resp.headers["Retry-After"] == "3"
        assert (await body(resp))["reason"] == "TooManyRequests"
    assert (await raw(v1.list_node)).status == 200

    api.fail_next(1, status=503, path_contains="watch=true")
    assert (await raw(v1.list_node)).status == 200
    resp = await raw(v1.list_node, watch=True)
    assert resp.status == 503
    assert (await raw(v1.list_node, watch=True)).status == 200


async def test_drop_streams_aborts_watches_but_server_stays_up(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    rv = api.add(node("a"))
    watches = [await raw(v1.list_node, watch=True, resource_version=rv) for _ in range(2)]
    await asyncio.to_thread(api.wait_for_watches, 2)  # the blocking variant, off-loop
    api.drop_streams()
    assert api.open_watches() == 0
    for watch in watches:
        await assert_aborted(watch)
    assert (await raw(v1.list_node)).status == 200


async def test_restart_ends_streams_and_keeps_port_and_state(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    rv = api.add(node("a"))
    url = api.url
    watch = await raw(v1.list_node, watch=True, resource_version=rv)
    await api.await_watches(1)

    restarting = asyncio.create_task(api.restart_async(down_seconds=0.3))
    await assert_aborted(watch)
    with pytest.raises(aiohttp.ClientConnectionError):
        await raw(v1.list_node)  # down
    await restarting
    assert api.url == url
    listed = await body(await raw(v1.list_node))
    assert listed["metadata"]["resourceVersion"] == rv

    # A watch resumed from the old rv sees what happened meanwhile.
    rv2 = api.modify(node("a", ready="False"))
    api.restart()
    watch = await raw(v1.list_node, watch=True, resource_version=rv)
    assert await events(watch, 1) == [("MODIFIED", "a", rv2)]


async def test_send_malformed_writes_the_raw_line(
        api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    rv = api.add(node("a"))
    watch = await raw(v1.list_node, watch=True, resource_version=rv)
    await api.await_watches(1)
    api.send_malformed()
    api.send_malformed(b"garbage\n")
    async with asyncio.timeout(5):
        assert await watch.content.readline() == b'{"type": "MODIFIED", "object": {not json\n'
        assert await watch.content.readline() == b"garbage\n"


async def test_request_log(api: FakeKubeAPI, v1: CoreV1Api, raw: RawCalls) -> None:
    await raw(v1.list_node, limit=5, label_selector="a=b")
    watch = await raw(v1.list_namespaced_pod, "ns", watch=True)
    watch.close()
    agent = api.requests[0]["user_agent"]
    assert agent.startswith("OpenAPI-Generator/")  # kubernetes-asyncio's own, unset here
    assert api.requests == [
        {"method": "GET", "path": "/api/v1/nodes",
         "query": {"labelSelector": "a=b", "limit": "5"}, "watch": False, "user_agent": agent},
        {"method": "GET", "path": "/api/v1/namespaces/ns/pods",
         "query": {"watch": "True"}, "watch": True, "user_agent": agent},
    ]


async def test_discovery_version_and_404(api: FakeKubeAPI) -> None:
    async with aiohttp.ClientSession(api.url) as http:
        async with http.get("/version") as resp:
            assert (await resp.json())["gitVersion"].startswith("v1.")
        async with http.get("/api") as resp:
            assert (await resp.json())["versions"] == ["v1"]
        async with http.get("/api/v1") as resp:
            names = {r["name"] for r in (await resp.json())["resources"]}
            assert names == {"nodes", "pods", "namespaces"}
        async with http.get("/api/v1/services") as resp:
            assert resp.status == 404 and (await resp.json())["reason"] == "NotFound"
        async with http.get("/api/v1/namespaces/default/replicasets") as resp:
            assert resp.status == 404, "ReplicaSets are served under /apis/apps/v1 only"
        async with http.get("/apis/apps/v1/namespaces/default/replicasets") as resp:
            assert resp.status == 200 and (await resp.json())["items"] == []


# --------------------------------------------------------------------------- auth and TLS


async def test_tokens_and_rotation(tmp_path: Path, raw: RawCalls) -> None:
    with FakeKubeAPI(tokens={"old"}) as api:
        cfg = Configuration(host=api.url)
        async with ApiClient(cfg) as client:
            v1 = CoreV1Api(client)
            resp = await raw(v1.list_node)
            assert resp.status == 401 and (await body(resp))["reason"] == "Unauthorized"
            raw.close_all()

        cfg = Configuration()
        await kube_config.load_kube_config(
            config_file=api.write_kubeconfig(tmp_path / "kubeconfig", token="old"),
            client_configuration=cfg)
        async with ApiClient(cfg) as client:
            v1 = CoreV1Api(client)
            assert (await raw(v1.list_node)).status == 200
            api.tokens = {"new"}
            assert (await raw(v1.list_node)).status == 401
            cfg.api_key["BearerToken"] = "Bearer new"
            assert (await raw(v1.list_node)).status == 200
            raw.close_all()


async def test_tls_with_trusted_ca(tmp_path: Path, raw: RawCalls) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    with FakeKubeAPI(tls=(str(pem), str(pem))) as api:
        api.add(node("a"))
        assert api.url.startswith("https://127.0.0.1:")
        async with ApiClient(Configuration(host=api.url, ssl_ca_cert=str(ca_file))) as client:
            resp = await raw(CoreV1Api(client).list_node)
            assert [i["metadata"]["name"] for i in (await body(resp))["items"]] == ["a"]
            raw.close_all()

        for ca_arg in (str(ca_file), None):  # trusted CA, or insecure-skip-tls-verify
            cfg = Configuration()
            await kube_config.load_kube_config(
                config_file=api.write_kubeconfig(tmp_path / "kc", ca_file=ca_arg),
                client_configuration=cfg)
            async with ApiClient(cfg) as client:
                v1 = CoreV1Api(client)
                watch = await raw(v1.list_node, watch=True)
                assert (await next_event(watch))["object"]["metadata"]["name"] == "a"
                api.restart()  # aborting TLS streams works too
                await assert_aborted(watch)
                raw.close_all()
