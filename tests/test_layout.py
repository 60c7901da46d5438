"""The layering DESIGN.md describes, checked on what each module really imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def imported_modules(*modules: str) -> set[str]:
    """Modules loaded by importing ``modules`` in a fresh interpreter."""
    code = f"import sys, json; import {', '.join(modules)}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_the_api_layer_imports_nothing_from_the_core():
    loaded = imported_modules("sd.kube.informer", "sd.kube.client", "sd.kube.snapshot")
    ours = {m for m in loaded if m == "sd" or m.startswith("sd.")}
    assert ours == {"sd", "sd.kube", "sd.kube.events", "sd.kube.informer", "sd.kube.client", "sd.kube.snapshot"}


@pytest.mark.parametrize("module", ["sd.kinds", "sd.index", "sd.targets", "sd.config", "sd.selectors"])
def test_the_core_imports_no_network_stack(module):
    loaded = imported_modules(module)
    for edge in ("starlette", "uvicorn", "aiohttp", "kubernetes_asyncio", "httpx", "prometheus_client", "sd.kube", "sd.http"):
        assert edge not in loaded, f"{module} pulls in {edge}"
