#!/usr/bin/env bash
# Builds the upstream programs the tests and the bench run, from their published Go modules, through
# the wrapper modules beside this script (go.mod and go.sum name the pinned versions; each
# module's `tool` lines name the programs). Binaries go to a cache outside the repository keyed by a
# digest of the wrapper module, so a version bump rebuilds and nothing else does.
#
#   tools/build.sh kubernetes etcd     build (when missing) and print each program's path
#
# A module's optional `buildflags` file holds extra `go build` arguments, one a line (tags,
# -ldflags); lines starting with # are comments.
#
# The cache is $KUBE_HTTP_SD_TOOLS (default ~/.cache/kube-http-sd/tools).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KUBE_HTTP_SD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-http-sd/tools}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"

if ! command -v go >/dev/null; then
  echo "tools/build.sh: go is not installed; the upstream programs are built with Go 1.26" >&2
  exit 3
fi
[ $# -gt 0 ] || set -- kubernetes etcd

for name in "$@"; do
  mod="$here/$name"
  [ -f "$mod/go.mod" ] || { echo "tools/build.sh: no wrapper module $mod" >&2; exit 2; }
  flags=()
  [ -f "$mod/buildflags" ] && mapfile -t flags < <(grep -v '^#' "$mod/buildflags")
  key=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/buildflags" 2>/dev/null; go env GOVERSION)
  key=$(printf '%s' "$key" | sha256sum | cut -c1-12)
  out="$cache/$name-$key"
  mkdir -p "$cache"
  exec 9>"$cache/$name.lock"
  flock 9
  if [ ! -f "$out/.done" ]; then
    tools=$(cd "$mod" && go mod edit -json | python3 -c 'import json,sys; print(" ".join(t["Path"] for t in json.load(sys.stdin)["Tool"]))')
    echo "tools/build.sh: building $tools into $out (first time only; a cold build takes several minutes)" >&2
    start=$(date +%s)
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    # One program is named after its wrapper module (etcd's is the root package of
    # go.etcd.io/etcd/server/v3); several keep their package names.
    dest="$out.tmp/"
    [ "$(echo $tools | wc -w)" -eq 1 ] && dest="$out.tmp/$name"
    (cd "$mod" && go build -trimpath "${flags[@]}" -o "$dest" $tools)
    rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.done"
    echo "tools/build.sh: built $name in $(( $(date +%s) - start )) s" >&2
  fi
  flock -u 9
  for f in "$out"/*; do echo "$f"; done
done
