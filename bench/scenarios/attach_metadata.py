"""8. attach_metadata: the fluentd set with attach_metadata: {node: true} at 5,000 nodes +
5,000 pods (one per node): memory against the same server without it, and what one node's
label change costs: time until its pod's targets show it, and the render (bench/README.md)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from bench import workload as W
from bench.harness import CONFIG_YAML, MB, Client, Context, Env, log, scrape, wait_synced

ATTACHED = CONFIG_YAML + """\
targets:
  kubelet: {source: nodes, port: 10250, port_name: kubelet}
  fluentd:
    source: pods
    port: 24231
    port_name: monitor
    label_selector: app.kubernetes.io/name=fluentd
    ip_family: both
    attach_metadata: {node: true}
"""


def run(ctx: Context) -> None:
    runs, sc = ctx.runs, "attach_metadata"
    m_rss = ctx.metric(sc, "RSS synced, attached vs not", "MB", "-", None,
                       note="VmRSS 1 s after sync; baseline: the default config (no attach_metadata). Most of the "
                            "difference is the body itself: every fluentd group carries its node's labels")
    m_body = ctx.metric(sc, "/targets/fluentd body, attached vs not", "MB", "-", None)
    m_fresh = ctx.metric(sc, "one node's label change -> its pod's targets show it", "ms", "< 250 ms", lambda o, b, r: o < 250)
    m_render = ctx.metric(sc, "render after one node's label change vs a full render", "ms", "-", None,
                          note="kube_http_sd_render_duration_seconds of set fluentd: the render that follows the "
                               "change, against the first (full) render of the set")
    env = Env(ctx)
    attached = str(Path(env.config).with_name("sd-attached.yaml"))
    Path(attached).write_text(ATTACHED)
    plain = env.config
    try:
        nodes = env.load(sc)
        for run in range(runs):
            rss, body = {}, {}
            for label, config in (("plain", plain), ("attached", attached)):
                env.config = config
                proc, port = env.start_server()
                try:
                    wait_synced(proc, port)
                    time.sleep(1)
                    rss[label] = proc.mem()["VmRSS"] / MB
                    client = Client(port)
                    body[label] = len(client.get("/targets/fluentd")[2]) / MB
                    if label != "attached":
                        client.close()
                        continue
                    first = scrape(client)['kube_http_sd_render_duration_seconds_sum{set="fluentd"}']
                    before = scrape(client)
                    i = run % len(nodes)
                    changed = dict(nodes[i], metadata={**nodes[i]["metadata"],
                                   "labels": {**nodes[i]["metadata"]["labels"], "bench.example/run": str(run)}})
                    pod_ip = W.pod_ips(i)[0]
                    etag = client.get("/targets/fluentd")[1].getheader("etag")
                    t0 = time.perf_counter()
                    env.api.modify(changed)
                    while True:  # 304s until the body changes; the clock stops when it has arrived
                        status, resp, raw = client.get("/targets/fluentd", {"If-None-Match": etag})
                        arrived = time.perf_counter()
                        if status == 200:
                            etag = resp.getheader("etag")
                            if any(g["labels"].get("__meta_kubernetes_node_label_bench_example_run") == str(run)
                                   for g in orjson.loads(raw) if g["targets"][0].startswith(pod_ip + ":")):
                                break
                        if arrived - t0 > 10:
                            raise RuntimeError("the node label never reached its pod's targets")
                        time.sleep(0.002)
                    m_fresh.add((arrived - t0) * 1e3)
                    after = scrape(client)
                    key = 'kube_http_sd_render_duration_seconds_sum{set="fluentd"}'
                    m_render.add((after[key] - before[key]) * 1e3, first * 1e3)
                    client.close()
                finally:
                    proc.stop()
            m_rss.add(rss["attached"], rss["plain"])
            m_body.add(body["attached"], body["plain"])
            log(f"{sc} run {run + 1}/{runs}: RSS attached {rss['attached']:.0f} MB vs {rss['plain']:.0f} MB")
    finally:
        env.config = plain
        env.stop()
