"""What is running: this package's version and the two that decide its behaviour most
(for --version, the start-up log line and ``kube_http_sd_build_info``)."""

from __future__ import annotations

import platform
from importlib import metadata


def _installed(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    """``{"version": ..., "python": ..., "kubernetes_asyncio": ...}``."""
    return {
        "version": _installed("kube-http-sd"),
        "python": platform.python_version(),
        "kubernetes_asyncio": _installed("kubernetes-asyncio"),
    }
