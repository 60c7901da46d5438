"""13. ports_all: the fluentd set with `ports: all` against the same set with `ports: named`
(the default), at 5,000 dual-stack pods with 3 container ports each: the full render, one
pod's change, the body and the RSS (bench/README.md)."""

from __future__ import annotations

import time
from pathlib import Path

from bench import workload as W
from bench.harness import CONFIG_YAML, MB, Context, Env, log, scrape

SETS = CONFIG_YAML + """\
targets:
  kubelet: {{source: nodes, port: 10250, port_name: kubelet}}
  fluentd: {{source: pods, label_selector: app.kubernetes.io/name=fluentd, ip_family: both, {ports}}}
"""
NAMED = SETS.format(ports="port: 24231, port_name: monitor")
ALL = SETS.format(ports="ports: all")
RENDER = 'kube_http_sd_render_duration_seconds_sum{set="fluentd"}'


def pod(i: int) -> dict:
    """The workload's pod with a third port (Fluentd's in_http)."""
    obj = W.pod(i)
    obj["spec"]["containers"][0]["ports"].append({"name": "http", "containerPort": 9880, "protocol": "TCP"})
    return obj


def run(ctx: Context) -> None:
    runs, sc = ctx.runs, "ports_all"
    m_targets = ctx.metric(sc, "targets served, all vs named", "", "-", None,
                           note="5,000 dual-stack pods with 3 container ports: all = one target per port and IP")
    m_render = ctx.metric(sc, "first (full) render, all vs named", "ms", "-", None,
                          note="kube_http_sd_render_duration_seconds of set fluentd after the first sync")
    m_change = ctx.metric(sc, "render after one pod's labels change, all vs named", "ms", "-", None,
                          note="only that pod's groups are built again (6 with all, 2 with named)")
    m_body = ctx.metric(sc, "/targets/fluentd body, all vs named", "MB", "-", None)
    m_rss = ctx.metric(sc, "RSS synced, all vs named", "MB", "-", None, note="VmRSS 1 s after sync")
    env = Env(ctx)
    configs = {}
    for label, text in (("named", NAMED), ("all", ALL)):
        configs[label] = str(Path(env.config).with_name(f"sd-ports-{label}.yaml"))
        Path(configs[label]).write_text(text)
    try:
        env.load(sc, pods=False)
        pods = [pod(i) for i in range(ctx.sizes.pods)]
        env.api.add_many(pods)
        for run in range(runs):
            got: dict[str, dict[str, float]] = {}
            for label in ("named", "all"):
                with env.settled(configs[label]) as (proc, client):
                    raw = client.get("/targets/fluentd")[2]
                    first = scrape(client)
                    changed = dict(pods[run], metadata={**pods[run]["metadata"], "labels": {
                        **pods[run]["metadata"]["labels"], "bench.example/run": f"{label}-{run}"}})
                    env.api.modify(changed)
                    deadline = time.monotonic() + 10
                    while (after := scrape(client))[RENDER] == first[RENDER]:
                        if time.monotonic() > deadline:
                            raise RuntimeError("the pod's change was never rendered")
                        time.sleep(0.01)
                    got[label] = {
                        "targets": raw.count(b'"targets"'),
                        "render": first[RENDER] * 1e3,
                        "change": (after[RENDER] - first[RENDER]) * 1e3,
                        "body": len(raw) / MB,
                        "rss": proc.mem()["VmRSS"] / MB,
                    }
            a, n = got["all"], got["named"]
            m_targets.add(a["targets"], n["targets"])
            m_render.add(a["render"], n["render"])
            m_change.add(a["change"], n["change"])
            m_body.add(a["body"], n["body"])
            m_rss.add(a["rss"], n["rss"])
            log(f"{sc} run {run + 1}/{runs}: render {a['render']:.0f} vs {n['render']:.0f} ms, "
                f"body {a['body']:.1f} vs {n['body']:.1f} MB, RSS {a['rss']:.0f} vs {n['rss']:.0f} MB")
    finally:
        env.stop()
