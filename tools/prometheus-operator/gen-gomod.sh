#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new prometheus-operator version (its cmd/operator program;
# replace and exclude lines of its go.mod repeated here, as for Prometheus).
set -euo pipefail
cd "$(dirname "$0")"
VERSION=${1:?usage: gen-gomod.sh v0.93.1 (the newest whose pkg/client submodule the module proxy serves: not v0.95.x, not v0.94.x)}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
modfile=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
rm -f go.mod go.sum
go mod init kube-http-sd/tools/prometheus-operator >/dev/null 2>&1
python3 ../upstream-replaces.py "$modfile" "$VERSION" >> go.mod
go get -tool "github.com/prometheus-operator/prometheus-operator/cmd/operator@$VERSION"
# The operator imports Prometheus as a library; Prometheus' go.mod pins cloud.google.com/go with a
# replace line (an older one holds a second copy of compute/metadata), which must be repeated too.
prom=$(go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
prommod=$(go mod download -json "github.com/prometheus/prometheus@$prom" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
python3 ../upstream-replaces.py "$prommod" "$prom" | grep '^replace cloud.google.com/go ' >> go.mod
go mod tidy
cat > buildflags <<FLAGS
# The version it reports.
-ldflags=-X github.com/prometheus/common/version.Version=${VERSION#v}
FLAGS
