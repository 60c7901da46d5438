"""Reachability probes: the probe client's decisions (respx), scheduling, and real
listeners on 127.0.0.1, ::1 and both."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import time
from typing import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import respx

from sd.probe import (
    IPV4_REFUSED_ADVICE,
    IPV6_REFUSED_ADVICE,
    Prober,
    ProbeResult,
    advice,
)
from sdtest.helpers import until

V4 = "10.0.0.5"
V6 = "fd00::5"
PORT = 24231


def endpoints(*ips: str, port: int = PORT, path: str = "/metrics", scheme: str = "http") -> list[tuple[str, int, str, str]]:
    return [(ip, port, path, scheme) for ip in ips]


def url(ip: str, port: int = PORT, path: str = "/metrics") -> str:
    return f"http://{f'[{ip}]' if ':' in ip else ip}:{port}{path}"




@contextlib.asynccontextmanager
async def running(prober: Prober) -> AsyncIterator[Prober]:
    task = asyncio.create_task(prober.run())
    try:
        yield prober
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await prober.aclose()


def mocked(router: respx.MockRouter, **kwargs) -> Prober:
    return Prober(transport=httpx.MockTransport(router.async_handler), **kwargs)


class Changes(list):
    """on_change recorder: the keys, in call order."""

    def __call__(self, key: str) -> None:
        self.append(key)


async def probe_once(router: respx.MockRouter, ip: str = V4, **kwargs) -> ProbeResult:
    async with running(mocked(router, **kwargs)) as prober:
        prober.watch("ns/pod", endpoints(ip))
        await until(lambda: prober.results("ns/pod"), what="a result")
        return prober.results("ns/pod")[ip]


# How httpx words a refusal on some backends; the anyio backend's real exception chain
# (ConnectError <- ... <- ConnectionRefusedError) is covered by the real-listener tests.
def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused")


def raising(exc: Exception) -> httpx.MockTransport:
    """A transport that fails every request with ``exc``, its cause chain intact
    (respx replaces an exception's __cause__ with its own SideEffectError)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


def chained(exc: Exception, cause: BaseException) -> Exception:
    exc.__cause__ = cause
    return exc


# --- decisions of the probe client -------------------------------------------------


async def test_http_200_is_ok():
    router = respx.MockRouter()
    route = router.get(url(V4)).respond(200, text="fluentd_output_status_num_errors 0\n")
    result = await probe_once(router)
    assert (result.ok, result.detail) == (True, "HTTP 200")
    assert route.calls.last.request.headers["user-agent"] == "kube-http-sd-probe"


async def test_ipv6_url_is_bracketed_and_path_and_scheme_are_used():
    router = respx.MockRouter()
    route = router.get("https://[fd00::5]:9000/custom/metrics").respond(204)
    async with running(mocked(router)) as prober:
        prober.watch("ns/pod", endpoints(V6, port=9000, path="/custom/metrics", scheme="https"))
        await until(lambda: prober.results("ns/pod"))
        assert prober.results("ns/pod")[V6].detail == "HTTP 204"
    assert route.call_count == 1


@pytest.mark.parametrize("status", [404, 500, 301])
async def test_non_2xx_is_not_ok_and_says_the_status(status):
    router = respx.MockRouter()
    router.get(url(V4)).respond(status, headers={"Location": "http://elsewhere/"} if status == 301 else {})
    result = await probe_once(router)
    assert (result.ok, result.detail) == (False, f"HTTP {status}")


async def test_connect_error_saying_refused_is_connection_refused():
    router = respx.MockRouter()
    router.get(url(V4)).mock(side_effect=refused)
    result = await probe_once(router)
    assert (result.ok, result.detail) == (False, "connection refused")


async def probe_failing(exc: Exception, ip: str = V4) -> ProbeResult:
    async with running(Prober(transport=raising(exc))) as prober:
        prober.watch("ns/pod", endpoints(ip))
        await until(lambda: prober.results("ns/pod"))
        return prober.results("ns/pod")[ip]


@pytest.mark.parametrize(
    "cause, detail",
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "connection refused"),
        # A family without a route is not a Fluentd bind problem: advice() must not blame the bind.
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "network unreachable"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "host unreachable"),
        (OSError(errno.EACCES, "Permission denied"), "connect error"),
    ],
)
async def test_connect_errors_are_classified_by_their_cause(cause, detail):
    # As httpx raises them: ConnectError <- httpcore.ConnectError <- OSError("All connection attempts failed") <- cause.
    exc = chained(httpx.ConnectError("All connection attempts failed"), chained(OSError("All connection attempts failed"), cause))
    result = await probe_failing(exc, ip=V6)
    assert (result.ok, result.detail) == (False, detail)


async def test_httpx_timeout_is_timeout_after_the_configured_seconds():
    router = respx.MockRouter()
    router.get(url(V4)).mock(side_effect=httpx.ConnectTimeout("timed out"))
    result = await probe_once(router)
    assert (result.ok, result.detail) == (False, "timeout after 2.0s")


async def test_a_hanging_endpoint_is_cut_off_at_the_timeout():
    async def hang(request):
        await asyncio.Event().wait()

    router = respx.MockRouter()
    router.get(url(V4)).mock(side_effect=hang)
    started = time.monotonic()
    result = await probe_once(router, timeout=0.05)
    assert (result.ok, result.detail) == (False, "timeout after 0.05s")
    assert time.monotonic() - started < 1.0


async def test_tls_failure_is_a_tls_error():
    cause = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    cause.reason = "WRONG_VERSION_NUMBER"
    result = await probe_failing(chained(httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER]"), cause))
    assert (result.ok, result.detail) == (False, "TLS error (wrong version number)")


async def test_other_failures_name_the_exception_class():
    router = respx.MockRouter()
    router.get(url(V4)).mock(side_effect=httpx.RemoteProtocolError("peer closed connection"))
    result = await probe_once(router)
    assert (result.ok, result.detail) == (False, "RemoteProtocolError")


async def test_checked_at_comes_from_the_injected_clock():
    router = respx.MockRouter()
    router.get(url(V4)).respond(200)
    result = await probe_once(router, clock=lambda: 1234.5)
    assert result.checked_at == 1234.5


# --- results, reachable() and on_change --------------------------------------------


async def test_reachable_is_none_before_any_result_then_follows_watch_order():
    v6_may_answer = asyncio.Event()

    async def slow_v6(request):
        await v6_may_answer.wait()
        return httpx.Response(200)

    router = respx.MockRouter()
    router.get(url(V6)).mock(side_effect=slow_v6)
    router.get(url(V4)).respond(200)
    prober = mocked(router)
    prober.watch("ns/pod", endpoints(V6, V4))
    assert prober.reachable("ns/pod") is None
    assert prober.reachable("ns/unknown") is None
    async with running(prober):
        await until(lambda: prober.reachable("ns/pod") is not None)
        assert prober.reachable("ns/pod") == (V4,)
        assert list(prober.results("ns/pod")) == [V4]
        v6_may_answer.set()
        await until(lambda: len(prober.results("ns/pod")) == 2)
        # Watch order (IPv6 first here), not the order the answers came in.
        assert prober.reachable("ns/pod") == (V6, V4)
        assert list(prober.results("ns/pod")) == [V6, V4]


async def test_reachable_is_empty_not_none_when_every_ip_failed():
    router = respx.MockRouter()
    router.get(url(V4)).mock(side_effect=refused)
    router.get(url(V6)).mock(side_effect=refused)
    async with running(mocked(router)) as prober:
        prober.watch("ns/pod", endpoints(V4, V6))
        await until(lambda: len(prober.results("ns/pod")) == 2)
        assert prober.reachable("ns/pod") == ()


async def test_on_change_once_per_change_not_per_reprobe():
    router = respx.MockRouter()
    route = router.get(url(V4)).respond(200)
    changes = Changes()
    async with running(mocked(router, interval=0.01, on_change=changes)) as prober:
        prober.watch("ns/pod", endpoints(V4))
        await until(lambda: route.call_count >= 4, what="re-probed every interval")
        assert changes == ["ns/pod"]

        route.respond(500)
        await until(lambda: not prober.results("ns/pod")[V4].ok)
        calls = route.call_count
        await until(lambda: route.call_count >= calls + 3, what="re-probed with the same failure")
        assert changes == ["ns/pod", "ns/pod"]
        assert prober.results("ns/pod")[V4].detail == "HTTP 500"

        route.respond(200)
        await until(lambda: prober.reachable("ns/pod") == (V4,))
        assert changes == ["ns/pod"] * 3


async def test_first_result_of_each_ip_notifies():
    router = respx.MockRouter()
    router.get(url(V4)).respond(200)
    router.get(url(V6)).mock(side_effect=refused)
    changes = Changes()
    async with running(mocked(router, on_change=changes)) as prober:
        prober.watch("ns/pod", endpoints(V4, V6))
        await until(lambda: len(prober.results("ns/pod")) == 2)
        assert changes == ["ns/pod", "ns/pod"]


async def test_on_change_failure_does_not_stop_probing():
    router = respx.MockRouter()
    router.get(url(V4)).respond(200)

    def broken(key):
        raise RuntimeError("boom")

    async with running(mocked(router, on_change=broken)) as prober:
        prober.watch("ns/a", endpoints(V4))
        await until(lambda: prober.results("ns/a"))
        prober.watch("ns/b", endpoints(V4))
        await until(lambda: prober.results("ns/b"))


# --- scheduling --------------------------------------------------------------------


async def test_reprobe_is_due_interval_after_the_last_check_by_the_injected_clock():
    now = [100.0]
    router = respx.MockRouter()
    pod = router.get(url(V4)).respond(200)
    router.get(url("10.0.0.99")).respond(200)
    async with running(mocked(router, interval=60.0, clock=lambda: now[0], concurrency=1)) as prober:
        prober.watch("ns/pod", endpoints(V4))
        await until(lambda: prober.results("ns/pod"))
        assert pod.call_count == 1

        # Another key's watch() wakes the loop; the pod is not due yet, so only the new key is probed.
        now[0] = 159.9
        prober.watch("ns/wake1", endpoints("10.0.0.99"))
        await until(lambda: prober.results("ns/wake1"))
        assert pod.call_count == 1

        now[0] = 160.0
        prober.watch("ns/wake2", endpoints("10.0.0.99"))
        await until(lambda: pod.call_count == 2, what="due 60 s after the first check")
        assert prober.results("ns/pod")[V4].checked_at == 160.0


async def test_unchanged_watch_keeps_the_schedule_and_changed_endpoint_is_reprobed_at_once():
    router = respx.MockRouter()
    old_port = router.get(url(V4)).respond(200)
    new_port = router.get(url(V4, port=9000)).mock(side_effect=refused)
    router.get(url("10.0.0.99")).respond(200)
    # concurrency=1 and FIFO among new endpoints: once a later key is probed, anything queued before it was too.
    async with running(mocked(router, interval=60.0, concurrency=1)) as prober:
        prober.watch("ns/pod", endpoints(V4))
        await until(lambda: prober.results("ns/pod"))

        prober.watch("ns/pod", endpoints(V4))  # the pod changed, its endpoints did not
        prober.watch("ns/marker", endpoints("10.0.0.99"))
        await until(lambda: prober.results("ns/marker"))
        assert old_port.call_count == 1
        assert prober.reachable("ns/pod") == (V4,)

        prober.watch("ns/pod", endpoints(V4, port=9000))
        # The old result was about another port: gone at once, not reported as reachable.
        assert prober.reachable("ns/pod") is None
        await until(lambda: prober.results("ns/pod"), what="changed endpoint probed promptly")
        assert new_port.call_count == 1
        assert prober.results("ns/pod")[V4].detail == "connection refused"


async def test_removed_ip_loses_its_result():
    router = respx.MockRouter()
    router.get(url(V4)).respond(200)
    router.get(url(V6)).respond(200)
    async with running(mocked(router)) as prober:
        prober.watch("ns/pod", endpoints(V4, V6))
        await until(lambda: len(prober.results("ns/pod")) == 2)
        prober.watch("ns/pod", endpoints(V6))
        assert prober.reachable("ns/pod") == (V6,)


async def test_forget_stops_probing_and_drops_results():
    router = respx.MockRouter()
    forgotten = router.get(url(V4)).respond(200)
    kept = router.get(url(V6)).respond(200)
    changes = Changes()
    async with running(mocked(router, interval=0.01, on_change=changes)) as prober:
        prober.watch("ns/gone", endpoints(V4))
        prober.watch("ns/kept", endpoints(V6))
        await until(lambda: forgotten.call_count >= 2 and kept.call_count >= 2)
        prober.forget("ns/gone")
        assert prober.results("ns/gone") == {} and prober.reachable("ns/gone") is None
        calls = forgotten.call_count
        kept_calls = kept.call_count
        await until(lambda: kept.call_count >= kept_calls + 5, what="the other key keeps being probed")
        assert forgotten.call_count == calls
        assert prober.results("ns/gone") == {}
        assert "ns/gone" in changes  # its first result, before the forget
        assert changes.count("ns/gone") == 1


async def test_a_probe_in_flight_when_forgotten_is_discarded():
    gate = asyncio.Event()
    started = asyncio.Event()

    async def held(request):
        started.set()
        await gate.wait()
        return httpx.Response(200)

    router = respx.MockRouter()
    router.get(url(V4)).mock(side_effect=held)
    router.get(url("10.0.0.99")).respond(200)
    changes = Changes()
    async with running(mocked(router, concurrency=1, on_change=changes)) as prober:
        prober.watch("ns/gone", endpoints(V4))
        await until(started.is_set)
        prober.forget("ns/gone")
        gate.set()
        prober.watch("ns/marker", endpoints("10.0.0.99"))  # concurrency=1: starts after the held probe finished
        await until(lambda: prober.results("ns/marker"))
        assert prober.results("ns/gone") == {}
        assert changes == ["ns/marker"]


async def test_new_endpoints_are_probed_before_overdue_reprobes():
    now = [0.0]
    order: list[str] = []
    gate = asyncio.Event()

    async def record(request):
        order.append(request.url.host)
        if request.url.host == "10.0.0.99":
            await gate.wait()
        return httpx.Response(200)

    router = respx.MockRouter()
    router.route(method="GET").mock(side_effect=record)
    async with running(mocked(router, interval=60.0, concurrency=1, clock=lambda: now[0])) as prober:
        prober.watch("ns/a", endpoints("10.0.0.1"))
        prober.watch("ns/b", endpoints("10.0.0.2"))
        await until(lambda: prober.results("ns/b"))
        prober.watch("ns/busy", endpoints("10.0.0.99"))  # holds the only slot
        await until(lambda: order[-1:] == ["10.0.0.99"])
        now[0] = 500.0  # a and b are overdue
        prober.watch("ns/new", endpoints("10.0.0.3"))
        gate.set()
        await until(lambda: len(order) == 6)
        assert order == ["10.0.0.1", "10.0.0.2", "10.0.0.99", "10.0.0.3", "10.0.0.1", "10.0.0.2"]


async def test_concurrency_bound_is_respected():
    gate = asyncio.Event()
    in_flight = 0
    most = 0

    async def held(request):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await gate.wait()
        finally:
            in_flight -= 1
        return httpx.Response(200)

    router = respx.MockRouter()
    router.route(method="GET").mock(side_effect=held)
    async with running(mocked(router, concurrency=3)) as prober:
        for i in range(10):
            prober.watch(f"ns/pod-{i}", endpoints(f"10.0.1.{i}"))
        await until(lambda: in_flight == 3)
        assert all(prober.reachable(f"ns/pod-{i}") is None for i in range(10))
        gate.set()
        await until(lambda: all(prober.reachable(f"ns/pod-{i}") == (f"10.0.1.{i}",) for i in range(10)))
    assert most == 3


# --- advice ------------------------------------------------------------------------


def result(ok: bool, detail: str) -> ProbeResult:
    return ProbeResult(ok, detail, 0.0)


def test_advice_for_ipv4_only_and_ipv6_only_binds():
    assert advice({V4: result(True, "HTTP 200"), V6: result(False, "connection refused")}) == IPV6_REFUSED_ADVICE
    assert advice({V6: result(True, "HTTP 200"), V4: result(False, "connection refused")}) == IPV4_REFUSED_ADVICE


@pytest.mark.parametrize(
    "results",
    [
        {},
        {V4: result(True, "HTTP 200"), V6: result(True, "HTTP 200")},
        {V4: result(False, "connection refused"), V6: result(False, "connection refused")},
        {V4: result(True, "HTTP 200"), V6: result(False, "timeout after 2.0s")},
        {V4: result(True, "HTTP 200"), V6: result(False, "network unreachable")},
        {V4: result(True, "HTTP 200")},
    ],
)
def test_no_advice_unless_one_family_answers_and_the_other_is_refused(results):
    assert advice(results) is None


# --- real listeners ----------------------------------------------------------------


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1]
        body = b"fluentd_status_buffer_queue_length 0\n"
        status = b"200 OK" if path == b"/metrics" else b"404 Not Found"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def listen(families: set[int], handler=_answer) -> tuple[int, list[asyncio.Server]]:
    """Servers on 127.0.0.1 and/or ::1 at one port. Both are bound first, then the
    unwanted family is closed, so the port is known free on both families."""
    for _ in range(20):
        v4 = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = v4.sockets[0].getsockname()[1]
        try:
            v6 = await asyncio.start_server(handler, "::1", port)
        except OSError:
            v4.close()
            continue
        kept = []
        for family, server in ((4, v4), (6, v6)):
            if family in families:
                kept.append(server)
            else:
                server.close()
                await server.wait_closed()
        return port, kept
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(families: set[int], handler=_answer) -> int:
        port, started = await listen(families, handler)
        servers.extend(started)
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def probe_loopbacks(port: int, path: str = "/metrics", scheme: str = "http") -> Prober:
    prober = Prober(interval=60.0, timeout=2.0)
    async with running(prober):
        prober.watch("logging/fluentd-0", endpoints("127.0.0.1", "::1", port=port, path=path, scheme=scheme))
        await until(lambda: len(prober.results("logging/fluentd-0")) == 2, what="both loopbacks probed")
    return prober


async def test_ipv4_only_listener_is_reachable_on_ipv4_only(serve):
    prober = await probe_loopbacks(await serve({4}))
    results = prober.results("logging/fluentd-0")
    assert prober.reachable("logging/fluentd-0") == ("127.0.0.1",)
    assert results["127.0.0.1"].detail == "HTTP 200"
    assert results["::1"].detail == "connection refused"
    assert advice(results) == IPV6_REFUSED_ADVICE


async def test_ipv6_only_listener_is_reachable_on_ipv6_only(serve):
    prober = await probe_loopbacks(await serve({6}))
    results = prober.results("logging/fluentd-0")
    assert prober.reachable("logging/fluentd-0") == ("::1",)
    assert results["127.0.0.1"].detail == "connection refused"
    assert advice(results) == IPV4_REFUSED_ADVICE


async def test_dual_stack_listener_is_reachable_on_both(serve):
    prober = await probe_loopbacks(await serve({4, 6}))
    assert prober.reachable("logging/fluentd-0") == ("127.0.0.1", "::1")
    assert advice(prober.results("logging/fluentd-0")) is None


async def test_wrong_path_on_a_real_listener_is_http_404(serve):
    prober = await probe_loopbacks(await serve({4, 6}), path="/nope")
    assert prober.reachable("logging/fluentd-0") == ()
    assert {r.detail for r in prober.results("logging/fluentd-0").values()} == {"HTTP 404"}


async def test_https_to_a_plain_http_listener_is_a_tls_error(serve):
    async def speaks_first(reader, writer):
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    prober = await probe_loopbacks(await serve({4, 6}, speaks_first), scheme="https")
    details = {r.detail for r in prober.results("logging/fluentd-0").values()}
    assert prober.reachable("logging/fluentd-0") == ()
    assert all(d.startswith("TLS error") for d in details), details
