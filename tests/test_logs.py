"""Log lines as operators' tools read them: real logfmt (go-logfmt's grammar, strictly) and
JSON with every field a top-level key; our logger names; an access line per request at
debug only; probes that log changes of state and a summary per round, never each probe."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading

import pytest
from logfmtkv import parse

from sd.logs import JsonFormatter, LogfmtFormatter
from sdtest.helpers import ROOT, Server, eventually, probed_pod

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset

SNAPSHOT = str(ROOT / "examples" / "cluster.json")
FLUENTD_SOURCE = "pods app.kubernetes.io/name=fluentd"


def complete_lines(srv: Server) -> list[str]:
    """The log's lines so far, without one the server is still writing."""
    return srv.log().split("\n")[:-1]


def logfmt_lines(srv: Server) -> list[dict]:
    return [parse(line, strict=True) for line in complete_lines(srv)]


def json_lines(srv: Server) -> list[dict]:
    return [json.loads(line) for line in complete_lines(srv)]


def test_text_logs_are_logfmt_with_plain_values():
    with Server("--snapshot", SNAPSHOT) as srv:
        srv.wait_healthy()
        lines = logfmt_lines(srv)
    synced = [e for e in lines if e["msg"] == "source synced"]
    assert {e["source"] for e in synced} == {"nodes", FLUENTD_SOURCE}  # no quotes of a repr
    assert all(set(e) >= {"ts", "level", "logger", "msg"} for e in lines)
    assert all(e["logger"] == "sd" or e["logger"].startswith("sd.") for e in lines), {e["logger"] for e in lines}
    [loaded] = [e for e in lines if e["msg"] == "snapshot loaded"]
    assert loaded["targets"] == "kubelet:4,fluentd:6"


def test_json_logs_have_each_field_as_a_top_level_key():
    with Server("--snapshot", SNAPSHOT, "--log-format", "json") as srv:
        srv.wait_healthy()
        lines = json_lines(srv)
    synced = {e["source"]: e for e in lines if e["msg"] == "source synced"}
    assert synced[FLUENTD_SOURCE]["objects"] == 6 and synced[FLUENTD_SOURCE]["logger"] == "sd.feed"
    [loaded] = [e for e in lines if e["msg"] == "snapshot loaded"]
    assert loaded["targets"] == {"kubelet": 4, "fluentd": 6}
    [listening] = [e for e in lines if e["msg"] == "listening"]
    assert listening["scheme"] == "http" and listening["address"].startswith("127.0.0.1:")
    assert all(e["logger"] != "uvicorn.error" for e in lines)


@pytest.mark.parametrize(("level", "logged"), [("debug", True), ("info", False)])
def test_an_access_line_per_request_at_debug_only(level, logged):
    with Server("--snapshot", SNAPSHOT, "--log-level", level) as srv:
        srv.wait_healthy()
        assert srv.get("/targets/kubelet?shards=2&shard=1").status_code == 200
        assert srv.get("/nope").status_code == 404
        if logged:
            eventually(lambda: sum(e["logger"] == "sd.http.access" for e in logfmt_lines(srv)) >= 2, what="access lines")
        else:  # a later line proves the requests were handled before we look
            srv.proc.terminate()
            srv.proc.wait(10)
        access = [e for e in logfmt_lines(srv) if e["logger"] == "sd.http.access"]
    if not logged:
        assert access == []
        return
    by_path = {e["path"]: e for e in access}
    assert by_path["/targets/kubelet"]["status"] == "200"
    assert by_path["/targets/kubelet"]["query"] == "shards=2&shard=1"
    assert by_path["/targets/kubelet"]["method"] == "GET" and by_path["/targets/kubelet"]["client"] == "127.0.0.1"
    assert by_path["/nope"]["status"] == "404"


class _Metrics:
    """A metrics endpoint on 127.0.0.1 only (nothing on ::1), that can be closed."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_probes_log_changes_of_state_and_a_summary_per_round_never_each_probe(tmp_path):
    listener = _Metrics()
    try:
        snapshot, config = probed_pod(tmp_path, listener.port)
        with Server("--snapshot", snapshot, "--config", config, "--log-level", "debug") as srv:
            srv.wait_healthy()
            eventually(lambda: [g["targets"] for g in srv.get("/targets/fluentd").json()] == [[f"127.0.0.1:{listener.port}"]])
            eventually(lambda: any(e["msg"] == "probe round" for e in logfmt_lines(srv)), what="a round summary")
            listener.close()
            with socket.socket() as s:  # nothing answers on the port any more
                assert s.connect_ex(("127.0.0.1", listener.port)) != 0
            changed = eventually(
                lambda: [e for e in logfmt_lines(srv) if e["msg"] == "probe changed"], what="the IPv4 change logged"
            )
            eventually(lambda: sum(e["msg"] == "probe round" for e in logfmt_lines(srv)) >= 3, what="later rounds")
            lines = logfmt_lines(srv)
    finally:
        listener.close()
    assert [(e["ip"], e["ok"], e["was"], e["level"]) for e in changed] == [("127.0.0.1", "false", "HTTP 200", "info")]
    assert changed[0]["detail"] in ("connection refused", "connection reset")  # reset: a probe met the close
    rounds = [e for e in lines if e["msg"] == "probe round"]
    assert all(e["level"] == "debug" and e["endpoints"] == "2" for e in rounds)
    # Each round probed both IPs at least once, yet no line was written per probe.
    assert sum(int(e["probes"]) for e in rounds) >= 2 * len(rounds)
    probe_lines = [e for e in lines if e["logger"] in ("sd.probe", "httpx", "httpcore")]
    assert {e["msg"] for e in probe_lines} == {"probe round", "probe changed"}
    assert not any("HTTP Request" in e["msg"] for e in lines)


def record(template: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("sd.http", logging.WARNING, __file__, 1, template, args, None)


@pytest.mark.parametrize(
    ("template", "args", "msg", "fields"),
    [
        # Every printf conversion can be a field, with a unit after it.
        ("closing a connection path=%s sent=%d timeout=%gs", ("/targets/x", 5, 30.0), "closing a connection",
         {"path": "/targets/x", "sent": "5", "timeout": "30s"}),
        ("source error source=%r retry_in=%.1fs detail=%r", ("pods a=b", 0.8, 'said "no"\n'), "source error",
         {"source": "pods a=b", "retry_in": "0.8s", "detail": 'said "no"\n'}),
        # A conversion without key= stays in the event text; %% is a percent sign.
        ("config reload: %s settings changed, 100%% sure", ("server",), "config reload: server settings changed, 100% sure", {}),
        ("loaded targets=%s sets=%s", ({"kubelet": 4}, ["a", "b"]), "loaded", {"targets": "kubelet:4", "sets": "a,b"}),
    ],
)
def test_templates_become_an_event_and_fields(template, args, msg, fields):
    line = parse(LogfmtFormatter().format(record(template, *args)), strict=True)
    assert line["msg"] == msg
    assert {k: v for k, v in line.items() if k not in ("ts", "level", "logger", "msg")} == fields
    entry = json.loads(JsonFormatter().format(record(template, *args)))
    assert entry["msg"] == msg and set(entry) - {"ts", "level", "logger", "msg"} == set(fields)
