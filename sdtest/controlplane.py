"""A real Kubernetes control plane on loopback: etcd and kube-apiserver, built from their published
Go modules (``sdtest.upstream``: wrapper modules ``tools/kubernetes`` and ``tools/etcd``) and
started by the tests, as controller-runtime's envtest does.

- etcd: a temporary data directory, client and peer URLs on 127.0.0.1.
- kube-apiserver: ``--bind-address``/``--advertise-address`` 127.0.0.1 (the endpoint reconciler off:
  nothing else may claim the ``kubernetes`` Service's endpoints), RBAC, a service-account signing
  key, the service CIDR in a documentation range, its own self-signed serving certificate (in
  ``--cert-dir``), which is the CA of every kubeconfig written here. The admin is a client
  certificate in ``system:masters`` signed by a CA of ours (``--client-ca-file``).
- No kubelet, scheduler or controller-manager runs: objects are created through the API, status
  through the ``status`` subresource; admission plugins that need a controller are off.

Readiness is ``/readyz`` (kube-apiserver) or ``/health`` (etcd), polled with a deadline. Every
object a test creates uses documentation addresses (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
2001:db8::/32): nothing ever sends traffic to them.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import json
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sdtest.helpers import FAST, Server, eventually, free_port, terminate
from sdtest.upstream import program

# What a test's object keeps of its factory metadata (the API server sets the rest).
KEPT_METADATA = ("name", "namespace", "labels", "annotations", "ownerReferences")
SERVICE_CIDR = "198.51.100.0/24"  # documentation range (RFC 5737)
# Admission plugins on by default that wait for a controller we don't run: ServiceAccount rejects
# pods until the service-account controller has made the namespace's `default` account.
DISABLED_ADMISSION = "ServiceAccount"


class _Process:
    """A program of the control plane, started by ``start``."""

    proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL, as a crash; ``start`` again reuses the same ports and data."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


class Etcd(_Process):
    """etcd on 127.0.0.1 with its data in ``data_dir``; ``start`` again after ``kill`` reuses the
    same ports and data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Etcd":
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            program("etcd"), "--name=default", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}", "--unsafe-no-fsync", "--log-level=warn",
        ]
        self.proc = _spawn(args, self.workdir / "etcd.log")
        eventually(self._healthy, 60, 0.05, what="etcd /health")
        return self

    def _healthy(self) -> bool:
        _alive(self.proc, self.workdir / "etcd.log")
        return httpx.get(self.url + "/health", timeout=2).json().get("health") == "true"

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def revision(self) -> int:
        """The store's current revision (the resourceVersion the next write exceeds)."""
        resp = httpx.post(self.url + "/v3/kv/range", json={"key": base64.b64encode(b"/").decode()}, timeout=10)
        resp.raise_for_status()
        return int(resp.json()["header"]["revision"])

    def compact(self, revision: int) -> None:
        """Compact the history before ``revision``: watches from older versions get 410."""
        resp = httpx.post(self.url + "/v3/kv/compaction", json={"revision": str(revision), "physical": True}, timeout=30)
        resp.raise_for_status()


class ControlPlane(_Process):
    """etcd + kube-apiserver on loopback. ``api`` is an admin client (httpx, client certificate);
    ``kubeconfig`` an admin kubeconfig file; ``kubectl(...)`` runs the built kubectl with it."""

    def __init__(self, workdir: Path, *, apiserver_flags: tuple[str, ...] = ()) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_flags = apiserver_flags
        self.binaries = {name: program(name) for name in ("kube-apiserver", "kubectl")}
        self.etcd = Etcd(self.workdir)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca_file = self.workdir / "certs" / "apiserver.crt"  # written by kube-apiserver itself
        self._credentials()

    def _credentials(self) -> None:
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        client_ca = trustme.CA(organization_name="kube-http-sd tests")
        client_ca.cert_pem.write_to_path(str(certs / "client-ca.crt"))
        admin = client_ca.issue_cert("admin", common_name="admin", organization_name="system:masters")
        admin.cert_chain_pems[0].write_to_path(str(certs / "admin.crt"))
        admin.private_key_pem.write_to_path(str(certs / "admin.key"))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (certs / "sa.key").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        (certs / "sa.pub").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        self.admin_cert = (str(certs / "admin.crt"), str(certs / "admin.key"))

    def start(self) -> "ControlPlane":
        if self.etcd.proc is None:
            self.etcd.start()
        certs = self.workdir / "certs"
        args = [
            self.binaries["kube-apiserver"],
            "--bind-address=127.0.0.1", f"--secure-port={self.port}",
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--etcd-servers={self.etcd.url}",
            f"--cert-dir={certs}", f"--client-ca-file={certs / 'client-ca.crt'}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-key-file={certs / 'sa.pub'}",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--disable-admission-plugins={DISABLED_ADMISSION}",
            "--allow-privileged=true", "--v=1",
            *self.extra_flags,
        ]
        self.proc = _spawn(args, self.workdir / "kube-apiserver.log")
        eventually(self._ready, 120, 0.1, what="kube-apiserver /readyz")
        self.kubeconfig = self.write_kubeconfig("admin", cert=self.admin_cert)
        return self

    def _ready(self) -> bool:
        _alive(self.proc, self.workdir / "kube-apiserver.log")
        if not self.ca_file.exists():
            return False
        return self.api.get("/readyz", timeout=2).status_code == 200

    @property
    def api(self) -> httpx.Client:
        """An admin client (a new one after each restart: the serving certificate may change)."""
        client = getattr(self, "_api", None)
        if client is None or self._api_ca != self.ca_file.read_bytes():
            self._api_ca = self.ca_file.read_bytes()
            tls = ssl.create_default_context(cafile=str(self.ca_file))
            tls.load_cert_chain(*self.admin_cert)
            client = self._api = httpx.Client(base_url=self.url, verify=tls, timeout=30)
        return client

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self.etcd.stop()
        if getattr(self, "_api", None) is not None:
            self._api.close()

    def __enter__(self) -> "ControlPlane":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join((self.workdir / "kube-apiserver.log").read_text(errors="replace").splitlines()[-lines:])

    # --- credentials and kubectl ---

    def write_kubeconfig(self, name: str, *, cert: tuple[str, str] | None = None, token: str | None = None,
                         token_file: Path | None = None) -> Path:
        """A kubeconfig for this API server whose only credential is ``cert``, ``token`` or
        ``token_file``; the CA is the API server's own serving certificate."""
        user: dict[str, Any]
        if token:
            user = {"token": token}
        elif token_file:
            user = {"tokenFile": str(token_file)}
        else:
            user = {"client-certificate": cert[0], "client-key": cert[1]}  # type: ignore[index]
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": name}}],
        }
        path = self.workdir / f"kubeconfig-{name}"
        path.write_text(yaml.safe_dump(config))
        return path

    def serve(self, workdir: Path, *, kubeconfig: Path | None = None, extra: str = "") -> Server:
        """``kube-http-sd serve`` against this API server (the admin's kubeconfig unless given), its
        config FAST plus ``extra`` written to ``workdir/sd.yaml``; returned healthy, not yet synced."""
        config = workdir / "sd.yaml"
        config.write_text(FAST + extra)
        srv = Server("--kubeconfig", str(kubeconfig or self.kubeconfig), "--config", str(config))
        return srv.wait_healthy()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binaries["kubectl"], f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def token(self, namespace: str, account: str, *, bound_secret: str | None = None, seconds: int = 3600) -> str:
        """A TokenRequest token for a ServiceAccount, optionally bound to a Secret (deleting the
        Secret invalidates the token)."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if bound_secret:
            spec["boundObjectRef"] = {"kind": "Secret", "apiVersion": "v1", "name": bound_secret}
        resp = self.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return resp["status"]["token"]

    # --- objects ---

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        resp = self.api.request(
            method, path, content=None if body is None else json.dumps(body), headers={"Content-Type": content_type}
        )
        if resp.status_code >= 300:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp.json()

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create a Node, Pod, Namespace or workload from a factory dict, then set its status through the
        ``status`` subresource (creation ignores it), as a kubelet would."""
        path, body = creation(obj)
        created = self.request("POST", path, body)
        if obj.get("status"):
            created = self.set_status(obj["kind"], obj["metadata"]["name"], obj["status"], obj["metadata"].get("namespace"))
        return created

    def load(self, objects: list[dict[str, Any]], concurrency: int = 32) -> None:
        """``create`` each object, ``concurrency`` at a time (bulk loads for the bench)."""
        asyncio.run(self._load(objects, concurrency))

    async def _load(self, objects: list[dict[str, Any]], concurrency: int) -> None:
        tls = ssl.create_default_context(cafile=str(self.ca_file))
        tls.load_cert_chain(*self.admin_cert)
        pending = iter(objects)

        async def worker(session: aiohttp.ClientSession) -> None:
            for obj in pending:
                path, body = creation(obj)
                for method, url, data, ctype in (
                    ("POST", path, body, "application/json"),
                    ("PATCH", f"{path}/{obj['metadata']['name']}/status", {"status": obj["status"]}, "application/merge-patch+json"),
                ):
                    async with session.request(method, self.url + url, data=json.dumps(data),
                                               headers={"Content-Type": ctype}) as resp:
                        if resp.status >= 300:
                            raise AssertionError(f"{method} {url}: {resp.status} {await resp.text()}")

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, limit=concurrency)) as session:
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))

    def set_status(self, kind: str, name: str, status: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return self.request(
            "PATCH", f"{collection(kind, namespace)}/{name}/status", {"status": status}, "application/merge-patch+json"
        )

    def delete(self, kind: str, name: str, namespace: str | None = None, grace: int | None = None) -> dict[str, Any]:
        path = f"{collection(kind, namespace)}/{name}"
        if grace is not None:
            path += f"?gracePeriodSeconds={grace}"
        return self.request("DELETE", path)

    def ensure_namespace(self, name: str) -> None:
        if self.api.get(f"/api/v1/namespaces/{name}").status_code == 404:
            self.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def snapshot(self, path: Path) -> Path:
        """``kubectl get nodes,pods -A -o json`` of this cluster, as ``--snapshot`` reads it."""
        path.write_text(self.kubectl("get", "nodes,pods", "-A", "-o", "json").stdout)
        return path


def creation(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(collection path, POST body) of a factory object: no status, the metadata a client sets."""
    meta = obj["metadata"]
    body = {k: v for k, v in obj.items() if k != "status"}
    body["metadata"] = {k: v for k, v in meta.items() if k in KEPT_METADATA}
    return collection(obj["kind"], meta.get("namespace")), body


_COLLECTIONS = {  # kind → (API path, resource)
    "Node": ("/api/v1", "nodes"), "Pod": ("/api/v1", "pods"), "Namespace": ("/api/v1", "namespaces"),
    "Secret": ("/api/v1", "secrets"), "Deployment": ("/apis/apps/v1", "deployments"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets"), "Job": ("/apis/batch/v1", "jobs"), "CronJob": ("/apis/batch/v1", "cronjobs"),
}


def collection(kind: str, namespace: str | None = None) -> str:
    prefix, plural = _COLLECTIONS[kind]
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _alive(proc: subprocess.Popen[bytes] | None, log: Path) -> None:
    if proc is not None and proc.poll() is not None:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{Path(str(proc.args[0])).name} exited {proc.returncode}:\n{tail}")


def wall_clock_second_after(timestamp: str) -> None:
    """Return once the wall clock is past ``timestamp``'s second (RFC 3339, second precision), so
    that an object created next has a strictly newer ``creationTimestamp``."""
    then = calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))
    eventually(lambda: time.time() >= then + 1, 5, 0.01, what=f"the clock past {timestamp}")
