"""The Helm chart (deploy/helm/kube-http-sd) with a real ``helm`` (v4, built from its Go module by
tools/build.sh): lint; render with the defaults and with every option; the defaults are the
kustomize manifests (deploy/kubernetes/standalone, deploy/prometheus-operator) plus Helm's labels;
the rendered config passes ``kube-http-sd check-config``; a bad value is refused by
values.schema.json; and on a real API server (sdtest.controlplane) every rendering applies
server-side (ScrapeConfigs and ServiceMonitors with prometheus-operator's CRDs installed) and
``helm install`` installs a release whose own ServiceAccount token and ConfigMap run the server.
"""

from __future__ import annotations

import copy
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sdtest.controlplane import ControlPlane
from sdtest.factories import make_node, make_pod
from sdtest.helpers import FAST, ROOT, Server, eventually
from sdtest.upstream import program

CHART = ROOT / "deploy" / "helm" / "kube-http-sd"
RELEASE, NAMESPACE = "kube-http-sd", "monitoring"  # the names deploy/kubernetes uses
CONFIG_DIR = "/etc/kube-http-sd"
# What Helm's standard labels add to the kustomize manifests' own.
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}

# Every option at once (and a second release in sidecar mode), for rendering and applying.
EVERY_OPTION = {
    "fullnameOverride": "sd-all",
    "replicas": 3,
    "image": {"repository": "registry.example/kube-http-sd", "tag": "0.1.0-test", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry"}],
    "serviceAccount": {"create": True, "name": "sd-all-account", "annotations": {"example.org/owner": "observability"}},
    "service": {"type": "ClusterIP", "port": 9080, "ipFamilyPolicy": "SingleStack"},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
    "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
    "podLabels": {"team": "observability"},
    "podAnnotations": {"example.org/note": "every option"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "example.org/dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "example.org/pool", "operator": "In", "values": ["infra"]}]}}]}},
    "topologySpread": False,
    "priorityClassName": "system-cluster-critical",
    "tls": {"enabled": True, "cert": "-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n",
            "key": "-----BEGIN PRIVATE KEY-----\nstand-in\n-----END PRIVATE KEY-----\n"},
    "auth": {"type": "bearer", "token": "stand-in-token"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "15s"},
    "scrapeConfigs": {
        "enabled": True, "labels": {"release": "kube-prometheus-stack"}, "refreshInterval": "15s", "shards": 3,
        "kubelet": {"enabled": True, "tokenSecret": {"create": True, "serviceAccountName": "kps-prometheus"},
                    "insecureSkipVerify": True},
        "fluentd": {"enabled": True},
        "tlsConfig": {"ca": {"secret": {"name": "sd-all-tls", "key": "tls.crt"}}, "serverName": "sd-all.options.svc"},
    },
    "config": {
        "kubernetes": {"page_size": 250, "streaming_list": "off"},
        "server": {"debug": False},
        "probe": {"interval_seconds": 30},
        "targets": {
            "kubelet": {"label_selector": "node-role.kubernetes.io/worker", "labels": {"cluster": "example"},
                        "annotations": ["example.org/*"], "metrics_path": "/metrics", "scheme": "https"},
            "fluentd": {"namespaces": ["logging"], "ip_family": "reachable", "attach_metadata": {"node": True}},
            "fluent-bit": {"source": "pods", "label_selector": "app.kubernetes.io/name=fluent-bit",
                           "port_name": "http", "port": 2020, "ip_family": "both"},
        },
    },
}
SIDECAR = {
    "mode": "sidecar",
    "sidecar": {"serviceAccount": {"name": "kps-prometheus", "namespace": "sidecar"}},
    "auth": {"type": "basic", "username": "prometheus", "password": "stand-in-password"},
    "scrapeConfigs": {"enabled": True},
}
RENDERINGS = {  # name: (release, namespace, values)
    "defaults": (RELEASE, NAMESPACE, {}),
    "every-option": ("all", "options", EVERY_OPTION),
    "sidecar": ("side", "sidecar", SIDECAR),
}


# --------------------------------------------------------------------------- helpers


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([program("helm"), *args], capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def values_file(tmp_path: Path, values: dict, name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def template(tmp_path: Path, values: dict, release: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, "--values", str(values_file(tmp_path, values))).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_key(docs: list[dict]) -> dict[tuple[str, str], dict]:
    out = {}
    for doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in out, f"{key} rendered twice"
        out[key] = doc
    return out


def kustomize(directory: Path) -> list[dict]:
    done = subprocess.run([program("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def sd_yaml(docs: list[dict], name: str) -> dict:
    return yaml.safe_load(by_key(docs)[("ConfigMap", name)]["data"]["sd.yaml"])


def without_helm_additions(doc: dict) -> dict:
    """An object less what the chart adds to a kustomize manifest: Helm's standard labels, the pod
    template's checksum annotation and the image pull policy (what the API server defaults a tagged
    image's to anyway)."""
    doc = copy.deepcopy(doc)
    pull_policy = "imagePullPolicy" if doc["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "Helm" else None
    for meta in [doc["metadata"]] + ([doc["spec"]["template"]["metadata"]] if doc["kind"] == "Deployment" else []):
        labels = meta.get("labels", {})
        for key in HELM_LABELS:
            labels.pop(key, None)
        annotations = meta.get("annotations", {})
        annotations.pop("checksum/config", None)
        if not annotations:
            meta.pop("annotations", None)
    if doc["kind"] == "Deployment":
        for c in doc["spec"]["template"]["spec"]["containers"]:
            if pull_policy:
                assert c.pop(pull_policy) == "IfNotPresent"
    return doc


# --------------------------------------------------------------------------- offline


def test_helm_lint_passes_strict_with_defaults_and_with_every_option(tmp_path):
    helm("lint", str(CHART), "--strict")
    for name, (_, namespace, values) in RENDERINGS.items():
        done = helm("lint", str(CHART), "--strict", "--namespace", namespace, "--values", str(values_file(tmp_path, values, f"{name}.yaml")))
        assert "0 chart(s) failed" in done.stdout, done.stdout


def test_values_yaml_config_is_config_sd_yaml():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["config"] == yaml.safe_load((ROOT / "config" / "sd.yaml").read_text()), (
        "deploy/helm/kube-http-sd/values.yaml's config drifted from config/sd.yaml: paste the file in again"
    )


def test_default_rendering_is_the_standalone_kustomization_plus_helms_labels(tmp_path):
    """Everything deploy/kubernetes/standalone applies, object by object and field by field, with
    Helm's standard labels added; the ConfigMap holds config/sd.yaml (prometheus.yml belongs to the
    sidecar variant's Prometheus, which the chart does not run)."""
    rendered = by_key(template(tmp_path, {}))
    kustomized = by_key(kustomize(ROOT / "deploy" / "kubernetes" / "standalone"))
    assert set(rendered) == set(kustomized)
    for key, theirs in kustomized.items():
        ours = rendered[key]
        assert ours["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert ours["metadata"]["labels"]["helm.sh/chart"] == "kube-http-sd-0.1.0"
        ours, theirs = without_helm_additions(ours), without_helm_additions(theirs)
        if key[0] == "ConfigMap":
            assert ours["data"].keys() == {"sd.yaml"}
            assert yaml.safe_load(ours["data"]["sd.yaml"]) == yaml.safe_load(theirs["data"]["sd.yaml"])
            ours, theirs = ours["metadata"], theirs["metadata"]
        assert ours == theirs, key


def test_rendered_rbac_equals_the_kustomize_base(tmp_path):
    rendered = by_key(template(tmp_path, {}))
    base = by_key(kustomize(ROOT / "deploy" / "kubernetes" / "base"))
    assert rendered[("ClusterRole", "kube-http-sd")]["rules"] == base[("ClusterRole", "kube-http-sd")]["rules"]
    ours, theirs = rendered[("ClusterRoleBinding", "kube-http-sd")], base[("ClusterRoleBinding", "kube-http-sd")]
    assert (ours["roleRef"], ours["subjects"]) == (theirs["roleRef"], theirs["subjects"])
    assert theirs["subjects"] == [{"kind": "ServiceAccount", "name": "kube-http-sd", "namespace": NAMESPACE}]
    ours, theirs = rendered[("ServiceAccount", "kube-http-sd")], base[("ServiceAccount", "kube-http-sd")]
    assert ours["automountServiceAccountToken"] == theirs["automountServiceAccountToken"] is True
    # No other role in any rendering: nothing more than list/watch on nodes and pods.
    for name, (release, namespace, values) in RENDERINGS.items():
        roles = [d for d in template(tmp_path, values, release, namespace) if d["kind"] in ("Role", "ClusterRole")]
        assert [r["rules"] for r in roles] == [base[("ClusterRole", "kube-http-sd")]["rules"]], name


def test_rbac_attach_metadata_adds_the_rules_of_the_kustomize_component(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kube = ROOT / "deploy" / "kubernetes"
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(kube / "base", overlay)],
        "components": [os.path.relpath(kube / "attach-metadata", overlay)],
    }))
    done = subprocess.run([program("kubectl"), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    theirs = by_key([d for d in yaml.safe_load_all(done.stdout) if d])[("ClusterRole", "kube-http-sd")]["rules"]
    ours = by_key(template(tmp_path, {"rbac": {"attachMetadata": True}}))[("ClusterRole", "kube-http-sd")]["rules"]
    assert ours == theirs
    assert len(ours) == 4, "nodes and pods, then namespaces, replicasets and jobs"


@pytest.mark.parametrize("overlay, shards", [("prometheus-operator", 0), ("prometheus-operator-sharded", 2)])
def test_operator_objects_are_deploy_prometheus_operators(tmp_path, overlay, shards):
    """scrapeConfigs/serviceMonitor render what deploy/prometheus-operator(-sharded) applies: the
    three kube-prometheus-stack kubelet jobs, fluentd, the token Secret, the ServiceMonitor."""
    rendered = by_key(template(tmp_path, {"scrapeConfigs": {"enabled": True, "shards": shards},
                                          "serviceMonitor": {"enabled": True}}))
    for key, theirs in by_key(kustomize(ROOT / "deploy" / overlay)).items():
        ours = copy.deepcopy(rendered[key])
        for label in HELM_LABELS:
            ours["metadata"]["labels"].pop(label)
            theirs["metadata"]["labels"].pop(label, None)
        assert ours == theirs, key


@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_the_rendered_config_passes_check_config_and_its_files_are_mounted(tmp_path, rendering):
    """sd.yaml as the pod reads it: every file it names is mounted from the Secret key the chart
    says, and `kube-http-sd check-config` accepts it (with those paths on stand-in files here)."""
    release, namespace, values = RENDERINGS[rendering]
    docs = template(tmp_path, values, release, namespace)
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    text = config_map["data"]["sd.yaml"]
    config = yaml.safe_load(text)
    files = {k: v for k, v in config["server"].items() if k.endswith("_file") and v}
    if rendering == "sidecar":
        container = yaml.safe_load(sidecar_snippet(tmp_path, values, release, namespace))["prometheus"]["prometheusSpec"]
        pod = {"containers": container["containers"], "volumes": container["volumes"]}
    else:
        pod = by_key(docs)[("Deployment", config_map["metadata"]["name"])]["spec"]["template"]["spec"]
    (sd,) = [c for c in pod["containers"] if c["name"] == "kube-http-sd"]
    assert sd["args"] == ["serve", "--config", f"{CONFIG_DIR}/sd.yaml"]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for key, path in files.items():
        mount = max((m for m in sd["volumeMounts"] if path.startswith(m["mountPath"] + "/")), key=lambda m: len(m["mountPath"]))
        assert mount["mountPath"] != CONFIG_DIR, f"{path}: inside the ConfigMap's read-only mount"
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        item = next(i for i in volume["secret"]["items"] if i["path"] == path[len(mount["mountPath"]) + 1:])
        assert item["key"] in secrets[volume["secret"]["secretName"]]["data"], (key, path)
    expected = {"defaults": set(), "every-option": {"tls_cert_file", "tls_key_file", "bearer_token_file"},
                "sidecar": {"basic_auth_password_file"}}[rendering]
    assert set(files) == expected
    for path in files.values():
        stand_in = tmp_path / "root" / path.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("stand-in\n")
        text = text.replace(path, str(stand_in))
    local = tmp_path / "sd.yaml"
    local.write_text(text)
    done = subprocess.run([sys.executable, "-m", "sd", "check-config", "--config", str(local)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_option_reaches_the_objects(tmp_path):
    docs = by_key(template(tmp_path, EVERY_OPTION, "all", "options"))
    dep = docs[("Deployment", "sd-all")]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] == 3 and c["image"] == "registry.example/kube-http-sd:0.1.0-test"
    assert c["imagePullPolicy"] == "Always" and pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["serviceAccountName"] == "sd-all-account" and ("ServiceAccount", "sd-all-account") in docs
    assert docs[("ClusterRoleBinding", "sd-all")]["subjects"] == [{"kind": "ServiceAccount", "name": "sd-all-account", "namespace": "options"}]
    assert c["resources"] == EVERY_OPTION["resources"]
    assert pod["nodeSelector"] == EVERY_OPTION["nodeSelector"] and pod["tolerations"] == EVERY_OPTION["tolerations"]
    assert pod["affinity"] == EVERY_OPTION["affinity"] and "topologySpreadConstraints" not in pod
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "observability"
    assert {"checksum/config", "checksum/secrets", "example.org/note"} <= set(dep["spec"]["template"]["metadata"]["annotations"])
    assert c["readinessProbe"]["httpGet"]["scheme"] == c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    service = docs[("Service", "sd-all")]
    assert service["spec"]["ports"][0]["port"] == 9080 and service["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert docs[("PodDisruptionBudget", "sd-all")]["spec"]["minAvailable"] == 2
    assert docs[("Secret", "sd-all-tls")]["type"] == "kubernetes.io/tls"
    assert set(docs[("Secret", "sd-all-auth")]["data"]) == {"token"}
    monitor = docs[("ServiceMonitor", "sd-all")]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["interval"] == "15s"
    assert endpoint["authorization"]["credentials"] == {"name": "sd-all-auth", "key": "token"}
    scrape_configs = [d for d in docs.values() if d["kind"] == "ScrapeConfig"]
    assert sorted(d["metadata"]["name"] for d in scrape_configs) == [
        "sd-all-fluentd", "sd-all-kubelet", "sd-all-kubelet-cadvisor", "sd-all-kubelet-probes"]
    for sc in scrape_configs:
        (sd,) = sc["spec"]["httpSDConfigs"]
        target_set = "fluentd" if sc["metadata"]["name"].endswith("fluentd") else "kubelet"
        assert sd["url"] == f"https://sd-all.options.svc:9080/targets/{target_set}?shards=3&shard=$(SHARD)"
        assert sd["refreshInterval"] == "15s" and sd["tlsConfig"] == EVERY_OPTION["scrapeConfigs"]["tlsConfig"]
        assert sd["authorization"] == {"type": "Bearer", "credentials": {"name": "sd-all-auth", "key": "token"}}
        if target_set == "kubelet":
            assert sc["spec"]["tlsConfig"] == {"insecureSkipVerify": True}
    assert docs[("Secret", "sd-all-kubelet-scrape-token")]["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "kps-prometheus"}
    config = yaml.safe_load(docs[("ConfigMap", "sd-all")]["data"]["sd.yaml"])
    assert config["kubernetes"]["page_size"] == 250 and config["kubernetes"]["watch_timeout_seconds"] == [300, 600]
    assert set(config["targets"]) == {"kubelet", "fluentd", "fluent-bit"}  # merged with the defaults
    assert config["targets"]["fluentd"]["attach_metadata"] == {"node": True}


def test_a_set_given_null_is_removed_and_the_others_keep_their_defaults(tmp_path):
    docs = template(tmp_path, {"config": {"targets": {"fluentd": None, "kubelet": {"port": 10255}}}})
    config = sd_yaml(docs, "kube-http-sd")
    assert set(config["targets"]) == {"kubelet"}
    defaults = yaml.safe_load((ROOT / "config" / "sd.yaml").read_text())["targets"]["kubelet"]
    assert config["targets"]["kubelet"] == {**defaults, "port": 10255}


def test_every_port_of_the_fluentd_set_as_docs_helm_md_says_passes_check_config(tmp_path):
    docs = template(tmp_path, {"config": {"targets": {"fluentd": {"ports": "all", "port": None, "port_name": None}}}})
    local = tmp_path / "sd.yaml"
    local.write_text(by_key(docs)[("ConfigMap", "kube-http-sd")]["data"]["sd.yaml"])
    assert yaml.safe_load(local.read_text())["targets"]["fluentd"]["ports"] == "all"
    done = subprocess.run([sys.executable, "-m", "sd", "check-config", "--config", str(local)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


BAD_VALUES = [
    ({"mode": "daemonset"}, "/mode", "value must be one of 'standalone', 'sidecar'"),
    ({"config": {"targets": {"kubelet": {"port": 0}}}}, "/config/targets/kubelet/port", "minimum: got 0, want 1"),
    ({"config": {"targets": {"fluentd": {"ip_family": "dual"}}}}, "/config/targets/fluentd/ip_family", "value must be one of"),
    ({"config": {"targets": {"fluentd": {"ports": "every"}}}}, "/config/targets/fluentd/ports", "value must be one of"),
    ({"config": {"kubernetes": {"pagesize": 100}}}, "/config/kubernetes", "additional properties 'pagesize' not allowed"),
    ({"scrapeConfigs": {"shards": -1}}, "/scrapeConfigs/shards", "minimum: got -1, want 0"),
    ({"scrapeConfigs": {"refreshInterval": "30"}}, "/scrapeConfigs/refreshInterval", "does not match pattern"),
    ({"auth": {"type": "oauth"}}, "/auth/type", "value must be one of 'none', 'bearer', 'basic'"),
    ({"auth": {"type": "basic", "password": "x"}}, "/auth/username", "minLength: got 0, want 1"),
    ({"replicas": "two"}, "/replicas", "got string, want integer"),
]


@pytest.mark.parametrize("values, path, message", BAD_VALUES, ids=[p for _, p, _ in BAD_VALUES])
def test_a_bad_value_is_refused_by_the_schema_with_its_path(tmp_path, values, path, message):
    done = helm("template", RELEASE, str(CHART), "--values", str(values_file(tmp_path, values)), check=False)
    assert done.returncode != 0 and done.stdout == ""
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert re.search(rf"at '{re.escape(path)}': .*{re.escape(message)}", done.stderr), done.stderr


def test_a_missing_secret_value_is_refused_with_what_to_set(tmp_path):
    done = helm("template", RELEASE, str(CHART), "--set", "tls.enabled=true", check=False)
    assert done.returncode != 0 and "tls.cert (PEM) or tls.existingSecret is required when tls.enabled is true" in done.stderr


def sidecar_snippet(tmp_path: Path, values: dict, release: str, namespace: str) -> str:
    """The kube-prometheus-stack values NOTES.txt prints in sidecar mode (client-side dry run)."""
    out = helm("install", release, str(CHART), "--namespace", namespace, "--dry-run=client",
               "--values", str(values_file(tmp_path, values, "sidecar-notes.yaml"))).stdout
    notes = out.split("NOTES:\n", 1)[1]
    return notes[notes.index("prometheus:\n"):notes.index("\n\n", notes.index("prometheus:\n"))]


# --------------------------------------------------------------------------- the real API server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("helm")
    with ControlPlane(tmp / "controlplane") as cp:
        crds = subprocess.run([program("prometheus-operator"), "crds"], capture_output=True, text=True, check=True).stdout
        cp.kubectl("apply", "--server-side", "-f", "-", input=crds)
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        yield cp


@pytest.mark.apiserver
@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_every_rendering_applies_server_side_to_the_real_api_server(cluster, tmp_path, rendering):
    """Real schema validation (strict: an unknown field fails) of every object, the CRDs' included."""
    release, namespace, values = RENDERINGS[rendering]
    docs = template(tmp_path, values, release, namespace)
    manifests = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    cluster.ensure_namespace(namespace)
    try:
        done = cluster.kubectl("apply", "--server-side", "--field-manager=test-helm", "-f", "-", input=manifests)
        assert len(done.stdout.splitlines()) == len(docs), done.stdout
        if rendering == "sidecar":
            check_sidecar(cluster, tmp_path, docs)
    finally:  # the cluster-scoped objects would stand in the way of `helm install`
        cluster.kubectl("delete", "--wait=false", "-f", "-", input=manifests)


def check_sidecar(cluster: ControlPlane, tmp_path: Path, docs: list[dict]) -> None:
    """The snippet NOTES.txt prints, in a pod of the Prometheus' account, is a valid container; the
    ClusterRole is bound to that account; the ScrapeConfigs read localhost."""
    release, namespace, values = RENDERINGS["sidecar"]
    spec = yaml.safe_load(sidecar_snippet(tmp_path, values, release, namespace))["prometheus"]["prometheusSpec"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prometheus-sidecar-check", "namespace": namespace},
           "spec": {"serviceAccountName": "kps-prometheus", "automountServiceAccountToken": False,
                    "containers": spec["containers"], "volumes": spec["volumes"]}}
    cluster.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=test-helm", "-f", "-", input=yaml.safe_dump(pod))
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kps-prometheus", "namespace": "sidecar"}]
    assert not [d for d in docs if d["kind"] in ("Deployment", "Service", "ServiceAccount")]
    urls = {sd["url"] for d in docs if d["kind"] == "ScrapeConfig" for sd in d["spec"]["httpSDConfigs"]}
    assert urls == {"http://localhost:8080/targets/kubelet", "http://localhost:8080/targets/fluentd"}


@pytest.mark.apiserver
def test_helm_install_then_the_release_runs_with_its_own_account_and_config(cluster, tmp_path):
    """`helm install` as docs/helm.md says, against the real API server; then kube-http-sd runs as
    the installed pod would (the release's ServiceAccount token, the release's ConfigMap): both sets
    sync and serve the cluster's targets. No kubelet runs, so the Deployment's pods never start."""
    cp = cluster
    cp.create(make_node("helm-node", ["192.0.2.60"]))
    cp.ensure_namespace("logging")
    cp.create(make_pod("fluentd-helm", ["198.51.100.60", "2001:db8::60"], namespace="logging", node="helm-node"))
    kubeconfig = str(cp.kubeconfig)
    done = helm("install", RELEASE, str(CHART), "--namespace", "helm-install", "--create-namespace",
                "--set", "scrapeConfigs.enabled=true,serviceMonitor.enabled=true", "--kubeconfig", kubeconfig)
    try:
        assert "STATUS: deployed" in done.stdout, done.stdout
        assert "kubectl -n helm-install rollout status deployment/kube-http-sd" in done.stdout  # NOTES.txt
        (release,) = json.loads(helm("list", "--namespace", "helm-install", "--output", "json", "--kubeconfig", kubeconfig).stdout)
        assert (release["name"], release["status"], release["chart"]) == (RELEASE, "deployed", "kube-http-sd-0.1.0")
        names = set(cp.kubectl("get", "deployment,service,serviceaccount,configmap,poddisruptionbudget,scrapeconfig,servicemonitor,secret",
                               "-n", "helm-install", "-l", "app.kubernetes.io/instance=kube-http-sd", "-o", "name").stdout.split())
        assert {"deployment.apps/kube-http-sd", "service/kube-http-sd", "serviceaccount/kube-http-sd", "configmap/kube-http-sd",
                "scrapeconfig.monitoring.coreos.com/kube-http-sd-kubelet", "servicemonitor.monitoring.coreos.com/kube-http-sd"} <= names, names

        token = cp.token("helm-install", "kube-http-sd")
        config = yaml.safe_load(cp.kubectl("get", "configmap", "kube-http-sd", "-n", "helm-install", "-o", "yaml").stdout)["data"]["sd.yaml"]
        local = tmp_path / "sd.yaml"
        local.write_text(yaml.safe_dump({**yaml.safe_load(config), "kubernetes": yaml.safe_load(FAST)["kubernetes"]}))
        with Server("--kubeconfig", str(cp.write_kubeconfig("helm-release", token=token)), "--config", str(local)) as srv:
            srv.wait_healthy()
            eventually(lambda: srv.get("/readyz").status_code == 200, 30, what=f"both sets synced\n{srv.log()[-2000:]}")
            targets = {name: sorted(t for g in srv.get(f"/targets/{name}").json() for t in g["targets"]) for name in ("kubelet", "fluentd")}
        assert "192.0.2.60:10250" in targets["kubelet"], targets
        assert targets["fluentd"] == ["198.51.100.60:24231", "[2001:db8::60]:24231"], targets
    finally:
        helm("uninstall", RELEASE, "--namespace", "helm-install", "--kubeconfig", kubeconfig)
    left = cp.kubectl("get", "deployment,service,configmap,scrapeconfig", "-n", "helm-install",
                      "-l", "app.kubernetes.io/instance=kube-http-sd", "-o", "name").stdout.split()
    assert left == [], left
    assert cp.kubectl("get", "clusterrole", "kube-http-sd", check=False).returncode != 0
