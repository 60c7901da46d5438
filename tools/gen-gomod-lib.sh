# What every tools/<module>/gen-gomod.sh shares; each sources it first. It works in the script's
# own directory, with the local Go toolchain, and lets `go get` write go.mod.
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# upstream_gomod MODULE VERSION: the path of that module's own go.mod (downloaded to the module cache).
upstream_gomod() {
  go mod download -json "$1@$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])'
}

# new_module [MODULE VERSION]: a fresh go.mod named kube-http-sd/tools/<this directory>; given an
# upstream module, its replace and exclude lines repeated (they apply only inside its repository,
# and `go install` refuses a module that has them).
new_module() {
  rm -f go.mod go.sum
  go mod init "kube-http-sd/tools/$(basename "$PWD")" >/dev/null 2>&1
  if [ $# -eq 2 ]; then
    local modfile
    modfile=$(upstream_gomod "$1" "$2")
    python3 ../upstream-replaces.py "$modfile" "$2" >> go.mod
  fi
}
