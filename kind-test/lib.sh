# shellcheck shell=bash
# Helpers of kind-test/run.sh: logging, timing, polling with a deadline, and finding the tools.
# Sourced, not run.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# Phase timing: `phase NAME` closes the previous phase and opens NAME; `phase_report` prints them.
PHASES=()
_phase_name=""
_phase_start=$(date +%s)
phase() {
	local now
	now=$(date +%s)
	[ -z "$_phase_name" ] || PHASES+=("$(printf '%-28s %5ss' "$_phase_name" $((now - _phase_start)))")
	_phase_name=$1
	_phase_start=$now
	[ -z "$1" ] || log "== $1"
}
phase_report() {
	phase ""
	local p
	for p in "${PHASES[@]}"; do echo "TIMING $p"; done
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: runs COMMAND every 2 s until it succeeds, and fails the
# test with DESCRIPTION and COMMAND's last output once TIMEOUT_SECONDS have passed.
wait_for() {
	local desc=$1 timeout=$2
	shift 2
	local deadline=$(($(date +%s) + timeout)) out
	until out=$("$@" 2>&1); do
		if (($(date +%s) >= deadline)); then
			printf '%s\n' "$out" | tail -n 20 >&2
			fail "timed out after ${timeout}s waiting until $desc"
		fi
		sleep 2
	done
}

# go_tool NAME MODULE/CMD VERSION: a tool built from its Go module into $CACHE/bin/NAME-VERSION (once).
go_tool() {
	local name=$1 pkg=$2 version=$3
	local bin=$CACHE/bin/$name-$version
	if [ ! -x "$bin" ]; then
		log "building $name $version from its Go module"
		mkdir -p "$CACHE/bin/.tmp-$name"
		GOBIN=$CACHE/bin/.tmp-$name GOFLAGS="" go install "$pkg@$version" >&2
		mv "$CACHE/bin/.tmp-$name/$name" "$bin" && rmdir "$CACHE/bin/.tmp-$name"
	fi
	echo "$bin"
}

# The PATH dockerd runs with. Not the caller's: the kind-offline kit builds containerd v2's
# containerd-shim-runc-v2 into $LAB/bin-extra, and a dockerd whose PATH holds that directory makes
# its own containerd (1.6) start that shim, which speaks another protocol: every `docker run` then
# fails with "failed to start shim". node-image.sh starts dockerd with exactly that PATH.
DOCKERD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ensure_docker: a running dockerd fit for kind nodes. The kit's 00-host-docker.sh installs Debian's
# docker.io if needed, registers the runc shim that privileged kind nodes need on hosts without
# CAP_SYS_RESOURCE, and starts dockerd (its pid in $LAB/dockerd.pid); it is run with DOCKERD_PATH. A
# dockerd the kit started earlier with the kit's directories on its PATH is restarted (only that one).
ensure_docker() {
	local pidfile=$LAB/dockerd.pid pid
	if [ -f "$pidfile" ] && pid=$(cat "$pidfile") && kill -0 "$pid" 2>/dev/null &&
		tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q "^PATH=.*$LAB/bin"; then
		log "restarting the kit's dockerd (pid $pid): its PATH holds $LAB/bin-extra"
		kill "$pid"
		local _
		for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
	fi
	if docker info 2>/dev/null | grep -qi 'default runtime: runc-nosysres'; then
		return
	fi
	if [ -x "$KIND_OFFLINE/00-host-docker.sh" ]; then
		env PATH="$DOCKERD_PATH:$(dirname "$(command -v go)")" LAB="$LAB" "$KIND_OFFLINE/00-host-docker.sh" >&2
	elif ! docker info >/dev/null 2>&1; then
		fail "no running Docker engine, and no kind-offline kit to start one (looked beside the checkout and its origin; set KIND_OFFLINE)"
	fi
	local info
	info=$(docker info 2>&1) || fail "Docker cannot run here, and the kind test needs it (it does not skip): $(tail -n 3 <<<"$info")"
}

# find_kind_offline: the kind-offline kit's directory. It lives beside the project's checkout
# (../shared/kind-offline); a clone made elsewhere (CI's `git clone . /tmp/ci`) finds it beside the
# repository it was cloned from. Prints nothing when there is none.
find_kind_offline() {
	local origin dir
	for dir in "$ROOT/../shared/kind-offline" \
		"$(origin=$(git -C "$ROOT" config --get remote.origin.url 2>/dev/null) && [ -d "$origin" ] && echo "$origin/../shared/kind-offline")"; do
		if [ -n "$dir" ] && [ -x "$dir/node-image.sh" ]; then
			(cd "$dir" && pwd)
			return
		fi
	done
}

# node_image: the kind node image to run. $KIND_NODE_IMAGE if set (e.g. kind's published kindest/node on a
# machine that reaches a registry), else the kind-offline kit's locally built image, loaded from its cache
# or built (about 20 minutes cold, 14 GB of disk).
node_image() {
	if [ -n "${KIND_NODE_IMAGE:-}" ]; then
		echo "$KIND_NODE_IMAGE"
		return
	fi
	[ -x "$KIND_OFFLINE/node-image.sh" ] || fail "set KIND_NODE_IMAGE, or provide the kind-offline kit (KIND_OFFLINE=..., looked beside the checkout and its origin)"
	LAB=$LAB "$KIND_OFFLINE/node-image.sh" | tail -n 1
}

# kind_config IMAGE: the cluster configuration. kind's published images bring their own CNI (kindnet); the
# locally built one ships a static bridge CNI config instead, since kindnet's image cannot be pulled.
kind_config() {
	local image=$1
	cat <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
  image: $image
kubeadmConfigPatches:
- |
  kind: KubeletConfiguration
  failCgroupV1: false
EOF
	case $image in
	kindest/node:* | */kindest/node:*) ;;
	*) printf 'networking:\n  disableDefaultCNI: true\n' ;;
	esac
}
