"""The status pages in a real browser: Debian's Chromium, headless, driven by Playwright.

Every assertion reads the rendered DOM. Each page's screenshot is saved under
test-artifacts/ (sdtest/browser.py) to be looked at. Waits poll with a deadline
(Playwright's expect and wait_for_function); nothing sleeps.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from sdtest.browser import ARTIFACTS, HOSTILE, browser, screenshot, status_cluster, write_snapshot
from sdtest.factories import make_node, make_pod
from sdtest.helpers import FAST, Server, metric_sum
from sdtest.kubeapi import FakeKubeAPI
from sd.http.status_page import CSP

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset


@pytest.fixture(scope="module")
def chromium():
    yield from browser()


@pytest.fixture(autouse=True)
def fresh_pages(chromium):
    """Each test sees only its own pages' requests, dialogs and errors."""
    yield
    chromium.forget()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    snapshot = write_snapshot(tmp_path_factory.mktemp("browser") / "cluster.json", status_cluster())
    with Server("--snapshot", snapshot) as srv:
        yield srv.wait_healthy()


def cells(page: Page, selector: str) -> list[list[str]]:
    """The text of each visible row's cells of the table at ``selector``."""
    return page.eval_on_selector_all(
        f"{selector} tbody tr:not([hidden])", "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))"
    )


def open_page(chromium, srv: Server, path: str) -> Page:
    page = chromium.page(srv.base)
    resp = page.goto(srv.base + path)
    assert resp is not None and resp.status == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-security-policy"] == CSP
    expect(page.locator("#refresh")).to_have_class("refresh ok")  # the script ran
    return page


def test_the_overview_lists_every_set_with_its_counts_and_links(chromium, server):
    page = open_page(chromium, server, "/")
    rows = {row[0]: row for row in cells(page, "table.sets")}
    assert rows["kubelet"][1:] == ["ready", "nodes", "3", "2", "1", "6", "not_ready 1", "1", "/targets/kubelet"]
    assert rows["fluentd"][1:] == [
        "ready", "pods app.kubernetes.io/name=fluentd", "4", "2", "2", "3", "not_running 1", "0", "/targets/fluentd",
    ]
    links = page.eval_on_selector_all("table.sets a", "links => links.map(a => a.getAttribute('href'))")
    assert links == ["/sets/fluentd", "/targets/fluentd", "/sets/kubelet", "/targets/kubelet"]
    sources = {row[0]: row for row in cells(page, "table.sources")}
    assert sources["nodes"][1] == "ready" and re.fullmatch(r"\d+ s ago", sources["nodes"][3])
    screenshot(page, "overview")
    page.click("table.sets a[href='/sets/kubelet']")
    expect(page.locator("h1")).to_have_text("kube-http-sd · set kubelet")


def test_the_set_page_shows_the_conflict_the_excluded_node_and_the_bad_data(chromium, server):
    page = open_page(chromium, server, "/sets/kubelet")
    assert cells(page, "table.contested") == [
        ["192.0.2.10", "node-b", "node-b-old", "older: created 2026-02-01T00:00:00Z, node-b created 2026-06-01T00:00:00Z"]
    ]
    excluded = {row[0]: row[1:] for row in cells(page, "table.excluded")}
    assert excluded["node-down"] == ["not_ready", "not ready (Ready=False)"]
    assert cells(page, "table.skipped") == [
        ["node/node-bad", "invalid_ip", "node/node-bad: status.addresses[0].address: not an IP: 'not-an-ip'"]
    ]
    targets = cells(page, "table.targets")
    assert [row[:5] for row in targets] == [
        ["192.0.2.9:10250", "ipv4", "node-a", "–", "node-a"],
        ["192.0.2.10:10250", "ipv4", "node-b", "–", "node-b"],
        ["[2001:db8::21:3]:10250", "ipv6", "node-v6", "–", "node-v6"],
    ]
    assert "topology.kubernetes.io/zone=zone-a" in targets[0][5]
    screenshot(page, "set-kubelet")


def test_the_filter_box_narrows_every_table(chromium, server):
    page = open_page(chromium, server, "/sets/kubelet")
    page.fill("#filter", "zone-a")  # a label value: only node-a has it
    assert [row[0] for row in cells(page, "table.targets")] == ["192.0.2.9:10250"]
    expect(page.locator("#targets .count")).to_have_text("1 of 3")
    assert page.locator("#contested").is_visible() and cells(page, "table.contested") == []
    page.fill("#filter", "node-b")
    assert [row[0] for row in cells(page, "table.targets")] == ["192.0.2.10:10250"]
    assert len(cells(page, "table.contested")) == 1
    screenshot(page, "set-kubelet-filtered")
    page.fill("#filter", "")
    assert len(cells(page, "table.targets")) == 3
    expect(page.locator("#targets .count")).to_have_text("3")


def test_a_hostile_label_value_is_shown_as_text_and_runs_nothing(chromium, server):
    page = open_page(chromium, server, "/sets/fluentd")
    labels = page.eval_on_selector_all("table.targets .label", "spans => spans.map(s => s.textContent)")
    assert labels.count(f"team={HOSTILE}") == 2  # fluentd-a's two targets
    assert page.locator("img").count() == 0, "the label value became an element"
    assert chromium.dialogs == []
    assert not [url for url in chromium.requests if url.endswith("/x")], "the injected <img src=x> was fetched"
    screenshot(page, "set-fluentd")


def test_the_pages_ask_nothing_of_any_other_host_and_break_no_policy(chromium, server):
    for path in ("/", "/sets/kubelet", "/sets/fluentd"):
        page = open_page(chromium, server, path)
        page.close()
    assert chromium.foreign == []
    assert chromium.requests and all(url.startswith(server.base + "/") for url in chromium.requests)
    assert chromium.errors == [], "console errors (a CSP violation is one)"


def test_the_harness_sees_and_stops_a_request_to_another_host(chromium, server):
    page = chromium.page(server.base)
    page.goto(server.base + "/healthz")
    page.set_content('<img src="http://192.0.2.1/pixel.png">')
    expect(page.locator("img")).to_have_count(1)
    page.wait_for_function("document.images[0].complete")
    assert chromium.foreign == ["http://192.0.2.1/pixel.png"]  # aborted in the browser: nothing left the machine


def test_a_set_page_refreshes_itself_when_the_cluster_changes(chromium, api, tmp_path):
    api.add_many([make_node(f"n{i}", [f"192.0.2.{i}"]) for i in range(1, 4)])
    config = tmp_path / "sd.yaml"
    config.write_text(FAST)
    with Server("--kubeconfig", api.write_kubeconfig(tmp_path / "kubeconfig"), "--config", str(config)) as srv:
        srv.wait_healthy()
        page = open_page(chromium, srv, "/sets/kubelet")
        page.fill("#filter", "192.0.2")
        expect(page.locator("#targets .count")).to_have_text("3 of 3", timeout=15_000)
        api.add(make_node("n4", ["192.0.2.4"]))
        # No reload: the page polls, swaps in the new table and keeps the filter applied.
        expect(page.locator("#targets .count")).to_have_text("4 of 4", timeout=15_000)
        assert page.locator("#filter").input_value() == "192.0.2"
        assert chromium.foreign == []
        # While nothing changes, a poll is a 304: the page is not sent again.
        page.wait_for_event("response", lambda r: r.url == srv.base + "/sets/kubelet" and r.status == 304, timeout=15_000)
        assert metric_sum(srv, 'kube_http_sd_http_requests_total{code="304",route="/sets/{name}"') >= 1


class _MetricsEndpoint(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b"fluentd_up 1\n")

    def log_message(self, *args: object) -> None:
        pass


def test_the_set_page_shows_probe_results_and_advice(chromium, tmp_path):
    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetricsEndpoint)  # IPv4 only, as Fluentd binds
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        port = listener.server_address[1]
        snapshot = write_snapshot(tmp_path / "cluster.json", [make_pod("fluentd-a", ["127.0.0.1", "::1"], port=port)])
        config = tmp_path / "sd.yaml"
        config.write_text(
            "probe: {interval_seconds: 1, timeout_seconds: 1}\n"
            "targets:\n  fluentd: {source: pods, port_name: monitor, port: 24231, ip_family: reachable}\n"
        )
        with Server("--snapshot", snapshot, "--config", str(config)) as srv:
            srv.wait_healthy()
            page = open_page(chromium, srv, "/sets/fluentd")
            expect(page.locator("table.probes tbody tr")).to_have_count(2, timeout=15_000)
            rows = {row[1]: row for row in cells(page, "table.probes")}
            assert rows["127.0.0.1"][:3] == ["logging/fluentd-a", "127.0.0.1", "ok"]
            assert rows["::1"][2] == "failed" and "IPv6 refused" in rows["::1"][4]
            screenshot(page, "set-probes")
    finally:
        listener.shutdown()
        listener.server_close()


def test_a_held_first_list_shows_the_objects_received_so_far_then_ready(chromium, api, tmp_path):
    api.add_many([make_node(f"n{i}", [f"192.0.2.{i}"]) for i in range(1, 8)])
    api.hold_initial_events_end = True  # every node streamed, the end bookmark withheld
    config = tmp_path / "sd.yaml"
    config.write_text(FAST)
    with Server("--kubeconfig", api.write_kubeconfig(tmp_path / "kubeconfig"), "--config", str(config)) as srv:
        srv.wait_healthy()
        page = open_page(chromium, srv, "/")
        nodes = page.locator("table.sources tbody tr", has_text="nodes")
        expect(nodes).to_contain_text(re.compile(r"7 objects in \d+ pages? so far"), timeout=15_000)
        expect(nodes.locator(".state")).to_have_text("syncing")
        expect(page.locator(".summary")).to_have_text(re.compile("waiting for a first full list: .*kubelet"))
        screenshot(page, "overview-first-list-held")
        api.release_initial_events_end()
        expect(page.locator("table.sets tbody tr", has_text="kubelet").locator(".state")).to_have_text(
            "ready", timeout=15_000
        )
        expect(nodes).to_contain_text("–")  # no list in progress any more


def test_an_api_server_refusing_connections_is_shown_with_its_error(chromium, tmp_path):
    api = FakeKubeAPI().start()
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    api.stop()  # nothing listens on its port now: every connection is refused
    config = tmp_path / "sd.yaml"
    config.write_text(FAST)
    with Server("--kubeconfig", kubeconfig, "--config", str(config)) as srv:
        srv.wait_healthy()
        page = open_page(chromium, srv, "/")
        nodes = page.locator("table.sources tbody tr", has_text="nodes")
        expect(nodes.locator(".error-reason")).to_have_text("connection", timeout=15_000)
        expect(nodes.locator(".error-message")).to_contain_text(f"Cannot connect to host 127.0.0.1:{api.port}")
        expect(nodes.locator(".state")).to_have_text("syncing")
        expect(page.locator(".summary")).to_contain_text("sources failing: nodes, pods")
        screenshot(page, "overview-connection-refused")


def test_a_set_of_5000_targets_loads_quickly_pages_and_filters(chromium, tmp_path):
    labels = {"topology.kubernetes.io/zone": "zone-a", "node.kubernetes.io/instance-type": "m6i.2xlarge"}
    nodes = [make_node(f"node-{i:04d}", [f"127.1.{i // 250}.{i % 250 + 1}"], labels=labels, images=1) for i in range(5000)]
    with Server("--snapshot", write_snapshot(tmp_path / "big.json", nodes)) as srv:
        srv.wait_healthy()
        page = chromium.page(srv.base)
        started = time.perf_counter()
        page.goto(srv.base + "/sets/kubelet", wait_until="load")
        seconds = time.perf_counter() - started
        timing = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "set-5000-targets-load.json").write_text(
            json.dumps({"seconds_to_load_event": round(seconds, 3), "navigation_timing": timing}, indent=1)
        )
        print(f"5,000 targets: load event after {seconds:.3f} s")
        assert seconds < 5, "a page that takes this long is not usable during an incident"
        expect(page.locator("#targets .range")).to_have_text("1–100 of 5000")
        assert len(cells(page, "table.targets")) == 100
        page.click("#targets button[data-step='1']")
        expect(page.locator("#targets .range")).to_have_text("101–200 of 5000")
        assert cells(page, "table.targets")[0][2] == "node-0100"
        page.fill("#filter", "node-4999")
        expect(page.locator("#targets .count")).to_have_text("1 of 5000")
        assert [row[2] for row in cells(page, "table.targets")] == ["node-4999"]
        page.fill("#filter", "")
        screenshot(page, "set-5000-targets", full_page=False)


def test_chromium_decodes_the_gzip_targets_body(chromium, tmp_path):
    """Chromium asks for gzip, gets our one-member gzip of many segments (600 nodes: ~10 body
    blocks), and reads the same JSON the plain body holds."""
    nodes = [make_node(f"node-{i:04d}", [f"127.1.{i // 250}.{i % 250 + 1}"], labels={"zone": f"z{i % 3}"}) for i in range(600)]
    with Server("--snapshot", write_snapshot(tmp_path / "nodes.json", nodes)) as srv:
        srv.wait_healthy()
        plain = json.loads(urllib.request.urlopen(srv.base + "/targets/kubelet", timeout=5).read())  # no Accept-Encoding
        page = chromium.page(srv.base)
        resp = page.goto(srv.base + "/targets/kubelet")
        assert resp is not None and resp.status == 200 and resp.headers["content-encoding"] == "gzip"
        assert json.loads(resp.body()) == plain, "the navigation's decoded body"
        encoding, groups = page.evaluate(
            "async () => { const r = await fetch('/targets/kubelet'); return [r.headers.get('content-encoding'), await r.json()]; }"
        )
        assert encoding == "gzip" and groups == plain and len(groups) == 600
        assert metric_sum(srv, 'kube_http_sd_http_requests_total{code="200",encoding="gzip",route="/targets/{name}"') >= 1


def test_several_clusters_each_row_names_its_cluster_and_a_missing_one_is_shown(chromium, tmp_path):
    """Two clusters on one IP (a conflict inside east, none across) and a third that never
    answers: after the set's cluster_sync_timeout the pages show it partial, the missing
    cluster, and the cluster of every row."""
    with FakeKubeAPI() as east, FakeKubeAPI() as west:
        east.add_many([make_node("node-a", ["192.0.2.10"], created="2026-02-01T00:00:00Z"),
                       make_node("node-a-old", ["192.0.2.10"])])
        west.add(make_node("node-b", ["192.0.2.10"]))
        gone = FakeKubeAPI().start()
        gone.stop()  # nothing listens on its port now: every connection is refused
        kubeconfigs = {name: api.write_kubeconfig(tmp_path / f"{name}.kubeconfig")
                       for name, api in (("east", east), ("west", west), ("gone", gone))}
        config = tmp_path / "sd.yaml"
        config.write_text(FAST + "clusters:\n" + "".join(f"  {n}: {{kubeconfig: {p}}}\n" for n, p in kubeconfigs.items())
                          + "targets:\n  kubelet: {source: nodes, port: 10250, cluster_sync_timeout_seconds: 1}\n")
        with Server("--config", str(config)) as srv:
            srv.wait_healthy()
            page = open_page(chromium, srv, "/")
            expect(page.locator("table.sets tbody tr", has_text="kubelet").locator(".state")).to_have_text(
                "partial", timeout=15_000)
            page.close()
            page = open_page(chromium, srv, "/sets/kubelet")
            assert cells(page, "table.clusters") == [["east", "ready", "1", "–"], ["gone", "missing", "0", "gone/nodes"],
                                                     ["west", "ready", "1", "–"]]
            assert [row[:2] for row in cells(page, "table.targets")] == [["east", "192.0.2.10:10250"],
                                                                         ["west", "192.0.2.10:10250"]]
            assert [row[:4] for row in cells(page, "table.contested")] == [["east", "192.0.2.10", "node-a", "node-a-old"]]
            screenshot(page, "set-kubelet-clusters")
