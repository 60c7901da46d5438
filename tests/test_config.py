from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from sd.config import ConfigError, default_config, load_config, parse_config
from sd.kinds import nodes, pods
from sd.selectors import SelectorError, matcher, parse_label_selector
from sdtest.helpers import ROOT


def test_documented_default_file_equals_the_built_in_default():
    assert load_config(ROOT / "config" / "sd.yaml") == default_config()


def test_no_targets_section_means_the_default_sets():
    assert parse_config({"kubernetes": {"page_size": 100}}).targets == default_config().targets


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "config/sd.yaml")
    return exc.value.problems


def test_port_out_of_range_names_file_field_and_value():
    data = yaml.safe_load((ROOT / "config" / "sd.yaml").read_text())
    data["targets"]["fluentd"]["port"] = 0
    assert problems(data) == ["config/sd.yaml: targets.fluentd.port: must be 1-65535, got 0"]


def test_every_problem_is_reported_not_just_the_first():
    found = problems(
        {
            "targets": {
                "x": {
                    "source": "services",
                    "port": "80",
                    "ip_family": "dual",
                    "label_selector": "a in (",
                    "require_ready": "yes",
                    "labels": {"__bad": "x", "ok": 5},
                    "scheme": "ftp",
                    "metrics_path": "metrics",
                    "colour": "blue",
                }
            },
            "kubernetes": {"page_size": 0, "watch_timeout_seconds": [600, 300]},
        }
    )
    joined = "\n".join(found)
    for field in [
        "targets.x.source",
        "targets.x.port",
        "targets.x.ip_family",
        "targets.x.label_selector",
        "targets.x.require_ready",
        "targets.x.labels",
        "targets.x.labels.ok",
        "targets.x.scheme",
        "targets.x.metrics_path",
        "targets.x.colour: unknown setting",
        "kubernetes.page_size",
        "kubernetes.watch_timeout_seconds",
    ]:
        assert f"config/sd.yaml: {field}" in joined, field


def test_namespaces_on_a_node_set_is_an_error():
    assert problems({"targets": {"k": {"source": "nodes", "port": 1, "namespaces": ["a"]}}}) == [
        "config/sd.yaml: targets.k.namespaces: nodes are not namespaced; remove it for source: nodes"
    ]


def test_missing_port_is_an_error():
    assert problems({"targets": {"k": {"source": "nodes"}}}) == [
        "config/sd.yaml: targets.k.port: required: the port to scrape (the fallback when port_name is set)"
    ]


def test_set_names_must_be_url_safe():
    assert "targets.a/b" in problems({"targets": {"a/b": {"source": "nodes", "port": 1}}})[0]


def test_invalid_yaml_reports_line_and_column(tmp_path):
    path = tmp_path / "sd.yaml"
    path.write_text("targets:\n  kubelet: [\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems[0].startswith(f"{path}: line 3, column 1: not valid YAML")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read" in exc.value.problems[0]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sd", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_check_config_exits_0_on_the_default_file():
    result = run_cli("check-config", "--config", "config/sd.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_config_exits_2_and_prints_each_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            """
            targets:
              fluentd:
                source: pods
                port: 0
                ip_family: dual
            """
        )
    )
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}: targets.fluentd.ip_family: must be one of primary, ipv4, ipv6, both, reachable, got 'dual'",
        f"{path}: targets.fluentd.port: must be 1-65535, got 0",
    ]


def test_serve_without_any_cluster_exits_with_a_one_line_hint(tmp_path):
    env_home = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "sd", "serve", "--listen", "127.0.0.1:0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env_home,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--snapshot examples/cluster.json" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--snapshot", "nope.json"], "nope.json: cannot read"),
        (["--snapshot", "config/sd.yaml"], "expected a Kubernetes List"),
        (["--snapshot", "examples/cluster.json", "--listen", "8080"], "expected HOST:PORT"),
        (["--snapshot", "examples/cluster.json", "--listen", "::1:8080"], "brackets"),
        (["--kubeconfig", "nope.yaml"], "no such file"),
    ],
)
def test_serve_rejects_bad_arguments_clearly(args, message):
    result = run_cli("serve", "--listen", "127.0.0.1:0", *args)
    assert result.returncode in (1, 2)
    assert message in result.stderr


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=fluentd", {"app": "fluentd"}, True),
        ("app==fluentd", {"app": "web"}, False),
        ("app!=fluentd", {}, True),
        ("app in (a, b),tier", {"app": "b", "tier": "x"}, True),
        ("app notin (a)", {"app": "a"}, False),
        ("!canary", {"canary": ""}, False),
        ("app.kubernetes.io/name=fluentd", {"app.kubernetes.io/name": "fluentd"}, True),
        ("", {}, True),
    ],
)
def test_label_selectors_match_like_the_api_server(selector, labels, expected):
    assert matcher(selector, "", pods.KIND.fields)({"metadata": {"labels": labels}}) is expected


def test_field_selectors_match_pod_fields():
    obj = {"metadata": {"name": "p", "namespace": "logging"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert matcher("", "spec.nodeName=n1,status.phase!=Failed", pods.KIND.fields)(obj)
    assert not matcher("", "metadata.namespace=default", pods.KIND.fields)(obj)


@pytest.mark.parametrize("bad", ["a in (", "=x", "a b", "a in ()"])
def test_invalid_label_selectors_are_rejected(bad):
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_field_selectors_accept_exactly_the_fields_the_api_server_serves_for_the_kind():
    # The API server answers 400 to a nodes watch selecting on metadata.namespace: an
    # informer would retry it forever, so the config refuses it up front...
    assert problems({"targets": {"k": {"source": "nodes", "port": 1, "field_selector": "metadata.namespace=x"}}}) == [
        "config/sd.yaml: targets.k.field_selector: unsupported field 'metadata.namespace' "
        "(supported: metadata.name, spec.unschedulable): 'metadata.namespace=x'"
    ]
    # ...while pods may select on status.podIP, which the API server accepts for pods.
    config = parse_config({"targets": {"p": {"source": "pods", "port": 1, "field_selector": "status.podIP=192.0.2.7"}}})
    assert config.targets["p"].field_selector == "status.podIP=192.0.2.7"
    config = parse_config({"targets": {"k": {"source": "nodes", "port": 1, "field_selector": "spec.unschedulable=false"}}})
    assert config.targets["k"].field_selector == "spec.unschedulable=false"


def test_kind_field_lists_match_what_the_api_double_accepts():
    from sdtest import kubeapi

    assert set(nodes.KIND.fields) == set(kubeapi._NODE_FIELDS)
    assert set(pods.KIND.fields) == set(kubeapi._POD_FIELDS)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("targets:\n  kubelet:\n    source: nodes\n    port: 1\n  kubelet:\n    source: pods\n    port: 2\n", 5, "kubelet"),
        ("kubernetes:\n  page_size: 5\n  page_size: 6\n", 3, "page_size"),
    ],
    ids=["duplicate set name", "duplicate setting"],
)
def test_duplicate_keys_are_an_error_with_the_line(tmp_path, text, line, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{path}: line {line}, column 3: not valid YAML: duplicate key {key!r} (first at line {line - 3 if key == 'kubelet' else line - 1})"


@pytest.mark.parametrize(
    ("content", "message"),
    [("garbage: [\n", "not valid YAML: while parsing a flow node"), ("[1, 2]\n", "not a kubeconfig (TypeError")],
    ids=["not YAML", "not a mapping"],
)
def test_a_malformed_kubeconfig_is_one_line_naming_the_file(tmp_path, content, message):
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(content)
    result = run_cli("serve", "--listen", "127.0.0.1:0", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"kube-http-sd: kubeconfig {kubeconfig}: cannot load: {message}")


def test_attach_metadata_is_for_pod_sets_and_annotation_patterns_are_checked():
    assert problems({"targets": {"k": {"source": "nodes", "port": 1,
                                        "attach_metadata": {"node": True, "namespace": True, "job": False, "cronjob": "yes"}}}}) == [
        "config/sd.yaml: targets.k.attach_metadata.cronjob: must be true or false, got 'yes'",
        "config/sd.yaml: targets.k.attach_metadata.node: applies to pod sets (source: pods), not nodes",
        "config/sd.yaml: targets.k.attach_metadata.namespace: applies to pod sets (source: pods), not nodes",
    ]
    assert problems({"targets": {"p": {"source": "pods", "port": 1, "annotations": ["a*b", "prefix*"], "attach_metadata": {"nod": 1}}}}) == [
        "config/sd.yaml: targets.p.annotations[0]: an annotation key, or a prefix ending in '/*', got 'a*b'",
        "config/sd.yaml: targets.p.annotations[1]: an annotation key, or a prefix ending in '/*', got 'prefix*'",
        "config/sd.yaml: targets.p.attach_metadata.nod: unknown setting (known: cronjob, deployment, job, namespace, node)",
    ]
    config = parse_config({"targets": {"p": {"source": "pods", "port": 1, "annotations": ["prometheus.io/*"], "attach_metadata": {"node": True}}}})
    assert config.targets["p"].attach_metadata.node and config.targets["p"].annotations == ("prometheus.io/*",)
    workloads = parse_config({"targets": {"p": {"source": "pods", "port": 1, "attach_metadata": {"deployment": True, "cronjob": True}}}})
    assert workloads.targets["p"].attach_metadata.options == ("deployment", "cronjob")
