"""vmagent (VictoriaMetrics v1.151.0, built from its Go module by tools/build.sh) as a real http_sd
client of kube-http-sd, beside Prometheus 3, on one real API server (sdtest.controlplane):

- it discovers the same targets with the same labels as Prometheus from our sets;
- with its own sharding off (no -promscrape.cluster.*), two vmagents each read their shard through
  ``?shards=2&shard=I`` and together hold every target once; a hashmod keep rule as a Prometheus
  shard may write it would lose targets in vmagent, whose relabel hashmod is xxhash, not md5;
- what it sends: ``Accept-Encoding: gzip`` (Go's transport), and it gets our gzip body and
  decodes it to the right targets; its refresh header (half of -promscrape.httpSDCheckInterval: 30 s by
  default); a 429 is retried at once and then after 2 s, without reading Retry-After;
- a job with two URLs loses the targets of the one that fails (it keeps the previous targets only
  when every URL of the job fails): docs/vmagent.md says to give each URL its own job.

Every vmagent listens on 127.0.0.1 only, rewrites every scrape address to a closed loopback port
(keeping the original in ``instance``), and remote-writes to a loopback sink; objects use
documentation addresses only.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import http.client
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from sdtest.controlplane import ControlPlane, wall_clock_second_after
from sdtest.factories import make_node, make_pod
from sdtest.helpers import ROOT, Server, eventually, free_port, terminate
from sdtest.promtest import Prometheus, prometheus_binary
from sdtest.upstream import program

pytestmark = [pytest.mark.apiserver, pytest.mark.e2e]

CLOSED_PORT = free_port()  # nothing listens here: every scrape fails at once, on loopback
SETS = ("kubelet", "fluentd")
VMAGENT_VERSION = "v1.151.0"


# --------------------------------------------------------------------------- helpers


class Sink(ThreadingHTTPServer):
    """A loopback remote-write endpoint that accepts and forgets (vmagent needs one)."""

    daemon_threads = True

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/api/v1/write"

    def __enter__(self) -> "Sink":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class Recorder(ThreadingHTTPServer):
    """A loopback http_sd endpoint between a client and kube-http-sd: records each request's headers
    and time, answers the first ``refuse`` requests ``status`` (429 with ``Retry-After: 1`` by default)
    and the rest with kube-http-sd's own answer to the same path, asked with the client's
    Accept-Encoding and relayed byte for byte with its Content-Type, Content-Encoding, Vary and
    ETag (recorded in ``answers``)."""

    daemon_threads = True
    RELAYED = ("content-type", "content-encoding", "vary", "etag")

    def __init__(self, upstream: str, refuse: int = 0, status: int = 429) -> None:
        self.requests: list[tuple[float, str, dict[str, str]]] = []
        self.answers: list[dict[str, str]] = []  # the relayed headers of each answer from kube-http-sd
        self.refuse, self.status = refuse, status
        recorder = self
        host, port = urlsplit(upstream).hostname, urlsplit(upstream).port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                recorder.requests.append((time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()}))
                if len(recorder.requests) <= recorder.refuse:
                    status, body, relayed = recorder.status, b'{"error": "refused by the test"}', {"content-type": "application/json"}
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=5)
                    asked = {"Accept-Encoding": self.headers["Accept-Encoding"]} if "Accept-Encoding" in self.headers else {}
                    conn.request("GET", self.path, headers=asked)
                    resp = conn.getresponse()
                    status, body = resp.status, resp.read()
                    conn.close()
                    relayed = {k: v for k in Recorder.RELAYED if (v := resp.getheader(k)) is not None}
                    recorder.answers.append(relayed)
                self.send_response(status)
                for name, value in relayed.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "Recorder":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class VMAgent:
    """vmagent on 127.0.0.1:<free port>, its scrape config, queue and log under ``workdir``;
    remote write only to the loopback ``sink``; its own sharding off (no -promscrape.cluster.*)."""

    def __init__(self, config: dict[str, Any], workdir: Path, sink: Sink, *flags: str, env: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "scrape.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "vmagent.log"
        args = [program("vmagent"), f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-promscrape.config={workdir / 'scrape.yml'}", f"-remoteWrite.url={sink.url}",
                f"-remoteWrite.tmpDataPath={workdir / 'queue'}", "-loggerLevel=INFO", *flags]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env={**os.environ, **(env or {})})

    def targets(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            raise AssertionError(f"vmagent exited {self.proc.returncode}:\n{self.log_tail()}")
        resp = httpx.get(self.base + "/api/v1/targets", timeout=5, trust_env=False)
        resp.raise_for_status()
        return resp.json()["data"]

    def active_targets(self, job: str) -> list[dict[str, Any]]:
        return [t for t in self.targets()["activeTargets"] if t["scrapePool"] == job]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> "VMAgent":
        return self

    def __exit__(self, *exc: object) -> None:
        terminate(self.proc)


def rewrite_to_closed_port() -> list[dict]:
    """``instance`` keeps the discovered address and object name, then the address goes to a
    closed loopback port (as tests/test_peers.py does for Prometheus)."""
    return [
        {"source_labels": ["__address__", "__meta_kubernetes_node_name", "__meta_kubernetes_pod_name"],
         "separator": "/", "target_label": "instance"},
        {"target_label": "__address__", "replacement": f"127.0.0.1:{CLOSED_PORT}"},
    ]


def scrape_config(sd_base: str, query: str = "", keep_shard: tuple[int, int] | None = None) -> dict:
    """One job per set (the same file for Prometheus and vmagent); ``keep_shard`` (N, I) adds the
    hashmod keep rule a Prometheus shard uses."""
    hashmod = []
    if keep_shard:
        modulus, shard = keep_shard
        hashmod = [{"source_labels": ["__address__"], "modulus": modulus, "target_label": "__tmp_hash", "action": "hashmod"},
                   {"source_labels": ["__tmp_hash"], "regex": str(shard), "action": "keep"}]
    return {
        "global": {"scrape_interval": "1m", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": name, "http_sd_configs": [{"url": f"{sd_base}/targets/{name}{query}"}],
             "relabel_configs": hashmod + rewrite_to_closed_port()}
            for name in SETS
        ],
    }


def discovered(targets: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, str]]]:
    """instance → {"discovered": __address__ and __meta_* labels, "labels": the target's labels}."""
    out = {}
    for t in targets:
        found = {k: v for k, v in t["discoveredLabels"].items() if k == "__address__" or k.startswith("__meta_")}
        out[t["labels"]["instance"]] = {"discovered": found, "labels": t["labels"]}
    return out


def hashmod(target: str, modulus: int) -> int:
    """Prometheus' (and vmagent's) relabel hashmod: md5, its last 8 bytes big-endian, mod N."""
    return int.from_bytes(hashlib.md5(target.encode()).digest()[8:], "big") % modulus


def served(srv: Server, name: str, query: str = "") -> list[str]:
    return sorted(t for g in srv.get(f"/targets/{name}{query}").json() for t in g["targets"])


def node(name: str, ips: list[str], ready: str = "True") -> dict:
    obj = make_node(name, ips, ready=ready, labels={"topology.kubernetes.io/zone": "zone-a"})
    del obj["spec"]["podCIDR"]
    return obj


def build_cluster(cp: ControlPlane) -> None:
    """Ready nodes (one IPv6-only), a NotReady one, a dead node whose IP a new node reuses; Fluentd
    pods dual-stack and IPv4, one not ready."""
    cp.ensure_namespace("logging")
    for i in range(6):
        cp.create(node(f"vm-ready-{i}", [f"192.0.2.{20 + i}"]))
    cp.create(node("vm-v6only", ["2001:db8::20"]))
    cp.create(node("vm-notready", ["192.0.2.30"], ready="False"))
    old = cp.create(node("vm-old", ["192.0.2.31"]))
    wall_clock_second_after(old["metadata"]["creationTimestamp"])
    cp.create(node("vm-new", ["192.0.2.31"]))
    cp.set_status("Node", "vm-old", {"conditions": [{"type": "Ready", "status": "False", "reason": "Test",
                                                    "lastHeartbeatTime": "2026-12-04T10:00:00Z",
                                                    "lastTransitionTime": "2026-12-04T10:00:00Z"}]})
    for i in range(4):
        cp.create(make_pod(f"fluentd-dual-{i}", [f"198.51.100.{20 + i}", f"2001:db8::1:{20 + i}"], node="vm-ready-0"))
    cp.create(make_pod("fluentd-v4", ["198.51.100.30"], node="vm-ready-1"))
    cp.create(make_pod("fluentd-notready", ["198.51.100.31"], node="vm-ready-1", ready="False"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vmagent")
    with contextlib.ExitStack() as stack:
        cp = stack.enter_context(ControlPlane(tmp / "controlplane"))
        build_cluster(cp)
        srv = stack.enter_context(cp.serve(tmp))
        eventually(lambda: srv.get("/readyz").status_code == 200, 30, what="kube-http-sd synced")
        sink = stack.enter_context(Sink())
        yield tmp, srv, sink


def vmagent_eventually(agent: VMAgent, check, what: str, timeout: float = 60):
    try:
        return eventually(check, timeout, interval=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- vmagent log ---\n{agent.log_tail()}") from None


# --------------------------------------------------------------------------- tests


def test_vmagent_reports_the_pinned_version():
    done = subprocess.run([program("vmagent"), "-version"], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == f"vmagent-{VMAGENT_VERSION}", done.stdout + done.stderr


def test_vmagent_discovers_the_same_targets_and_labels_as_prometheus(stack):
    tmp, srv, sink = stack
    config = scrape_config(srv.base)
    expected = {name: served(srv, name) for name in SETS}
    assert all(expected.values()), expected
    with Prometheus(config, tmp / "prometheus", prometheus_binary()) as prom, \
            VMAgent(config, tmp / "vmagent-full", sink, "-promscrape.httpSDCheckInterval=2s") as agent:
        prom.wait_ready()
        for name in SETS:
            def both() -> tuple[dict, dict]:
                theirs, ours = discovered(prom.active_targets(name)), discovered(agent.active_targets(name))
                assert len(theirs) == len(ours) == len(expected[name]), (len(theirs), len(ours), expected[name])
                return theirs, ours

            prometheus_view, vmagent_view = vmagent_eventually(agent, both, f"both discover every {name} target")
            assert sorted(t["discovered"]["__address__"] for t in vmagent_view.values()) == expected[name]
            assert vmagent_view == prometheus_view, name
            # What our labels become: the same __meta_* set kube-http-sd served, nothing lost or renamed.
            some = next(iter(vmagent_view.values()))["discovered"]
            assert some["__meta_url"] == f"{srv.base}/targets/{name}"
            assert "__meta_sd_ip_family" in some


def test_two_vmagents_read_their_shards_with_their_own_sharding_off(stack):
    """Each vmagent reads ?shards=2&shard=I (no -promscrape.cluster.*, no keep rule), one config for
    all with I from its environment (``%{SHARD}``, as docs/vmagent.md sets it from the StatefulSet pod
    index): the union is every target once."""
    tmp, srv, sink = stack
    found: dict[str, list[str]] = {name: [] for name in SETS}
    config = scrape_config(srv.base, "?shards=2&shard=%{SHARD}")
    for shard in range(2):
        with VMAgent(config, tmp / f"vmagent-shard-{shard}", sink, "-promscrape.httpSDCheckInterval=2s",
                     env={"SHARD": str(shard)}) as agent:
            for name in SETS:
                want = served(srv, name, f"?shards=2&shard={shard}")
                assert want and all(hashmod(t, 2) == shard for t in want)

                def got() -> list[str]:
                    addresses = sorted(t["discoveredLabels"]["__address__"] for t in agent.active_targets(name))
                    assert addresses == want, (addresses, want)
                    return addresses

                found[name] += vmagent_eventually(agent, got, f"shard {shard} of {name}")
    for name in SETS:
        assert sorted(found[name]) == served(srv, name), f"{name}: the shards' union is not the set, each target once"


def test_a_prometheus_style_hashmod_keep_rule_in_vmagent_drops_part_of_our_shard(stack):
    """vmagent's relabel ``hashmod`` is xxhash64, not Prometheus' md5: the keep rule a Prometheus
    shard may add on top of its shard URL (harmless there) loses targets in vmagent. docs/vmagent.md
    says to add none."""
    tmp, srv, sink = stack
    want = served(srv, "kubelet", "?shards=2&shard=0")
    with VMAgent(scrape_config(srv.base, "?shards=2&shard=0", keep_shard=(2, 0)), tmp / "vmagent-keep-rule", sink,
                 "-promscrape.httpSDCheckInterval=2s") as agent:
        def split() -> tuple[list[str], list[str]]:
            data = agent.targets()
            kept = sorted(t["discoveredLabels"]["__address__"] for t in data["activeTargets"] if t["scrapePool"] == "kubelet")
            dropped = sorted(t["discoveredLabels"]["__address__"] for t in data["droppedTargets"]
                             if t["discoveredLabels"].get("job") == "kubelet")
            assert sorted(kept + dropped) == want, (kept, dropped, want)
            return kept, dropped

        kept, dropped = vmagent_eventually(agent, split, "shard 0 of kubelet kept or dropped")
    assert dropped, f"every target kept: {kept}"  # with md5 (Prometheus) none would be dropped


def test_what_vmagent_sends_and_that_it_reads_our_gzip(stack):
    """The headers of vmagent's http_sd requests, with its default check interval; it asks for
    gzip, gets it, and discovers exactly the targets of the plain body."""
    tmp, srv, sink = stack
    with Recorder(srv.base) as recorder, VMAgent(scrape_config(recorder.base), tmp / "vmagent-headers", sink) as agent:
        def discovered() -> bool:
            return all(sorted(t["discoveredLabels"]["__address__"] for t in agent.active_targets(name)) == served(srv, name)
                       for name in SETS)

        vmagent_eventually(agent, discovered, "every target of both sets through the recorder")
    _, path, headers = recorder.requests[0]
    assert path in {"/targets/kubelet", "/targets/fluentd"}
    assert headers["accept-encoding"] == "gzip"  # Go's transport asks; it decodes gzip itself when it gets it
    assert recorder.answers and all(a["content-encoding"] == "gzip" and a["vary"] == "Accept-Encoding" and
                                    a["etag"].endswith('+gzip"') for a in recorder.answers), recorder.answers
    assert headers["accept"] == "application/json"
    # Half of -promscrape.httpSDCheckInterval (default 1m): vmagent polls every 30 s.
    assert headers["x-prometheus-refresh-interval-seconds"] == "30"
    assert headers["user-agent"] == "Go-http-client/1.1"  # no User-Agent of its own for http_sd
    assert set(headers) == {"host", "user-agent", "accept", "accept-encoding", "x-prometheus-refresh-interval-seconds"}, headers


def test_vmagent_retries_429_at_once_then_after_two_seconds(stack):
    tmp, srv, sink = stack
    config = scrape_config("")
    config["scrape_configs"] = [config["scrape_configs"][0]]  # kubelet only: one request stream
    with Recorder(srv.base, refuse=2) as recorder:
        config["scrape_configs"][0]["http_sd_configs"][0]["url"] = f"{recorder.base}/targets/kubelet"
        with VMAgent(config, tmp / "vmagent-429", sink) as agent:
            vmagent_eventually(agent, lambda: len(agent.active_targets("kubelet")) == len(served(srv, "kubelet")),
                               "targets after two 429s")
    times = [t for t, _, _ in recorder.requests]
    assert len(times) == 3, times  # two refused, then the third one answered, all in one discovery round
    assert times[1] - times[0] < 0.9, times  # "the second attempt immediately after the first"
    assert 1.5 < times[2] - times[1] < 3.5, times  # then 2 s (not the Retry-After: 1 it was sent)


def test_a_failing_url_loses_its_targets_when_the_job_has_another(stack):
    """vmagent keeps a job's previous targets only when every http_sd URL of the job fails: one
    failing URL next to a working one drops its targets (so: one URL per job)."""
    tmp, srv, sink = stack
    with Recorder(srv.base, status=500) as flaky:  # 500: not retried (429 is)
        config = scrape_config("")
        config["scrape_configs"] = [{
            "job_name": "both", "relabel_configs": rewrite_to_closed_port(),
            "http_sd_configs": [{"url": f"{srv.base}/targets/kubelet"}, {"url": f"{flaky.base}/targets/fluentd"}],
        }]
        kubelets, fluentds = served(srv, "kubelet"), served(srv, "fluentd")
        with VMAgent(config, tmp / "vmagent-two-urls", sink, "-promscrape.httpSDCheckInterval=2s") as agent:
            def count(n: int):
                return lambda: len(agent.active_targets("both")) == n

            vmagent_eventually(agent, count(len(kubelets) + len(fluentds)), "both URLs' targets")
            flaky.refuse = 10**9  # from now on every request to the fluentd URL is refused
            vmagent_eventually(agent, count(len(kubelets)), "the failing URL's targets dropped", timeout=90)
            addresses = sorted(t["discoveredLabels"]["__address__"] for t in agent.active_targets("both"))
            assert addresses == kubelets


def doc_config() -> dict:
    """The vmagent config of docs/vmagent.md (its first YAML block)."""
    text = (ROOT / "docs" / "vmagent.md").read_text()
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))


def dry_run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([program("vmagent"), f"-promscrape.config={config}", "-promscrape.config.dryRun", "-loggerLevel=ERROR"],
                          capture_output=True, text=True, timeout=60)


def test_the_documented_vmagent_config_is_prometheus_ymls_jobs_and_vmagent_accepts_it(tmp_path):
    """vmagent refuses config/prometheus.yml (``refresh_interval``); docs/vmagent.md's config is its
    http_sd jobs without it, reading the Service, and passes vmagent's strict check."""
    refused = dry_run(ROOT / "config" / "prometheus.yml")
    assert refused.returncode != 0 and "field refresh_interval not found in type http.SDConfig" in refused.stderr, refused.stderr
    path = tmp_path / "vmagent.yml"
    path.write_text(yaml.safe_dump(doc_config()))
    accepted = dry_run(path)
    assert accepted.returncode == 0, accepted.stderr
    prometheus = {j["job_name"]: j for j in yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())["scrape_configs"]
                  if j.get("http_sd_configs")}
    for job in doc_config()["scrape_configs"]:
        theirs = copy.deepcopy(prometheus.pop(job["job_name"]))
        for sd in theirs["http_sd_configs"]:
            del sd["refresh_interval"]
            sd["url"] = sd["url"].replace("http://localhost:8080", "http://kube-http-sd.monitoring.svc:8080")
        assert job == theirs, job["job_name"]
    assert not prometheus, f"jobs missing from docs/vmagent.md: {sorted(prometheus)}"


def test_the_readme_vmagent_block_passes_vmagents_strict_check(tmp_path):
    """The README's short vmagent example (the block that starts with its command line)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(# vmagent .*?)```", text, re.S)
    assert block, "README has no vmagent block"
    path = tmp_path / "vmagent.yml"
    path.write_text(block.group(1))
    accepted = dry_run(path)
    assert accepted.returncode == 0, accepted.stderr
