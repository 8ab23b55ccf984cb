// Package mq is the Go client of podipc's message queues.
//
// The queues are served by the broker in the pod's sidecar over a Unix
// domain socket on the pod's tmpfs ($PODIPC_MQ_SOCKET; see package
// podcontract). Applications in the pod's containers Dial it and exchange
// messages with Client.Send, Client.Consume and Delivery.Ack. The wire
// protocol is documented in docs/mq-protocol.md so that clients in other
// languages can be written against it; this package links neither the
// broker nor its journal.
//
// A queue delivers at least once (consumers acknowledge; unacknowledged
// messages are redelivered after the queue's ack timeout, on Nack, or when
// the consumer's connection closes, and dead-lettered after the queue's
// maximum redeliveries) or at most once (delivery is acknowledgement), as
// its IPCChannel declares. Messages carry a priority from 0 (lowest) to
// MaxPriority, are delivered FIFO within a priority, and may expire. A send
// returns once the broker has queued the message and, for a queue with
// persistence Volume, written it to the queue's journal. A client whose
// connection is lost reconnects and re-sends what was not confirmed
// (ReconnectPolicy).
//
// The tests of this package run the client against a real broker
// (internal/mqbroker), in process and in separate processes.
package mq
