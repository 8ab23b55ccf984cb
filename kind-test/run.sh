#!/usr/bin/env bash
# podipc end to end on a kind cluster (docs/e2e.md): builds the images, creates a cluster, installs the
# Helm chart, runs an annotated pod whose producer and consumer talk over a shared-memory channel and a
# message queue, and checks injection, channel readiness, message flow, metrics, live channel changes
# and a consumer restart. Tears everything down on exit; on failure, first prints what a user needs to
# debug it.
#
# Env: KIND_NODE_IMAGE (default: the kind-offline kit's locally built image), CLUSTER (podipc-e2e),
# IMAGE_TAG (e2e), KEEP_CLUSTER=1 (leave the cluster running), SKIP_IMAGES=1 (use images already built),
# KIND_OFFLINE (the kit, default ../shared/kind-offline beside this checkout or the one it was cloned from), HELM, KIND, KUBECTL (tools; built if absent).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/kind-test
# shellcheck source=lib.sh
source "$HERE/lib.sh"

CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podipc}
KIND_OFFLINE=${KIND_OFFLINE:-$(find_kind_offline)}
LAB=${LAB:-$CACHE/kind-offline}
CLUSTER=${CLUSTER:-podipc-e2e}
TAG=${IMAGE_TAG:-e2e}
RELEASE=podipc
SYSTEM_NS=podipc-system
APP_NS=podipc-e2e
APP_POD=app
PLAIN_POD=plain
# The previous release, built from git history: the chart is first installed from it and an example pod
# runs its sidecar; then the chart is upgraded to this tree and that pod must keep working while the new
# controller rewrites its configuration (docs/upgrades.md). Bump it to the last release's commit on every
# release.
PREVIOUS_REF=${PREVIOUS_REF:-1a20c2214290880aaec5361384dde9f0cff5ab31}
PREVIOUS_TAG=$TAG-previous
OLD_POD=app-previous
NODE=$CLUSTER-control-plane
KIND_VERSION=v0.33.0
HELM_VERSION=v3.22.0
export PATH=/usr/local/go/bin:$PATH

WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig
CLUSTER_CREATED=""

k() { "$KUBECTL" "$@"; }
ka() { k -n "$APP_NS" "$@"; }
ks() { k -n "$SYSTEM_NS" "$@"; }

# diagnose prints the state a user needs to understand a failure.
diagnose() {
	set +e
	echo "================ diagnostics ================"
	k get nodes -o wide
	k get pods -A -o wide
	echo "---- events (last 80)"
	k get events -A --sort-by=.lastTimestamp | tail -n 80
	echo "---- helm"
	"$HELM" status "$RELEASE" -n "$SYSTEM_NS"
	echo "---- injector"
	ks describe deployment,pods -l app.kubernetes.io/component=injector
	ks logs -l app.kubernetes.io/component=injector --all-containers --prefix --tail=200
	echo "---- webhook configuration"
	k get mutatingwebhookconfiguration "$RELEASE" -o yaml | sed 's/caBundle: .*/caBundle: <elided>/'
	echo "---- channels"
	ka get ipcchannels -o yaml
	echo "---- application pods"
	ka describe pods
	local pod c
	for pod in $(ka get pods -o name); do
		echo "---- $pod: annotations and logs"
		ka get "$pod" -o jsonpath='{.metadata.annotations}{"\n"}'
		ka logs "$pod" --all-containers --prefix --tail=200
		for c in $(ka get "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}'); do
			ka logs "$pod" -c "$c" --previous --prefix --tail=100 2>/dev/null
		done
	done
	echo "---- sidecar metrics"
	scrape
	echo "============================================="
}

cleanup() {
	local rc=$?
	set +e
	if [ "$rc" != 0 ] && [ -n "$CLUSTER_CREATED" ]; then diagnose >&2; fi
	if [ -n "$CLUSTER_CREATED" ] && [ -z "${KEEP_CLUSTER:-}" ]; then
		log "deleting cluster $CLUSTER"
		"$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1
	elif [ -n "$CLUSTER_CREATED" ]; then
		log "keeping cluster $CLUSTER (KEEP_CLUSTER set): export KUBECONFIG=$CACHE/kind-$CLUSTER.kubeconfig"
		cp "$KUBECONFIG" "$CACHE/kind-$CLUSTER.kubeconfig"
	fi
	rm -rf "$WORK"
	phase_report
	if [ "$rc" = 0 ]; then echo "e2e: 1 passed, 0 failed"; else echo "e2e: 0 passed, 1 failed"; fi
	exit "$rc"
}
trap cleanup EXIT

# ---- metrics of the app pod's sidecar, through the API server's pod proxy --------------------------
METRICS=""
# scrape [POD]: the metrics of POD's sidecar (default: the app pod's).
scrape() { k get --raw "/api/v1/namespaces/$APP_NS/pods/${1:-$APP_POD}:9464/proxy/metrics"; }
refresh_metrics() { METRICS=$(scrape); }
# metric NAME [LABEL_MATCH...]: the sum of the samples of NAME whose labels contain every LABEL_MATCH
# (such as 'channel="frames"'; 0 if none). Prometheus sorts labels, so each is matched on its own.
metric() {
	local name=$1
	shift
	awk -v name="$name" -v wants="$*" '
		BEGIN { n = split(wants, want, " ") }
		index($0, name "{") == 1 || $1 == name {
			for (i = 1; i <= n; i++) if (index($1, want[i]) == 0) next
			sum += $NF; found = 1
		}
		END { printf "%d\n", found ? sum : 0 }' <<<"$METRICS"
}
# The predicates below refresh the metrics first. wait_for runs them in a subshell, so a caller that
# reads metric values after a wait_for refreshes them itself.
# metric_gt NAME MIN [LABEL_MATCH...]: true when the metric exceeds MIN.
metric_gt() {
	local name=$1 min=$2
	shift 2
	refresh_metrics && (($(metric "$name" "$@") > min))
}
# has_series NAME [LABEL_MATCH...] and lacks_series: whether a sample of NAME has all the labels.
series_present() {
	local name=$1
	shift
	grep "^$name{" <<<"$METRICS" | awk -v wants="$*" '
		BEGIN { n = split(wants, want, " ") }
		{ for (i = 1; i <= n; i++) if (index($1, want[i]) == 0) next; found = 1 }
		END { exit !found }'
}
has_series() { refresh_metrics && series_present "$@"; }
lacks_series() { refresh_metrics && ! series_present "$@"; }
# The same about the previous release's pod.
old_has_series() { METRICS=$(scrape "$OLD_POD") && series_present "$@"; }
old_lacks_series() { METRICS=$(scrape "$OLD_POD") && ! series_present "$@"; }

jsonpath() { ka get "$1" -o "jsonpath=$2"; }

# =========================================================================================================
phase "tools"
command -v go >/dev/null || fail "go is not on PATH"
ensure_docker
KIND=${KIND:-}
if [ -z "$KIND" ]; then
	if [ -x "$LAB/bin-extra/kind" ]; then KIND=$LAB/bin-extra/kind; else KIND=$(go_tool kind sigs.k8s.io/kind "$KIND_VERSION"); fi
fi
HELM=${HELM:-$(go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION")}
KUBECTL=${KUBECTL:-}
if [ -z "$KUBECTL" ] && [ -x "$LAB/bin/kubectl" ]; then KUBECTL=$LAB/bin/kubectl; fi
if [ -z "$KUBECTL" ]; then KUBECTL=$(command -v kubectl || true); fi

phase "node image"
IMAGE=$(node_image)
log "node image $IMAGE"

phase "images"
if [ -z "${SKIP_IMAGES:-}" ]; then
	make -C "$ROOT" --no-print-directory images IMAGE_TAG="$TAG" >&2
fi

phase "previous release"
if ! git -C "$ROOT" cat-file -e "$PREVIOUS_REF^{commit}" 2>/dev/null && [ "$(git -C "$ROOT" rev-parse --is-shallow-repository)" = true ]; then
	log "this clone is shallow: fetching its history for the previous release $PREVIOUS_REF"
	git -C "$ROOT" fetch --quiet --unshallow >&2 || true
fi
git -C "$ROOT" cat-file -e "$PREVIOUS_REF^{commit}" 2>/dev/null ||
	fail "the previous release $PREVIOUS_REF is not in this clone's history (a shallow clone? git fetch --unshallow, or set PREVIOUS_REF)"
mkdir "$WORK/previous"
git -C "$ROOT" archive "$PREVIOUS_REF" | tar -x -C "$WORK/previous"
if [ -z "${SKIP_IMAGES:-}" ] || ! docker image inspect "podipc-sidecar:$PREVIOUS_TAG" >/dev/null 2>&1; then
	make -C "$WORK/previous" --no-print-directory images IMAGE_TAG="$PREVIOUS_TAG" >&2
fi
log "previous release $(git -C "$ROOT" log -1 --format='%h %cs %s' "$PREVIOUS_REF")"

phase "cluster"
kind_config "$IMAGE" >"$WORK/kind.yaml"
"$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
CLUSTER_CREATED=1
"$KIND" create cluster --name "$CLUSTER" --config "$WORK/kind.yaml" --kubeconfig "$KUBECONFIG" --wait 180s >&2
if [ -z "$KUBECTL" ]; then # the node's own kubectl, through docker exec, reading manifests from stdin
	KUBECTL=$WORK/kubectl
	printf '#!/bin/sh\nexec docker exec -i %s kubectl --kubeconfig /etc/kubernetes/admin.conf "$@"\n' "$NODE" >"$KUBECTL"
	chmod +x "$KUBECTL"
fi
k version >&2

phase "load images"
"$KIND" load docker-image --name "$CLUSTER" "podipc-sidecar:$TAG" "podipc-injector:$TAG" "podipc-examples:$TAG" \
	"podipc-sidecar:$PREVIOUS_TAG" "podipc-injector:$PREVIOUS_TAG" "podipc-examples:$PREVIOUS_TAG" >&2

phase "helm install (previous release)"
"$HELM" install "$RELEASE" "$WORK/previous/charts/podipc" --namespace "$SYSTEM_NS" --create-namespace \
	--values "$WORK/previous/kind-test/values-e2e.yaml" --set injector.image.tag="$PREVIOUS_TAG" \
	--set sidecar.image.tag="$PREVIOUS_TAG" --wait --timeout 5m >&2
ca_bundle_set() { [ -n "$(k get mutatingwebhookconfiguration "$RELEASE" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]; }
wait_for "the injector wrote the CA into the webhook configuration" 120 ca_bundle_set

phase "a pod of the previous release"
k create namespace "$APP_NS" >&2
ka apply -f - <"$WORK/previous/kind-test/manifests/channels.yaml" >&2
# The previous release's app pod, renamed: the same labels, so every channel that selects the app pod
# selects it too.
pause_image=$(docker exec "$NODE" crictl images | awk '$1 ~ /\/pause$/ { print $1 ":" $2; exit }' | grep .) ||
	fail "the node has no pause image"
sed -n '/^---$/q;p' "$WORK/previous/kind-test/manifests/pods.yaml" |
	sed "s#:E2E_TAG#:$PREVIOUS_TAG#g; s#E2E_PAUSE_IMAGE#$pause_image#g; s#^  name: app\$#  name: $OLD_POD#" >"$WORK/old-pod.yaml"
apply_old_pod() { ka apply -f - <"$WORK/old-pod.yaml"; }
wait_for "the API server admits the previous release's pod" 60 apply_old_pod
ka wait --for=condition=Ready pod/"$OLD_POD" --timeout=180s >&2
old_sidecar_image() { jsonpath "pod/$OLD_POD" '{.spec.initContainers[?(@.name=="podipc-sidecar")].image}'; }
[ "$(old_sidecar_image)" = "podipc-sidecar:$PREVIOUS_TAG" ] || fail "pod $OLD_POD runs sidecar $(old_sidecar_image), not the previous release's"

phase "helm upgrade to this tree"
"$HELM" upgrade "$RELEASE" "$ROOT/charts/podipc" --namespace "$SYSTEM_NS" \
	--values "$HERE/values-e2e.yaml" --set injector.image.tag="$TAG" --set sidecar.image.tag="$TAG" \
	--wait --timeout 5m >&2
wait_for "the injector wrote the CA into the webhook configuration" 120 ca_bundle_set
[ "$(ks get deployment "$RELEASE-injector" -o jsonpath='{.spec.template.spec.containers[0].image}')" = "podipc-injector:$TAG" ] ||
	fail "the upgrade did not roll the injector to podipc-injector:$TAG"
ks get pods -o wide >&2

phase "channels and pods"
ka apply -f - <"$HERE/manifests/channels.yaml" >&2
# The app pod may be refused while the webhook's endpoints settle: retry until admitted.
sed "s#:E2E_TAG#:$TAG#g; s#E2E_PAUSE_IMAGE#$pause_image#g" "$HERE/manifests/pods.yaml" >"$WORK/pods.yaml"
apply_pods() { ka apply -f - <"$WORK/pods.yaml"; }
wait_for "the API server admits the example pods" 60 apply_pods

phase "injection"
[ "$(jsonpath "pod/$APP_POD" '{.spec.initContainers[?(@.name=="podipc-sidecar")].restartPolicy}')" = Always ] ||
	fail "pod $APP_POD has no native sidecar podipc-sidecar (init container with restartPolicy Always)"
[ "$(jsonpath "pod/$APP_POD" '{.spec.volumes[?(@.name=="podipc")].emptyDir.medium}')" = Memory ] ||
	fail "pod $APP_POD has no memory-backed podipc volume"
for c in producer consumer; do
	jsonpath "pod/$APP_POD" "{.spec.containers[?(@.name==\"$c\")].volumeMounts[*].mountPath}" | grep -qw /var/run/podipc ||
		fail "container $c does not mount the tmpfs at /var/run/podipc"
	jsonpath "pod/$APP_POD" "{.spec.containers[?(@.name==\"$c\")].env[?(@.name==\"PODIPC_DIR\")].value}" | grep -qx /var/run/podipc ||
		fail "container $c has no PODIPC_DIR"
done
[ "$(jsonpath "pod/$APP_POD" '{.metadata.labels.podipc\.io/injected}')" = true ] || fail "pod $APP_POD is not labelled injected"
sidecar='{.spec.initContainers[?(@.name=="podipc-sidecar")]'
[ "$(jsonpath "pod/$APP_POD" "$sidecar.securityContext.readOnlyRootFilesystem}/$sidecar.securityContext.runAsNonRoot}/$sidecar.securityContext.capabilities.drop[*]}")" = true/true/ALL ] ||
	fail "the sidecar is not hardened (read-only root, non-root, all capabilities dropped)"
# The only thing at the token path in the sidecar must be the injector's empty
# podipc-no-token volume (the ServiceAccount admission plugin then adds none).
token_mounts=$(jsonpath "pod/$APP_POD" "$sidecar.volumeMounts[?(@.mountPath==\"/var/run/secrets/kubernetes.io/serviceaccount\")].name}")
[ "$token_mounts" = podipc-no-token ] ||
	fail "the sidecar mounts a service account token ($token_mounts); it must need no Kubernetes credentials"
[ -z "$(jsonpath "pod/$PLAIN_POD" '{.spec.initContainers[*].name}{.spec.volumes[?(@.name=="podipc")].name}')" ] ||
	fail "the unannotated pod $PLAIN_POD was injected"
[ -z "$(jsonpath "pod/$PLAIN_POD" '{.metadata.annotations.podipc\.io/status}')" ] || fail "the unannotated pod $PLAIN_POD has a podipc status"
log "injected: $APP_POD has the native sidecar and the tmpfs; $PLAIN_POD is untouched"
[ "$(jsonpath "pod/$APP_POD" "$sidecar.image}")" = "podipc-sidecar:$TAG" ] || fail "pod $APP_POD was not given this tree's sidecar"
[ "$(old_sidecar_image)" = "podipc-sidecar:$PREVIOUS_TAG" ] || fail "the upgrade changed pod $OLD_POD's sidecar"

phase "channels ready"
ka wait --for=condition=Ready pod/"$APP_POD" --timeout=180s >&2
ka wait --for=condition=Ready ipcchannel/frames ipcchannel/jobs --timeout=120s >&2
both_count_ready() { [ "$(ka get ipcchannel frames jobs -o jsonpath='{.items[*].status.readyPods}')" = "2 2" ]; }
wait_for "both channels count the app pod and the previous release's pod ready" 60 both_count_ready

phase "messages flow"
wait_for "messages flow over the shared-memory channel" 60 metric_gt podipc_shm_received_messages_total 100 'channel="frames"'
wait_for "messages flow over the message queue" 60 metric_gt podipc_mq_acked_messages_total 100 'queue="jobs"'
consumer_counts() {
	local out
	out=$(ka logs "$APP_POD" -c consumer) &&
		grep -Eq 'shm frames +Queue +[1-9][0-9]* msg/s' <<<"$out" && grep -Eq 'mq  jobs +[1-9][0-9]* msg/s' <<<"$out"
}
wait_for "the consumer counts messages from both channels in its output" 30 consumer_counts
refresh_metrics
log "shm frames: sent $(metric podipc_shm_sent_messages_total 'channel="frames"') received $(metric podipc_shm_received_messages_total 'channel="frames"');" \
	"mq jobs: enqueued $(metric podipc_mq_enqueued_messages_total 'queue="jobs"') acked $(metric podipc_mq_acked_messages_total 'queue="jobs"')"

phase "metrics"
refresh_metrics
for ch in frames jobs; do
	(($(metric podipc_channel_state "channel=\"$ch\"" 'state="Ready"') == 1)) || fail "the sidecar does not report channel $ch Ready"
done
(($(metric podipc_config_applied) == 1)) || fail "the sidecar reports its configuration not applied"
(($(metric podipc_shm_peers 'channel="frames"') >= 2)) || fail "frames has fewer than 2 live peers"

phase "consumer restart"
# Stop the consumer's container (SIGKILL, through the node's CRI) while the producer keeps sending: the
# kubelet restarts it, messages delivered but not acknowledged are redelivered, and none is lost.
restarts_before=$(jsonpath "pod/$APP_POD" '{.status.containerStatuses[?(@.name=="consumer")].restartCount}')
pod_id=$(docker exec "$NODE" crictl pods -q --namespace "$APP_NS" --name "^$APP_POD\$" --state Ready)
container_id=$(docker exec "$NODE" crictl ps -q --pod "$pod_id" --name '^consumer$')
[ -n "$container_id" ] || fail "no running consumer container found through crictl"
docker exec "$NODE" crictl stop --timeout 0 "$container_id" >&2
consumer_restarted() {
	[ "$(jsonpath "pod/$APP_POD" '{.status.containerStatuses[?(@.name=="consumer")].restartCount}')" -gt "$restarts_before" ] &&
		[ "$(jsonpath "pod/$APP_POD" '{.status.containerStatuses[?(@.name=="consumer")].ready}')" = true ]
}
wait_for "the kubelet restarted the consumer and it is ready" 120 consumer_restarted
# The producer sends for a bounded time; once it is done and the queue is drained (nothing waiting, nothing
# delivered and unacknowledged) with nothing dropped, dead-lettered, expired or rejected, every message
# enqueued was acknowledged: the restart lost none.
producer_done() { ka logs "$APP_POD" -c producer | grep -q 'producer: sent'; }
wait_for "the producer finished sending" 300 producer_done
drained() {
	refresh_metrics &&
		(($(metric podipc_mq_depth 'queue="jobs"') == 0 && $(metric podipc_mq_in_flight 'queue="jobs"') == 0))
}
wait_for "the queue drains" 120 drained
refresh_metrics
enqueued=$(metric podipc_mq_enqueued_messages_total 'queue="jobs"')
acked=$(metric podipc_mq_acked_messages_total 'queue="jobs"')
lost=0
for m in dropped dead_lettered expired rejected; do lost=$((lost + $(metric "podipc_mq_${m}_messages_total" 'queue="jobs"'))); done
log "jobs after the restart: enqueued $enqueued acked $acked redelivered $(metric podipc_mq_redelivered_messages_total 'queue="jobs"') lost $lost"
((enqueued > 0 && acked >= enqueued && lost == 0)) || fail "messages were lost across the consumer restart: enqueued $enqueued, acked $acked, dropped/dead/expired/rejected $lost"
phase "channel added later"
ka apply -f - <"$HERE/manifests/late-channel.yaml" >&2
late_in_annotation() { jsonpath "pod/$APP_POD" '{.metadata.annotations.podipc\.io/config}' | grep -q late; }
wait_for "the new channel reaches the pod's annotation" 60 late_in_annotation
# The kubelet refreshes the projected file within its sync period (about a minute, worst case two).
wait_for "the sidecar serves the new channel" 180 metric_gt podipc_channel_state 0 'channel="late"' 'state="Ready"'
ka wait --for=condition=Ready ipcchannel/late --timeout=60s >&2
# Version skew: this tree's controller wrote the configuration of the pod that runs the previous sidecar.
old_late_in_annotation() { jsonpath "pod/$OLD_POD" '{.metadata.annotations.podipc\.io/config}' | grep -q late; }
wait_for "the new channel reaches the previous release's pod" 60 old_late_in_annotation
wait_for "the previous release's sidecar serves the new channel" 180 old_has_series podipc_channel_state 'channel="late"' 'state="Ready"'
METRICS=$(scrape "$OLD_POD")
(($(metric podipc_config_applied) == 1)) || fail "the previous release's sidecar did not apply the configuration this tree's controller wrote"
(($(jsonpath "pod/$OLD_POD" '{.status.initContainerStatuses[?(@.name=="podipc-sidecar")].restartCount}') == 0)) ||
	fail "the previous release's sidecar restarted"

phase "channel removed later"
ka delete ipcchannel late --wait=true >&2
late_gone_from_annotation() {
	local config
	config=$(jsonpath "pod/$APP_POD" '{.metadata.annotations.podipc\.io/config}') && grep -q frames <<<"$config" && ! grep -q late <<<"$config"
}
wait_for "the deleted channel leaves the pod's annotation" 60 late_gone_from_annotation
wait_for "the sidecar removes the deleted channel" 180 lacks_series podipc_channel_declared 'channel="late"'
wait_for "the previous release's sidecar removes the deleted channel" 180 old_lacks_series podipc_channel_declared 'channel="late"'

phase "scenarios (go test -tags e2e)"
# The scenarios written as Go tests (test/e2e): each is a named test against this cluster.
E2E_NODE=$NODE E2E_IMAGE_TAG=$TAG E2E_PAUSE_IMAGE=$pause_image E2E_SYSTEM_NS=$SYSTEM_NS E2E_RELEASE=$RELEASE \
	E2E_APP_NS=$APP_NS go -C "$ROOT" test -tags e2e -count=1 -timeout 20m -v ${E2E_RUN:+-run "$E2E_RUN"} ./test/e2e >&2 ||
	fail "an end-to-end scenario failed (its message is above)"

phase "helm upgrade"
# An upgrade that changes the injector's pod template rolls it (maxUnavailable 0). Helm's three-way merge
# must leave alone what the injector wrote at run time: the Secret's certificates and the caBundle.
secret=$(ks get deployment "$RELEASE-injector" -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -o -- '--cert-secret-name=[^"]*' | cut -d= -f2)
ca_before=$(k get mutatingwebhookconfiguration "$RELEASE" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')
"$HELM" upgrade "$RELEASE" "$ROOT/charts/podipc" --namespace "$SYSTEM_NS" --reuse-values \
	--set injector.logLevel=info --wait --timeout 5m >&2
[ -n "$(ks get secret "$secret" -o jsonpath='{.data.tls\.crt}')" ] || fail "the upgrade emptied the webhook Secret $secret"
[ "$(k get mutatingwebhookconfiguration "$RELEASE" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" = "$ca_before" ] ||
	fail "the upgrade changed or removed the webhook's caBundle"
# The upgraded injector still injects (a server-side dry run goes through the webhook and stores nothing).
injects_after_upgrade() {
	sed -n '/^---$/q;p' "$WORK/pods.yaml" | sed 's/^  name: app$/  name: app-upgrade-check/' |
		ka create --dry-run=server -f - -o jsonpath='{.spec.initContainers[*].name}' | grep -qw podipc-sidecar
}
wait_for "the upgraded injector injects" 60 injects_after_upgrade

phase "uninstall"
ka delete pod "$APP_POD" "$PLAIN_POD" "$OLD_POD" --wait=true --timeout=60s >&2
"$HELM" uninstall "$RELEASE" --namespace "$SYSTEM_NS" --wait --timeout 2m >&2
k get crd ipcchannels.podipc.io >/dev/null || fail "uninstall deleted the IPCChannel CRD (crds.keep)"
! k get mutatingwebhookconfiguration "$RELEASE" >/dev/null 2>&1 || fail "uninstall left the webhook configuration"
log "e2e passed"
