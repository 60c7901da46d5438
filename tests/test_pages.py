"""The pages for people over real sockets, without a browser: content negotiation at /,
the explain view's order, formats and tables, the HTML pages' headers, and which flag
hides which page. What the pages look like in a browser: tests/test_browser.py."""

from __future__ import annotations

import pytest

from sdtest.browser import status_cluster, write_snapshot
from sdtest.factories import make_node
from sdtest.helpers import FAST, Server, eventually

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


def test_readyz_shows_a_relist_in_progress_after_the_first_sync(api, tmp_path):
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
        api.release_initial_events_end()
        eventually(lambda: srv.get("/readyz").text == "ready\n", timeout=15, what="the relist done")
