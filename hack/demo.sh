#!/usr/bin/env bash
# The podipc demo, with no cluster and no containers: the sidecar on a
# temporary tmpfs directory serving examples/channels.yaml, and the example
# producer and consumer applications talking through its shared-memory
# channels and message queues. The consumer prints each channel's throughput
# and latency once a second; then everything is shut down as Kubernetes would
# (SIGTERM) and the sidecar must exit cleanly.
#
#   hack/demo.sh            # or: make demo
#   DEMO_SECONDS=10 RATE=50000 hack/demo.sh
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
SECONDS_TO_RUN=${DEMO_SECONDS:-5}
RATE=${RATE:-20000}       # messages per second to each shared-memory channel
MQ_RATE=${MQ_RATE:-2000}  # messages per second to each queue
CONFIG=${CONFIG:-examples/channels.yaml}
BIN=bin

echo "==> building the sidecar and the example applications"
"$GO" build -o "$BIN/podipc-sidecar" ./cmd/sidecar
"$GO" build -o "$BIN/podipc-example-producer" ./examples/app/producer
"$GO" build -o "$BIN/podipc-example-consumer" ./examples/app/consumer

if dir=$(mktemp -d /dev/shm/podipc-demo-XXXX 2>/dev/null); then
	:
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/podipc-demo-XXXX")
	echo "warning: /dev/shm is not available; using $dir, which may not be a tmpfs (the channels then live on disk)" >&2
fi
log=$(mktemp "${TMPDIR:-/tmp}/podipc-demo-sidecar-XXXX.log")
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$dir"
	rm -f "$log"
}
trap cleanup EXIT

echo "==> starting podipc-sidecar --config $CONFIG --dir $dir"
"$BIN/podipc-sidecar" --config "$CONFIG" --dir "$dir" --metrics-addr 127.0.0.1:0 --log-format text 2>"$log" &
sidecar=$!
pids+=("$sidecar")

addr=""
for _ in $(seq 100); do
	addr=$(sed -n 's/.*msg="sidecar started".* httpAddr=\([^ ]*\).*/\1/p' "$log")
	[[ -n $addr ]] && break
	if ! kill -0 "$sidecar" 2>/dev/null; then
		echo "the sidecar exited:" >&2
		cat "$log" >&2
		exit 1
	fi
	sleep 0.1
done
if [[ -z $addr ]]; then
	echo "the sidecar did not start within 10s:" >&2
	cat "$log" >&2
	exit 1
fi
echo "    serving /readyz and /metrics on http://$addr, broker on $dir/mq.sock"

# The applications find everything through PODIPC_DIR, as in an injected pod,
# and wait for their channels to exist (the sidecar's startup probe does that
# for them in Kubernetes).
export PODIPC_DIR=$dir
echo "==> running the example producer and consumer for ${SECONDS_TO_RUN}s ($RATE msg/s per shm channel, $MQ_RATE msg/s per queue)"
"$BIN/podipc-example-consumer" --duration "$((SECONDS_TO_RUN + 1))s" &
consumer=$!
pids+=("$consumer")
"$BIN/podipc-example-producer" --duration "${SECONDS_TO_RUN}s" --rate "$RATE" --mq-rate "$MQ_RATE" &
producer=$!
pids+=("$producer")

status=0
wait "$producer" || { echo "the producer failed" >&2; status=1; }
wait "$consumer" || { echo "the consumer failed" >&2; status=1; }

echo "==> podipc-sidecar inspect"
"$BIN/podipc-sidecar" inspect --addr "$addr" --dir "$dir" || status=1

echo "==> stopping the sidecar (SIGTERM)"
kill -TERM "$sidecar"
if wait "$sidecar"; then
	grep -E 'msg="(shutting down|shutdown complete)"' "$log" | sed 's/^/    /'
else
	echo "the sidecar did not exit cleanly:" >&2
	cat "$log" >&2
	status=1
fi
pids=()
if [[ $status -eq 0 ]]; then
	echo "==> demo finished: sidecar, producer and consumer all exited cleanly"
fi
exit "$status"
