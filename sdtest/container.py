"""The container image, built and run on a machine without a container engine.

``podman build`` builds ``deploy/Dockerfile`` from the working tree on a local Python
base (Debian's, made with debootstrap: no registry but Debian's is needed), and the
built image's filesystem is run directly: ``podman image mount``, then, in a private
mount namespace, the image root bound read-only, a tmpfs on its /tmp and
``chroot --userspec`` to the image's user. What a container runtime adds on top
(cgroups, rlimits, namespaces beyond mounts, seccomp, capabilities) is not here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# python3-pip (with setuptools and wheel) mirrors python:3.11-slim, whose interpreter
# has them too: the Dockerfile must take them out of the final image on either base.
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# What the official python images set; `podman import` starts from an empty config.
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
# pip inside the build verifies the package index with this machine's CA bundle, which
# may hold a CA that Debian's ca-certificates does not.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_CA_BUNDLE = "etc/ssl/certs/build-host-ca-bundle.crt"
BASE_PIP_CONF = f"[global]\ncert = /{BASE_CA_BUNDLE}\n"

BOOTSTRAP_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 900
PODMAN_TIMEOUT_S = 120


class Unavailable(Exception):
    """This machine cannot build or run the image; the message says why."""


class ImageError(Exception):
    """A podman or debootstrap step failed; the message holds its output."""


def check_usable() -> None:
    """Raise Unavailable unless podman, debootstrap and root (for mounts and chroot) are here."""
    for tool, package in (("podman", "podman"), ("debootstrap", "debootstrap"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed (apt-get install {package}; scripts/test.sh does it)")
    if not HOST_CA_BUNDLE.exists():
        raise Unavailable(f"{HOST_CA_BUNDLE} is missing (apt-get install ca-certificates): pip in the build needs it")
    if os.geteuid() != 0:
        raise Unavailable("needs root: podman image mount, mount namespaces and chroot to uid 65532")
    result = _run(["podman", "info", "--format", "{{.Store.GraphDriverName}}"], check=False)
    if result.returncode != 0:
        raise Unavailable(f"podman cannot run here: {result.stderr.strip() or result.stdout.strip()}")


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "kube-http-sd"


def base_key() -> str:
    """The Debian suite, and a digest of everything else that goes into the base."""
    digest = hashlib.sha256()
    for part in (DEBIAN_MIRROR, *BASE_PACKAGES, *BASE_ENV, BASE_PIP_CONF):
        digest.update(part.encode() + b"\0")
    digest.update(HOST_CA_BUNDLE.read_bytes())
    return f"{DEBIAN_SUITE}-{digest.hexdigest()[:12]}"


def base_image() -> str:
    """The local Python base image, made once per machine and key.

    The debootstrapped root is kept as a tarball in ``cache_dir()``; the image is
    imported from it when podman's store lacks it. Concurrent callers wait on a lock.
    """
    key = base_key()
    image = f"localhost/kube-http-sd-test-python:{key}"
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"debian-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _run(["podman", "image", "exists", image], check=False).returncode == 0:
            return image
        tarball = cache / f"debian-{key}.tar"
        if not tarball.exists():
            _bootstrap(tarball)
        _run(
            ["podman", "import", *(f"--change=ENV={e}" for e in BASE_ENV), str(tarball), image],
            timeout=PODMAN_TIMEOUT_S,
        )
    return image


def _bootstrap(tarball: Path) -> None:
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix="debootstrap-") as tmp:
        root = Path(tmp) / "root"
        _run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", DEBIAN_SUITE, str(root), DEBIAN_MIRROR],
            timeout=BOOTSTRAP_TIMEOUT_S,
        )
        # What an image does not carry: the package downloads and lists, and device
        # nodes (a runtime provides /dev).
        for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "dev/*"):
            for path in root.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        (root / "usr/bin/python").symlink_to("python3")  # the official images' `python`
        shutil.copyfile(HOST_CA_BUNDLE, root / BASE_CA_BUNDLE)
        (root / "etc/pip.conf").write_text(BASE_PIP_CONF)
        partial = Path(tmp) / "root.tar"
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], timeout=PODMAN_TIMEOUT_S)
        partial.rename(tarball)


def build(context: Path, dockerfile: Path, tag: str, base: str) -> None:
    """``podman build`` of ``dockerfile`` with ``PYTHON_IMAGE=base``, tagged ``tag``.

    Docker's image format (not OCI), as ``docker build`` writes: only it keeps HEALTHCHECK.
    No layer cache: every run would otherwise leave ~160 MB of intermediate images behind
    for each state of the sources it built, and the cached base already saves the minute.
    """
    result = _run(
        [
            "podman", "build", "--isolation=chroot", "--format=docker", "--layers=false",
            "-f", str(dockerfile), "--build-arg", f"PYTHON_IMAGE={base}", "-t", tag, str(context),
        ],
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        log = (result.stdout + result.stderr)[-6000:]
        raise ImageError(f"podman build of {dockerfile} failed (exit {result.returncode}):\n{log}")


def inspect(image: str) -> dict:
    return json.loads(_run(["podman", "image", "inspect", image]).stdout)[0]


def remove(image: str) -> None:
    _run(["podman", "image", "rm", image], timeout=PODMAN_TIMEOUT_S)


@contextmanager
def mounted(image: str) -> Iterator[Path]:
    """The image's filesystem (podman mounts it read-only), unmounted on exit."""
    root = Path(_run(["podman", "image", "mount", image]).stdout.strip())
    try:
        yield root
    finally:
        _run(["podman", "image", "unmount", image])


def chroot_command(root: Path, user: str, env: Sequence[str], binds: Mapping[Path, str] | None = None) -> list[str]:
    """A command prefix that runs what follows it from the image root as ``user``.

    A private mount namespace holds a read-only bind of the image root, a tmpfs on its
    /tmp and ``binds`` (host path → absolute path in the image, read-only, as Kubernetes
    mounts a ConfigMap); those mounts end with the process. ``unshare``, ``sh``, ``env``
    and ``chroot`` each exec the next, so the process started is the program itself.
    ``env`` is the whole environment the program gets.
    """
    image_root = shlex.quote(str(root))
    lines = [
        "set -eu",
        f"mount --bind {image_root} {image_root}",
        f"mount -o remount,bind,ro {image_root}",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {image_root}/tmp",
    ]
    for source, target in (binds or {}).items():
        where = shlex.quote(f"{root}{target}")
        lines += [f"mkdir -p {where}", f"mount --bind -o ro {shlex.quote(str(source))} {where}"]
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    lines.append("exec " + shlex.join(["env", "-i", *env, chroot, f"--userspec={user}", str(root)]) + ' "$@"')
    return ["unshare", "--mount", "--propagation=private", "sh", "-c", "\n".join(lines), "sh"]


def _run(argv: list[str], timeout: float = PODMAN_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        output = (result.stdout + result.stderr)[-6000:]
        raise ImageError(f"{shlex.join(argv)} failed (exit {result.returncode}):\n{output}")
    return result
