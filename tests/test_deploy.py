"""Deployment artefacts: Dockerfile, Kubernetes manifests, Prometheus configs.

Nothing here needs a cluster or a Docker engine. Static checks parse the files;
`promtool` and `kubectl kustomize` (both offline) validate what they can; and the
image's ENTRYPOINT+CMD is run for real from the installed package, against the
example snapshot, so the probes and URLs in the manifests are checked against the
routes the app actually serves.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from sdtest.factories import make_node, make_pod
from sdtest.helpers import FAST, eventually, terminate
from sdtest.helpers import Server as CliServer
from sdtest.kubeapi import FakeKubeAPI

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
KUBE_DIR = DEPLOY / "kubernetes"
BASE_DIR = KUBE_DIR / "base"
VARIANTS = {"sidecar": KUBE_DIR / "sidecar", "standalone": KUBE_DIR / "standalone"}
OPERATOR_DIR = DEPLOY / "prometheus-operator"
HELM_DIR = DEPLOY / "helm"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SD_CONFIG = REPO / "config" / "sd.yaml"
PROMETHEUS_CONFIG = REPO / "config" / "prometheus.yml"
SNAPSHOT = REPO / "examples" / "cluster.json"

IMAGE = "ghcr.io/kube-http-sd/kube-http-sd"
IMAGE_CONFIG_PATH = "/etc/kube-http-sd/sd.yaml"  # where the image and the pods keep sd.yaml
NAMESPACE = "monitoring"
APP_PORT = 8080
APP_PORT_NAME = "http"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# The one place that says which app route each probe kind must use. The live tests
# below (test_probe_routes_answer_on_the_running_image_command) ask the real app for
# these routes, so this cannot name a route the app does not serve.
PROBE_ROUTES = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}

READ_ONLY_VERBS = {"get", "list", "watch"}
CLUSTER_SCOPED_KINDS = {"ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"}

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0


# --------------------------------------------------------------------------- helpers


def load_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def deploy_yaml_files() -> list[Path]:
    # The Helm chart's files are templates and values, not manifests: tests/test_helm.py renders them.
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and HELM_DIR not in p.parents)


def is_kustomization(path: Path) -> bool:
    return path.name in {"kustomization.yaml", "kustomization.yml"}


def manifest_docs() -> list[tuple[Path, dict]]:
    """Every Kubernetes object under deploy/ (kustomization files are not objects)."""
    return [(p, d) for p in deploy_yaml_files() if not is_kustomization(p) for d in load_docs(p)]


def objects(kind: str, name: str | None = None) -> list[dict]:
    return [
        d for _, d in manifest_docs()
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]


def the_object(kind: str, name: str) -> dict:
    found = objects(kind, name)
    assert len(found) == 1, f"expected exactly one {kind}/{name} under deploy/, found {len(found)}"
    return found[0]


def deployments() -> list[dict]:
    found = objects("Deployment")
    assert found, "no Deployment under deploy/"
    return found


def sd_containers() -> list[tuple[dict, dict]]:
    """(deployment, container) for every kube-http-sd container."""
    found = [
        (dep, c)
        for dep in deployments()
        for c in dep["spec"]["template"]["spec"]["containers"]
        if c["image"].split(":")[0] == IMAGE
    ]
    assert found, f"no container runs {IMAGE}"
    return found


def target_sets() -> set[str]:
    sets = set(yaml.safe_load(SD_CONFIG.read_text())["targets"])
    assert sets, "config/sd.yaml defines no target sets"
    return sets


def configmap_data() -> dict[str, str]:
    return the_object("ConfigMap", "kube-http-sd")["data"]


def prometheus_configs() -> dict[str, dict]:
    """The Prometheus configs that run next to kube-http-sd, by where they live."""
    return {
        "config/prometheus.yml": yaml.safe_load(PROMETHEUS_CONFIG.read_text()),
        "deploy/kubernetes/base/configmap.yaml[prometheus.yml]": yaml.safe_load(configmap_data()["prometheus.yml"]),
    }


def http_sd_jobs(config: dict) -> dict[str, dict]:
    return {job["job_name"]: job for job in config["scrape_configs"] if job.get("http_sd_configs")}


def scrape_configs() -> list[dict]:
    found = objects("ScrapeConfig")
    assert found, "no ScrapeConfig under deploy/prometheus-operator/"
    return found


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def target_set_of(url: str) -> str:
    path = urlsplit(url).path
    m = re.fullmatch(r"/targets/([^/]+)", path)
    assert m, f"{url}: path {path!r} is not /targets/<set>"
    return m.group(1)


def resolve_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"container {container['name']}: probe uses port {port!r}, which it does not name"
    return named[port]


def pyproject_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed ({install_hint}); these checks must not be skipped")
    return path


def kustomize_build(directory: Path) -> list[dict]:
    kubectl = require_tool("kubectl", "the machine image ships it; kubectl kustomize works offline")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


# ---- Dockerfile parsing


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage; index 0 holds what precedes the first FROM (global ARGs)."""
    stages: list[list[tuple[str, str]]] = [[]]
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, args))
    assert len(stages) >= 3, "the Dockerfile must be multi-stage (a builder and a final stage)"
    return stages


def resolved_base_images() -> list[str]:
    global_args = {}
    for keyword, args in dockerfile_stages()[0]:
        if keyword == "ARG" and "=" in args:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
    bases = []
    for stage in dockerfile_stages()[1:]:
        image = stage[0][1].split()[0]
        bases.append(re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), image))
    return bases


def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[-1]


def exec_form(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    found = [args for kw, args in stage if kw == keyword]
    assert found, f"final stage has no {keyword}"
    value = json.loads(found[-1])  # shell form would not parse: exec form is required (signals reach the app)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{keyword} is not a JSON string list"
    return value


def copy_sources(stage: list[tuple[str, str]]) -> list[tuple[str | None, list[str]]]:
    """(from-stage or None, sources) for each COPY/ADD of a stage."""
    out = []
    for keyword, args in stage:
        if keyword not in {"COPY", "ADD"}:
            continue
        words = shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        out.append((source_stage, paths[:-1]))
    return out


# ---- .dockerignore (Docker's rules: last matching pattern wins; a pattern that matches a
# parent directory matches everything below it)


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        pattern = pattern.strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                j = pattern.index("]", i)
                regex += pattern[i : j + 1]
                i = j + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def sent_to_docker(relpath: str) -> bool:
    parts = relpath.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in dockerignore_patterns():
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return not excluded


# ---- running the image's command locally


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def console_script() -> list[str]:
    beside_python = Path(sys.executable).parent / "kube-http-sd"
    if beside_python.exists():
        return [str(beside_python)]
    on_path = shutil.which("kube-http-sd")
    if on_path:
        return [on_path]
    return [sys.executable, "-m", "sd"]  # run from the repo root, where the package is


def image_command(port: int) -> list[str]:
    """The image's ENTRYPOINT+CMD, run with the local install instead of the image's."""
    entrypoint = exec_form(final_stage(), "ENTRYPOINT")
    cmd = exec_form(final_stage(), "CMD")
    assert entrypoint == ["kube-http-sd"], f"ENTRYPOINT is {entrypoint}, not the console script"
    argv = console_script() + [str(SD_CONFIG) if a == IMAGE_CONFIG_PATH else a for a in cmd]
    return argv + ["--snapshot", str(SNAPSHOT), "--listen", f"127.0.0.1:{port}"]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, tmp_dir: Path):
        if not SNAPSHOT.exists():
            pytest.fail(f"{SNAPSHOT.relative_to(REPO)} is missing: the image command is run against it")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.argv = image_command(self.port)
        self.log_path = tmp_dir / "kube-http-sd.log"
        env = {k: v for k, v in os.environ.items() if k not in {"KUBERNETES_SERVICE_HOST", "KUBECONFIG"}}
        env["PYTHONUNBUFFERED"] = "1"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def describe(self) -> str:
        return f"command: {shlex.join(self.argv)}\n--- output ---\n{self.log()}"

    def wait_until(self, path: str, status: int = 200, deadline_s: float = START_DEADLINE_S) -> bytes:
        deadline = time.monotonic() + deadline_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"exited with {self.proc.returncode} before {path} answered {status}\n{self.describe()}")
            try:
                code, body = http_get(self.base + path)
                if code == status:
                    return body
                last = f"HTTP {code}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        pytest.fail(f"{path} did not answer {status} within {deadline_s}s (last: {last})\n{self.describe()}")

    def stop(self) -> int | None:
        stopped = terminate(self.proc, STOP_DEADLINE_S)
        self._log.close()
        return self.proc.returncode if stopped else None


@pytest.fixture(scope="module")
def running_image_command(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("image-command"))
    try:
        server.wait_until("/healthz")
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------- manifests: shape


def test_every_deploy_yaml_parses_and_each_object_has_api_version_kind_and_name():
    files = deploy_yaml_files()
    assert files, "no YAML under deploy/"
    for path in files:
        docs = load_docs(path)
        assert docs, f"{path}: no YAML documents"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"
            assert doc.get("apiVersion"), f"{path}: a document has no apiVersion"
            assert doc.get("kind"), f"{path}: a document has no kind"
            if is_kustomization(path):
                assert doc["kind"] in ("Kustomization", "Component"), f"{path}: kind is {doc['kind']}"
            else:
                assert doc.get("metadata", {}).get("name"), f"{path}: a {doc['kind']} has no metadata.name"


def test_manifests_are_namespace_agnostic_and_kustomizations_set_monitoring():
    for path, doc in manifest_docs():
        assert "namespace" not in doc["metadata"], (
            f"{path}: {doc['kind']}/{doc['metadata']['name']} sets its namespace; kustomization.yaml does"
        )
    for directory in (BASE_DIR, *VARIANTS.values(), OPERATOR_DIR):
        assert kustomization(directory)["namespace"] == NAMESPACE, f"{directory}/kustomization.yaml"


def test_kustomizations_list_existing_files_and_leave_none_out():
    for directory in (BASE_DIR, *VARIANTS.values(), OPERATOR_DIR):
        listed = kustomization(directory)["resources"]
        for name in listed:
            assert (directory / name).is_file() or (directory / name / "kustomization.yaml").is_file(), (
                f"{directory}/kustomization.yaml lists missing {name}"
            )
        present = {p.name for p in directory.glob("*.yaml") if not is_kustomization(p)}
        assert present <= set(listed), f"{directory}: files not listed: {sorted(present - set(listed))}"
    assert not (KUBE_DIR / "kustomization.yaml").exists(), "a variant is chosen by its path, not by a default"


def test_the_sidecar_variant_builds_prometheus_with_kube_http_sd_in_monitoring():
    built = kustomize_build(VARIANTS["sidecar"])
    kinds = {(d["kind"], d["metadata"]["name"]) for d in built}
    assert ("Deployment", "kube-http-sd-prometheus") in kinds
    assert ("Deployment", "kube-http-sd") not in kinds and ("Service", "kube-http-sd") not in kinds
    for doc in built:
        if doc["kind"] not in CLUSTER_SCOPED_KINDS:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"
        for subject in doc.get("subjects", []):
            assert subject.get("namespace") == NAMESPACE, f"{doc['metadata']['name']}: subject {subject}"
    image = {c["image"] for d in built if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]}
    assert f"{IMAGE}:{pyproject_version()}" in image


def test_the_standalone_variant_builds_kube_http_sd_behind_its_service():
    built = kustomize_build(VARIANTS["standalone"])
    kinds = {(d["kind"], d["metadata"]["name"]) for d in built}
    assert ("Deployment", "kube-http-sd") in kinds and ("Service", "kube-http-sd") in kinds
    assert ("Deployment", "kube-http-sd-prometheus") not in kinds
    for doc in built:
        if doc["kind"] not in CLUSTER_SCOPED_KINDS:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"
    image = {c["image"] for d in built if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]}
    assert image == {f"{IMAGE}:{pyproject_version()}"}


def test_the_central_variant_serves_each_kubeconfig_of_its_secret_as_a_cluster(tmp_path):
    from sd.config import parse_config

    built = kustomize_build(KUBE_DIR / "central")
    (dep,) = [d for d in built if d["kind"] == "Deployment"]
    spec = dep["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "kube-http-sd-clusters"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    (configmap,) = [d for d in built if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kube-http-sd"]
    raw = yaml.safe_load(configmap["data"]["sd.yaml"])
    clusters = raw["clusters"]
    assert [n for n, c in clusters.items() if c.get("in_cluster")] == ["local"]
    # Every other cluster reads the Secret's file named after it; with those files there,
    # the config is valid.
    for name, cluster in clusters.items():
        if "kubeconfig" in cluster:
            assert cluster["kubeconfig"] == f"{mount['mountPath']}/{name}"
            local = tmp_path / name
            local.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": name,
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
                "clusters": [{"name": name, "cluster": {"server": "https://203.0.113.1:6443"}}],
                "users": [{"name": name, "user": {"token": "t"}}],
            }))
            cluster["kubeconfig"] = str(local)
    assert set(parse_config(raw).clusters) == set(clusters)


def test_the_remote_variant_is_only_the_read_only_identity():
    built = kustomize_build(KUBE_DIR / "remote")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == [
        ("ClusterRole", "kube-http-sd"), ("ClusterRoleBinding", "kube-http-sd"),
        ("Secret", "kube-http-sd-token"), ("ServiceAccount", "kube-http-sd"),
    ]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_names_cannot_collide_with_a_kube_prometheus_stack_in_monitoring(variant):
    # kube-prometheus-stack names its objects <release>-kube-prometheus-*, <release>-grafana,
    # prometheus-operated, alertmanager-operated, prometheus-<release>-...; kube-prometheus
    # prometheus-k8s, alertmanager-main, ... None of those starts with kube-http-sd.
    for doc in kustomize_build(VARIANTS[variant]):
        name = doc["metadata"]["name"]
        assert name == "kube-http-sd" or name.startswith("kube-http-sd-"), f"{variant}: {doc['kind']}/{name}"


def test_prometheus_operator_kustomization_builds():
    built = kustomize_build(OPERATOR_DIR)
    kinds = {d["kind"] for d in built}
    assert "ScrapeConfig" in kinds
    for doc in built:
        assert doc["metadata"].get("namespace") == NAMESPACE


# ------------------------------------------------------------------------------- RBAC


def granted(rules: list[dict]) -> set[tuple[str, str]]:
    """(API group, resource) of every rule, each checked to grant exactly the informer's verbs."""
    from sd.kinds import VERBS

    found: set[tuple[str, str]] = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"rule with resourceNames/nonResourceURLs: {rule}"
        assert set(rule["verbs"]) == set(VERBS), f"verbs {rule['verbs']} != {sorted(VERBS)}"
        found |= {(group, resource) for group in rule["apiGroups"] for resource in rule["resources"]}
    return found


def test_clusterrole_grants_exactly_the_resources_and_verbs_the_code_uses():
    from sd.kinds import KINDS

    role = the_object("ClusterRole", "kube-http-sd")
    assert role["rules"], "ClusterRole kube-http-sd has no rules"
    # Least privilege by default: only what target sets read (nodes, pods), in the core group.
    assert granted(role["rules"]) == {(k.api_group, k.name) for k in KINDS.values() if k.serves_targets}


def test_the_attach_metadata_component_adds_exactly_the_kinds_watched_for_attached_metadata(tmp_path):
    from sd.kinds import KINDS

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(VARIANTS["standalone"], overlay)],
        "components": [os.path.relpath(KUBE_DIR / "attach-metadata", overlay)],
    }))
    kubectl = require_tool("kubectl", "the machine image ships it; kubectl kustomize works offline")
    result = subprocess.run([kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (role,) = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "ClusterRole"]
    base = granted(the_object("ClusterRole", "kube-http-sd")["rules"])
    assert granted(role["rules"]) - base == {(k.api_group, k.name) for k in KINDS.values() if not k.serves_targets}
    assert base <= granted(role["rules"])


def test_no_role_can_write_use_wildcards_or_read_secrets():
    roles = objects("ClusterRole") + objects("Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            name = role["metadata"]["name"]
            assert set(rule["verbs"]) <= READ_ONLY_VERBS, f"{name}: {rule['verbs']}"
            assert "*" not in rule.get("resources", []) + rule.get("apiGroups", []), f"{name}: wildcard"
            assert "secrets" not in rule.get("resources", []), f"{name}: secrets"


def test_sidecar_prometheus_may_only_get_kubelet_metrics_beyond_discovery():
    role = the_object("ClusterRole", "kube-http-sd-kubelet-scrape")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}]


def test_bindings_tie_roles_defined_here_to_the_pods_service_account():
    roles = {r["metadata"]["name"] for r in objects("ClusterRole")}
    accounts = {a["metadata"]["name"] for a in objects("ServiceAccount")}
    bindings = objects("ClusterRoleBinding")
    assert bindings
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "ClusterRole" and binding["roleRef"]["name"] in roles
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["name"] in accounts, subject
    for dep in deployments():
        assert dep["spec"]["template"]["spec"].get("serviceAccountName") in accounts, dep["metadata"]["name"]


# -------------------------------------------------------------------- workloads


def test_sd_container_probes_use_the_health_routes_on_port_8080_named_http():
    for dep, container in sd_containers():
        where = f"{dep['metadata']['name']}/{container['name']}"
        ports = container["ports"]
        assert {"name": APP_PORT_NAME, "containerPort": APP_PORT} in [
            {k: p.get(k) for k in ("name", "containerPort")} for p in ports
        ], f"{where}: no containerPort {APP_PORT} named {APP_PORT_NAME}"
        for kind, route in PROBE_ROUTES.items():
            probe = container.get(kind)
            assert probe, f"{where}: no {kind}"
            assert probe["httpGet"]["path"] == route, f"{where}: {kind} path {probe['httpGet']['path']}"
            assert resolve_port(container, probe["httpGet"]["port"]) == APP_PORT, f"{where}: {kind} port"


def test_every_container_is_locked_down_and_sized():
    for dep in deployments():
        pod = dep["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        for c in pod["containers"]:
            where = f"{dep['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert sc.get("privileged") is not True and not sc.get("capabilities", {}).get("add"), where
            assert (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) is True, where
            assert (sc.get("runAsUser", pod_sc.get("runAsUser", 1)) or 0) != 0, f"{where}: runs as uid 0"
            seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
            assert seccomp.get("type") == "RuntimeDefault", where
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: requests"
            assert "memory" in resources.get("limits", {}), f"{where}: memory limit"


def test_images_are_pinned_and_ours_matches_the_package_version():
    for dep in deployments():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            name, _, tag = c["image"].rpartition(":")
            assert name and "/" not in tag and tag not in {"", "latest"}, f"unpinned image {c['image']}"
    for _, c in sd_containers():
        assert c["image"] == f"{IMAGE}:{pyproject_version()}"
    assert f"ARG VERSION={pyproject_version()}" in DOCKERFILE.read_text(), "Dockerfile VERSION label is stale"


def volume_for_path(pod: dict, container: dict, file_path: str) -> tuple[dict, str]:
    """The volume that provides file_path in container, and the file's name in it."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if file_path.startswith(prefix):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            return volume, file_path[len(prefix):]
    raise AssertionError(f"{container['name']}: nothing is mounted at {file_path}")


def configmap_key_at(pod: dict, container: dict, file_path: str) -> str:
    volume, relpath = volume_for_path(pod, container, file_path)
    cm = volume.get("configMap")
    assert cm and cm["name"] == "kube-http-sd", f"{file_path} does not come from ConfigMap kube-http-sd"
    items = {i["path"]: i["key"] for i in cm.get("items", [])}
    key = items.get(relpath, relpath if not items else None)
    assert key in configmap_data(), f"{file_path}: ConfigMap kube-http-sd has no key {key!r}"
    return key


def test_pods_read_their_configs_from_the_configmap():
    for dep, c in sd_containers():
        pod = dep["spec"]["template"]["spec"]
        args = c["args"]
        assert args[:1] == ["serve"] and "--config" in args, f"{dep['metadata']['name']}: args {args}"
        path = args[args.index("--config") + 1]
        assert path == IMAGE_CONFIG_PATH
        assert configmap_key_at(pod, c, path) == "sd.yaml"
        # In a pod the API comes from in-cluster config, never a file baked into the spec.
        assert "--snapshot" not in args and "--kubeconfig" not in args, "pods must use in-cluster config"
    prometheus = the_object("Deployment", "kube-http-sd-prometheus")["spec"]["template"]["spec"]
    container = next(c for c in prometheus["containers"] if c["name"] == "prometheus")
    flag = next(a for a in container["args"] if a.startswith("--config.file="))
    assert configmap_key_at(prometheus, container, flag.split("=", 1)[1]) == "prometheus.yml"


def test_standalone_service_reaches_the_sd_pods_on_8080():
    service = the_object("Service", "kube-http-sd")
    dep = the_object("Deployment", "kube-http-sd")
    assert service["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    container = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "kube-http-sd")
    assert port["port"] == APP_PORT and resolve_port(container, port["targetPort"]) == APP_PORT


# ------------------------------------------------------------------- config copies


def test_configmap_sd_yaml_is_config_sd_yaml():
    assert yaml.safe_load(configmap_data()["sd.yaml"]) == yaml.safe_load(SD_CONFIG.read_text()), (
        "deploy/kubernetes/base/configmap.yaml's sd.yaml drifted from config/sd.yaml: paste the file in again"
    )


def test_configmap_prometheus_yml_is_config_prometheus_yml():
    assert yaml.safe_load(configmap_data()["prometheus.yml"]) == yaml.safe_load(PROMETHEUS_CONFIG.read_text()), (
        "deploy/kubernetes/base/configmap.yaml's prometheus.yml drifted from config/prometheus.yml: paste it in again"
    )


# ------------------------------------------------------------ Prometheus configs


def test_prometheus_configs_scrape_every_target_set_from_localhost_8080():
    sets = target_sets()
    for where, config in prometheus_configs().items():
        seen = set()
        for job_name, job in http_sd_jobs(config).items():
            for sd in job["http_sd_configs"]:
                parts = urlsplit(sd["url"])
                assert (parts.scheme, parts.hostname, parts.port) == ("http", "localhost", APP_PORT), f"{where}: {sd}"
                name = target_set_of(sd["url"])
                assert name in sets, f"{where}: job {job_name} reads /targets/{name}, not a set in config/sd.yaml"
                assert sd.get("refresh_interval") == "30s", f"{where}: {sd}"
                seen.add(name)
        assert seen == sets, f"{where}: sets without a scrape job: {sorted(sets - seen)}"


def test_kubelet_jobs_scrape_https_with_the_service_account_token_and_ca():
    for where, config in prometheus_configs().items():
        for name in KUBELET_PATHS:
            job = http_sd_jobs(config)[name]
            assert job["scheme"] == "https", (where, name)
            assert job["tls_config"]["ca_file"] == f"{SERVICE_ACCOUNT_DIR}/ca.crt", (where, name)
            assert job["authorization"]["credentials_file"] == f"{SERVICE_ACCOUNT_DIR}/token", (where, name)


# kube-prometheus-stack's kubelet ServiceMonitor (charts/kube-prometheus-stack/templates/
# exporters/kubelet/servicemonitor.yaml) has one endpoint per path, all honorLabels: true,
# job from its jobLabel (k8s-app: kubelet), and by default (values.yaml: relabelings,
# cAdvisorRelabelings, probesRelabelings) the relabeling
#   - action: replace
#     sourceLabels: [__metrics_path__]
#     targetLabel: metrics_path
KUBELET_PATHS = {"kubelet": "/metrics", "kubelet-cadvisor": "/metrics/cadvisor", "kubelet-probes": "/metrics/probes"}
STACK_METRICS_PATH_RELABELING = {"action": "replace", "source_labels": ["__metrics_path__"], "target_label": "metrics_path"}


def test_kubelet_jobs_are_the_three_paths_of_kube_prometheus_stacks_servicemonitor_with_its_labels():
    for where, config in prometheus_configs().items():
        jobs = http_sd_jobs(config)
        for name, path in KUBELET_PATHS.items():
            job = jobs[name]
            assert job.get("metrics_path", "/metrics") == path, (where, name)
            assert job["honor_labels"] is True, (where, name)
            assert [sd["url"] for sd in job["http_sd_configs"]] == ["http://localhost:8080/targets/kubelet"]
            rules = job["relabel_configs"]
            assert STACK_METRICS_PATH_RELABELING in rules, (where, name)
            assert rules[-1] == {"target_label": "job", "replacement": "kubelet"}, (where, name)


def test_relabelings_give_node_pod_namespace_and_ip_family_labels():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = http_sd_jobs(config)

    def targets(job):
        return {
            r.get("target_label"): r.get("source_labels")
            for r in jobs[job]["relabel_configs"]
            if r.get("action", "replace") == "replace"
        }

    kubelet = jobs["kubelet"]["relabel_configs"]
    assert {"action": "labelmap", "regex": "__meta_kubernetes_node_label_(.+)"} in kubelet
    labelmap_at = kubelet.index({"action": "labelmap", "regex": "__meta_kubernetes_node_label_(.+)"})
    instance_at = next(i for i, r in enumerate(kubelet) if r.get("target_label") == "instance")
    assert instance_at > labelmap_at, "a node label named 'instance' would overwrite the node name"
    assert targets("kubelet")["instance"] == ["__meta_kubernetes_node_name"]
    assert targets("kubelet")["ip_family"] == ["__meta_sd_ip_family"]
    assert targets("fluentd") == {
        "namespace": ["__meta_kubernetes_namespace"],
        "pod": ["__meta_kubernetes_pod_name"],
        "node": ["__meta_kubernetes_pod_node_name"],
        "ip_family": ["__meta_sd_ip_family"],
    }


@pytest.mark.parametrize("source", ["config/prometheus.yml", "configmap.yaml[prometheus.yml]"])
def test_promtool_accepts_the_prometheus_config(source, tmp_path):
    promtool = require_tool("promtool", "apt-get install prometheus")
    text = PROMETHEUS_CONFIG.read_text() if source == "config/prometheus.yml" else configmap_data()["prometheus.yml"]
    original = tmp_path / "prometheus.yml"
    original.write_text(text)
    # 1. The file as shipped. promtool stats credentials_file (and TLS key/cert files),
    #    and the service-account token exists only inside a pod, so a full check of the
    #    shipped file can only fail here; --syntax-only skips exactly those file checks.
    result = subprocess.run([promtool, "check", "config", "--syntax-only", str(original)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # 2. The full check, on a copy whose service-account paths point at stand-in files,
    #    so that everything else promtool validates is validated too.
    fake_sa = tmp_path / "serviceaccount"
    fake_sa.mkdir()
    (fake_sa / "token").write_text("stand-in-token\n")
    (fake_sa / "ca.crt").write_text("")
    assert SERVICE_ACCOUNT_DIR in text, "expected the kubelet job to use the service-account files"
    rewritten = tmp_path / "prometheus-local.yml"
    rewritten.write_text(text.replace(SERVICE_ACCOUNT_DIR, str(fake_sa)))
    result = subprocess.run([promtool, "check", "config", str(rewritten)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------ prometheus-operator


CRD_RELABEL_KEYS = {
    "source_labels": "sourceLabels",
    "target_label": "targetLabel",
    "regex": "regex",
    "replacement": "replacement",
    "action": "action",
    "separator": "separator",
    "modulus": "modulus",
}


def test_scrapeconfigs_read_every_set_from_the_standalone_service():
    service = the_object("Service", "kube-http-sd")
    (port,) = service["spec"]["ports"]
    expected_host = f"{service['metadata']['name']}.{kustomization(BASE_DIR)['namespace']}.svc"
    sets = target_sets()
    seen = set()
    for sc in scrape_configs():
        for sd in sc["spec"]["httpSDConfigs"]:
            parts = urlsplit(sd["url"])
            assert (parts.scheme, parts.hostname, parts.port) == ("http", expected_host, port["port"]), sd["url"]
            name = target_set_of(sd["url"])
            assert name in sets, f"{sc['metadata']['name']}: /targets/{name} is not a set in config/sd.yaml"
            assert sd.get("refreshInterval") == "30s"
            seen.add(name)
    assert seen == sets, f"sets without a ScrapeConfig: {sorted(sets - seen)}"


def test_kubelet_scrapeconfigs_use_https_with_a_token_secret_defined_alongside():
    kubelets = [sc for sc in scrape_configs() if sc["spec"].get("jobName") == "kubelet"]
    assert len(kubelets) == len(KUBELET_PATHS)
    for kubelet in kubelets:
        spec = kubelet["spec"]
        assert spec["scheme"] == "HTTPS"  # the CRD's enum is upper-case
        assert spec["tlsConfig"]["ca"]["configMap"] == {"name": "kube-root-ca.crt", "key": "ca.crt"}
        ref = spec["authorization"]["credentials"]
        secret = the_object("Secret", ref["name"])
        assert secret["type"] == "kubernetes.io/service-account-token"
        assert ref["key"] == "token"  # the key the token controller writes
        assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]


def test_scrapeconfigs_are_the_jobs_of_prometheus_yml_in_crd_spelling():
    """ScrapeConfig kube-http-sd-<job> is prometheus.yml's job <job>: its relabelings, path
    and honor_labels (jobName is the job label, which for the kubelets is kubelet)."""
    jobs = http_sd_jobs(yaml.safe_load(PROMETHEUS_CONFIG.read_text()))
    names = {sc["metadata"]["name"].removeprefix("kube-http-sd-") for sc in scrape_configs()}
    assert names == set(jobs)
    for sc in scrape_configs():
        job = jobs[sc["metadata"]["name"].removeprefix("kube-http-sd-")]
        spec = sc["spec"]
        expected = [{CRD_RELABEL_KEYS[k]: v for k, v in r.items()} for r in job["relabel_configs"]]
        assert spec["relabelings"] == expected, sc["metadata"]["name"]
        assert spec.get("metricsPath", "/metrics") == job.get("metrics_path", "/metrics"), sc["metadata"]["name"]
        assert spec.get("honorLabels", False) == job.get("honor_labels", False), sc["metadata"]["name"]
        assert spec["jobName"] == ("kubelet" if job["job_name"] in KUBELET_PATHS else job["job_name"])


def test_promtool_accepts_the_scrapeconfigs_as_the_operator_writes_them(tmp_path):
    """Each ScrapeConfig turned into the scrape config the operator generates from it (job
    scrapeconfig/<namespace>/<name>, jobName as a job relabeling, secrets as files), then
    checked by promtool."""
    promtool = require_tool("promtool", "apt-get install prometheus")
    (tmp_path / "token").write_text("stand-in-token\n")
    (tmp_path / "ca.crt").write_text("")
    jobs = []
    for sc in kustomize_build(OPERATOR_DIR):
        if sc["kind"] != "ScrapeConfig":
            continue
        spec = sc["spec"]
        job = {
            "job_name": f"scrapeconfig/{sc['metadata']['namespace']}/{sc['metadata']['name']}",
            "http_sd_configs": [{"url": d["url"], "refresh_interval": d["refreshInterval"]} for d in spec["httpSDConfigs"]],
            "relabel_configs": [{"target_label": "job", "replacement": spec["jobName"]}]
            + [{snake: r[camel] for snake, camel in CRD_RELABEL_KEYS.items() if camel in r} for r in spec["relabelings"]],
        }
        if "metricsPath" in spec:
            job["metrics_path"] = spec["metricsPath"]
        if "honorLabels" in spec:
            job["honor_labels"] = spec["honorLabels"]
        if "scheme" in spec:
            job["scheme"] = spec["scheme"].lower()
        if "tlsConfig" in spec:
            job["tls_config"] = {"ca_file": str(tmp_path / "ca.crt")}
        if "authorization" in spec:
            job["authorization"] = {"type": spec["authorization"]["type"], "credentials_file": str(tmp_path / "token")}
        jobs.append(job)
    assert len(jobs) == len(scrape_configs())
    generated = tmp_path / "prometheus.yml"
    generated.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    result = subprocess.run([promtool, "check", "config", str(generated)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------ Dockerfile


def test_dockerfile_stages_share_the_python_311_slim_base():
    bases = resolved_base_images()
    assert all(b.split("@")[0] == "python:3.11-slim" for b in bases), bases
    # The venv copied between stages links to the base image's interpreter.
    assert len(set(bases)) == 1, f"builder and final stage differ: {bases}"


def test_dockerfile_final_stage_runs_as_non_root_without_build_tools():
    stage = final_stage()
    users = [args for kw, args in stage if kw == "USER"]
    assert users, "final stage has no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in {"root", "0", ""} and group not in {"root", "0"}, f"USER {users[-1]}"
    assert user == "65532"
    text = "\n".join(args for kw, args in stage if kw == "RUN")
    assert not re.search(r"\b(gcc|g\+\+|cc|clang|build-essential|make|cmake|python3?-dev)\b", text), text
    assert not re.search(r"\b(apt-get|apt|apk|pip3?)\b.*\binstall\b", text), f"installs in final stage: {text}"
    assert ["EXPOSE", str(APP_PORT)] in [[kw, args] for kw, args in stage]


def test_dockerfile_final_stage_takes_only_the_venv_from_the_builder():
    for source_stage, sources in copy_sources(final_stage()):
        if source_stage is not None:
            assert sources == ["/opt/venv"], sources
        else:
            assert sources == ["config/sd.yaml"], sources
    env = " ".join(args for kw, args in final_stage() if kw == "ENV")
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PATH=/opt/venv/bin:$PATH"):
        assert setting in env, setting


def test_dockerfile_copy_sources_exist_in_the_repo():
    for stage in dockerfile_stages()[1:]:
        for source_stage, sources in copy_sources(stage):
            if source_stage is None:
                for src in sources:
                    assert (REPO / src).exists(), f"COPY {src}: missing, `docker build` would fail"


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_private():
    for stage in dockerfile_stages()[1:]:
        for source_stage, sources in copy_sources(stage):
            if source_stage is None:
                for src in sources:
                    probe = f"{src}/__init__.py" if (REPO / src).is_dir() or src == "sd" else src
                    assert sent_to_docker(probe), f".dockerignore excludes {probe}, which the Dockerfile copies"
    assert sent_to_docker("sd/kube/sources.py")
    for private in (
        ".git/config", ".venv/bin/python", "tests/test_deploy.py", "bench/results.txt",
        "examples/cluster.json", ".pytest_cache/v/cache", ".hypothesis/examples/x",
        "sd/__pycache__/app.cpython-311.pyc", "kubeconfig", "deploy/Dockerfile",
    ):
        assert not sent_to_docker(private), f"{private} would be sent to the Docker daemon"


def test_shipped_sd_yaml_passes_check_config_as_the_image_build_requires():
    # deploy/Dockerfile runs `kube-http-sd check-config` on config/sd.yaml and fails the
    # build on exit 2; the ConfigMap carries the same settings (see the drift test).
    assert "kube-http-sd check-config --config" in DOCKERFILE.read_text()
    result = subprocess.run(
        console_script() + ["check-config", "--config", str(SD_CONFIG)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_healthcheck_asks_healthz_with_python():
    healthchecks = [args for kw, args in final_stage() if kw == "HEALTHCHECK"]
    assert healthchecks, "final stage has no HEALTHCHECK"
    cmd = json.loads(healthchecks[-1].split("CMD", 1)[1])
    assert cmd[:2] == ["python", "-c"] and f"127.0.0.1:{APP_PORT}/healthz" in cmd[2]


# ------------------------------------------------ the image's command, run for real


def test_image_command_serves_healthz_and_exits_cleanly_on_sigterm(tmp_path):
    server = Server(tmp_path)
    try:
        server.wait_until("/healthz")
    finally:
        code = server.stop()
    assert code is not None, f"still running {STOP_DEADLINE_S}s after SIGTERM\n{server.describe()}"
    assert code == 0, f"exit code {code} after SIGTERM\n{server.describe()}"


def test_probe_routes_answer_on_the_running_image_command(running_image_command):
    server = running_image_command
    server.wait_until(PROBE_ROUTES["livenessProbe"], 200)
    # The snapshot is a complete list, so every set syncs and readiness turns 200.
    server.wait_until(PROBE_ROUTES["readinessProbe"], 200)


def test_every_configured_target_url_answers_on_the_running_image_command(running_image_command):
    server = running_image_command
    server.wait_until("/readyz", 200)
    urls = [sd["url"] for cfg in prometheus_configs().values() for j in http_sd_jobs(cfg).values() for sd in j["http_sd_configs"]]
    urls += [sd["url"] for sc in scrape_configs() for sd in sc["spec"]["httpSDConfigs"]]
    for path in sorted({urlsplit(u).path for u in urls}):
        code, body = http_get(server.base + path)
        assert code == 200, f"{path}: HTTP {code}\n{server.describe()}"
        groups = json.loads(body)
        assert isinstance(groups, list) and all(set(g) <= {"targets", "labels"} for g in groups), path


def test_dockerfile_healthcheck_passes_against_the_running_image_command(running_image_command):
    server = running_image_command
    healthcheck = next(args for kw, args in reversed(final_stage()) if kw == "HEALTHCHECK")
    cmd = json.loads(healthcheck.split("CMD", 1)[1])
    code = cmd[2].replace(f"127.0.0.1:{APP_PORT}", f"127.0.0.1:{server.port}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------ sharding


SHARDED_OPERATOR_DIR = DEPLOY / "prometheus-operator-sharded"
SHARDED_PROMETHEUS_CONFIG = REPO / "config" / "prometheus-sharded.yml"


def test_sharded_scrapeconfigs_differ_from_the_base_only_in_the_shard_urls():
    base = {d["metadata"]["name"]: d for d in kustomize_build(OPERATOR_DIR)}
    sharded = {d["metadata"]["name"]: d for d in kustomize_build(SHARDED_OPERATOR_DIR)}
    assert sharded.keys() == base.keys()
    for name, doc in sharded.items():
        if doc["kind"] != "ScrapeConfig":
            assert doc == base[name]
            continue
        (sd,) = doc["spec"]["httpSDConfigs"]
        (original,) = base[name]["spec"]["httpSDConfigs"]
        # $(SHARD) is what the operator's config-reloader expands, in its own keep rule too.
        assert sd["url"] == original["url"] + "?shards=2&shard=$(SHARD)"
        assert {**doc["spec"], "httpSDConfigs": [original]} == base[name]["spec"]


def test_the_hand_sharded_prometheus_config_is_valid_and_reads_shard_urls(tmp_path):
    promtool = require_tool("promtool", "apt-get install prometheus")
    result = subprocess.run([promtool, "check", "config", "--syntax-only", str(SHARDED_PROMETHEUS_CONFIG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(SHARDED_PROMETHEUS_CONFIG.read_text())
    urls = [sd["url"] for job in config["scrape_configs"] for sd in job.get("http_sd_configs", [])]
    assert urls and all(url.endswith("?shards=2&shard=0") for url in urls)
    assert {target_set_of(url.split("?")[0]) for url in urls} == target_sets()


def test_clusterrole_verbs_are_the_requests_the_code_makes(tmp_path):
    """Run the server against the API double, with a namespaced set too, and name the RBAC
    verb of every request it made: the ClusterRole grants those, and only those."""
    from sd.kinds import VERBS

    with FakeKubeAPI() as api:
        api.add_many([make_node("n1", ["192.0.2.1"]), make_pod("fluentd-a", ["198.51.100.1"])])
        config = tmp_path / "sd.yaml"
        config.write_text(FAST + "  streaming_list: off\n" + (
            "targets:\n"
            "  kubelet: {source: nodes, port: 10250, port_name: kubelet}\n"
            "  fluentd: {source: pods, port: 24231, port_name: monitor, namespaces: [logging]}\n"
        ))
        with CliServer("--kubeconfig", api.write_kubeconfig(tmp_path / "kubeconfig"), "--config", str(config)) as srv:
            srv.wait_healthy()
            eventually(lambda: srv.get("/readyz").status_code == 200, what="both sets synced")
            eventually(lambda: api.open_watches() == 2, what="both watches open")
        used = set()
        for request in api.requests:
            parts = request["path"].strip("/").split("/")  # api/v1/nodes, api/v1/namespaces/<ns>/pods[/<name>]
            assert request["method"] == "GET" and parts[:2] == ["api", "v1"], request
            collection = parts[2:] in (["nodes"], ["pods"]) or (len(parts) == 5 and parts[2] == "namespaces")
            used.add("watch" if request["watch"] else "list" if collection else "get")
    rules = the_object("ClusterRole", "kube-http-sd")["rules"]
    assert used == {"list", "watch"}
    assert all(set(rule["verbs"]) == used for rule in rules)
    assert set(VERBS) == used
