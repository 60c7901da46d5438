"""The server's own /metrics: what it runs, and the process."""

from __future__ import annotations

import sys
import tomllib

from prometheus_client.parser import text_string_to_metric_families

from sdtest.helpers import ROOT, Server

SNAPSHOT = str(ROOT / "examples" / "cluster.json")


def samples(srv: Server) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(srv.get("/metrics").text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_build_info_process_metrics_and_no_created_series():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with Server("--snapshot", SNAPSHOT) as srv:
        srv.wait_healthy()
        srv.get("/targets/kubelet")
        found = samples(srv)
    [build] = found["kube_http_sd_build_info"]
    assert build.value == 1
    assert build.labels["version"] == version and build.labels["python"] == sys.version.split()[0]
    assert build.labels["kubernetes_asyncio"][0].isdigit()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds"):
        assert found[name][0].value > 0, name
    assert [n for n in found if n.endswith("_created")] == []
