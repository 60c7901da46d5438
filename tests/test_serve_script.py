"""scripts/serve.sh as the quickstart runs it: no reinstall on every run (the same editable
install scripts/test.sh makes), the context it is about to use said first, the server in
the foreground until a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx

from sdtest.helpers import FAST, ROOT, eventually, free_port


def installed_package() -> Path:
    [info] = (ROOT / ".venv").glob("lib/python3*/site-packages/kube_http_sd-*.dist-info")
    return info


def test_serve_sh_keeps_the_editable_install_and_names_the_context(api, tmp_path):
    before = installed_package()
    stamp = before.stat().st_mtime_ns
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    config = tmp_path / "sd.yaml"
    config.write_text(FAST)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env.update(HOME=str(tmp_path), KUBECONFIG=kubeconfig)
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "serve.sh"), "--listen", f"127.0.0.1:{port}", "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        eventually(lambda: proc.poll() is None and httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200,
                   timeout=60, what="serve.sh serving the API double's cluster")
    finally:
        proc.send_signal(signal.SIGTERM)  # the script exec'd the server: the signal is the server's
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    first = output.splitlines()[0]
    assert first == f"serving kubeconfig {kubeconfig}, context fake (cluster fake, server {api.url}); Ctrl-C stops it"
    assert "installing" not in output
    after = installed_package()
    assert after == before and after.stat().st_mtime_ns == stamp, "serve.sh reinstalled the package"
    assert json.loads((after / "direct_url.json").read_text())["dir_info"] == {"editable": True}
