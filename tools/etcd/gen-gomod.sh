#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new etcd version: the root package of go.etcd.io/etcd/server/v3 is
# the etcd program.
set -euo pipefail
cd "$(dirname "$0")"
ETCD=${1:?usage: gen-gomod.sh v3.7.3}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
rm -f go.mod go.sum
go mod init kube-http-sd/tools/etcd >/dev/null 2>&1
go get -tool "go.etcd.io/etcd/server/v3@$ETCD"
go mod tidy
