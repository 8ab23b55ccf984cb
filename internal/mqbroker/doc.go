// Package mqbroker is podipc's message-queue broker: it runs inside the
// pod's sidecar and serves named queues over a Unix domain socket on the
// pod's tmpfs to the clients in the pod's containers (package mq, or any
// client of docs/mq-protocol.md).
//
// Queues are configured with QueueConfig values (Broker.Apply), which the
// sidecar maps from IPCChannel resources and re-applies whenever they
// change. Queues are bounded in depth, waiting bytes and in-flight bytes,
// with a per-queue overflow policy; a queue with Persistence Volume writes
// its messages to a journal (internal/mqjournal) so that they survive a
// broker restart. Each connection's hostile or runaway behaviour is bounded
// (pending sends and bytes, consumers, frame size, handshake time) and ends
// that connection only.
package mqbroker
