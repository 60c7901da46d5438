#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it:
#   - Debian's prometheus (prometheus + promtool, for the end-to-end tests) and kubectl
#     (for `kubectl kustomize` on deploy/) when missing; uses sudo when not root;
#   - chromium (tests/test_browser.py renders the status pages), podman and debootstrap
#     (tests/test_container.py builds and runs the image) when missing;
#   - kube-apiserver, kubectl, etcd, Prometheus 3 and prometheus-operator (the real control plane,
#     the e2e Prometheus and the peers; bench real_apiserver), built
#     from their Go modules by tools/build.sh into a cache outside the repository: the first
#     build takes several minutes (it says so, and how long it took), later runs none;
#   - the package and its test extra into .venv.
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k conflicts
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  # With recommended packages, as a developer's `apt-get install` gets them: chromium's
  # fonts (screenshots), podman's storage and user-namespace helpers.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

tools/build.sh kubernetes etcd prometheus prometheus-operator helm vmagent >/dev/null

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/pytest "$@"
