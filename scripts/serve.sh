#!/usr/bin/env bash
# Install kube-http-sd into .venv and run it on http://localhost:8080 (dual-stack):
# against your cluster when one is configured (in-cluster, $KUBECONFIG or
# ~/.kube/config), else on the bundled example snapshot. Extra arguments go to
# `kube-http-sd serve`, e.g. ./scripts/serve.sh --listen 127.0.0.1:9000
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check .
if [ -n "${KUBERNETES_SERVICE_HOST:-}" ] || [ -f "${KUBECONFIG:-$HOME/.kube/config}" ]; then
  exec .venv/bin/kube-http-sd serve "$@"
fi
echo "no Kubernetes cluster configured: serving the example snapshot examples/cluster.json" >&2
exec .venv/bin/kube-http-sd serve --snapshot examples/cluster.json "$@"
