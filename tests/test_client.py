"""Cluster configuration: in-cluster over IPv6 with TLS and a token file, kubeconfig lookup."""

from __future__ import annotations

import asyncio

import pytest
import trustme
import yaml

from sd.config import default_config
from sd.kinds import nodes
from sd.kube.client import (
    ClusterConfig,
    NoClusterConfig,
    TokenFile,
    api_client,
    find_cluster,
    kubeconfig_token_file,
    list_call,
)
from sd.kube.informer import Informer
from sd.metrics import Metrics
from sd.service import Service
from sdtest.factories import make_node
from sdtest.helpers import FAST_SETTINGS, until
from sdtest.kubeapi import FakeKubeAPI



@pytest.fixture
def tls_api(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("::1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    (tmp_path / "token").write_text("token-1")
    pem = str(tmp_path / "server.pem")
    with FakeKubeAPI(host="::1", tls=(pem, pem), tokens={"token-1"}) as api:
        yield api, tmp_path


async def test_in_cluster_config_over_ipv6_tls_with_a_token_file(tls_api, monkeypatch):
    api, tmp = tls_api
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
    cluster = find_cluster(None)
    assert cluster.kind == "in-cluster"
    cluster = ClusterConfig("in-cluster", token_file=str(tmp / "token"), ca_file=str(tmp / "ca.crt"))
    api.add(make_node("n1", ["10.0.0.1"]))
    config = default_config()
    metrics = Metrics()
    service = Service(config, metrics)
    sets = service.sets
    feed = next(f for f in service.feeds.values() if f.kind is nodes.KIND)
    client = await api_client(cluster)
    assert client.configuration.host == f"https://[::1]:{api.port}"
    informer = Informer(feed.name, list_call(client, feed.list_watch.api_path), feed.decode, feed, FAST_SETTINGS)
    task = asyncio.create_task(informer.run())
    try:
        await until(lambda: feed.status.synced and "10.0.0.1" in sets["kubelet"].index.winners)
        # The API server stops accepting the token (it was rotated): 401s are retried, not fatal...
        api.tokens = {"token-2"}
        api.drop_streams()
        restarts = {"source": feed.name, "reason": "unauthorized"}
        await until(lambda: (metrics.registry.get_sample_value("kube_http_sd_watch_restarts_total", restarts) or 0) >= 1)
        assert not task.done()
        # ...and once the token is valid again the watch resumes and sees new changes.
        api.tokens = {"token-1", "token-2"}
        api.add(make_node("n2", ["10.0.0.2"]))
        await until(lambda: "10.0.0.2" in sets["kubelet"].index.winners)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


def test_kubeconfig_comes_from_the_environment_then_home(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    assert find_cluster(None, {"KUBECONFIG": str(kubeconfig)}).path == str(kubeconfig)
    with pytest.raises(NoClusterConfig, match="--snapshot examples/cluster.json"):
        find_cluster(None, {"KUBECONFIG": str(tmp_path / "missing")})
    assert find_cluster(str(kubeconfig), {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).kind == "kubeconfig"


def test_no_home_directory_is_no_kubeconfig_not_a_crash(monkeypatch):
    """A container's uid 65532 has no HOME and no passwd entry: the hint, not a traceback."""
    import pwd

    def no_entry(uid: int) -> None:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(NoClusterConfig, match="no Kubernetes cluster configured"):
        find_cluster(None, {})


IMPORTS_PROBE = """
import asyncio, json, sys
imported = []
sys.addaudithook(lambda event, args: imported.append(args[0]) if event == "import" else None)
import aiohttp
import sd.__main__
from sd.kube.client import ClusterConfig, api_client, list_call

async def list_nodes():
    api = await api_client(ClusterConfig("kubeconfig", sys.argv[1]))
    try:
        resp = await list_call(api, "/api/v1/nodes")({"limit": "1"}, aiohttp.ClientTimeout(total=10))
        body = await resp.json()
        resp.release()
        return [n["metadata"]["name"] for n in body["items"]]
    finally:
        await api.close()

names = asyncio.run(list_nodes())
ours = sorted({m for m in imported if m.startswith("kubernetes_asyncio")})
import kubernetes_asyncio  # afterwards: still the whole package
print(json.dumps({"names": names, "ours": ours, "full": hasattr(kubernetes_asyncio.client, "CoreV1Api")}))
"""


def test_only_kubernetes_asyncio_config_modules_are_loaded_and_the_package_stays_whole(tmp_path):
    """Its package __init__ imports ~850 models (61 MB): the server loads the config modules
    alone, lists through them, and leaves `import kubernetes_asyncio` working in full."""
    import json
    import subprocess
    import sys

    with FakeKubeAPI() as api:
        api.add(make_node("n1", ["192.0.2.1"]))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        out = subprocess.run([sys.executable, "-c", IMPORTS_PROBE, str(kubeconfig)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["names"] == ["n1"]
    assert "kubernetes_asyncio.config.exec_provider" in result["ours"]  # kube_config ran
    assert [m for m in result["ours"] if m.startswith(("kubernetes_asyncio.client.models", "kubernetes_asyncio.client.api"))
            and m != "kubernetes_asyncio.client.api_client"] == []
    assert result["full"]


def test_the_in_cluster_token_file_is_read_again_each_minute_and_at_once_after_a_401(tmp_path):
    token = tmp_path / "token"
    token.write_text("token-1\n")
    now = [100.0]
    tokens = TokenFile(str(token), clock=lambda: now[0])
    assert tokens.value() == "token-1"
    token.write_text("token-2")  # rotated by the kubelet
    now[0] += 59
    assert tokens.value() == "token-1"  # read again once a minute...
    now[0] += 1
    assert tokens.value() == "token-2"
    token.write_text("token-3")
    tokens.rejected(since=now[0] - 5)  # ...a 401 to a request sent before the last read: not stale
    assert tokens.value() == "token-2"
    tokens.rejected(since=now[0])  # a 401 to the current token: at once
    assert tokens.value() == "token-3"


def test_a_kubeconfig_token_file_is_the_contexts_users_relative_to_the_file(tmp_path):
    users = [{"name": "file", "user": {"tokenFile": "secrets/token"}},
             {"name": "both", "user": {"token": "abc", "tokenFile": "/elsewhere"}},
             {"name": "cert", "user": {"client-certificate": "c.pem"}}]
    contexts = [{"name": name, "context": {"cluster": "c", "user": name}} for name in ("file", "both", "cert")]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({"current-context": "file", "users": users, "contexts": contexts}))
    assert kubeconfig_token_file(str(path)) == str(tmp_path / "secrets" / "token")
    assert kubeconfig_token_file(str(path), "both") is None, "a token in the file wins, as in client-go"
    assert kubeconfig_token_file(str(path), "cert") is None
    assert kubeconfig_token_file(str(path), "missing") is None
