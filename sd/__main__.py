"""Command line: ``kube-http-sd serve``, ``check-config`` and ``targets``."""

from __future__ import annotations

import gc

# This module is the process entry point. The imports below create tens of thousands
# of objects that live as long as the process; running the cyclic collector over them while they load costs
# ~0.1 s of start-up. main() turns collection back on, with those objects frozen.
gc.disable()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Awaitable, Callable, Sequence  # noqa: E402

from sd import logs  # noqa: E402
from sd._table import table  # noqa: E402
from sd.config import Config, ConfigError, load_config  # noqa: E402
from sd.feed import Feed  # noqa: E402
from sd.http.app import create_app  # noqa: E402
from sd.http.server import bind_socket, parse_listen, serve  # noqa: E402
from sd.kinds.labels import CLUSTER_LABEL, IP_FAMILY_LABEL  # noqa: E402
from sd.kinds.nodes import NODE_NAME  # noqa: E402
from sd.kinds.pods import NAMESPACE, POD_NAME, POD_NODE_NAME  # noqa: E402
from sd.kube.client import (  # noqa: E402
    LOAD_ERRORS, Clients, ClusterClient, ClusterConfig, NoClusterConfig, find_cluster, list_call, load_error,
)
from sd.kube.informer import Informer  # noqa: E402
from sd.kube.snapshot import SnapshotError  # noqa: E402
from sd.metrics import Metrics  # noqa: E402
from sd.service import Service  # noqa: E402
from sd.targets import INSTANCE  # noqa: E402
from sd.version import versions  # noqa: E402

log = logging.getLogger("sd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kube-http-sd", description="Prometheus http_sd server for Kubernetes nodes and pods."
    )
    v = versions()
    parser.add_argument(
        "--version", action="version",
        version=f"kube-http-sd {v['version']} (python {v['python']}, kubernetes-asyncio {v['kubernetes_asyncio']})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="watch the cluster (or a snapshot) and serve /targets/<set>")
    serve_p.add_argument("--config", help="config file (default: built-in, documented in config/sd.yaml)")
    serve_p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG, ~/.kube/config)")
    serve_p.add_argument("--snapshot", help="serve objects from a `kubectl get nodes,pods -A -o json` file instead")
    serve_p.add_argument("--listen", default="[::]:8080", help="HOST:PORT or [IPv6]:PORT (default [::]:8080, dual-stack)")
    serve_p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve_p.add_argument("--log-format", default="text", choices=["text", "json"])
    check_p = sub.add_parser("check-config", help="validate a config file: exit 0, or print problems and exit 2")
    check_p.add_argument("--config", help="config file (default: built-in)")
    targets_p = sub.add_parser("targets", help="print a running server's targets as a table")
    targets_p.add_argument(
        "url",
        help="a /targets/<set> URL, e.g. http://localhost:8080/targets/kubelet (no scheme: http://); "
        "the server's base URL lists its sets",
    )
    targets_p.add_argument("--bearer-token-file", help="send this file's contents as a bearer token")
    targets_p.add_argument("--user", help="basic auth user name; the password is read from --password-file")
    targets_p.add_argument("--password-file", help="the basic auth password, in a file (never on the command line)")
    targets_p.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything imported or built at start-up lives as long as the process: keep the
    # cyclic collector from rescanning it, and collect young objects less often, since
    # parsing list pages allocates millions of short-lived, acyclic dicts. Together
    # with the disable() above this halves an initial sync at 5,000 nodes (bench/).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    gc.enable()
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "targets":
        return _print_targets(args)
    logs.setup(args.log_level, args.log_format)
    return _serve(args)


def _check_config(path: str | None) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _problems(exc)
    sets = ", ".join(f"{n} ({c.source})" for n, c in config.targets.items())
    clusters = "".join(
        f"; cluster {n}: {'in-cluster' if c.in_cluster else c.kubeconfig}{f' context {c.context}' if c.context else ''}"
        for n, c in config.clusters.items()
    )
    print(f"{path or 'built-in config'}: ok: target sets {sets}{clusters}")
    return 0


def _print_targets(args: argparse.Namespace) -> int:
    url = args.url if "://" in args.url else "http://" + args.url
    path = urllib.parse.urlsplit(url).path
    listing = path in ("", "/")  # the server's base URL: list its sets
    if not listing and "/targets/" not in path:
        return _fail(f"{args.url}: not a target set URL; give one like http://localhost:8080/targets/kubelet, "
                     "or the server's base URL to list its sets", 2)
    headers = {"Accept": "text/plain" if listing else "application/json"}
    try:
        if args.bearer_token_file:
            headers["Authorization"] = "Bearer " + _secret(args.bearer_token_file, "--bearer-token-file")
        if args.user is not None or args.password_file:
            if args.user is None or not args.password_file:
                return _fail("--user and --password-file go together", 2)
            pair = f"{args.user}:{_secret(args.password_file, '--password-file')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    except ValueError as exc:
        return _fail(str(exc), 2)
    if listing:
        url = url.rstrip("/") + "/"
    context = ssl._create_unverified_context() if args.insecure else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30, context=context) as resp:
            body = resp.read()
        groups = None if listing else json.loads(body)
    except urllib.error.HTTPError as exc:
        return _fail(f"{url}: HTTP {exc.code}: {exc.read().decode(errors='replace').strip()}", 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return _fail(f"{url}: {getattr(exc, 'reason', exc)}", 1)
    if groups is None:
        return _write(body.decode(errors="replace") + f"(kube-http-sd targets {url.rstrip('/')}/targets/<set> lists one)\n")
    if not isinstance(groups, list):
        return _fail(f"{url}: not a target list (a JSON list of groups)", 1)
    # A set over several clusters: every row starts with its cluster.
    clustered = any(CLUSTER_LABEL in group.get("labels", {}) for group in groups)
    rows = []
    for group in groups:
        labels = group.get("labels", {})
        cluster = (labels.get(CLUSTER_LABEL, "-"),) if clustered else ()
        pod = "/".join(filter(None, (labels.get(NAMESPACE), labels.get(POD_NAME))))
        # A pod's node is its spec.nodeName; a node target's node is the node itself.
        node = labels.get(POD_NODE_NAME) or labels.get(NODE_NAME)
        name = pod or labels.get(NODE_NAME)
        for target in group.get("targets", []):
            rows.append((*cluster, target, labels.get(IP_FAMILY_LABEL, ""), name or "-", node or "-", labels.get(INSTANCE, "-")))
    text = table((*(("CLUSTER",) if clustered else ()), "TARGET", "FAMILY", "OBJECT", "NODE", "INSTANCE"), sorted(rows))
    return _write(f"{text}{len(rows)} targets\n")


def _secret(path: str, flag: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"{flag} {path}: {exc.strerror or exc}") from None


def _write(text: str) -> int:
    """Print ``text``; a reader that stops early (``| head``) is no error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _problems(exc: ConfigError) -> int:
    """Each config problem on its own line; exit status 2."""
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    return 2


def _fail(message: str, code: int) -> int:
    print(f"kube-http-sd: {message}", file=sys.stderr)
    return code


def cluster_configs(config: Config, environ: dict[str, str] | os._Environ = os.environ) -> dict[str, ClusterConfig]:
    """How to reach each cluster of the config's clusters: map (raises NoClusterConfig)."""
    found = {}
    for name, settings in config.clusters.items():
        if not settings.in_cluster:
            found[name] = ClusterConfig("kubeconfig", settings.kubeconfig, context=settings.context)
        elif environ.get("KUBERNETES_SERVICE_HOST"):
            found[name] = ClusterConfig("in-cluster")
        else:
            raise NoClusterConfig(f"clusters.{name}: in_cluster: true, but KUBERNETES_SERVICE_HOST is not set (not in a pod)")
    return found


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        host, port = parse_listen(args.listen)
    except ConfigError as exc:
        return _problems(exc)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if config.clusters and (args.kubeconfig or args.snapshot):
        option = "--kubeconfig" if args.kubeconfig else "--snapshot"
        return _fail(f"{option} serves one cluster, and {args.config} has a clusters: map: use one or the other", 2)

    metrics = Metrics(clusters=bool(config.clusters))
    service = Service(config, metrics, args.snapshot)
    clusters: dict[str, ClusterConfig] = {}  # by name; "" the single cluster
    if args.snapshot:
        try:
            service.load_snapshot()
        except SnapshotError as exc:
            return _fail(str(exc), 2)
    else:
        try:
            clusters = cluster_configs(config) if config.clusters else {"": find_cluster(args.kubeconfig)}
        except NoClusterConfig as exc:
            return _fail(str(exc), 1)
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        return _fail(f"--listen {args.listen}: cannot bind: {exc.strerror or exc}", 1)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it for the previous
    # handler to decide; this one makes that a normal exit (status 0).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        return asyncio.run(_run(service, metrics, sock, clusters, args.config))
    except KeyboardInterrupt:
        return 0


async def _run(service: Service, metrics: Metrics, sock: socket.socket, clusters: dict[str, ClusterConfig], path: str | None) -> int:
    """Serve until stopped, with the informers (unless serving a snapshot) and the prober running;
    SIGHUP reloads the config (and the snapshot)."""
    config = service.config
    clients = Clients()
    for name, cluster in clusters.items():
        try:
            await clients.get(name, cluster)
        except LOAD_ERRORS as exc:
            await clients.close()
            return _fail(f"{f'clusters.{name}: ' if name else ''}{cluster}: cannot load: {load_error(exc)}", 1)
    # Only now: every mistake the user can fix before it runs was a one-line error above.
    v = versions()
    log.info("starting version=%s python=%s kubernetes_asyncio=%s", v["version"], v["python"], v["kubernetes_asyncio"])
    if not clusters:
        log.info("snapshot loaded file=%s targets=%s", service.snapshot, {n: len(s) for n, s in service.sets.items()})
    for name, cluster in clusters.items():
        sources = [f.name for (c, _), f in service.feeds.items() if c == name]
        log.info("watching cluster=%s sources=%s", f"{name} ({cluster})" if name else str(cluster), sources)

    def informer(feed: Feed) -> Callable[[], Awaitable[None]]:
        lw, name = feed.list_watch, feed.cluster or ""
        settings = service.clusters[name].settings
        api = ClusterClient(clients, name, clusters[name])
        call = list_call(api, lw.api_path, lw.label_selector, lw.field_selector)
        return Informer(feed.name, call, feed.decode, feed, settings.kubernetes if settings else config.kubernetes).run

    app = create_app(service, metrics, informer if clusters else None, server=config.server)

    def reload() -> None:
        try:
            new = load_config(path)
            reached = cluster_configs(new) if new.clusters else clusters
            service.reload(new)
        except (ConfigError, SnapshotError, NoClusterConfig) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            for problem in problems:
                log.error("config reload refused, keeping the running config: %s", problem)
            metrics.config_reloads.labels("failed").inc()
            metrics.config_reload_ok.set(0)
            return
        if new.clusters:
            clusters.clear()
            clusters.update(reached)
            clients.keep(clusters)
        metrics.config_reloads.labels("ok").inc()
        metrics.config_reload_ok.set(1)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    try:
        await serve(app, sock, config.server, lambda ok: metrics.tls_reloads.labels("ok" if ok else "failed").inc())
    finally:
        await clients.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
