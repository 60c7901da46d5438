"""Kubernetes API client set-up: which cluster, and the list call of a collection.

Order (DESIGN.md): ``--kubeconfig``; else in-cluster when KUBERNETES_SERVICE_HOST
is set (IPv6 hosts are bracketed; the projected service-account token is
re-read every minute and at once after a 401, so rotation works: ``TokenFile``; a
kubeconfig user's ``tokenFile`` too); else ``$KUBECONFIG`` / ``~/.kube/config``. One ``ApiClient`` serves every informer.

kubernetes-asyncio reads the configuration (kubeconfig contexts, client
certificates, exec plugins, token refresh, in-cluster service account); the
requests are plain aiohttp GETs with its settings. Its generated API classes and
~850 models are never imported: ``import kubernetes_asyncio.config`` alone would
load them all through the package ``__init__`` (61 MB and most of the start-up time),
so ``_kubernetes_asyncio`` loads just the configuration modules (tested with the
version range pinned in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import platform
import ssl
import sys
import time
import types
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Awaitable
from urllib.parse import urlencode

import aiohttp
from yarl import URL

import yaml

from sd.kube.informer import Failure, ListCall


def _kubernetes_asyncio() -> tuple[types.ModuleType, types.ModuleType, type[Exception]]:
    """kubernetes-asyncio's ``config.kube_config`` and ``config.incluster_config`` modules
    and its ``ConfigException``, without running ``kubernetes_asyncio/__init__.py`` or
    ``client/__init__.py`` (which import every API class and model).

    They are imported under stand-in parent packages that hold only what these modules
    import from them (``client.Configuration``, from its own module), and every module
    this added to ``sys.modules`` is taken out again, so that an ``import
    kubernetes_asyncio`` elsewhere in the process still gets the whole package.
    """
    if "kubernetes_asyncio" in sys.modules:  # already loaded in full: nothing to save
        from kubernetes_asyncio.config import config_exception, incluster_config, kube_config

        return kube_config, incluster_config, config_exception.ConfigException
    spec = importlib.util.find_spec("kubernetes_asyncio")
    if spec is None or spec.origin is None:
        raise ImportError("kubernetes-asyncio is not installed")
    root = Path(spec.origin).parent
    before = set(sys.modules)
    try:
        for name, path in (("kubernetes_asyncio", root), ("kubernetes_asyncio.client", root / "client"),
                           ("kubernetes_asyncio.config", root / "config")):
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
        client = sys.modules["kubernetes_asyncio.client"]
        client.Configuration = importlib.import_module("kubernetes_asyncio.client.configuration").Configuration  # type: ignore[attr-defined]
        # kube_config imports ApiClient for new_client_from_config(), which is never called here.
        client.ApiClient = None  # type: ignore[attr-defined]
        kube_config = importlib.import_module("kubernetes_asyncio.config.kube_config")
        incluster_config = importlib.import_module("kubernetes_asyncio.config.incluster_config")
        config_exception = importlib.import_module("kubernetes_asyncio.config.config_exception")
    finally:
        for name in set(sys.modules) - before:
            if name.startswith("kubernetes_asyncio"):
                del sys.modules[name]
    return kube_config, incluster_config, config_exception.ConfigException


_kube_config, _incluster_config, ConfigException = _kubernetes_asyncio()


class NoClusterConfig(Exception):
    """No way to reach a cluster; the message is a one-line hint."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    kind: str  # "kubeconfig" | "in-cluster"
    path: str = ""  # the kubeconfig file
    token_file: str = _incluster_config.SERVICE_TOKEN_FILENAME
    ca_file: str = _incluster_config.SERVICE_CERT_FILENAME
    context: str = ""  # a context of the kubeconfig; "": its current-context

    def __str__(self) -> str:
        if self.kind != "kubeconfig":
            return "in-cluster service account"
        return f"kubeconfig {self.path}" + (f" context {self.context}" if self.context else "")


def find_cluster(kubeconfig: str | None, environ: dict[str, str] | os._Environ = os.environ) -> ClusterConfig:
    """Decide where the cluster is, without touching the network."""
    if kubeconfig:
        if not Path(kubeconfig).is_file():
            raise NoClusterConfig(f"--kubeconfig {kubeconfig}: no such file")
        return ClusterConfig("kubeconfig", kubeconfig)
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return ClusterConfig("in-cluster")
    # expanduser, not Path.home(): without HOME and a passwd entry (a container's uid
    # 65532) the latter raises, and "~/.kube/config" is simply not there.
    path = environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
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


class TokenFile:
    """A bearer token read from a file (the in-cluster service account's projected token, or a
    kubeconfig user's ``tokenFile``): again once a minute
    (the kubelet rotates it long before it expires), and at once when the API server rejected
    it with a 401 (client-go's cached file token source, reset by its transport on a 401): a
    token revoked early (its bound object deleted) costs one backoff, not up to a minute."""

    PERIOD_SECONDS = 60.0

    def __init__(self, path: str, clock: Any = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._token = ""
        self._read_at = float("-inf")

    def value(self) -> str:
        now = self._clock()
        if now - self._read_at >= self.PERIOD_SECONDS:
            self._token = Path(self.path).read_text().strip()
            self._read_at = now
        return self._token

    def rejected(self, since: float) -> None:
        """A request sent at ``since`` got a 401: read the file again unless that was done after."""
        if self._read_at <= since:
            self._read_at = float("-inf")


class ApiClient:
    """GET requests to one API server with kubernetes-asyncio's settings: its TLS set-up
    (CA, client certificate, insecure-skip-tls-verify, tls-server-name, as its REST client
    builds it), proxy, and bearer token, asked for on every request so that its refresh
    hook (exec plugins) keeps it current; in-cluster and for a kubeconfig ``tokenFile``, the
    token comes from ``token_file``."""

    def __init__(self, configuration: Any, token_file: TokenFile | None = None) -> None:
        self.configuration = configuration
        self._token_file = token_file
        self._host = configuration.host.rstrip("/")
        # Watch events of large objects exceed aiohttp's default read buffer (etcd allows 1.5 MiB).
        connector = aiohttp.TCPConnector(ssl=_tls(configuration) if self._host.startswith("https:") else False)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=True, read_bufsize=2**21)
        self._options: dict[str, Any] = {}
        if configuration.proxy:
            self._options["proxy"] = configuration.proxy
        if configuration.proxy_headers:
            self._options["proxy_headers"] = configuration.proxy_headers
        if configuration.tls_server_name:
            self._options["server_hostname"] = configuration.tls_server_name
        self.user_agent = user_agent()

    async def get(self, path: str, params: dict[str, str], timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """The response to ``GET path?params``, unread: the caller streams and releases it."""
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        sent = time.monotonic()
        if self._token_file is not None:
            headers["Authorization"] = "Bearer " + self._token_file.value()
        else:
            token = (await self.configuration.auth_settings()).get("BearerToken")
            if token and token["value"]:
                headers["Authorization"] = token["value"]
        url = URL(f"{self._host}{path}?{urlencode(params)}" if params else self._host + path, encoded=True)
        resp = await self._session.get(url, headers=headers, timeout=timeout, **self._options)
        if resp.status == 401 and self._token_file is not None:
            self._token_file.rejected(sent)
        return resp

    async def close(self) -> None:
        await self._session.close()


def _tls(configuration: Any) -> ssl.SSLContext:
    """The TLS context kubernetes-asyncio's REST client would build (only for https: loading
    the system's CA bundle alone takes ~50 ms)."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.disable_strict_ssl_verification:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


async def api_client(cluster: ClusterConfig) -> ApiClient:
    """An ApiClient for the cluster; raises ConfigException (or whatever a malformed
    kubeconfig makes kubernetes-asyncio's loader hit) on a bad config."""
    configuration = _kube_config.Configuration()
    if cluster.kind == "in-cluster":
        _incluster_config.load_incluster_config(
            client_configuration=configuration, token_filename=cluster.token_file, cert_filename=cluster.ca_file,
            try_refresh_token=False,
        )
        return ApiClient(configuration, TokenFile(cluster.token_file))
    await _kube_config.load_kube_config(config_file=cluster.path, context=cluster.context or None, client_configuration=configuration)
    token_file = kubeconfig_token_file(cluster.path, cluster.context)
    return ApiClient(configuration, TokenFile(token_file) if token_file else None)


def kubeconfig_token_file(path: str, context: str = "") -> str | None:
    """The ``tokenFile`` of the context's user (its current-context when ``context`` is ""),
    relative to the kubeconfig's directory, when the user has no ``token``: client-go reads
    such a file again every minute (its cached file token source), so a token rotated in a
    mounted Secret is used without a restart. None when there is none; the loader that ran
    before reported what is wrong with the file."""
    config = yaml.safe_load(Path(path).read_text())

    def named(section: str, name: Any) -> dict[str, Any]:
        entries = config.get(section) if isinstance(config, dict) else None
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(section[:-1]), dict):
                return entry[section[:-1]]
        return {}

    name = context or (config.get("current-context") if isinstance(config, dict) else None)
    user = named("users", named("contexts", name).get("user"))
    token_file = user.get("tokenFile")
    if user.get("token") or not isinstance(token_file, str) or not token_file:
        return None
    return str(Path(path).parent / token_file)


# What kubernetes-asyncio's loader raises for a kubeconfig it cannot use: whatever a
# malformed file makes it hit.
LOAD_ERRORS = (ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError)


def load_error(exc: BaseException) -> str:
    """One of LOAD_ERRORS as "this file is not a usable kubeconfig", in one line."""
    detail = " ".join(str(exc).split())
    if isinstance(exc, yaml.YAMLError):
        return f"not valid YAML: {detail}"
    if isinstance(exc, (TypeError, KeyError, AttributeError)):
        return f"not a kubeconfig ({type(exc).__name__}: {detail})"
    return detail


class Clients:
    """One ``ApiClient`` per cluster (several clusters), made on first use, so that a cluster
    added by a reload gets one; ``keep`` closes those of clusters gone or changed."""

    def __init__(self) -> None:
        self._made: dict[str, tuple[ClusterConfig, asyncio.Task[ApiClient]]] = {}

    def get(self, name: str, cluster: ClusterConfig) -> Awaitable[ApiClient]:
        """The cluster's client; raises what ``api_client`` raises (and again on the next
        call, which tries again)."""
        made = self._made.get(name)
        if made is not None and made[0] == cluster and not (made[1].done() and made[1].exception()):
            return made[1]
        if made is not None:
            self._discard(made[1])
        task = asyncio.ensure_future(api_client(cluster))
        self._made[name] = (cluster, task)
        return task

    def keep(self, clusters: dict[str, ClusterConfig]) -> None:
        """Close the clients of clusters not in ``clusters`` or reached another way now."""
        for name in [n for n, (c, _) in self._made.items() if clusters.get(n) != c]:
            self._discard(self._made.pop(name)[1])

    async def close(self) -> None:
        for _, task in self._made.values():
            if task.done() and not task.exception():
                await task.result().close()
        self._made.clear()

    @staticmethod
    def _discard(task: asyncio.Task[ApiClient]) -> None:
        def close(done: asyncio.Task[ApiClient]) -> None:
            if not done.cancelled() and done.exception() is None:
                asyncio.ensure_future(done.result().close())

        task.add_done_callback(close)


def list_call(api: ApiClient | ClusterClient, path: str, label_selector: str = "", field_selector: str = "") -> ListCall:
    """GETs of the collection at ``path`` (``/api/v1/nodes``) with the selectors bound: the
    informer adds the list/watch query parameters and reads the raw response."""
    selectors: dict[str, str] = {}
    if label_selector:
        selectors["labelSelector"] = label_selector
    if field_selector:
        selectors["fieldSelector"] = field_selector

    async def call(params: dict[str, str], timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        return await api.get(path, {**selectors, **params}, timeout)

    return call


class ClusterClient:
    """GETs to cluster ``name`` through its client in ``clients``: a client that cannot be
    made (its kubeconfig broke since the start) fails the request, which the informer
    backs off and retries like any other failure."""

    def __init__(self, clients: Clients, name: str, cluster: ClusterConfig) -> None:
        self._clients, self._name, self._cluster = clients, name, cluster

    async def get(self, path: str, params: dict[str, str], timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        try:
            api = await self._clients.get(self._name, self._cluster)
        except LOAD_ERRORS as exc:
            raise Failure("kubeconfig", f"{self._cluster}: cannot load: {load_error(exc)}") from None
        return await api.get(path, params, timeout)
