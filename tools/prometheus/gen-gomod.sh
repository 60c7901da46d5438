#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new Prometheus version: module version v0.3XY.Z is Prometheus
# 3.XY.Z. Any replace and exclude lines of Prometheus' own go.mod are repeated here (they apply
# only inside its repository, and `go install` refuses a module that has them).
set -euo pipefail
cd "$(dirname "$0")"
VERSION=${1:?usage: gen-gomod.sh v0.316.0}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
modfile=$(go mod download -json "github.com/prometheus/prometheus@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
rm -f go.mod go.sum
go mod init kube-http-sd/tools/prometheus >/dev/null 2>&1
python3 ../upstream-replaces.py "$modfile" "$VERSION" >> go.mod
go get -tool "github.com/prometheus/prometheus/cmd/prometheus@$VERSION"
go mod tidy
release=${VERSION#v0.}; release="3.${release:1}"
cat > buildflags <<FLAGS
# Kubernetes, HTTP, file and static discovery only (faster to build); the version it reports.
-tags=remove_all_sd,enable_kubernetes_sd
-ldflags=-X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Branch=HEAD
FLAGS
