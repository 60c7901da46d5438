"""The container image, built from the working tree and run from its own filesystem.

``deploy/Dockerfile`` is built with podman on a local Debian Python base (the production
default, python:3.11-slim, is only replaced through the PYTHON_IMAGE build argument);
then the image's entry point runs from the mounted image as its user, uid 65532, with
a read-only root (sdtest/container.py). What a container runtime adds (cgroups, rlimits,
network namespaces, seccomp) is not exercised. Skipped only where podman cannot be used,
never in CI.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sdtest import container
from sdtest.helpers import Server, eventually

pytestmark = [pytest.mark.container, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
SD_CONFIG = REPO / "config" / "sd.yaml"
SNAPSHOT = REPO / "examples" / "cluster.json"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

IMAGE_CONFIG = "/etc/kube-http-sd/sd.yaml"
IMAGE_SNAPSHOT_DIR = "/tmp/snapshot"  # the example snapshot is bound here, read-only
NONROOT = "65532"
READY_TIMEOUT_S = 30.0
# Files this small (empty __init__.py, a newline) match too much to say they were copied.
SMALLEST_TELLING_FILE = 64
# Where the working tree's files may appear in the image: the installed package, and the
# default config the Dockerfile copies.
ALLOWED_COPIES = (
    (re.compile(r"opt/venv/lib/python3\.\d+/site-packages/(sd/.+)"), r"\1"),
    (re.compile(r"etc/kube-http-sd/sd\.yaml"), "config/sd.yaml"),
)
NOT_IN_BUILD_CONTEXT = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in {"", "0", "false"}


@dataclass(frozen=True)
class Built:
    tag: str
    base: str
    config: dict  # `podman image inspect`

    @property
    def entrypoint(self) -> list[str]:
        return self.config["Config"]["Entrypoint"]

    @property
    def cmd(self) -> list[str]:
        return self.config["Config"]["Cmd"]

    def env(self) -> list[str]:
        """The image's Env, plus HOME=/ as runc sets it for a user without a passwd
        entry (65532 has none); kubernetes-asyncio needs a home at import."""
        env = list(self.config["Config"]["Env"])
        return env if any(e.startswith("HOME=") for e in env) else [*env, "HOME=/"]


@pytest.fixture(scope="module")
def image() -> Iterator[Built]:
    try:
        container.check_usable()
    except container.Unavailable as exc:
        if in_ci():
            pytest.fail(f"the container image tests must run in CI: {exc}")
        pytest.skip(f"cannot build or run the image here: {exc}")
    base = container.base_image()
    tag = f"localhost/kube-http-sd-test:{os.getpid()}-{secrets.token_hex(4)}"
    container.build(REPO, DOCKERFILE, tag, base)
    try:
        yield Built(tag=tag, base=base, config=container.inspect(tag))
    finally:
        container.remove(tag)


@pytest.fixture(scope="module")
def root(image: Built) -> Iterator[Path]:
    with container.mounted(image.tag) as path:
        yield path


@pytest.fixture(scope="module")
def image_files(root: Path) -> list[str]:
    """Every regular file and symlink in the image, relative to its root."""
    found = []
    for directory, dirs, files in os.walk(root):
        rel = Path(directory).relative_to(root)
        found += [str(rel / name) for name in files]
        found += [str(rel / name) for name in dirs if (Path(directory) / name).is_symlink()]
    return [f.removeprefix("./") for f in found]


def in_image(root: Path, image: Built, binds: dict[Path, str] | None = None) -> list[str]:
    """The command prefix that runs the image's entry point from its filesystem."""
    return [*container.chroot_command(root, image.config["Config"]["User"], image.env(), binds), *image.entrypoint]


def serve_image(root: Path, image: Built) -> Server:
    """The image's ENTRYPOINT + CMD (its default config), on the example snapshot."""
    command = [*in_image(root, image, {SNAPSHOT.parent: IMAGE_SNAPSHOT_DIR}), *image.cmd]
    return Server("--snapshot", f"{IMAGE_SNAPSHOT_DIR}/{SNAPSHOT.name}", command=command)


def wait_ready(server: Server) -> Server:
    server.wait_healthy(READY_TIMEOUT_S)
    eventually(lambda: server.get("/readyz").status_code == 200, READY_TIMEOUT_S, what=f"{server.base}/readyz")
    return server


@pytest.fixture(scope="module")
def image_server(root: Path, image: Built) -> Iterator[Server]:
    with serve_image(root, image) as server:
        yield wait_ready(server)


@pytest.fixture(scope="module")
def venv_server(root: Path, tmp_path_factory) -> Iterator[Server]:
    """This venv serving the same snapshot with the config the image holds."""
    config = tmp_path_factory.mktemp("image-config") / "sd.yaml"
    config.write_bytes((root / IMAGE_CONFIG.lstrip("/")).read_bytes())
    with Server("--config", str(config), "--snapshot", str(SNAPSHOT)) as server:
        yield wait_ready(server)


def run_in_image(root: Path, image: Built, *args: str, binds: dict[Path, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*in_image(root, image, binds), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def mount_options(pid: int, mount_point: str) -> set[str]:
    """Options of the mount at ``mount_point`` as the process sees it (the last one wins)."""
    options = None
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            options = set(fields[5].split(","))
    assert options is not None, f"nothing mounted at {mount_point} for pid {pid}"
    return options


@functools.cache
def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the image's config


def test_image_runs_as_uid_65532_and_exposes_8080(image):
    assert image.config["Config"]["User"] == f"{NONROOT}:{NONROOT}"
    assert image.config["Config"]["ExposedPorts"] == {"8080/tcp": {}}


def test_image_entry_point_and_command_are_the_ones_the_docs_document(image):
    deploy = (REPO / "docs" / "deploy.md").read_text()
    documented = re.search(r"entry point\s+`([^`]+)`", deploy)
    assert documented, "docs/deploy.md no longer says `entry point `...``"
    assert image.entrypoint == ["kube-http-sd"]
    assert shlex.join(image.entrypoint + image.cmd) == documented.group(1)


def test_image_labels_describe_the_package_and_the_base_it_was_built_on(image):
    labels = image.config["Config"]["Labels"]
    oci = {k.removeprefix("org.opencontainers.image."): v for k, v in labels.items() if k.startswith("org.opencontainers.image.")}
    assert oci["title"] == PYPROJECT["name"]
    assert oci["version"] == PYPROJECT["version"]
    assert oci["description"] == PYPROJECT["description"]
    assert oci["licenses"] == PYPROJECT["license"]["text"]
    assert oci["source"].startswith("https://"), oci["source"]
    # The build argument, not a name typed into the Dockerfile that can go stale.
    assert oci["base.name"] == image.base


def test_image_environment_puts_the_venv_first_and_its_healthcheck_asks_healthz(image):
    env = dict(e.split("=", 1) for e in image.config["Config"]["Env"])
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    health = image.config["Healthcheck"]["Test"]
    assert health[:3] == ["CMD", "python", "-c"] and "/healthz" in health[3], health


# ------------------------------------------------------------ the image's filesystem


def test_image_holds_no_pip_setuptools_or_wheel(image_files):
    tools = re.compile(
        r"(site|dist)-packages/(pip|setuptools|wheel|pkg_resources|_distutils_hack)(/|-[^/]+\.(dist|egg)-info(/|$)|\.py$)"
        r"|(^|/)s?bin/(pip[\d.]*|easy_install[-\d.]*|wheel)$"
    )
    found = [f for f in image_files if tools.search(f)]
    assert not found, f"package tools left in the image: {found[:20]}"


def test_image_holds_no_compiler(image_files):
    compilers = re.compile(r"(^|/)s?bin/([\w-]+-linux-gnu-)?(cc|gcc|c\+\+|g\+\+|cpp|clang|clang\+\+|ld|as)(-[\d.]+)?$|/cc1(plus)?$")
    found = [f for f in image_files if compilers.search(f)]
    assert not found, f"compiler files in the image: {found[:20]}"


def test_image_holds_no_sources_or_build_context_outside_the_installed_package(root, image_files):
    assert not (root / "src").exists(), "/src, the builder's work directory, is in the final image"
    assert not [f for f in image_files if ".git" in f.split("/")], "a .git directory is in the image"
    tree: dict[int, list[Path]] = {}
    for directory, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in NOT_IN_BUILD_CONTEXT and not d.endswith(".egg-info")]
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink() and path.stat().st_size >= SMALLEST_TELLING_FILE:
                tree.setdefault(path.stat().st_size, []).append(path)
    copies, allowed_seen = [], 0
    for rel in image_files:
        path = root / rel
        if path.is_symlink() or path.stat().st_size not in tree:
            continue
        matches = {str(p.relative_to(REPO)) for p in tree[path.stat().st_size] if digest(p) == digest(path)}
        if not matches:
            continue
        allowed = {m.expand(template) for pattern, template in ALLOWED_COPIES if (m := pattern.fullmatch(rel))}
        if allowed & matches:
            allowed_seen += 1
        else:
            copies.append(f"/{rel} = {sorted(matches)[0]}")
    assert not copies, f"working-tree files in the image outside the installed package: {copies[:20]}"
    # The rule above is not vacuous: the package and the config are there, as copies.
    assert allowed_seen >= 10, f"only {allowed_seen} files of sd/ and config/ found where they belong"


def test_image_config_is_the_shipped_config(root):
    assert (root / IMAGE_CONFIG.lstrip("/")).read_bytes() == SD_CONFIG.read_bytes()


# -------------------------------------------------------------- running from the image


def test_image_serves_as_uid_65532_with_a_read_only_root_and_a_tmpfs_tmp(image_server):
    pid = image_server.proc.pid
    status = proc_status(pid)
    assert status["Uid"].split() == [NONROOT] * 4, status["Uid"]
    assert status["Gid"].split() == [NONROOT] * 4, status["Gid"]
    assert "ro" in mount_options(pid, "/")
    assert "rw" in mount_options(pid, "/tmp")
    assert f'msg="snapshot loaded" file={IMAGE_SNAPSHOT_DIR}/{SNAPSHOT.name}' in image_server.log()


def test_image_answers_like_the_venv_on_the_same_snapshot(image_server, venv_server, root):
    sets = sorted(yaml.safe_load((root / IMAGE_CONFIG.lstrip("/")).read_text())["targets"])
    paths = ["/", "/healthz", "/readyz", *(f"/targets/{s}" for s in sets)]
    served_targets = 0
    for path in paths:
        ours, theirs = image_server.get(path), venv_server.get(path)
        assert ours.status_code == theirs.status_code == 200, (path, ours.status_code, theirs.status_code)
        for header in ("content-type", "etag"):
            assert ours.headers.get(header) == theirs.headers.get(header), (path, header)
        assert ours.content == theirs.content, f"{path}: image and venv bodies differ"
        if path.startswith("/targets/"):
            assert ours.headers.get("etag"), f"{path}: no ETag"
            served_targets += sum(len(group["targets"]) for group in ours.json())
    assert served_targets, f"{SNAPSHOT.name} gave no targets in {sets}: the comparison proves nothing"


def test_image_answers_304_to_the_venvs_etag(image_server, venv_server):
    etag = venv_server.get("/targets/kubelet").headers["etag"]
    assert image_server.get("/targets/kubelet", headers={"If-None-Match": etag}).status_code == 304


def test_image_exits_0_on_sigterm(root, image):
    with serve_image(root, image) as server:
        server.wait_healthy(READY_TIMEOUT_S)
        code = server.stop()
    assert code == 0, f"exit {code} after SIGTERM:\n{server.log()}"


def test_check_config_in_the_image_accepts_the_shipped_config(root, image):
    result = run_in_image(root, image, "check-config", "--config", IMAGE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_check_config_in_the_image_exits_2_naming_the_problem_in_a_mounted_config(root, image, tmp_path):
    config = yaml.safe_load(SD_CONFIG.read_text())
    config["targets"]["fluentd"]["port"] = 0
    (tmp_path / "sd.yaml").write_text(yaml.safe_dump(config))
    tmp_path.chmod(0o755)  # readable by uid 65532, as a ConfigMap volume is
    # Mounted over the image's config directory, as the Deployment mounts its ConfigMap.
    result = run_in_image(root, image, "check-config", "--config", IMAGE_CONFIG, binds={tmp_path: str(Path(IMAGE_CONFIG).parent)})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "targets.fluentd.port" in output, output
