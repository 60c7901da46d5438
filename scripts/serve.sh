#!/usr/bin/env bash
# Run kube-http-sd on http://localhost:8080 (dual-stack) in the foreground: curl it from
# a second terminal, Ctrl-C stops it. Against your cluster when one is configured
# (in-cluster, $KUBECONFIG or ~/.kube/config; it says which context first), else on the
# bundled example snapshot. Extra arguments go to `kube-http-sd serve`, e.g.
#   ./scripts/serve.sh --listen 127.0.0.1:9000
#
# The package is installed into .venv editable, as scripts/test.sh installs it (so the two
# never swap .venv between two kinds of install), and only when it is not installed so yet
# or pyproject.toml changed since: an editable install runs the sources as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

installed() {
  local info
  for info in .venv/lib/python3*/site-packages/kube_http_sd-*.dist-info; do
    [ -f "$info/direct_url.json" ] && [ ! pyproject.toml -nt "$info" ] \
      && grep -q '"editable": *true' "$info/direct_url.json" \
      && grep -qF "\"file://$PWD\"" "$info/direct_url.json" && return 0
  done
  return 1
}

[ -x .venv/bin/python ] || python3 -m venv .venv
if ! installed; then
  echo "installing kube-http-sd into .venv (editable; again only when pyproject.toml changes)" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e .
fi

for arg in "$@"; do
  case "$arg" in
    --snapshot | --snapshot=* | --kubeconfig | --kubeconfig=*) exec .venv/bin/kube-http-sd serve "$@" ;;
  esac
done

if [ -n "${KUBERNETES_SERVICE_HOST:-}" ]; then
  echo "serving the cluster of this pod's service account (in-cluster); Ctrl-C stops it" >&2
  exec .venv/bin/kube-http-sd serve "$@"
fi
kubeconfig="${KUBECONFIG:-$HOME/.kube/config}"
kubeconfig="${kubeconfig%%:*}"  # the first file of a list, as kube-http-sd reads it
if [ -f "$kubeconfig" ]; then
  # kubectl may not be installed: read the current context with the venv's PyYAML.
  .venv/bin/python - "$kubeconfig" >&2 <<'EOF'
import sys

import yaml

path = sys.argv[1]
try:
    config = yaml.safe_load(open(path)) or {}
    name = config["current-context"]
    context = next(c["context"] for c in config.get("contexts") or [] if c.get("name") == name)
    cluster = next(c["cluster"] for c in config.get("clusters") or [] if c.get("name") == context.get("cluster"))
    print(f"serving kubeconfig {path}, context {name} (cluster {context.get('cluster')}, "
          f"server {cluster.get('server')}); Ctrl-C stops it")
except Exception as exc:  # kube-http-sd itself reports what is wrong with the file
    print(f"serving kubeconfig {path} (its current context is unreadable: {type(exc).__name__}); Ctrl-C stops it")
EOF
  exec .venv/bin/kube-http-sd serve "$@"
fi
echo "no Kubernetes cluster configured: serving the example snapshot examples/cluster.json; Ctrl-C stops it" >&2
exec .venv/bin/kube-http-sd serve --snapshot examples/cluster.json "$@"
