"""Kubernetes API client set-up: which cluster, and the list call of a collection.

Order (DESIGN.md): ``--kubeconfig``; else in-cluster when KUBERNETES_SERVICE_HOST
is set (IPv6 hosts are bracketed; the projected service-account token is
re-read every minute by kubernetes-asyncio's refresh hook, so rotation works);
else ``$KUBECONFIG`` / ``~/.kube/config``. One ``ApiClient`` serves every informer.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Awaitable

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config import incluster_config

from sd.kube.informer import ListCall


class NoClusterConfig(Exception):
    """No way to reach a cluster; the message is a one-line hint."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    kind: str  # "kubeconfig" | "in-cluster"
    path: str = ""  # the kubeconfig file
    token_file: str = incluster_config.SERVICE_TOKEN_FILENAME
    ca_file: str = incluster_config.SERVICE_CERT_FILENAME

    def __str__(self) -> str:
        return f"kubeconfig {self.path}" if self.kind == "kubeconfig" else "in-cluster service account"


def find_cluster(kubeconfig: str | None, environ: dict[str, str] | os._Environ = os.environ) -> ClusterConfig:
    """Decide where the cluster is, without touching the network."""
    if kubeconfig:
        if not Path(kubeconfig).is_file():
            raise NoClusterConfig(f"--kubeconfig {kubeconfig}: no such file")
        return ClusterConfig("kubeconfig", kubeconfig)
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return ClusterConfig("in-cluster")
    path = environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    if not Path(path).is_file():
        raise NoClusterConfig(
            "no Kubernetes cluster configured (no --kubeconfig, KUBERNETES_SERVICE_HOST, $KUBECONFIG or "
            f"{path}); to try it without one: kube-http-sd serve --snapshot examples/cluster.json"
        )
    return ClusterConfig("kubeconfig", path)


def user_agent() -> str:
    """``kube-http-sd/<version> (python/<v>; kubernetes-asyncio/<v>)``: API-server audit logs and
    priority-and-fairness rules can tell us apart from other clients."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return f"kube-http-sd/{version('kube-http-sd')} (python/{platform.python_version()}; kubernetes-asyncio/{version('kubernetes-asyncio')})"


async def api_client(cluster: ClusterConfig) -> client.ApiClient:
    """An ApiClient for the cluster; raises kubernetes_asyncio ConfigException on a bad config."""
    configuration = client.Configuration()
    if cluster.kind == "in-cluster":
        incluster_config.load_incluster_config(
            client_configuration=configuration, token_filename=cluster.token_file, cert_filename=cluster.ca_file
        )
    else:
        await config.load_kube_config(config_file=cluster.path, client_configuration=configuration)
    api = client.ApiClient(configuration)
    api.user_agent = user_agent()
    return api


def list_call(
    api: client.ApiClient, method: str, namespace: str | None = None, label_selector: str = "", field_selector: str = ""
) -> ListCall:
    """The kubernetes-asyncio ``CoreV1Api`` list function ``method`` (e.g. "list_node"),
    with the namespace (for namespaced list methods) and selectors bound.

    Called with list/watch keyword arguments and ``_preload_content=False``; it
    returns the raw aiohttp response (no model deserialization).
    """
    fn = getattr(client.CoreV1Api(api), method)
    args = () if namespace is None else (namespace,)
    selectors: dict[str, str] = {}
    if label_selector:
        selectors["label_selector"] = label_selector
    if field_selector:
        selectors["field_selector"] = field_selector

    def call(**kwargs: Any) -> Awaitable[Any]:
        return fn(*args, **selectors, **kwargs)

    return call
