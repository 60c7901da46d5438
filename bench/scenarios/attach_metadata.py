"""8. attach_metadata: the fluentd set with attach_metadata: {node: true} at 5,000 nodes +
5,000 pods (one per node): memory against the same server without it, and what one node's
label change costs: time until its pod's targets show it, and the render (bench/README.md)."""

from __future__ import annotations

import gc
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
    sz, runs, sc = ctx.sizes, ctx.runs, "attach_metadata"
    m_rss = ctx.metric(sc, "RSS synced, attached vs not", "MB", "<= 1.15x", lambda o, b, r: r is not None and r <= 1.15,
                       note="VmRSS 1 s after sync; baseline: the default config (no attach_metadata)")
    m_fresh = ctx.metric(sc, "one node's label change -> its pod's targets show it", "ms", "< 250 ms", lambda o, b, r: o < 250)
    m_render = ctx.metric(sc, "render after one node's label change vs a full render", "ms", "-", None,
                          note="kube_http_sd_render_duration_seconds of set fluentd: the render that follows the "
                               "change, against the first (full) render of the set")
    env = Env(ctx)
    attached = str(Path(env.config).with_name("sd-attached.yaml"))
    Path(attached).write_text(ATTACHED)
    plain = env.config
    try:
        log(f"{sc}: loading {sz.nodes} nodes + {sz.pods} pods into the double")
        nodes = W.nodes(sz.nodes)
        env.api.add_many(nodes)
        env.api.add_many(W.pods(sz.pods))
        gc.collect()
        for run in range(runs):
            rss = {}
            for label, config in (("plain", plain), ("attached", attached)):
                env.config = config
                proc, port = env.start_server()
                try:
                    wait_synced(proc, port)
                    time.sleep(1)
                    rss[label] = proc.mem()["VmRSS"] / MB
                    if label != "attached":
                        continue
                    client = Client(port)
                    first = scrape(client)['kube_http_sd_render_duration_seconds_sum{set="fluentd"}']
                    before = scrape(client)
                    i = run % len(nodes)
                    changed = dict(nodes[i], metadata={**nodes[i]["metadata"],
                                   "labels": {**nodes[i]["metadata"]["labels"], "bench.example/run": str(run)}})
                    t0 = time.perf_counter()
                    env.api.modify(changed)
                    pod_ip = W.pod_ips(i)[0]
                    while True:
                        body = orjson.loads(client.get("/targets/fluentd")[2])
                        if any(g["labels"].get("__meta_kubernetes_node_label_bench_example_run") == str(run)
                               for g in body if g["targets"][0].startswith(pod_ip + ":")):
                            break
                        if time.perf_counter() - t0 > 10:
                            raise RuntimeError("the node label never reached its pod's targets")
                    m_fresh.add((time.perf_counter() - t0) * 1e3)
                    after = scrape(client)
                    key = 'kube_http_sd_render_duration_seconds_sum{set="fluentd"}'
                    m_render.add((after[key] - before[key]) * 1e3, first * 1e3)
                    client.close()
                finally:
                    proc.stop()
            m_rss.add(rss["attached"], rss["plain"])
            log(f"{sc} run {run + 1}/{runs}: RSS attached {rss['attached']:.0f} MB vs {rss['plain']:.0f} MB")
    finally:
        env.config = plain
        env.stop()
