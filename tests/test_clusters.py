"""Several clusters from one server, in process: the service built from a ``clusters:`` map,
its feeds filled per cluster as their informers would (one full list each), and what the
HTTP layer reads (bodies, shards, readiness) and people see (explain, /metrics)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from sd.clusters import ClusterSets
from sd.config import AttachMetadata, ClusterSettings, Config, ConfigError, KubeSettings, default_config, parse_config
from sd.kinds.labels import CLUSTER_LABEL
from sd.metrics import Metrics
from sd.service import Service, load_snapshot
from sd.shards import hashmod
from sd.views import PARTIAL, READY, SYNCING, explain, set_state
from sdtest.factories import make_node, make_pod
from sdtest.helpers import ROOT


def multi(*names: str, **set_settings: Any) -> Config:
    """The default sets (with ``set_settings``) over clusters ``names``."""
    targets = {n: replace(sc, **set_settings) for n, sc in default_config().targets.items()}
    return Config(targets=targets, clusters={n: ClusterSettings(n, kubeconfig=f"/{n}.yaml") for n in names})


def feed_cluster(service: Service, cluster: str, objects: list[dict]) -> None:
    """One full list of ``objects`` for every source of ``cluster``, then render."""
    by_kind: dict[str, list[dict]] = {"nodes": [], "pods": []}
    for obj in objects:
        by_kind[obj["kind"].lower() + "s"].append(obj)
    load_snapshot(by_kind, [f for (c, _), f in service.feeds.items() if c == cluster])
    service.renderer.render_all()


def served(ts) -> list[tuple[str, str, str]]:
    """(cluster, target, object) of every group, in body order."""
    out = []
    for group in json.loads(ts.body):
        labels = group["labels"]
        name = labels.get("__meta_kubernetes_pod_name") or labels["__meta_kubernetes_node_name"]
        out += [(labels.get(CLUSTER_LABEL), t, name) for t in group["targets"]]
    return out


def node(name: str, ip: str, created: str = "2026-01-01T00:00:00Z", ready: str = "True") -> dict:
    return make_node(name, [ip], created=created, ready=ready)


# Both clusters use 192.0.2.10 for different machines; each reuses an IP within itself.
EAST = [
    node("e-a", "192.0.2.10"),
    node("e-old", "192.0.2.20", created="2026-01-01T00:00:00Z"),
    node("e-new", "192.0.2.20", created="2026-02-01T00:00:00Z"),
    make_pod("fluentd-1", ["192.0.2.50"], node="e-a"),
]
WEST = [
    node("w-a", "192.0.2.10"),
    node("w-dead", "192.0.2.30", created="2026-03-01T00:00:00Z", ready="False"),
    node("w-live", "192.0.2.30", created="2026-01-01T00:00:00Z"),
    make_pod("fluentd-1", ["192.0.2.50"], node="w-a"),
]


def test_each_cluster_is_served_labelled_with_conflicts_resolved_within_it_and_never_across():
    service = Service(multi("east", "west"), Metrics(clusters=True))
    feed_cluster(service, "east", EAST)
    feed_cluster(service, "west", WEST)
    kubelet = service.sets["kubelet"]
    assert served(kubelet) == [
        ("east", "192.0.2.10:10250", "e-a"),
        ("east", "192.0.2.20:10250", "e-new"),  # newer wins within east
        ("west", "192.0.2.10:10250", "w-a"),  # the same IP in another cluster: served too
        ("west", "192.0.2.30:10250", "w-live"),  # Ready beats the newer NotReady within west
    ]
    # One pod name, one IP, two clusters: two targets, each with its cluster.
    assert served(service.sets["fluentd"]) == [("east", "192.0.2.50:24231", "fluentd-1"), ("west", "192.0.2.50:24231", "fluentd-1")]
    view = explain(kubelet)
    assert [(e["cluster"], e["ip"], e["winner"], [lo["object"] for lo in e["losers"]]) for e in view["ips"]] == [
        ("east", "192.0.2.10", "e-a", []), ("east", "192.0.2.20", "e-new", ["e-old"]),
        ("west", "192.0.2.10", "w-a", []), ("west", "192.0.2.30", "w-live", []),
    ]
    assert [(e["cluster"], e["object"], e["reason"]) for e in view["excluded"]] == [("west", "w-dead", "not_ready")]
    assert [(c["cluster"], c["synced"]) for c in view["clusters"]] == [("east", True), ("west", True)]
    assert {s["source"] for s in view["sources"]} == {"east/nodes", "west/nodes"}


def test_shards_of_several_clusters_cover_the_union_each_group_once():
    service = Service(multi("east", "west"), Metrics(clusters=True))
    feed_cluster(service, "east", EAST)
    feed_cluster(service, "west", WEST)
    ts = service.sets["kubelet"]
    whole = json.loads(ts.body)
    n = 3
    shards = [json.loads(bytes(ts.shard(n, i))) for i in range(n)]
    assert sorted(map(json.dumps, (g for s in shards for g in s))) == sorted(map(json.dumps, whole))
    for i, groups in enumerate(shards):
        assert all(hashmod(g["targets"][0], n) == i for g in groups)
    etags = {ts.etag, *(ts.shard(n, i).etag for i in range(n))}
    assert len(etags) == n + 1


def test_etag_follows_content_and_one_cluster_change_touches_only_its_part():
    service = Service(multi("east", "west"), Metrics(clusters=True))
    feed_cluster(service, "east", EAST)
    feed_cluster(service, "west", WEST)
    ts = service.sets["kubelet"]
    assert isinstance(ts, ClusterSets)
    before, east_renders = ts.etag, ts.parts["east"].renders
    feed_cluster(service, "west", [o for o in WEST if o["metadata"]["name"] != "w-a"])
    assert ts.etag != before
    assert ts.parts["east"].renders == east_renders  # east was not rendered again
    assert ("west", "192.0.2.10:10250", "w-a") not in served(ts)
    feed_cluster(service, "west", WEST)
    assert ts.etag == before  # same state, same ETag


def test_a_set_waits_for_every_cluster_until_the_timeout_then_serves_what_it_has_and_says_what_is_missing():
    waiting = Service(multi("east", "west"), Metrics(clusters=True))
    feed_cluster(waiting, "east", EAST)
    assert not waiting.sets["kubelet"].synced  # west has not listed; 60 s have not passed
    assert set_state(waiting.sets["kubelet"]) == SYNCING
    assert waiting.sets["kubelet"].waiting_for() == ["west/nodes"]

    service = Service(multi("east", "west", cluster_sync_timeout_seconds=0.0), Metrics(clusters=True))
    assert not service.sets["kubelet"].synced  # no cluster at all: never an empty 200
    service.renderer.render_all()
    assert not service.sets["kubelet"].synced
    feed_cluster(service, "east", EAST)
    ts = service.sets["kubelet"]
    assert ts.synced and set_state(ts) == PARTIAL and ts.missing() == ["west"]
    assert {c for c, _, _ in served(ts)} == {"east"}
    service.metrics.watch_sets(service.sets)
    text = generate_latest(service.metrics.registry).decode()
    assert 'kube_http_sd_set_cluster_synced{cluster="west",set="kubelet"} 0.0' in text
    assert 'kube_http_sd_set_cluster_synced{cluster="east",set="kubelet"} 1.0' in text
    assert 'kube_http_sd_source_up{cluster="west",source="nodes"} 1.0' in text
    feed_cluster(service, "west", WEST)
    assert set_state(ts) == READY and {c for c, _, _ in served(ts)} == {"east", "west"}


def test_a_set_may_serve_some_clusters_only():
    config = multi("east", "west")
    config.targets["kubelet"] = replace(config.targets["kubelet"], clusters=("west",))
    service = Service(config, Metrics(clusters=True))
    feed_cluster(service, "east", EAST)
    feed_cluster(service, "west", WEST)
    assert {c for c, _, _ in served(service.sets["kubelet"])} == {"west"}
    assert {c for c, _, _ in served(service.sets["fluentd"])} == {"east", "west"}
    assert sorted(name for name, _ in service.feeds) == ["east", "west", "west"]


def test_reload_adds_and_removes_clusters_keeping_the_others_feeds_and_sets():
    service = Service(multi("east", "west"), Metrics(clusters=True))
    feed_cluster(service, "east", EAST)
    feed_cluster(service, "west", WEST)
    kubelet = service.sets["kubelet"]
    east_feeds = {k: f for k, f in service.feeds.items() if k[0] == "east"}
    relists = {k: f.status.relists for k, f in east_feeds.items()}
    service.reload(multi("east", "north"))
    assert service.sets["kubelet"] is kubelet  # the same set: it keeps serving
    assert {k: f for k, f in service.feeds.items() if k[0] == "east"} == east_feeds
    assert {k: f.status.relists for k, f in east_feeds.items()} == relists
    assert sorted({c for c, _ in service.feeds}) == ["east", "north"]
    service.renderer.render_all()
    assert {c for c, _, _ in served(kubelet)} == {"east"}  # west's targets left with it
    assert kubelet.synced  # served once: a new cluster does not take it back to 503
    feed_cluster(service, "north", WEST)
    assert {c for c, _, _ in served(kubelet)} == {"east", "north"}


def test_reload_replaces_a_cluster_whose_settings_changed():
    service = Service(multi("east", "west"), Metrics(clusters=True))
    west = service.feeds[next(k for k in service.feeds if k[0] == "west")]
    changed = multi("east", "west")
    changed.clusters["west"] = ClusterSettings("west", kubeconfig="/west.yaml", context="other")
    service.reload(changed)
    assert service.feeds[next(k for k in service.feeds if k[0] == "west")] is not west


def test_reload_refuses_to_switch_between_one_cluster_and_several():
    service = Service(default_config(), Metrics())
    with pytest.raises(ConfigError, match="restart"):
        service.reload(multi("east"))


def kubeconfig(tmp_path: Path, contexts: tuple[str, ...] = ("a", "b"), current: str = "a") -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "contexts": [{"name": c, "context": {"cluster": "x", "user": "x"}} for c in contexts],
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}], "users": [{"name": "x", "user": {"token": "t"}}],
    }))
    return str(path)


def test_clusters_config_is_parsed_with_per_cluster_kubernetes_settings(tmp_path):
    kc = kubeconfig(tmp_path)
    config = parse_config({
        "kubernetes": {"page_size": 7, "read_timeout_seconds": 30},
        "clusters": {"east": {"kubeconfig": kc}, "west": {"kubeconfig": kc, "context": "b", "kubernetes": {"page_size": 9}}},
        "targets": {"kubelet": {"source": "nodes", "port": 10250, "clusters": ["west"], "cluster_sync_timeout_seconds": 5}},
    })
    assert config.clusters["east"] == ClusterSettings("east", kc, "", False, KubeSettings(page_size=7, read_timeout_seconds=30))
    assert config.clusters["west"].kubernetes == KubeSettings(page_size=9, read_timeout_seconds=30)
    assert config.clusters["west"].context == "b"
    assert config.targets["kubelet"].clusters == ("west",)
    assert config.targets["kubelet"].cluster_sync_timeout_seconds == 5


@pytest.mark.parametrize(
    ("clusters", "targets", "problem"),
    [
        ({"east": {"kubeconfig": "KC", "context": "nope"}}, None, "clusters.east.context: no context 'nope' in"),
        ({"east": {"kubeconfig": "/no/such/kubeconfig"}}, None, "clusters.east.kubeconfig: cannot read /no/such/kubeconfig"),
        ({"east": {"in_cluster": True, "kubeconfig": "KC"}}, None, "clusters.east: set either kubeconfig"),
        ({"east": {}}, None, "clusters.east: set either kubeconfig"),
        ({"a": {"in_cluster": True}, "b": {"in_cluster": True}}, None, "clusters: only the cluster this runs in"),
        ({"east": {"kubeconfig": "KC", "kubernetes": {"page_size": 0}}}, None, "clusters.east.kubernetes.page_size: must be"),
        ({"east": {"kubeconfig": "KC", "token": "x"}}, None, "clusters.east.token: unknown setting"),
        ({}, None, "clusters: must be a non-empty mapping"),
        ({"east": {"kubeconfig": "KC"}}, {"clusters": ["west"]}, "targets.k.clusters[0]: no cluster 'west'"),
        ({"east": {"kubeconfig": "KC"}}, {"clusters": []}, "targets.k.clusters: must name at least one cluster"),
        (None, {"clusters": ["east"]}, "targets.k.clusters: needs the top-level clusters: map"),
        (None, {"cluster_sync_timeout_seconds": 5}, "targets.k.cluster_sync_timeout_seconds: needs the top-level clusters"),
    ],
)
def test_clusters_config_problems_name_their_field(tmp_path, clusters, targets, problem):
    kc = kubeconfig(tmp_path)
    data: dict = {"targets": {"k": {"source": "nodes", "port": 10250, **(targets or {})}}}
    if clusters is not None:
        data["clusters"] = json.loads(json.dumps(clusters).replace('"KC"', json.dumps(kc)))
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "sd.yaml")
    assert any(p.startswith(f"sd.yaml: {problem}") for p in caught.value.problems), caught.value.problems


def test_a_kubeconfig_without_current_context_needs_a_context(tmp_path):
    kc = kubeconfig(tmp_path, current="")
    with pytest.raises(ConfigError, match="has no current-context: name one with context"):
        parse_config({"clusters": {"east": {"kubeconfig": kc}}})
    assert parse_config({"clusters": {"east": {"kubeconfig": kc, "context": "b"}}}).clusters["east"].context == "b"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    return subprocess.run([sys.executable, "-m", "sd", *args], capture_output=True, text=True, timeout=60,
                          env={**environ, **(env or {})}, cwd=ROOT)


def test_check_config_names_the_clusters_and_serve_refuses_what_cannot_reach_them(tmp_path):
    kc = kubeconfig(tmp_path)
    config = tmp_path / "sd.yaml"
    config.write_text(f"clusters:\n  east: {{kubeconfig: {kc}, context: b}}\n  here: {{in_cluster: true}}\n")
    done = run_cli("check-config", "--config", str(config))
    assert done.returncode == 0 and f"cluster east: {kc} context b; cluster here: in-cluster" in done.stdout

    done = run_cli("serve", "--config", str(config), "--kubeconfig", kc, "--listen", "127.0.0.1:0")
    assert done.returncode == 2 and "--kubeconfig serves one cluster" in done.stderr

    done = run_cli("serve", "--config", str(config), "--listen", "127.0.0.1:0")
    assert done.returncode == 1 and "clusters.here: in_cluster: true, but KUBERNETES_SERVICE_HOST is not set" in done.stderr

    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: x, user: x}}]\n")
    config.write_text(f"clusters:\n  east: {{kubeconfig: {kc}}}\n  west: {{kubeconfig: {broken}}}\n")
    done = run_cli("serve", "--config", str(config), "--listen", "127.0.0.1:0")
    assert done.returncode == 1 and f"clusters.west: kubeconfig {broken}: cannot load:" in done.stderr


def test_attached_node_labels_come_from_the_pods_own_cluster():
    config = multi("east", "west")
    config.targets["fluentd"] = replace(config.targets["fluentd"], attach_metadata=AttachMetadata(node=True))
    service = Service(config, Metrics(clusters=True))
    for cluster in ("east", "west"):
        feed_cluster(service, cluster, [make_node("same", ["192.0.2.1"], labels={"zone": cluster}),
                                        make_pod("fluentd-1", ["192.0.2.50"], node="same")])
    zones = {(g["labels"][CLUSTER_LABEL], g["labels"].get("__meta_kubernetes_node_label_zone"))
             for g in json.loads(service.sets["fluentd"].body)}
    assert zones == {("east", "east"), ("west", "west")}


def test_the_gzip_of_a_set_over_several_clusters_decodes_to_its_body():
    service = Service(multi("east", "west"), Metrics(clusters=True))
    feed_cluster(service, "east", EAST)
    feed_cluster(service, "west", WEST)
    ts = service.sets["kubelet"]
    assert gzip.decompress(bytes(ts.gzipped())) == ts.body
    for i in range(2):
        assert gzip.decompress(bytes(ts.gzipped((2, i)))) == bytes(ts.shard(2, i))
    feed_cluster(service, "west", WEST[1:])
    assert gzip.decompress(bytes(ts.gzipped())) == ts.body  # made again after the render
