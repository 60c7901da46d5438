#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a new Kubernetes version: k8s.io/kubernetes requires its staging
# modules at v0.0.0 and maps them with replace lines that only apply inside its own repository, so
# this module repeats every one of them at the matching published version (derived, not typed).
. "$(dirname "$0")/../gen-gomod-lib.sh"
K8S=${1:?usage: gen-gomod.sh v1.37.2}
STAGING=v0.${K8S#v1.}
modfile=$(upstream_gomod k8s.io/kubernetes "$K8S")
new_module
grep -E '^\s+k8s\.io/[A-Za-z0-9._-]+ => \./staging/' "$modfile" | awk '{print $1}' | while read -r mod; do
  go mod edit -replace "$mod=$mod@$STAGING"
done
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S" "k8s.io/kubernetes/cmd/kubectl@$K8S"
go mod tidy
minor=${K8S#v1.}; minor=${minor%%.*}
x=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  x="$x -X $pkg.gitVersion=$K8S -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
done
cat > buildflags <<FLAGS
# The version the programs report (\`kubectl version\`, /version), as a release build sets it.
-ldflags=${x# }
FLAGS
