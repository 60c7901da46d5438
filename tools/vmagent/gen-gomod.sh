#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new VictoriaMetrics version (its app/vmagent program; replace and
# exclude lines of its go.mod repeated here, as for Prometheus). Versions after v1.151.0 need a
# newer Go than 1.26.
set -euo pipefail
cd "$(dirname "$0")"
VERSION=${1:?usage: gen-gomod.sh v1.151.0}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
modfile=$(go mod download -json "github.com/VictoriaMetrics/VictoriaMetrics@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
rm -f go.mod go.sum
go mod init kube-http-sd/tools/vmagent >/dev/null 2>&1
python3 ../upstream-replaces.py "$modfile" "$VERSION" >> go.mod
go get -tool "github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent@$VERSION"
go mod tidy
cat > buildflags <<FLAGS
# The version it reports (\`vmagent -version\`, vm_app_version), in the shape of upstream's releases.
-ldflags=-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=vmagent-$VERSION
FLAGS
