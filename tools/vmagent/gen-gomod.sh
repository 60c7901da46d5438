#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new VictoriaMetrics version (its app/vmagent program; replace and
# exclude lines of its go.mod repeated here, as for Prometheus). Versions after v1.151.0 need a
# newer Go than 1.26.
. "$(dirname "$0")/../gen-gomod-lib.sh"
VERSION=${1:?usage: gen-gomod.sh v1.151.0}
new_module "github.com/VictoriaMetrics/VictoriaMetrics" "$VERSION"
go get -tool "github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent@$VERSION"
go mod tidy
cat > buildflags <<FLAGS
# The version it reports (\`vmagent -version\`, vm_app_version), in the shape of upstream's releases.
-ldflags=-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=vmagent-$VERSION
FLAGS
