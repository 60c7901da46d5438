#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new Helm version (its cmd/helm program; replace and exclude lines
# of Helm's go.mod repeated here, as for Prometheus).
. "$(dirname "$0")/../gen-gomod-lib.sh"
VERSION=${1:?usage: gen-gomod.sh v4.3.2}
new_module "helm.sh/helm/v4" "$VERSION"
go get -tool "helm.sh/helm/v4/cmd/helm@$VERSION"
go mod tidy
cat > buildflags <<FLAGS
# The version it reports (\`helm version\`; also what \`.Capabilities.HelmVersion\` renders).
-ldflags=-X helm.sh/helm/v4/internal/version.version=$VERSION -X helm.sh/helm/v4/internal/version.metadata=
FLAGS
