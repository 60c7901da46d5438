"""attach_metadata beyond the node: namespace metadata and workload names, transcribed from
Prometheus 3.16's discovery/kubernetes/pod_test.go (TestPodDiscoveryWithNamespaceMetadata,
...WithUpdatedNamespaceMetadata, ...WithDeployment, ...WithJob, ...WithCronJob and their
...Update variants) with their expected labels, then what the shared watches do in the
service: started only when a set asks, dropped on reload, and waited for before the first 200.

Our documented differences apply as in tests/test_parity.py: one target per pod IP on the
set's named port and ``__meta_sd_ip_family``; the Go tests' public addresses (1.2.3.4,
2.3.4.5) are replaced by documentation ones."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from sdtest.factories import make_namespace, make_pod

from sd.attach import Directory
from sd.config import AttachMetadata, KindName, SetConfig, parse_config
from sd.feed import ListWatch
from sd.kinds import namespaces, pods, workloads
from sd.kinds.labels import Allowlist
from sd.kinds.relations import RELATIONS
from sd.metrics import Metrics
from sd.service import Service
from sd.targets import TargetSet

POD_IP, HOST_IP = "192.0.2.4", "192.0.2.5"
EVERY_ANNOTATION = ("*",)  # Prometheus attaches all of a namespace's annotations


def attached(annotations: tuple[str, ...] = EVERY_ANNOTATION, **options: bool) -> tuple[TargetSet, dict[str, Directory]]:
    """A pod set on port ``testport`` attaching ``options``, with a directory per related kind."""
    ts = TargetSet(SetConfig(name="web", source=KindName.PODS, port=9000, port_name="testport",
                             annotations=annotations, attach_metadata=AttachMetadata(**options)))
    directories: dict[str, Directory] = {}
    for option in ts.config.attach_metadata.options:
        relation = RELATIONS["pods"][option]
        kind = relation.kind
        ts.attach(relation, directories.setdefault(kind.name, Directory(kind)) if kind is not None else None)
    return ts, directories


def put(ts: TargetSet, directories: dict[str, Directory], *objects: dict[str, Any]) -> None:
    """Each object to the set (a Pod) or to its kind's directory, parsed as its feed would."""
    for obj in objects:
        if obj["kind"] == "Pod":
            ts.upsert(pods.KIND.parse(copy.deepcopy(obj), annotations=ts.annotations))
        else:
            directory = next(d for d in directories.values() if d.kind.object_kind == obj["kind"])
            directory.upsert(directory.kind.parse(copy.deepcopy(obj), annotations=ts.annotations))


def served(ts: TargetSet) -> dict[str, dict[str, str]]:
    ts.render()
    return {g["targets"][0]: g["labels"] for g in orjson.loads(ts.body)}


def make_pods(namespace: str, owner: tuple[str, str] | None = None, uid: str = "abc123") -> dict:
    """pod_test.go makePods (owner: makeReplicaSetOwnedPod / makeJobOwnedPod, uid pod123)."""
    meta: dict[str, Any] = {"name": "testpod", "namespace": namespace, "uid": uid}
    if owner is not None:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "uid": f"{owner[1]}-uid", "controller": True}]
    return {
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": "testnode", "containers": [{"name": "testcontainer", "image": "testcontainer:latest",
                                                          "ports": [{"name": "testport", "protocol": "TCP", "containerPort": 9000}]}]},
        "status": {"podIP": POD_IP, "hostIP": HOST_IP, "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "testcontainer", "containerID": "docker://a1b2c3d4e5f6"}]},
    }


def make_owned(kind: str, name: str, namespace: str, owner: tuple[str, str] | None, labels: dict[str, str] | None = None) -> dict:
    """makeReplicaSet / makeJob: owned by a Deployment / CronJob (controller), or by nothing."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {}}
    if owner is not None:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "uid": f"{owner[1]}-uid", "controller": True}]
    return {"kind": kind, "metadata": meta, "spec": {"replicas": 1}, "status": {"replicas": 1}}


# The target labels of makePods' one target, and its group labels, in pod_test.go.
TARGET = {
    "__meta_kubernetes_pod_container_image": "testcontainer:latest",
    "__meta_kubernetes_pod_container_name": "testcontainer",
    "__meta_kubernetes_pod_container_port_name": "testport",
    "__meta_kubernetes_pod_container_port_number": "9000",
    "__meta_kubernetes_pod_container_port_protocol": "TCP",
    "__meta_kubernetes_pod_container_init": "false",
    "__meta_kubernetes_pod_container_id": "docker://a1b2c3d4e5f6",
}


def group(namespace: str, uid: str = "abc123") -> dict[str, str]:
    return {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": "testpod",
        "__meta_kubernetes_pod_ip": POD_IP,
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_node_name": "testnode",
        "__meta_kubernetes_pod_host_ip": HOST_IP,
        "__meta_kubernetes_pod_uid": uid,
    }


def the_labels(ts: TargetSet) -> dict[str, str]:
    (labels,) = served(ts).values()
    assert labels.pop("__meta_sd_ip_family") == "ipv4"
    return labels


# -- namespace metadata ---------------------------------------------------------------------


def test_namespace_metadata_as_kubernetes_sd_attaches_it():
    # TestPodDiscoveryWithNamespaceMetadata
    ts, directories = attached(namespace=True)
    put(ts, directories, make_namespace("test-ns", {"app": "web", "tier": "frontend"}, {"maintainer": "devops", "build": "v3.4.5"}),
        make_pods("test-ns"))
    assert the_labels(ts) == {
        **TARGET,
        **group("test-ns"),
        "__meta_kubernetes_namespace_annotation_maintainer": "devops",
        "__meta_kubernetes_namespace_annotationpresent_maintainer": "true",
        "__meta_kubernetes_namespace_annotation_build": "v3.4.5",
        "__meta_kubernetes_namespace_annotationpresent_build": "true",
        "__meta_kubernetes_namespace_label_app": "web",
        "__meta_kubernetes_namespace_labelpresent_app": "true",
        "__meta_kubernetes_namespace_label_tier": "frontend",
        "__meta_kubernetes_namespace_labelpresent_tier": "true",
    }


def test_updated_namespace_metadata_reaches_its_pods():
    # TestPodDiscoveryWithUpdatedNamespaceMetadata
    ts, directories = attached(namespace=True)
    labels, annotations = {"app": "api", "tier": "backend"}, {"maintainer": "platform", "build": "v4.5.6"}
    put(ts, directories, make_namespace("test-ns", labels, annotations), make_pods("test-ns"))
    served(ts)
    put(ts, directories, make_namespace("test-ns", {**labels, "app": "service", "zone": "us-east"},
                                        {**annotations, "maintainer": "sre", "deployment": "canary"}))
    assert the_labels(ts) == {
        **TARGET,
        **group("test-ns"),
        "__meta_kubernetes_namespace_annotation_maintainer": "sre",
        "__meta_kubernetes_namespace_annotationpresent_maintainer": "true",
        "__meta_kubernetes_namespace_annotation_build": "v4.5.6",
        "__meta_kubernetes_namespace_annotationpresent_build": "true",
        "__meta_kubernetes_namespace_annotation_deployment": "canary",
        "__meta_kubernetes_namespace_annotationpresent_deployment": "true",
        "__meta_kubernetes_namespace_label_app": "service",
        "__meta_kubernetes_namespace_labelpresent_app": "true",
        "__meta_kubernetes_namespace_label_tier": "backend",
        "__meta_kubernetes_namespace_labelpresent_tier": "true",
        "__meta_kubernetes_namespace_label_zone": "us-east",
        "__meta_kubernetes_namespace_labelpresent_zone": "true",
    }


def test_a_namespace_label_change_rebuilds_only_that_namespaces_groups(monkeypatch):
    ts, directories = attached(namespace=True)
    put(ts, directories, make_namespace("a", {"team": "x"}, {}), make_namespace("b", {"team": "x"}, {}))
    for i, ns in enumerate(("a", "a", "b")):
        put(ts, directories, {**make_pod(f"p{i}", [f"192.0.2.{i + 1}"], namespace=ns, port_name="testport", port=9000), "kind": "Pod"})
    before = served(ts)
    built: list[str] = []
    labels = pods.KIND.labels
    monkeypatch.setattr(pods.KIND, "labels", lambda record, *args: built.append(record.name) or labels(record, *args))
    put(ts, directories, make_namespace("a", {"team": "y"}, {}))
    after = served(ts)
    assert sorted(built) == ["p0", "p1"], "only namespace a's pods are built again"
    assert after["192.0.2.1:9000"]["__meta_kubernetes_namespace_label_team"] == "y"
    assert after["192.0.2.3:9000"] == before["192.0.2.3:9000"]
    # An annotation nobody lists, or a status change, is no change to what is served.
    built.clear()
    directories["namespaces"].upsert(namespaces.KIND.parse(make_namespace("a", {"team": "y"}, {"unlisted": "1"})))
    assert served(ts) == after and built == []


def test_a_pods_namespace_labels_are_absent_until_the_namespace_is_known():
    ts, directories = attached(namespace=True)
    put(ts, directories, make_pods("late"))
    assert the_labels(ts) == {**TARGET, **group("late")}, "served, without namespace labels"
    put(ts, directories, make_namespace("late", {"env": "prod"}, {}))
    assert the_labels(ts)["__meta_kubernetes_namespace_label_env"] == "prod"


def test_only_listed_namespace_annotations_are_kept_and_served():
    ts, directories = attached(annotations=("team.example/*",), namespace=True)
    put(ts, directories, make_namespace("ns", {}, {"team.example/owner": "o", "other": "x"}), make_pods("ns"))
    labels = the_labels(ts)
    assert labels["__meta_kubernetes_namespace_annotation_team_example_owner"] == "o"
    assert not [k for k in labels if k.endswith("_other")]
    assert directories["namespaces"].records["ns"].annotations == (("team.example/owner", "o"),)


# -- workload names ---------------------------------------------------------------------------


def test_deployment_name_as_kubernetes_sd_attaches_it():
    # TestPodDiscoveryWithDeployment
    ts, directories = attached(deployment=True)
    put(ts, directories, make_owned("ReplicaSet", "testdeployment-rs-abc", "default", ("Deployment", "testdeployment")),
        make_pods("default", ("ReplicaSet", "testdeployment-rs-abc"), uid="pod123"))
    assert the_labels(ts) == {
        **TARGET,
        **group("default", uid="pod123"),
        "__meta_kubernetes_pod_controller_kind": "ReplicaSet",
        "__meta_kubernetes_pod_controller_name": "testdeployment-rs-abc",
        "__meta_kubernetes_pod_deployment_name": "testdeployment",
    }


def test_job_name_as_kubernetes_sd_attaches_it_and_no_cronjob_name_without_its_option():
    # TestPodDiscoveryWithJob, and TestPodDiscoveryWithCronJob (job: true only: no cronjob name)
    for job, owner in (("testjob", None), ("testcronjob-job-abc", ("CronJob", "testcronjob"))):
        ts, directories = attached(job=True)
        assert directories == {}, "the job name is the pod's own controller reference: no watch"
        put(ts, directories, make_pods("default", ("Job", job), uid="pod123"))
        assert the_labels(ts) == {
            **TARGET,
            **group("default", uid="pod123"),
            "__meta_kubernetes_pod_controller_kind": "Job",
            "__meta_kubernetes_pod_controller_name": job,
            "__meta_kubernetes_pod_job_name": job,
        }, owner


def test_cronjob_name_as_kubernetes_sd_attaches_it():
    # TestPodDiscoveryWithCronJobUpdate (cronjob: true only: no job name)
    ts, directories = attached(cronjob=True)
    put(ts, directories, make_owned("Job", "testcronjob-job-abc", "default", ("CronJob", "testcronjob"), {"schedule": "hourly"}),
        make_pods("default", ("Job", "testcronjob-job-abc"), uid="pod123"))
    expected = {
        **TARGET,
        **group("default", uid="pod123"),
        "__meta_kubernetes_pod_controller_kind": "Job",
        "__meta_kubernetes_pod_controller_name": "testcronjob-job-abc",
        "__meta_kubernetes_pod_cronjob_name": "testcronjob",
    }
    assert the_labels(ts) == expected
    # ...Update: the Job's labels change; the names do not.
    put(ts, directories, make_owned("Job", "testcronjob-job-abc", "default", ("CronJob", "testcronjob"), {"schedule": "daily"}))
    assert the_labels(ts) == expected


def test_every_workload_option_at_once():
    ts, directories = attached(deployment=True, job=True, cronjob=True)
    assert sorted(directories) == ["jobs", "replicasets"], "Deployments and CronJobs themselves are never watched"
    put(ts, directories, make_owned("Job", "nightly-1", "default", ("CronJob", "nightly")),
        make_pods("default", ("Job", "nightly-1")))
    labels = the_labels(ts)
    assert (labels["__meta_kubernetes_pod_job_name"], labels["__meta_kubernetes_pod_cronjob_name"]) == ("nightly-1", "nightly")
    assert "__meta_kubernetes_pod_deployment_name" not in labels


def test_a_workload_name_follows_its_replicaset_as_it_comes_changes_owner_and_goes():
    ts, directories = attached(deployment=True)
    put(ts, directories, make_pods("default", ("ReplicaSet", "web-1")))
    assert "__meta_kubernetes_pod_deployment_name" not in the_labels(ts), "ReplicaSet unknown: served without the name"
    put(ts, directories, make_owned("ReplicaSet", "web-1", "default", ("Deployment", "web")))
    assert the_labels(ts)["__meta_kubernetes_pod_deployment_name"] == "web"
    put(ts, directories, make_owned("ReplicaSet", "web-1", "default", ("SomeController", "web")))
    assert "__meta_kubernetes_pod_deployment_name" not in the_labels(ts), "its controller is not a Deployment"
    put(ts, directories, make_owned("ReplicaSet", "web-1", "default", ("Deployment", "web")))
    directories["replicasets"].delete("default/web-1")
    assert "__meta_kubernetes_pod_deployment_name" not in the_labels(ts)


def test_only_a_controller_reference_of_the_right_kind_names_a_workload():
    ts, directories = attached(deployment=True, cronjob=True)
    # A ReplicaSet named like the pod's DaemonSet controller, in the same namespace: not looked up.
    put(ts, directories, make_owned("ReplicaSet", "fluentd", "default", ("Deployment", "web")),
        make_pods("default", ("DaemonSet", "fluentd")))
    assert not [k for k in the_labels(ts) if k.endswith(("deployment_name", "cronjob_name"))]
    # Same name in another namespace: not its ReplicaSet.
    ts, directories = attached(deployment=True)
    put(ts, directories, make_owned("ReplicaSet", "web-1", "other", ("Deployment", "web")),
        make_pods("default", ("ReplicaSet", "web-1")))
    assert "__meta_kubernetes_pod_deployment_name" not in the_labels(ts)
    # An owner reference without controller: true is not the controller.
    rs = make_owned("ReplicaSet", "web-1", "default", None)
    rs["metadata"]["ownerReferences"] = [{"kind": "Deployment", "name": "web", "uid": "u"}]
    put(ts, directories, rs, make_pods("default", ("ReplicaSet", "web-1")))
    assert "__meta_kubernetes_pod_deployment_name" not in the_labels(ts)


def test_a_workload_record_holds_only_its_controller_reference():
    raw = make_owned("ReplicaSet", "web-1", "default", ("Deployment", "web"), {"pod-template-hash": "abc"})
    raw["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "3"}
    record = workloads.REPLICASETS.parse(raw, annotations=Allowlist.of(["*"]))
    assert record == workloads.OwnedRecord("default", "web-1", "Deployment", "web")


attach_events = st.lists(
    st.tuples(st.sampled_from(["namespace", "replicaset", "pod"]), st.integers(0, 2), st.integers(0, 3)),  # what, which, value (3: delete)
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(attach_events)
def test_attached_labels_equal_a_fresh_build_for_any_event_order(events):
    def obj(what: str, i: int, v: int) -> dict:
        if what == "namespace":
            return make_namespace(f"ns{i}", {"team": f"t{v}"}, {})
        if what == "replicaset":
            return make_owned("ReplicaSet", f"rs{i}", "ns0", ("Deployment", f"d{v}"))
        pod = make_pods(f"ns{i % 2}", ("ReplicaSet", f"rs{v}"))
        pod["metadata"]["name"] = f"p{i}"
        pod["status"]["podIP"] = f"192.0.2.{i + 1}"
        return pod

    keys = {"namespace": lambda i: f"ns{i}", "replicaset": lambda i: f"ns0/rs{i}", "pod": lambda i: f"ns{i % 2}/p{i}"}
    ts, directories = attached(namespace=True, deployment=True)
    readers = {"namespace": directories["namespaces"], "replicaset": directories["replicasets"], "pod": ts}
    final: dict[str, dict[int, dict]] = {what: {} for what in keys}
    for n, (what, i, v) in enumerate(events):
        if v == 3:
            final[what].pop(i, None)
            readers[what].delete(keys[what](i))
        else:
            final[what][i] = obj(what, i, v)
            put(ts, directories, final[what][i])
        if n % 3 == 0:
            ts.render()  # renders in between must not change the end result
    fresh, fresh_directories = attached(namespace=True, deployment=True)
    put(fresh, fresh_directories, *final["namespace"].values(), *final["replicaset"].values(), *final["pod"].values())
    assert served(ts) == served(fresh)


# -- the shared watches in the service ----------------------------------------------------------


def config(**sets: dict) -> Any:
    return parse_config({"targets": {name: {"source": "pods", "port": 9000, "port_name": "testport", **raw}
                                     for name, raw in sets.items()}})


def kinds_watched(service: Service) -> list[str]:
    return sorted(str(feed.list_watch) for feed in service.feeds.values())


def test_the_shared_watches_start_only_when_a_set_asks_and_stop_when_none_does():
    service = Service(config(plain={}), Metrics())
    assert kinds_watched(service) == ["pods"]
    service.reload(config(plain={}, a={"attach_metadata": {"namespace": True}, "label_selector": "a=1"},
                          b={"attach_metadata": {"namespace": True, "deployment": True, "job": True},
                             "annotations": ["team.example/*"]}))
    assert kinds_watched(service) == ["namespaces", "pods", "pods a=1", "replicasets"]
    (ns_feed,) = [f for f in service.feeds.values() if f.list_watch == ListWatch(namespaces.KIND)]
    assert ns_feed.annotations == Allowlist.of(["team.example/*"]), "the annotations the attaching sets list"
    assert service.sets["a"].attached[0].directory is service.sets["b"].attached[0].directory, "one shared namespace watch"
    service.reload(config(plain={}, c={"attach_metadata": {"cronjob": True}}))
    assert kinds_watched(service) == ["jobs", "pods"]
    assert sorted(service.clusters[""].directories) == ["jobs"]


def test_a_set_answers_only_after_its_attached_watches_synced():
    service = Service(config(web={"attach_metadata": {"namespace": True, "deployment": True}}), Metrics())
    ts = service.sets["web"]
    feeds = {feed.kind.name: feed for feed in service.feeds.values()}
    for name in ("pods", "namespaces"):
        feeds[name].list_page([make_pods("default", ("ReplicaSet", "web-1"))] if name == "pods" else [])
        feeds[name].list_done()
    ts.render()
    assert not ts.synced and ts.waiting_for() == ["replicasets"]
    feeds["replicasets"].list_page([make_owned("ReplicaSet", "web-1", "default", ("Deployment", "web"))])
    feeds["replicasets"].list_done()
    ts.render()
    assert ts.synced
    assert served(ts)[f"{POD_IP}:9000"]["__meta_kubernetes_pod_deployment_name"] == "web"
