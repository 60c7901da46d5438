#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new prometheus-operator version (its cmd/operator program;
# replace and exclude lines of its go.mod repeated here, as for Prometheus).
. "$(dirname "$0")/../gen-gomod-lib.sh"
VERSION=${1:?usage: gen-gomod.sh v0.93.1 (the newest whose pkg/client submodule the module proxy serves: not v0.95.x, not v0.94.x)}
new_module "github.com/prometheus-operator/prometheus-operator" "$VERSION"
go get -tool "github.com/prometheus-operator/prometheus-operator/cmd/operator@$VERSION"
# The operator imports Prometheus as a library; Prometheus' go.mod pins cloud.google.com/go with a
# replace line (an older one holds a second copy of compute/metadata), which must be repeated too.
prom=$(go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
python3 ../upstream-replaces.py "$(upstream_gomod github.com/prometheus/prometheus "$prom")" "$prom" | grep '^replace cloud.google.com/go ' >> go.mod
go mod tidy
cat > buildflags <<FLAGS
# The version it reports.
-ldflags=-X github.com/prometheus/common/version.Version=${VERSION#v}
FLAGS
