#!/usr/bin/env bash
# Fails when a generated file is stale: regenerates the deepcopy code and the
# CRD manifests into a temporary directory and compares them with the tree,
# which it never changes. `make generate manifests` brings them up to date.
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${CONTROLLER_GEN:?set CONTROLLER_GEN to the controller-gen binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

stale=0

"$CONTROLLER_GEN" crd paths=./api/... output:crd:dir="$tmp/crd"
if ! diff -ru config/crd "$tmp/crd"; then
	echo "config/crd is stale: run 'make manifests'" >&2
	stale=1
fi

# One run per package, so that each zz_generated.deepcopy.go lands apart.
for dir in $(go list -f '{{.Dir}}' ./api/...); do
	rel=${dir#"$PWD"/}
	"$CONTROLLER_GEN" object:headerFile=hack/boilerplate.go.txt paths="./$rel" output:object:dir="$tmp/object/$rel"
	want="$tmp/object/$rel/zz_generated.deepcopy.go"
	have="$rel/zz_generated.deepcopy.go"
	if [ -e "$want" ] || [ -e "$have" ]; then
		if ! diff -u "$have" "$want"; then
			echo "$have is stale: run 'make generate'" >&2
			stale=1
		fi
	fi
done

if [ "$stale" -ne 0 ]; then
	exit 1
fi
echo "generated files are up to date"
