#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new Helm version (its cmd/helm program; replace and exclude lines
# of Helm's go.mod repeated here, as for Prometheus).
set -euo pipefail
cd "$(dirname "$0")"
VERSION=${1:?usage: gen-gomod.sh v4.3.2}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
modfile=$(go mod download -json "helm.sh/helm/v4@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
rm -f go.mod go.sum
go mod init kube-http-sd/tools/helm >/dev/null 2>&1
python3 ../upstream-replaces.py "$modfile" "$VERSION" >> go.mod
go get -tool "helm.sh/helm/v4/cmd/helm@$VERSION"
go mod tidy
cat > buildflags <<FLAGS
# The version it reports (\`helm version\`; also what \`.Capabilities.HelmVersion\` renders).
-ldflags=-X helm.sh/helm/v4/internal/version.version=$VERSION -X helm.sh/helm/v4/internal/version.metadata=
FLAGS
