"""The pages for people over real sockets, without a browser: content negotiation at /,
the explain view's order, formats and tables, the HTML pages' headers, and which flag
hides which page. What the pages look like in a browser: tests/test_browser.py."""

from __future__ import annotations

import re

import httpx
import pytest

from sd.http.negotiation import prefers_html
from sd.http.status_page import CSP
from sdtest.browser import BROWSER_ACCEPT, HOSTILE, status_cluster, write_snapshot
from sdtest.factories import make_node
from sdtest.helpers import FAST, Server, eventually

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset

# Today's plain-text index of status_cluster(), as curl has always seen it.
PLAIN_INDEX = (
    b"kube-http-sd: Prometheus http_sd target sets\n\n"
    b"SET      SOURCE  STATUS  TARGETS  IPV4  IPV6  URL\n"
    b"fluentd  pods    ready   4        2     2     /targets/fluentd\n"
    b"kubelet  nodes   ready   3        2     1     /targets/kubelet\n\n"
    b"also: /readyz /healthz /metrics /debug/sets/<set>\n"
)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("pages") / "cluster.json", status_cluster())


@pytest.fixture(scope="module")
def server(snapshot):
    with Server("--snapshot", snapshot) as srv:
        yield srv.wait_healthy()


# -- content negotiation at / ------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (None, False),
        ("*/*", False),  # curl
        ("text/plain", False),
        ("application/json", False),
        ("text/*", False),
        ("text/html;q=0.5, text/plain", False),
        ("text/html;q=0", False),
        ("text/html, text/plain", False),  # a tie keeps the plain text
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("text/html, text/plain;q=0.9", True),
        ("TEXT/HTML; q=1.0, */*; q=0.1", True),
    ],
)
def test_accept_prefers_html_only_when_text_html_beats_text_plain(accept, html):
    assert prefers_html(accept) is html


@pytest.mark.parametrize("accept", [None, "*/*", "text/plain", "application/json", "text/html;q=0.5, text/plain"])
def test_curl_and_scripts_get_todays_plain_text_index_byte_for_byte(server, accept):
    with httpx.Client(base_url=server.base, timeout=5) as client:
        del client.headers["accept"]
        resp = client.get("/", headers={"Accept": accept} if accept else {})
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.content == PLAIN_INDEX
    assert resp.headers["vary"] == "Accept"


def test_a_browser_gets_the_overview_page_under_a_strict_policy(server):
    resp = server.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
    assert resp.headers["x-content-type-options"] == "nosniff" and resp.headers["vary"] == "Accept"
    page = resp.text
    assert '<a href="/sets/kubelet">kubelet</a>' in page and '<a href="/targets/kubelet">' in page
    # Self-contained: every link and asset is ours, nothing inline for the policy to refuse.
    assert all(url.startswith("/") for url in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/status.js" defer>']
    assert " style=" not in page and "<style" not in page
    assert not re.search(r"<[^>]+\son\w+=", page), "an inline event handler"


def test_object_controlled_strings_are_escaped_in_the_html(server):
    page = server.get("/sets/fluentd").text
    assert "team=&lt;img src=x onerror=alert(1)&gt;" in page
    assert HOSTILE not in page


def test_a_page_is_304_while_nothing_changed(server):
    first = server.get("/sets/kubelet")
    etag = first.headers["etag"]
    assert f'data-version={etag}' in first.text
    again = server.get("/sets/kubelet", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["content-security-policy"] == CSP


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("status.js", "text/javascript"), ("status.css", "text/css"), ("icon.svg", "image/svg+xml")],
)
def test_the_pages_script_and_style_are_served_from_the_package(server, name, media_type):
    resp = server.get(f"/static/{name}")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(media_type)
    assert resp.headers["x-content-type-options"] == "nosniff" and resp.content
    missing = server.get("/static/nope.js")
    assert missing.status_code == 404 and missing.json()["status"] == 404


def test_server_debug_false_hides_the_set_pages_and_the_explain_view(snapshot, tmp_path):
    config = tmp_path / "sd.yaml"
    config.write_text("server:\n  debug: false\n")
    with Server("--snapshot", snapshot, "--config", str(config)) as srv:
        srv.wait_healthy()
        assert srv.get("/sets/kubelet").status_code == 404
        assert srv.get("/debug/sets/kubelet").status_code == 404
        overview = srv.get("/", headers={"Accept": BROWSER_ACCEPT}).text
        assert "/sets/" not in overview and '<a href="/targets/kubelet">' in overview
        assert srv.get("/static/status.js").status_code == 200


@pytest.mark.parametrize("path", ["/sets/kubelet", "/static/status.js", "/"])
def test_the_pages_need_credentials_like_every_route_but_healthz(snapshot, tmp_path, path):
    (tmp_path / "token").write_text("s3cret\n")
    config = tmp_path / "sd.yaml"
    config.write_text(f"server:\n  bearer_token_file: {tmp_path / 'token'}\n")
    with Server("--snapshot", snapshot, "--config", str(config)) as srv:
        srv.wait_healthy()
        browser = {"Accept": BROWSER_ACCEPT}
        assert srv.get(path, headers=browser).status_code == 401
        assert srv.get(path, headers={**browser, "Authorization": "Bearer s3cret"}).status_code == 200


# -- the explain view ------------------------------------------------------------------


def test_explain_view_sorts_ips_by_address_value_not_as_strings(server):
    ips = [e["ip"] for e in server.get("/debug/sets/fluentd").json()["ips"]]
    assert ips == ["198.51.100.9", "198.51.100.10", "2001:db8:244::2:7", "2001:db8:244::21:3"]
    text = server.get("/debug/sets/fluentd?format=text").text
    rows = [line.split()[0] for line in text.splitlines() if line.startswith(("198.", "2001:"))]
    assert rows == ips


@pytest.mark.parametrize("fmt", ["yaml", "TEXT", ""])
def test_an_unknown_explain_format_is_a_json_400_naming_the_formats(server, fmt):
    resp = server.get(f"/debug/sets/kubelet?format={fmt}")
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    assert resp.json() == {"error": f"unknown format {fmt!r}; formats: json, text", "status": 400}


def test_explain_view_format_json_is_the_default(server):
    assert server.get("/debug/sets/kubelet?format=json").json() == server.get("/debug/sets/kubelet").json()


def test_explain_text_omits_empty_tables(server):
    fluentd = server.get("/debug/sets/fluentd?format=text").text
    assert "skipped bad data" not in fluentd and "OBJECT  REASON  DETAIL" not in fluentd
    assert "not candidates: 1" in fluentd  # a table with rows stays
    kubelet = server.get("/debug/sets/kubelet?format=text").text
    assert "skipped bad data: 1" in kubelet and "node/node-bad  invalid_ip" in kubelet


# -- /readyz ---------------------------------------------------------------------------


def test_readyz_and_the_explain_text_show_a_relist_in_progress_after_the_first_sync(api, tmp_path):
    api.add_many([make_node(f"n{i}", [f"192.0.2.{i}"]) for i in range(1, 6)])
    config = tmp_path / "sd.yaml"
    config.write_text(FAST)
    with Server("--kubeconfig", api.write_kubeconfig(tmp_path / "kubeconfig"), "--config", str(config)) as srv:
        srv.wait_healthy()
        eventually(lambda: srv.get("/readyz").status_code == 200, what="first sync")
        api.hold_initial_events_end = True
        api.stop()
        api.add(make_node("n6", ["192.0.2.6"]))
        api.compact()  # the watch's version is gone: the source relists, by stream, held open
        api.start()
        ready = eventually(lambda: (r := srv.get("/readyz")) and "listing (6 objects" in r.text and r, timeout=15,
                           what="the relist in /readyz")
        assert ready.status_code == 200, "the last state is served meanwhile"
        assert ready.text.startswith("ready\nnodes: ready, listing (6 objects in ")
        assert "nodes: ready, listing (6 objects in " in srv.get("/debug/sets/kubelet?format=text").text
        api.release_initial_events_end()
        eventually(lambda: srv.get("/readyz").text == "ready\n", timeout=15, what="the relist done")
