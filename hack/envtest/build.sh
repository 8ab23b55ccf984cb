#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from Go module
# sources and caches it. Nothing is fetched but Go modules, through the module
# proxy, checked against the go.sum files beside this script.
#
# The versions are pinned by the wrapper modules hack/envtest/kube-apiserver and
# hack/envtest/etcd (change them with hack/envtest/pin.sh). The binaries land in
# $CACHE/envtest/<kubernetes version>/, a stamp file records what was built, and a
# second run with the same pins does nothing. The last line printed is the assets
# directory, ready for KUBEBUILDER_ASSETS.
#
# Environment:
#   CACHE           cache root (default ~/.cache/podipc)
#   ENVTEST_GOCACHE Go build cache for this build (default $CACHE/envtest/go-build);
#                   kept apart from the project's so it can be dropped on its own.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${CACHE:-$HOME/.cache/podipc}
root=$cache/envtest

export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
export GOCACHE=${ENVTEST_GOCACHE:-$root/go-build}

log() { printf 'build-envtest: %s\n' "$*" >&2; }

# module_version DIR MODULE prints the version of MODULE that wrapper DIR pins.
module_version() {
  (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

k8s_version=$(module_version "$here/kube-apiserver" k8s.io/kubernetes)
etcd_version=$(module_version "$here/etcd" go.etcd.io/etcd/server/v3)
out=$root/$k8s_version
stamp=$out/.stamp

# What the binaries are built from: any change here rebuilds them.
recipe_version=1
want_stamp=$(
  printf 'recipe %s\nkube-apiserver %s\netcd %s\n' "$recipe_version" "$k8s_version" "$etcd_version"
  cd "$here" && sha256sum kube-apiserver/go.sum etcd/go.sum
)

mkdir -p "$root"
# One build at a time; a second caller waits and then finds the stamp.
exec 9>"$root/.lock"
flock 9

if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -f "$stamp" ] &&
  [ "$(cat "$stamp")" = "$want_stamp" ]; then
  log "kube-apiserver $k8s_version and etcd $etcd_version are already built"
  echo "$out"
  exit 0
fi

staging=$(mktemp -d "$root/.build-XXXXXX")
trap 'rm -rf "$staging"' EXIT

# The same version variables the Kubernetes release build stamps, so that
# `kube-apiserver --version` and the /version endpoint report the real release.
minor=${k8s_version#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit="
done

log "building kube-apiserver $k8s_version (GOCACHE=$GOCACHE)"
start=$SECONDS
(cd "$here/kube-apiserver" &&
  go build -trimpath -tags selinux,notest -ldflags "$ldflags" \
    -o "$staging/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
log "kube-apiserver built in $((SECONDS - start))s"

log "building etcd $etcd_version"
start=$SECONDS
(cd "$here/etcd" &&
  go build -trimpath -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3)
log "etcd built in $((SECONDS - start))s"

"$staging/kube-apiserver" --version >&2
"$staging/etcd" --version >&2

mkdir -p "$out"
rm -f "$stamp"
mv -f "$staging/kube-apiserver" "$staging/etcd" "$out/"
printf '%s\n' "$want_stamp" >"$stamp"
log "cached in $out ($(du -sh "$out" | cut -f1))"
echo "$out"
