#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new etcd version: the root package of go.etcd.io/etcd/server/v3 is
# the etcd program.
. "$(dirname "$0")/../gen-gomod-lib.sh"
ETCD=${1:?usage: gen-gomod.sh v3.7.3}
new_module
go get -tool "go.etcd.io/etcd/server/v3@$ETCD"
go mod tidy
