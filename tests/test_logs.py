"""Log lines as operators' tools read them: real logfmt (go-logfmt's grammar, strictly) and
JSON with every field a top-level key; our logger names; an access line per request at
debug only."""

from __future__ import annotations

import json

import pytest
from logfmtkv import parse

from sdtest.helpers import ROOT, Server, eventually

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
