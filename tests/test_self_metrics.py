"""The server's own /metrics: what it runs, the process, and source states an alert can
trust (a slow first list is "listing", never "failing")."""

from __future__ import annotations

import sys
import tomllib

from prometheus_client.parser import text_string_to_metric_families

from sdtest.factories import make_node
from sdtest.helpers import FAST, ROOT, Server, eventually, metric_sum

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


def source(srv: Server, metric: str, **labels: str) -> float:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return metric_sum(srv, f'kube_http_sd_source_{metric}{{source="nodes"{extra}')


def test_a_slow_first_list_is_listing_not_failing_and_refused_connections_are_failing(api, tmp_path):
    api.add_many([make_node(f"n{i}", [f"192.0.2.{i}"]) for i in range(1, 4)])
    api.hold_initial_events_end = True  # the streaming list does not end until released
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    config = tmp_path / "sd.yaml"
    # A streaming list with no end bookmark for read_timeout_seconds (at most 10 s) is taken
    # for a server that ignores it; a long one keeps this list in flight for the checks below.
    config.write_text(FAST.replace("read_timeout_seconds: 5", "read_timeout_seconds: 60")
                      + "targets:\n  kubelet: {source: nodes, port: 10250, port_name: kubelet}\n")
    with Server("--kubeconfig", kubeconfig, "--config", str(config)) as srv:
        srv.wait_healthy()
        eventually(lambda: api.open_watches() == 1 and source(srv, "phase", phase="listing") == 1, what="listing")
        assert srv.get("/targets/kubelet").status_code == 503  # the first list is really not done
        assert source(srv, "failing") == 0 and source(srv, "up") == 1
        assert source(srv, "phase", phase="backing_off") == 0 and source(srv, "phase", phase="watching") == 0
        [view] = srv.get("/debug/sets/kubelet").json()["sources"]
        assert (view["state"], view["phase"], view["failing"]) == ("syncing", "listing", False)

        api.stop()  # connections are refused from now on
        eventually(lambda: source(srv, "failing") == 1 and source(srv, "phase", phase="backing_off") == 1,
                   what="failing, backing off")
        assert source(srv, "up") == 0
        [view] = srv.get("/debug/sets/kubelet").json()["sources"]
        assert view["failing"] is True and view["last_error"]["reason"] == "connection"

        api.hold_initial_events_end = False
        api.start()
        eventually(lambda: srv.get("/targets/kubelet").status_code == 200, what="synced after the outage")
        eventually(lambda: source(srv, "phase", phase="watching") == 1, what="watching")
        assert source(srv, "failing") == 0 and source(srv, "up") == 1
