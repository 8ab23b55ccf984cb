// Package mq is podipc's message-queue broker and its Go client.
//
// The broker (Broker) runs inside the pod's sidecar and serves named queues
// over a Unix domain socket on the pod's tmpfs. Applications in the pod's
// containers use the client (Dial, Client.Send, Client.Consume,
// Delivery.Ack) to exchange messages through it. The wire protocol is
// documented in docs/mq-protocol.md so that clients in other languages can be
// written against it.
//
// Queues are configured with QueueConfig values (Broker.Apply), which the
// sidecar maps from IPCChannel resources and re-applies whenever they change.
// A queue delivers at least once (consumers acknowledge; unacknowledged
// messages are redelivered after AckTimeout, on Nack, or when the consumer's
// connection closes, and dead-lettered after MaxRedeliveries) or at most once
// (delivery is acknowledgement). Messages carry a priority from 0 (lowest) to
// 9, are delivered FIFO within a priority, and may expire. Queues are bounded
// in depth and bytes with a per-queue overflow policy. A send returns once the
// broker has queued the message and, for a queue with Persistence Volume,
// written it to the queue's journal.
package mq
