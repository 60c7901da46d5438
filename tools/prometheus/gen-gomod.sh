#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new Prometheus version: module version v0.3XY.Z is Prometheus
# 3.XY.Z. Any replace and exclude lines of Prometheus' own go.mod are repeated here (they apply
# only inside its repository, and `go install` refuses a module that has them).
. "$(dirname "$0")/../gen-gomod-lib.sh"
VERSION=${1:?usage: gen-gomod.sh v0.316.0}
new_module "github.com/prometheus/prometheus" "$VERSION"
go get -tool "github.com/prometheus/prometheus/cmd/prometheus@$VERSION"
go mod tidy
release=${VERSION#v0.}; release="3.${release:1}"
cat > buildflags <<FLAGS
# Kubernetes, HTTP, file and static discovery only (faster to build); the version it reports.
-tags=remove_all_sd,enable_kubernetes_sd
-ldflags=-X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Branch=HEAD
FLAGS
