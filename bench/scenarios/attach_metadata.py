"""8. attach_metadata: the fluentd set with attach_metadata: {node: true} at 5,000 nodes +
5,000 pods (one per node): memory against the same server without it, and what one node's
label change costs: time until its pod's targets show it, and the render. Then the same pods in
50 namespaces, owned by Deployments' ReplicaSets, beside CronJobs' Jobs, with namespace: true and
the workload names: memory per pod, the cost of the ReplicaSet and Job watches, and what one
namespace's label change costs (bench/README.md)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import orjson

from bench import workload as W
from bench.harness import CONFIG_YAML, MB, Client, Context, Env, log, scrape

FLUENTD_ATTACHING = """\
targets:
  kubelet: {source: nodes, port: 10250, port_name: kubelet}
  fluentd:
    source: pods
    port: 24231
    port_name: monitor
    label_selector: app.kubernetes.io/name=fluentd
    ip_family: both
    attach_metadata: {%s}
"""
ATTACHED = CONFIG_YAML + FLUENTD_ATTACHING % "node: true"
NAMESPACED = {  # config name -> attach_metadata
    "none": "",
    "workloads": "deployment: true, job: true, cronjob: true",
    "all": "namespace: true, deployment: true, job: true, cronjob: true",
}
CHANGED_NAMESPACE = 7


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
                with _settled(env, config) as (client, rss[label], body[label]):
                    if label != "attached":
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
            m_rss.add(rss["attached"], rss["plain"])
            m_body.add(body["attached"], body["plain"])
            log(f"{sc} run {run + 1}/{runs}: RSS attached {rss['attached']:.0f} MB vs {rss['plain']:.0f} MB")
    finally:
        env.config = plain
        env.stop()
    run_namespaces(ctx)


def run_namespaces(ctx: Context) -> None:
    runs, sc, pods = ctx.runs, "attach_metadata", ctx.sizes.pods
    held = f"{W.NAMESPACES} namespaces, {W.NAMESPACES * W.REVISIONS} ReplicaSets, {W.NAMESPACES * W.JOBS} Jobs"
    m_rss = ctx.metric(sc, f"{pods:,} pods in {W.NAMESPACES} namespaces: RSS, namespace + workload names vs none", "MB", "-", None,
                       note=f"VmRSS 1 s after sync; attach_metadata {{namespace, deployment, job, cronjob}} against none; "
                            f"the watches hold {held}")
    m_pod = ctx.metric(sc, "... added memory per pod (namespace + workload names)", "KB", "-", None, ratio=False,
                       note="(RSS all - RSS none) / pods: the records, indexes and the longer groups in the body")
    m_watch = ctx.metric(sc, "RSS with the workload names only (ReplicaSet + Job watches) vs none", "MB", "-", None)
    m_body = ctx.metric(sc, "/targets/fluentd body, namespace + workload names vs none", "MB", "-", None)
    m_fresh = ctx.metric(sc, f"one namespace's label change -> its {pods // W.NAMESPACES} pods' targets show it", "ms",
                         "< 250 ms", lambda o, b, r: o < 250)
    m_render = ctx.metric(sc, "render after one namespace's label change vs a full render", "ms", "-", None,
                          note="kube_http_sd_render_duration_seconds of set fluentd: the render that follows the "
                               "change (its namespace's groups rebuilt), against the first (full) render of the set")
    env = Env(ctx)
    configs = {}
    for name, attach in NAMESPACED.items():
        configs[name] = str(Path(env.config).with_name(f"sd-namespaced-{name}.yaml"))
        Path(configs[name]).write_text(CONFIG_YAML + FLUENTD_ATTACHING % attach)
    changed_ns = W.namespace_name(CHANGED_NAMESPACE)
    try:
        log(f"{sc}: loading {ctx.sizes.nodes} nodes + {pods} pods in {W.NAMESPACES} namespaces, {held} into the double")
        env.api.add_many(W.nodes(ctx.sizes.nodes))
        env.api.add_many([W.namespace(k) for k in range(W.NAMESPACES)] + W.replicasets() + W.jobs())
        env.api.add_many(W.namespaced_pods(pods))
        for run in range(runs):
            rss, body = {}, {}
            for name, config in configs.items():
                with _settled(env, config) as (client, rss[name], body[name]):
                    if name == "all":
                        _namespace_change(env, client, changed_ns, run + 1, m_fresh, m_render)
            m_rss.add(rss["all"], rss["none"])
            m_pod.add((rss["all"] - rss["none"]) * MB / 1024 / pods)
            m_watch.add(rss["workloads"], rss["none"])
            m_body.add(body["all"], body["none"])
            log(f"{sc} namespaces run {run + 1}/{runs}: RSS all {rss['all']:.0f} MB, workloads {rss['workloads']:.0f} MB, "
                f"none {rss['none']:.0f} MB")
    finally:
        env.stop()


@contextmanager
def _settled(env: Env, config: str) -> Iterator[tuple[Client, float, float]]:
    """``env.settled(config)``: its client, its VmRSS and the /targets/fluentd body (MB)."""
    with env.settled(config) as (proc, client):
        rss = proc.mem()["VmRSS"] / MB
        yield client, rss, len(client.get("/targets/fluentd")[2]) / MB


def _namespace_change(env: Env, client: Client, ns: str, revision: int, m_fresh: Any, m_render: Any) -> None:
    """Relabel namespace ``ns``; the clock stops when all its pods' targets carry the new label."""
    key = 'kube_http_sd_render_duration_seconds_sum{set="fluentd"}'
    first = scrape(client)[key]
    before = scrape(client)
    etag = client.get("/targets/fluentd")[1].getheader("etag")
    t0 = time.perf_counter()
    env.api.modify(W.namespace(CHANGED_NAMESPACE, revision))
    while True:  # 304s until the body changes
        status, resp, raw = client.get("/targets/fluentd", {"If-None-Match": etag})
        arrived = time.perf_counter()
        if status == 200:
            etag = resp.getheader("etag")
            groups = [g for g in orjson.loads(raw) if g["labels"]["__meta_kubernetes_namespace"] == ns]
            if groups and all(g["labels"].get("__meta_kubernetes_namespace_label_bench_example_revision") == str(revision)
                              for g in groups):
                break
        if arrived - t0 > 10:
            raise RuntimeError("the namespace label never reached its pods' targets")
        time.sleep(0.002)
    m_fresh.add((arrived - t0) * 1e3)
    after = scrape(client)
    m_render.add((after[key] - before[key]) * 1e3, first * 1e3)
