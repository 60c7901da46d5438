"""Configuration: the documented file format (config/sd.yaml), its defaults and validation.

Every problem is reported with the file, the field path and the bad value, e.g.
``config/sd.yaml: targets.fluentd.port: must be 1-65535, got 0``; all problems
are collected, not just the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from sd.kinds import KINDS
from sd.kinds.relations import RELATIONS
from sd.selectors import SelectorError, parse_field_selector, parse_label_selector

# A set's `source`: one of the registered kinds (sd/kinds/) that serve targets, by name.
KindName = StrEnum("KindName", {n.upper(): n for n, kind in KINDS.items() if kind.serves_targets})  # type: ignore[misc]


class IPFamilyPolicy(StrEnum):
    """Which of an object's IPs a set publishes."""

    PRIMARY = "primary"  # the first (the cluster's primary family)
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    BOTH = "both"  # one target per family
    REACHABLE = "reachable"  # the families whose metrics endpoint answers a probe


class PortsPolicy(StrEnum):
    """Which of an object's ports a set serves."""

    NAMED = "named"  # the one named by port_name (else `port`): one target per IP
    ALL = "all"  # every declared container port, as kubernetes_sd's pod role does


class StreamingList(StrEnum):
    """How a source (re)lists: a streaming list (WatchList) where the server has it, or pages."""

    AUTO = "auto"
    OFF = "off"


class Scheme(StrEnum):
    HTTP = "http"
    HTTPS = "https"

_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class KubeSettings:
    page_size: int = 500
    watch_timeout_seconds: tuple[float, float] = (300.0, 600.0)
    read_timeout_seconds: float = 120.0
    backoff_initial_seconds: float = 0.8
    backoff_max_seconds: float = 30.0
    streaming_list: StreamingList = StreamingList.AUTO


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """One cluster of the ``clusters:`` map: how to reach it (a kubeconfig and optionally one
    of its contexts, or the in-cluster service account) and its list/watch settings (the
    top-level ``kubernetes:`` with this cluster's ``kubernetes:`` over it)."""

    name: str
    kubeconfig: str = ""
    context: str = ""  # "": the kubeconfig's current-context
    in_cluster: bool = False
    kubernetes: KubeSettings = field(default_factory=KubeSettings)


@dataclass(frozen=True, slots=True)
class AttachMetadata:
    """Prometheus' ``attach_metadata`` (pod sets): the labels of the pod's node, its
    namespace, and the names of its Deployment, Job and CronJob (``sd/kinds/relations.py``)."""

    node: bool = False
    namespace: bool = False
    deployment: bool = False
    job: bool = False
    cronjob: bool = False

    @property
    def options(self) -> tuple[str, ...]:
        """The options set to true, in declaration order."""
        return tuple(name for name in self.__slots__ if getattr(self, name))


@dataclass(frozen=True, slots=True)
class SetConfig:
    name: str
    source: KindName
    port: int
    label_selector: str = ""
    field_selector: str = ""
    namespaces: tuple[str, ...] = ()
    address_types: tuple[str, ...] = ()  # () = the kind's default priority order
    ip_family: IPFamilyPolicy = IPFamilyPolicy.PRIMARY
    port_name: str | None = None
    require_ready: bool = True
    labels: tuple[tuple[str, str], ...] = ()
    metrics_path: str | None = None
    scheme: Scheme | None = None
    annotations: tuple[str, ...] = ()  # annotation keys to serve, or "prefix/*"; others are never stored
    attach_metadata: AttachMetadata = field(default_factory=lambda: AttachMetadata())
    ports: PortsPolicy = PortsPolicy.NAMED
    clusters: tuple[str, ...] = ()  # the clusters of the `clusters:` map it serves; (): all
    # With several clusters: how long the set waits for every cluster's first list before it
    # serves the clusters that have synced (at least one) and names the missing ones.
    cluster_sync_timeout_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """Reachability probes for sets with ip_family: reachable."""

    interval_seconds: float = 60.0
    timeout_seconds: float = 2.0
    concurrency: int = 32


@dataclass(frozen=True, slots=True)
class ServerSettings:
    debug: bool = True  # serve /debug/sets/<set>
    tls_cert_file: str = ""  # both set: serve HTTPS; files are re-read when they change
    tls_key_file: str = ""
    bearer_token_file: str = ""  # require `Authorization: Bearer <file contents>`
    basic_auth_username: str = ""  # require HTTP basic auth with this user...
    basic_auth_password_file: str = ""  # ...and the password in this file
    write_timeout_seconds: float = 30.0  # close a connection that takes no response bytes for this long


@dataclass(frozen=True, slots=True)
class Config:
    targets: dict[str, SetConfig]
    kubernetes: KubeSettings = field(default_factory=KubeSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    # Several clusters by name; {}: the one cluster of --kubeconfig / in-cluster / $KUBECONFIG.
    clusters: dict[str, ClusterSettings] = field(default_factory=dict)


def default_config() -> Config:
    """The built-in configuration; config/sd.yaml documents exactly this."""
    return Config(
        targets={
            "kubelet": SetConfig(
                name="kubelet",
                source=KindName.NODES,
                address_types=KINDS[KindName.NODES].address_types,
                ip_family=IPFamilyPolicy.PRIMARY,
                port_name="kubelet",
                port=10250,
            ),
            "fluentd": SetConfig(
                name="fluentd",
                source=KindName.PODS,
                label_selector="app.kubernetes.io/name=fluentd",
                ip_family=IPFamilyPolicy.BOTH,
                port_name="monitor",
                port=24231,
            ),
        }
    )


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_config(path: str | Path | None) -> Config:
    """Load and validate a config file; None gives the built-in default."""
    if path is None:
        return default_config()
    name = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{name}: {where}not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    return parse_config(data, name)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: with the default last-one-wins, a second
    ``kubelet:`` under ``targets`` would silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:
                continue  # an unhashable key: the constructor below reports it
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first + 1})", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def parse_config(data: Any, name: str = "config") -> Config:
    v = _Validator(name)
    config = v.config(data)
    if v.problems:
        raise ConfigError(v.problems)
    return config


class _Validator:
    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append(f"{self.name}: {path}: {message}")

    def config(self, data: Any) -> Config:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.bad("(top level)", f"must be a mapping, got {_show(data)}")
            return default_config()
        self.unknown(data, "", ("kubernetes", "server", "probe", "targets", "clusters"))
        kube = self.kube(data.get("kubernetes") or {}, "kubernetes")
        common: dict[str, Any] = {
            "kubernetes": kube,
            "server": self.server(data.get("server") or {}, "server"),
            "probe": self.probe(data.get("probe") or {}, "probe"),
            "clusters": self.clusters(data["clusters"], kube) if "clusters" in data else {},
        }
        raw_sets = data.get("targets")
        if raw_sets is None:
            return Config(targets=default_config().targets, **common)
        if not isinstance(raw_sets, dict) or not raw_sets:
            self.bad("targets", f"must be a non-empty mapping of set name to settings, got {_show(raw_sets)}")
            return Config(targets={}, **common)
        sets = {}
        for set_name, raw in raw_sets.items():
            path = f"targets.{set_name}"
            if not isinstance(set_name, str) or not _SET_NAME.match(set_name):
                self.bad(path, "set names are used in URLs: letters, digits, '_', '.', '-'")
                continue
            sets[set_name] = self.target_set(set_name, raw, path, common["clusters"])
        return Config(targets=sets, **common)

    def clusters(self, raw: Any, kube: KubeSettings) -> dict[str, ClusterSettings]:
        if not isinstance(raw, dict) or not raw:
            self.bad("clusters", f"must be a non-empty mapping of cluster name to how to reach it, got {_show(raw)}")
            return {}
        found: dict[str, ClusterSettings] = {}
        for name, spec in raw.items():
            path = f"clusters.{name}"
            if not isinstance(name, str) or not _SET_NAME.match(name):
                self.bad(path, "cluster names are label values: letters, digits, '_', '.', '-'")
                continue
            if not self.section(spec, path, ("kubeconfig", "context", "in_cluster", "kubernetes")):
                continue
            in_cluster = self.flag(spec, path, "in_cluster", False)
            kubeconfig, context = spec.get("kubeconfig") or "", spec.get("context") or ""
            for key, value in (("kubeconfig", kubeconfig), ("context", context)):
                if not isinstance(value, str):
                    self.bad(f"{path}.{key}", f"must be a string, got {_show(value)}")
            if not isinstance(kubeconfig, str) or not isinstance(context, str):
                continue
            if in_cluster == bool(kubeconfig):
                self.bad(path, "set either kubeconfig (a file, with an optional context) or in_cluster: true")
            elif context and in_cluster:
                self.bad(f"{path}.context", "goes with kubeconfig, not in_cluster")
            elif kubeconfig:
                self.kubeconfig(kubeconfig, context, path)
            settings = self.kube(spec.get("kubernetes") or {}, f"{path}.kubernetes", kube)
            found[name] = ClusterSettings(name, kubeconfig, context, in_cluster, settings)
        in_cluster_names = [n for n, c in found.items() if c.in_cluster]
        if len(in_cluster_names) > 1:
            self.bad("clusters", f"only the cluster this runs in can be in_cluster: true, got {', '.join(in_cluster_names)}")
        return found

    def kubeconfig(self, path_value: str, context: str, path: str) -> None:
        """The kubeconfig exists, is YAML, and has the context (or a current-context)."""
        try:
            data = yaml.safe_load(Path(path_value).read_text())
        except OSError as exc:
            self.bad(f"{path}.kubeconfig", f"cannot read {path_value}: {exc.strerror or exc}")
            return
        except yaml.YAMLError as exc:
            self.bad(f"{path}.kubeconfig", f"{path_value} is not valid YAML: {getattr(exc, 'problem', exc)}")
            return
        contexts = data.get("contexts") if isinstance(data, dict) else None
        names = [c.get("name") for c in contexts if isinstance(c, dict)] if isinstance(contexts, list) else []
        if context and context not in names:
            self.bad(f"{path}.context", f"no context {context!r} in {path_value} (contexts: {', '.join(map(str, names)) or 'none'})")
        elif not context and not (isinstance(data, dict) and data.get("current-context")):
            self.bad(f"{path}.kubeconfig", f"{path_value} has no current-context: name one with context")

    def probe(self, raw: Any, path: str) -> ProbeSettings:
        d = ProbeSettings()
        if not self.section(raw, path, ProbeSettings.__slots__):
            return d
        return ProbeSettings(
            interval_seconds=self.number(raw, path, "interval_seconds", d.interval_seconds, 1, 86400),
            timeout_seconds=self.number(raw, path, "timeout_seconds", d.timeout_seconds, 0.05, 60),
            concurrency=int(self.number(raw, path, "concurrency", d.concurrency, 1, 1024, integer=True)),
        )

    def server(self, raw: Any, path: str) -> ServerSettings:
        if not self.section(raw, path, ServerSettings.__slots__):
            return ServerSettings()
        debug = self.flag(raw, path, "debug", True)
        files = {}
        for key in ("tls_cert_file", "tls_key_file", "bearer_token_file", "basic_auth_password_file"):
            value = raw.get(key) or ""
            if not isinstance(value, str):
                self.bad(f"{path}.{key}", f"must be a file path, got {_show(value)}")
                value = ""
            elif value and not Path(value).is_file():
                self.bad(f"{path}.{key}", f"no such file: {value}")
            files[key] = value
        if bool(files["tls_cert_file"]) != bool(files["tls_key_file"]):
            self.bad(f"{path}.tls_key_file", "tls_cert_file and tls_key_file go together: set both or neither")
        username = raw.get("basic_auth_username") or ""
        if not isinstance(username, str):
            self.bad(f"{path}.basic_auth_username", f"must be a string, got {_show(username)}")
            username = ""
        if bool(username) != bool(files["basic_auth_password_file"]):
            self.bad(f"{path}.basic_auth_username", "basic_auth_username and basic_auth_password_file go together")
        write_timeout = self.number(raw, path, "write_timeout_seconds", 30.0, 0.1, 3600)
        return ServerSettings(debug=debug, basic_auth_username=username, write_timeout_seconds=write_timeout, **files)

    def kube(self, raw: Any, path: str, d: KubeSettings = KubeSettings()) -> KubeSettings:
        """List/watch settings; the ones not given are ``d``'s."""
        if not self.section(raw, path, KubeSettings.__slots__):
            return d
        timeouts = raw.get("watch_timeout_seconds", list(d.watch_timeout_seconds))
        if (
            not isinstance(timeouts, list)
            or len(timeouts) != 2
            or not all(_is_number(t) and 1 <= t <= 3600 for t in timeouts)
            or timeouts[0] > timeouts[1]
        ):
            self.bad(f"{path}.watch_timeout_seconds", f"must be [min, max] seconds within 1-3600, got {_show(timeouts)}")
            timeouts = d.watch_timeout_seconds
        initial = self.number(raw, path, "backoff_initial_seconds", d.backoff_initial_seconds, 0.001, 3600)
        maximum = self.number(raw, path, "backoff_max_seconds", d.backoff_max_seconds, 0.001, 3600)
        if initial > maximum:
            self.bad(f"{path}.backoff_initial_seconds", f"must not exceed backoff_max_seconds ({maximum}), got {initial}")
        if isinstance(raw.get("streaming_list"), bool):  # YAML 1.1 reads a bare `off` as false
            raw = {**raw, "streaming_list": "auto" if raw["streaming_list"] else "off"}
        return KubeSettings(
            streaming_list=self.choice(raw, path, "streaming_list", StreamingList, d.streaming_list),
            page_size=int(self.number(raw, path, "page_size", d.page_size, 1, 100_000, integer=True)),
            watch_timeout_seconds=(float(timeouts[0]), float(timeouts[1])),
            read_timeout_seconds=self.number(raw, path, "read_timeout_seconds", d.read_timeout_seconds, 0.1, 3600),
            backoff_initial_seconds=initial,
            backoff_max_seconds=maximum,
        )

    def target_set(self, name: str, raw: Any, path: str, clusters: dict[str, ClusterSettings]) -> SetConfig:
        if not isinstance(raw, dict):
            self.bad(path, f"must be a mapping of settings, got {_show(raw)}")
            return SetConfig(name=name, source=KindName.NODES, port=80)
        self.unknown(raw, path, [f for f in SetConfig.__slots__ if f != "name"])
        source = self.choice(raw, path, "source", KindName, None, required=True)
        kind = KINDS[source or KindName.NODES]
        label_selector = self.selector(raw, path, "label_selector", parse_label_selector)
        field_selector = self.selector(raw, path, "field_selector", lambda s: parse_field_selector(s, kind.fields))
        namespaces = self.strings(raw, path, "namespaces")
        if namespaces and not kind.namespaced:
            self.bad(f"{path}.namespaces", f"{kind.name} are not namespaced; remove it for source: {kind.name}")
        address_types: list[str] = []
        if "address_types" in raw:
            if not kind.address_types:
                self.bad(f"{path}.address_types", f"does not apply to source: {kind.name}")
            address_types = self.strings(raw, path, "address_types")
            for i, value in enumerate(address_types):
                if value not in kind.address_types:
                    self.bad(f"{path}.address_types[{i}]", f"must be one of {', '.join(kind.address_types) or '(none)'}, got {_show(value)}")
            if not address_types and kind.address_types:
                self.bad(f"{path}.address_types", "must name at least one address type")
        ip_family = self.choice(raw, path, "ip_family", IPFamilyPolicy, IPFamilyPolicy.PRIMARY)
        if ip_family is IPFamilyPolicy.REACHABLE and not kind.probes:
            self.bad(f"{path}.ip_family", f"reachable is not offered for {kind.name}; use primary, ipv4, ipv6 or both")
        ports = self.choice(raw, path, "ports", PortsPolicy, PortsPolicy.NAMED) or PortsPolicy.NAMED
        port_name = raw.get("port_name")
        if port_name is not None and (not isinstance(port_name, str) or not port_name):
            self.bad(f"{path}.port_name", f"must be a port name (string), got {_show(port_name)}")
            port_name = None
        port = raw.get("port")
        if ports is PortsPolicy.ALL:
            if not kind.declares_ports:
                self.bad(f"{path}.ports", f"all applies to sets whose objects declare ports (pods), not {kind.name}")
            for key in ("port", "port_name"):
                if raw.get(key) is not None:
                    self.bad(f"{path}.{key}", "does not apply with ports: all (every declared port is served); remove it")
            if ip_family is IPFamilyPolicy.REACHABLE:
                self.bad(f"{path}.ip_family", "reachable probes the one named port; use it with ports: named")
            port, port_name = 0, None
        elif port is None:
            self.bad(f"{path}.port", "required: the port to scrape (the fallback when port_name is set)")
            port = 80
        elif not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            self.bad(f"{path}.port", f"must be 1-65535, got {_show(port)}")
            port = 80
        require_ready = self.flag(raw, path, "require_ready", True)
        labels = raw.get("labels") or {}
        pairs = []
        if not isinstance(labels, dict):
            self.bad(f"{path}.labels", f"must be a mapping of label name to value, got {_show(labels)}")
        else:
            for key, value in labels.items():
                if not isinstance(key, str) or not _LABEL_NAME.match(key) or key.startswith("__"):
                    self.bad(f"{path}.labels", f"{_show(key)} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with '__')")
                elif not isinstance(value, str):
                    self.bad(f"{path}.labels.{key}", f"must be a string, got {_show(value)}")
                else:
                    pairs.append((key, value))
        metrics_path = raw.get("metrics_path")
        if metrics_path is not None and (not isinstance(metrics_path, str) or not metrics_path.startswith("/")):
            self.bad(f"{path}.metrics_path", f"must be a path starting with '/', got {_show(metrics_path)}")
            metrics_path = None
        scheme = self.choice(raw, path, "scheme", Scheme, None)
        annotations = self.strings(raw, path, "annotations")
        for i, pattern in enumerate(annotations):
            if "*" in pattern[:-1] or (pattern.endswith("*") and pattern not in ("*",) and not pattern.endswith("/*")):
                self.bad(f"{path}.annotations[{i}]", f"an annotation key, or a prefix ending in '/*', got {_show(pattern)}")
        attach = AttachMetadata()
        raw_attach = raw.get("attach_metadata")
        where = f"{path}.attach_metadata"
        if raw_attach is not None and self.section(raw_attach, where, AttachMetadata.__slots__):
            attach = AttachMetadata(**{key: self.flag(raw_attach, where, key, False) for key in AttachMetadata.__slots__})
            offered = RELATIONS.get(kind.name, {})
            for option in attach.options:
                if option not in offered:
                    self.bad(f"{where}.{option}", f"applies to pod sets (source: pods), not {kind.name}")
        names = self.strings(raw, path, "clusters")
        if "clusters" in raw and not clusters:
            self.bad(f"{path}.clusters", "needs the top-level clusters: map")
        elif "clusters" in raw and not names:
            self.bad(f"{path}.clusters", "must name at least one cluster (leave it out for all)")
        for i, cluster in enumerate(names):
            if clusters and cluster not in clusters:
                self.bad(f"{path}.clusters[{i}]", f"no cluster {cluster!r} in clusters: ({', '.join(clusters)})")
        timeout = self.number(raw, path, "cluster_sync_timeout_seconds", 60.0, 0, 86400)
        if "cluster_sync_timeout_seconds" in raw and not clusters:
            self.bad(f"{path}.cluster_sync_timeout_seconds", "needs the top-level clusters: map")
        return SetConfig(
            name=name,
            source=source or KindName.NODES,
            label_selector=label_selector,
            field_selector=field_selector,
            namespaces=tuple(namespaces),
            address_types=tuple(address_types) or kind.address_types,
            ip_family=ip_family or IPFamilyPolicy.PRIMARY,
            port_name=port_name,
            port=port,
            require_ready=require_ready,
            labels=tuple(sorted(pairs)),
            metrics_path=metrics_path,
            scheme=scheme,
            annotations=tuple(annotations),
            attach_metadata=attach,
            ports=ports,
            clusters=tuple(dict.fromkeys(names)),
            cluster_sync_timeout_seconds=timeout,
        )

    def section(self, raw: Any, path: str, known: Any) -> bool:
        """A mapping of known settings? Reports what is not."""
        if not isinstance(raw, dict):
            self.bad(path, f"must be a mapping, got {_show(raw)}")
            return False
        self.unknown(raw, path, known)
        return True

    def choice(self, raw: dict, path: str, key: str, values: Any, default: Any, required: bool = False) -> Any:
        """One of an enum's values; a missing key gives ``default`` unless ``required``."""
        value = raw.get(key)
        if value is None and not required:
            return default
        try:
            return values(value)
        except ValueError:
            self.bad(f"{path}.{key}", f"must be one of {', '.join(values)}, got {_show(value)}")
            return None

    def flag(self, raw: dict, path: str, key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.bad(f"{path}.{key}", f"must be true or false, got {_show(value)}")
            return default
        return value

    def unknown(self, raw: dict, path: str, known: Any) -> None:
        for key in raw:
            if key not in known:
                where = f"{path}.{key}" if path else str(key)
                self.bad(where, f"unknown setting (known: {', '.join(sorted(known))})")

    def number(self, raw: dict, path: str, key: str, default: float, low: float, high: float, integer: bool = False) -> float:
        value = raw.get(key, default)
        ok = isinstance(value, int) if integer else _is_number(value)
        if not ok or isinstance(value, bool) or not low <= value <= high:
            kind = "a whole number" if integer else "a number"
            self.bad(f"{path}.{key}", f"must be {kind} within {low:g}-{high:g}, got {_show(value)}")
            return default
        return float(value) if not integer else value

    def strings(self, raw: dict, path: str, key: str) -> list[str]:
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.bad(f"{path}.{key}", f"must be a list of non-empty strings, got {_show(value)}")
            return []
        return value

    def selector(self, raw: dict, path: str, key: str, parse: Any) -> str:
        value = raw.get(key) or ""
        if not isinstance(value, str):
            self.bad(f"{path}.{key}", f"must be a selector string, got {_show(value)}")
            return ""
        try:
            parse(value)
        except SelectorError as exc:
            self.bad(f"{path}.{key}", f"{exc}: {value!r}")
            return ""
        return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
