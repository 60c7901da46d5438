"""A seeded model-based soak: churn and faults against the API double, compared at every
quiet point with an independent build of the expected bodies (``sdtest.model``).

    python -m sdtest.soak --minutes 30 [--seed N] [--dump-dir DIR]

Between quiet points a sampler reads both default sets over and over: every read must be
a 200 with a non-empty body holding each IP once (a few objects are never deleted or
made unready, so an empty body is always wrong). At a quiet point faults stop, and the
served bytes must equal the model's within ``CONVERGE_SECONDS``. A divergence writes the
seed, the operation log and both bodies to a JSON file and fails. Everything runs on
loopback with documentation addresses (192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import orjson

from sdtest import model
from sdtest.factories import make_node, make_pod
from sdtest.helpers import FAST, Server, eventually
from sdtest.kubeapi import FakeKubeAPI

CONVERGE_SECONDS = 20.0
STABLE = 3  # nodes and pods that churn never removes or makes unready

BAD_LINES = [
    b'{"type":"EXPLODED","object":{"metadata":{"resourceVersion":"1"}}}',
    b'{"type":"MODIFIED","object":{"metadata":[]}}',
    b'{"type":"MODIFIED","object":null}',
    b'{"type":"MODIFIED","object":' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"type":"MODIFIED","object":{"metadata":{"name":"\xff","resourceVersion":"2"}}}',
    b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}',
    b"not json at all",
]


@dataclass
class Divergence(Exception):
    reason: str
    dump: Path

    def __str__(self) -> str:
        return f"soak diverged: {self.reason} (details in {self.dump})"


@dataclass
class Sampler:
    """Reads the set URLs in a thread and keeps every violation it sees."""

    base: str
    violations: list[str] = field(default_factory=list)
    reads: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.is_set():
                for path in ("/targets/kubelet", "/targets/fluentd"):
                    try:
                        resp = client.get(path)
                    except httpx.HTTPError as exc:
                        self.violations.append(f"{path}: {exc!r}")
                        continue
                    self.reads += 1
                    if resp.status_code != 200:
                        self.violations.append(f"{path}: HTTP {resp.status_code}")
                        continue
                    targets = [t for g in resp.json() for t in g["targets"]]
                    ips = [t.rsplit(":", 1)[0] for t in targets]
                    if not targets:
                        self.violations.append(f"{path}: served []")
                    elif len(set(ips)) != len(ips):
                        self.violations.append(f"{path}: an IP served twice: {sorted(ips)}")
                self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class World:
    """The cluster the soak drives: what it put into the double, and the churn and faults."""

    def __init__(self, rng: random.Random, api: FakeKubeAPI) -> None:
        self.rng, self.api = rng, api
        self.nodes: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.log: list[str] = []
        self._n = 0
        self._stamps = ["2026-01-01T00:00:00Z"]
        for i in range(STABLE):
            self._put_node(make_node(f"stable-{i}", [f"192.0.2.{200 + i}"]))
            self._put_pod(make_pod(f"stable-{i}", [f"198.51.100.{200 + i}", f"2001:db8:1::{200 + i:x}"], node=f"stable-{i}"))

    # -- objects ----------------------------------------------------------------------

    def _stamp(self) -> str:
        if self.rng.random() < 0.2:  # equal creation times: the name decides
            return self.rng.choice(self._stamps)
        self._n += 1
        stamp = f"2026-01-01T{self._n // 3600 % 24:02d}:{self._n // 60 % 60:02d}:{self._n % 60:02d}Z"
        self._stamps.append(stamp)
        return stamp

    def _put_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        (self.api.modify if name in self.nodes else self.api.add)(node)
        self.nodes[name] = node

    def _put_pod(self, pod: dict) -> None:
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        (self.api.modify if key in self.pods else self.api.add)(pod)
        self.pods[key] = pod

    def _churn_names(self, objects: dict[str, dict]) -> list[str]:
        return [k for k in objects if "stable-" not in k]

    def node_ip(self) -> str:
        return f"192.0.2.{self.rng.randint(10, 40)}"  # a small pool: IPs get reused

    def pod_ips(self) -> list[str]:
        i = self.rng.randint(10, 40)
        ips = [f"198.51.100.{i}", f"2001:db8:1::{i:x}"]
        return ips[: self.rng.choice((1, 2, 2))] if self.rng.random() < 0.8 else ips[1:]

    def step(self) -> str:
        """One random change (or fault); returns what it did, for the log."""
        rng = self.rng
        ops: list[tuple[float, Callable[[], str]]] = [
            (3, self.add_node), (2, self.delete_node), (4, self.flap_node), (2, self.relabel_node), (2, self.readdress_node),
            (3, self.add_pod), (2, self.delete_pod), (3, self.flap_pod), (1, self.relabel_pod),
        ]
        op = rng.choices([o for _, o in ops], weights=[w for w, _ in ops])[0]
        what = op()
        self.log.append(what)
        return what

    def add_node(self) -> str:
        name = f"node-{self.rng.randint(0, 30)}"
        self._put_node(make_node(name, [self.node_ip()], created=self._stamp(), ready=self.rng.choice(["True", "True", "False"])))
        return f"put node {name}"

    def delete_node(self) -> str:
        names = self._churn_names(self.nodes)
        if not names:
            return self.add_node()
        name = self.rng.choice(names)
        self.api.delete("Node", name)
        del self.nodes[name]
        return f"delete node {name}"

    def flap_node(self) -> str:
        names = self._churn_names(self.nodes)
        if not names:
            return self.add_node()
        name = self.rng.choice(names)
        node = copy.deepcopy(self.nodes[name])
        status = self.rng.choice(["True", "False", "Unknown"])
        for cond in node["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond["status"] = status
        if self.rng.random() < 0.1:
            node["metadata"]["deletionTimestamp"] = "2026-11-21T12:00:00Z"
        self._put_node(node)
        return f"node {name} Ready={status}"

    def relabel_node(self) -> str:
        name = self.rng.choice(list(self.nodes))
        node = copy.deepcopy(self.nodes[name])
        node["metadata"]["labels"][self.rng.choice(["zone", "pool", "team.example/x"])] = str(self.rng.randint(0, 3))
        self._put_node(node)
        return f"relabel node {name}"

    def readdress_node(self) -> str:
        names = self._churn_names(self.nodes)
        if not names:
            return self.add_node()
        name = self.rng.choice(names)
        node = copy.deepcopy(self.nodes[name])
        ip = self.node_ip()
        node["status"]["addresses"][0]["address"] = ip
        self._put_node(node)
        return f"node {name} address {ip}"

    def add_pod(self) -> str:
        name = f"fluentd-{self.rng.randint(0, 30)}"
        ready = self.rng.choice(["True", "True", "False"])
        pod = make_pod(name, self.pod_ips(), created=self._stamp(), ready=ready, node=self.rng.choice(list(self.nodes)))
        self._put_pod(pod)
        return f"put pod {name}"

    def delete_pod(self) -> str:
        keys = self._churn_names(self.pods)
        if not keys:
            return self.add_pod()
        key = self.rng.choice(keys)
        ns, name = key.split("/")
        self.api.delete("Pod", name, ns)
        del self.pods[key]
        return f"delete pod {key}"

    def flap_pod(self) -> str:
        keys = self._churn_names(self.pods)
        if not keys:
            return self.add_pod()
        key = self.rng.choice(keys)
        pod = copy.deepcopy(self.pods[key])
        pod["status"]["phase"] = self.rng.choice(["Running", "Running", "Pending", "Succeeded"])
        for cond in pod["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond["status"] = self.rng.choice(["True", "False"])
        self._put_pod(pod)
        return f"pod {key} {pod['status']['phase']}"

    def relabel_pod(self) -> str:
        key = self.rng.choice(list(self.pods))
        pod = copy.deepcopy(self.pods[key])
        pod["metadata"]["labels"]["version"] = str(self.rng.randint(0, 3))
        self._put_pod(pod)
        return f"relabel pod {key}"

    # -- faults -------------------------------------------------------------------------

    def fault(self) -> str:
        rng, api = self.rng, self.api
        kind = rng.choice(["drop", "compact", "errors", "throttle", "poison", "short", "restart"])
        if kind == "drop":
            api.drop_streams()
        elif kind == "compact":
            api.compact()
            api.drop_streams()
        elif kind == "errors":
            api.fail_next(rng.randint(1, 4), status=500)
            api.drop_streams()
        elif kind == "throttle":
            api.fail_next(rng.randint(1, 3), status=429, retry_after=1)
            api.drop_streams()
        elif kind == "poison":
            api.poison(rng.choice(["Node", "Pod"]), rng.choice(BAD_LINES))
        elif kind == "short":
            api.close_watches_at_once(rng.randint(1, 3))
            api.drop_streams()
        elif kind == "restart":
            api.restart(down_seconds=rng.uniform(0, 0.3))
        what = f"fault {kind}"
        self.log.append(what)
        return what

    # -- the model ------------------------------------------------------------------------

    def expected(self) -> tuple[bytes, bytes]:
        """The bodies the documented rules give for the double's current objects."""
        nodes = [self.api.get("Node", name) for name in self.nodes]
        pods = [self.api.get("Pod", key.split("/")[1], key.split("/")[0]) for key in self.pods]
        return model.kubelet_body(nodes), model.fluentd_body(pods)


def soak(seed: int, seconds: float, dump_dir: Path, progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Run for ``seconds``; returns counts, raises Divergence with a dump file."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="kube-http-sd-soak-"))
    (work / "sd.yaml").write_text(FAST)
    quiet_points = 0
    with FakeKubeAPI(history_limit=400) as api:
        world = World(rng, api)
        kubeconfig = api.write_kubeconfig(work / "kubeconfig")
        with Server("--kubeconfig", kubeconfig, "--config", str(work / "sd.yaml")) as srv:
            srv.wait_healthy()
            eventually(lambda: srv.get("/readyz").status_code == 200, timeout=30, what="first sync")
            sampler = Sampler(srv.base)
            deadline = time.monotonic() + seconds
            try:
                while time.monotonic() < deadline:
                    for _ in range(rng.randint(5, 60)):
                        world.fault() if rng.random() < 0.08 else world.step()
                        if rng.random() < 0.3:
                            time.sleep(rng.uniform(0, 0.05))  # pacing the churn, not waiting for anything
                    world.log.append("quiet point")
                    expected = world.expected()
                    _converge(srv, expected, seed, world, sampler, dump_dir)
                    quiet_points += 1
                    if sampler.violations:
                        _diverged(f"a read broke the rules: {sampler.violations[0]}", seed, world, expected, srv, sampler, dump_dir)
                    progress(f"quiet point {quiet_points}: {len(world.log)} operations, {sampler.reads} reads, converged")
            finally:
                sampler.stop()
            return {"seed": seed, "quiet_points": quiet_points, "operations": len(world.log), "reads": sampler.reads,
                    "log_tail": srv.log()[-2000:]}


def _served(srv: Server) -> tuple[bytes, bytes]:
    return srv.get("/targets/kubelet").content, srv.get("/targets/fluentd").content


def _converge(srv: Server, expected: tuple[bytes, bytes], seed: int, world: World, sampler: Sampler, dump_dir: Path) -> None:
    deadline = time.monotonic() + CONVERGE_SECONDS
    while True:
        served = _served(srv)
        if served == expected:
            return
        if time.monotonic() > deadline:
            _diverged(f"served bodies differ from the model {CONVERGE_SECONDS:g}s after a quiet point", seed, world, expected, srv, sampler, dump_dir)
        time.sleep(0.05)


def _diverged(reason: str, seed: int, world: World, expected: tuple[bytes, bytes], srv: Server, sampler: Sampler, dump_dir: Path) -> None:
    served = _served(srv)
    dump_dir.mkdir(parents=True, exist_ok=True)
    path = dump_dir / f"soak-divergence-seed{seed}-{int(time.time())}.json"
    path.write_text(json.dumps({
        "seed": seed,
        "reason": reason,
        "operations": world.log,
        "violations": sampler.violations[:50],
        "expected": {"kubelet": orjson.loads(expected[0]), "fluentd": orjson.loads(expected[1])},
        "served": {"kubelet": orjson.loads(served[0]), "fluentd": orjson.loads(served[1])},
        "server_log": srv.log()[-20000:],
    }, indent=1))
    raise Divergence(reason, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdtest.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--dump-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"soak seed={seed} minutes={args.minutes:g}", flush=True)
    try:
        result = soak(seed, args.minutes * 60, args.dump_dir, progress=lambda m: print(m, flush=True))
    except Divergence as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"soak passed seed={seed} quiet_points={result['quiet_points']} operations={result['operations']} reads={result['reads']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
