// Package metrics exports the sidecar's channels as Prometheus metrics. The
// collector takes a status.Snapshot at scrape time, which reads the
// shared-memory headers and the broker's counters then: the data path keeps
// no metric of its own and pays nothing for being observed.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/podipc/podipc/internal/sidecar/status"
)

// Namespace prefixes every metric name.
const Namespace = "podipc"

// Source takes a snapshot of the sidecar's state.
type Source func() status.Snapshot

// Collector is a prometheus.Collector over a Source.
type Collector struct {
	source Source
}

// NewCollector returns a collector that takes one snapshot from source per
// scrape.
func NewCollector(source Source) *Collector { return &Collector{source: source} }

// NewRegistry returns a registry holding a Collector over source and the
// standard Go runtime and process collectors.
func NewRegistry(source Source) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(source),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

// The metrics. docs/sidecar.md lists them; keep the two in step.
var (
	configApplied = desc("config_applied",
		"1 if the configuration file's current contents are applied, 0 if they could not be read or are invalid (the last valid configuration keeps running).")
	configGeneration = desc("config_generation",
		"Number of distinct valid configurations applied since the sidecar started.")
	configAppliedTime = desc("config_last_applied_timestamp_seconds",
		"Unix time at which the running configuration was applied.")
	configErrors = desc("config_errors_total",
		"Configuration file contents that could not be read or were invalid.")
	reconciles = desc("reconciles_total",
		"Reconciliation passes, by result: success when every declared channel reached its declared state.", "result")
	reapedPeers = desc("reaped_peers_total",
		"Dead shared-memory peers the sidecar recovered.")
	channelState = desc("channel_state",
		"1 for the state each channel is in (Pending, Ready, Blocked, Removing, Failed), 0 for the others.", "channel", "type", "state")
	channelDeclared = desc("channel_declared",
		"1 if the running configuration declares the channel, 0 if it is kept only until its users detach.", "channel", "type")

	shmDepth = desc("shm_depth",
		"Messages in the ring not yet taken (Queue) or not yet read by the slowest subscriber (Broadcast).", "channel")
	shmCapacity = desc("shm_capacity_slots",
		"Slots in the ring.", "channel")
	shmSlotSize = desc("shm_slot_size_bytes",
		"Largest message the channel carries.", "channel")
	shmFileSize = desc("shm_file_bytes",
		"Size of the channel file on the tmpfs.", "channel")
	shmSent = desc("shm_sent_messages_total",
		"Messages committed by producers over the channel file's life.", "channel")
	shmReceived = desc("shm_received_messages_total",
		"Messages taken by consumers or read by subscribers, redeliveries included.", "channel")
	shmLost = desc("shm_lost_messages_total",
		"Messages Broadcast subscribers lost to being lapped (dropped).", "channel")
	shmRedelivered = desc("shm_redelivered_messages_total",
		"Messages delivered again after their consumer died holding them.", "channel")
	shmAbandoned = desc("shm_abandoned_slots_total",
		"Reservations aborted, or left uncommitted by a producer that died.", "channel")
	shmRepaired = desc("shm_repaired_slots_total",
		"Queue slots whose state word no healthy ring can hold, reset and their position skipped: a participant wrote garbage.", "channel")
	shmReaped = desc("shm_reaped_peers_total",
		"Dead peers recovered on the channel, by anyone.", "channel")
	shmPeers = desc("shm_peers",
		"Live registered peers, by role (producer, consumer, subscriber).", "channel", "role")
	shmDeadPeers = desc("shm_dead_peers",
		"Registrations whose process is gone and which nobody has recovered yet.", "channel")

	mqDepth = desc("mq_depth",
		"Messages waiting for delivery.", "queue")
	mqBytes = desc("mq_bytes",
		"Body bytes of the messages waiting for delivery.", "queue")
	mqInFlight = desc("mq_in_flight",
		"Messages delivered and not yet acknowledged.", "queue")
	mqInFlightBytes = desc("mq_in_flight_bytes",
		"Body bytes of the messages delivered and not yet acknowledged; deliveries pause at maxBytes.", "queue")
	mqCapacity = desc("mq_capacity_messages",
		"Most messages the queue holds (maxDepth).", "queue")
	mqCapacityBytes = desc("mq_capacity_bytes",
		"Most body bytes the queue holds (maxBytes).", "queue")
	mqConsumers = desc("mq_consumers",
		"Attached consumers.", "queue")
	mqBlockedSends = desc("mq_blocked_sends",
		"Sends waiting for room in a full queue.", "queue")
	mqJournal = desc("mq_journal_bytes",
		"Size of the queue's journal (persistence Volume).", "queue")
	mqJournalRefused = desc("mq_journal_refused",
		"1 if the journal found when the queue was created was refused (another user could have written it) and set aside, so the queue started empty.", "queue")
	mqEnqueued = desc("mq_enqueued_messages_total",
		"Messages accepted from producers (sent).", "queue")
	mqDelivered = desc("mq_delivered_messages_total",
		"Deliveries to consumers, redeliveries included.", "queue")
	mqAcked = desc("mq_acked_messages_total",
		"Messages acknowledged (received), or handed out for AtMostOnce queues.", "queue")
	mqRedelivered = desc("mq_redelivered_messages_total",
		"Deliveries of a message delivered before.", "queue")
	mqDeadLettered = desc("mq_dead_lettered_messages_total",
		"Messages moved to the dead-letter queue, or discarded as dead without one.", "queue")
	mqDropped = desc("mq_dropped_messages_total",
		"Messages discarded by the DropOldest overflow policy or a full dead-letter queue.", "queue")
	mqExpired = desc("mq_expired_messages_total",
		"Messages whose time to live passed before delivery.", "queue")
	mqRejected = desc("mq_rejected_messages_total",
		"Sends refused because the queue was full.", "queue")
	mqRecovered = desc("mq_recovered_messages_total",
		"Messages restored from the journal when the sidecar started.", "queue")
	mqAckLatency = desc("mq_ack_latency_seconds",
		"Time from enqueue to acknowledgement (to delivery, for AtMostOnce queues).", "queue")

	mqConnections = desc("mq_connections",
		"Open broker connections, handshakes included.")
	mqConnectionsLimit = desc("mq_connections_limit",
		"Most broker connections; /readyz fails at it.")
	mqPeerConnections = desc("mq_peer_connections",
		"Broker connections of each peer UID (SO_PEERCRED), for the UIDs connected now.", "uid")
	mqPeerConnectionsLimit = desc("mq_peer_connections_limit",
		"Most broker connections of one peer UID.")
	mqBlockedSendBytes = desc("mq_blocked_send_bytes",
		"Body bytes of the sends waiting for room in full Block queues, all queues and connections.")
	mqBlockedSendBytesLimit = desc("mq_blocked_send_bytes_limit",
		"Most body bytes of blocked sends; a send past it fails at once with queue full.")
)

var allDescs = []*prometheus.Desc{
	configApplied, configGeneration, configAppliedTime, configErrors, reconciles, reapedPeers, channelState, channelDeclared,
	shmDepth, shmCapacity, shmSlotSize, shmFileSize, shmSent, shmReceived, shmLost, shmRedelivered, shmAbandoned, shmRepaired, shmReaped, shmPeers, shmDeadPeers,
	mqDepth, mqBytes, mqInFlight, mqInFlightBytes, mqCapacity, mqCapacityBytes, mqConsumers, mqBlockedSends, mqJournal, mqJournalRefused,
	mqEnqueued, mqDelivered, mqAcked, mqRedelivered, mqDeadLettered, mqDropped, mqExpired, mqRejected, mqRecovered, mqAckLatency,
	mqConnections, mqConnectionsLimit, mqPeerConnections, mqPeerConnectionsLimit, mqBlockedSendBytes, mqBlockedSendBytesLimit,
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.source()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	gauge(configApplied, boolValue(snap.Config.Applied))
	gauge(configGeneration, float64(snap.Config.Generation))
	if !snap.Config.AppliedAt.IsZero() {
		gauge(configAppliedTime, float64(snap.Config.AppliedAt.UnixNano())/1e9)
	}
	counter(configErrors, snap.Counters.ConfigErrors)
	counter(reconciles, snap.Counters.ReconcileSuccesses, "success")
	counter(reconciles, snap.Counters.ReconcileFailures, "error")
	counter(reapedPeers, snap.Counters.ReapedPeers)

	for i := range snap.Channels {
		cs := &snap.Channels[i]
		typ := string(cs.Type)
		for _, s := range status.States {
			gauge(channelState, boolValue(cs.State == s), cs.Name, typ, string(s))
		}
		gauge(channelDeclared, boolValue(cs.Declared), cs.Name, typ)
		if s := cs.SharedMemory; s != nil {
			collectShm(gauge, counter, cs.Name, s)
		}
		if q := cs.MessageQueue; q != nil {
			collectQueue(ch, gauge, counter, cs.Name, q)
		}
	}
	if b := snap.Broker; b != nil {
		collectBroker(gauge, b)
	}
}

func collectBroker(gauge gaugeFunc, b *status.Broker) {
	gauge(mqConnections, float64(b.Connections))
	gauge(mqConnectionsLimit, float64(b.MaxConnections))
	for uid, n := range b.ConnectionsByUID {
		gauge(mqPeerConnections, float64(n), strconv.FormatUint(uint64(uid), 10))
	}
	gauge(mqPeerConnectionsLimit, float64(b.MaxConnectionsPerUID))
	gauge(mqBlockedSendBytes, float64(b.BlockedSendBytes))
	gauge(mqBlockedSendBytesLimit, float64(b.MaxBlockedSendBytes))
}

type (
	gaugeFunc   func(d *prometheus.Desc, v float64, labels ...string)
	counterFunc func(d *prometheus.Desc, v uint64, labels ...string)
)

func collectShm(gauge gaugeFunc, counter counterFunc, name string, s *status.SharedMemory) {
	gauge(shmDepth, float64(s.Depth), name)
	gauge(shmCapacity, float64(s.SlotCount), name)
	gauge(shmSlotSize, float64(s.SlotSize), name)
	gauge(shmFileSize, float64(s.FileBytes), name)
	counter(shmSent, s.Sent, name)
	counter(shmReceived, s.Received, name)
	counter(shmLost, s.Lost, name)
	counter(shmRedelivered, s.Redelivered, name)
	counter(shmAbandoned, s.Abandoned, name)
	counter(shmRepaired, s.Repaired, name)
	counter(shmReaped, s.ReapedPeers, name)
	gauge(shmDeadPeers, float64(s.DeadPeers), name)
	for role, n := range s.Peers {
		gauge(shmPeers, float64(n), name, role)
	}
}

func collectQueue(ch chan<- prometheus.Metric, gauge gaugeFunc, counter counterFunc, name string, q *status.MessageQueue) {
	gauge(mqDepth, float64(q.Depth), name)
	gauge(mqBytes, float64(q.Bytes), name)
	gauge(mqInFlight, float64(q.InFlight), name)
	gauge(mqInFlightBytes, float64(q.InFlightBytes), name)
	gauge(mqCapacity, float64(q.MaxDepth), name)
	gauge(mqCapacityBytes, float64(q.MaxBytes), name)
	gauge(mqConsumers, float64(q.Consumers), name)
	gauge(mqBlockedSends, float64(q.BlockedSends), name)
	gauge(mqJournal, float64(q.JournalBytes), name)
	refused := 0.0
	if q.JournalRefused != "" {
		refused = 1
	}
	gauge(mqJournalRefused, refused, name)
	counter(mqEnqueued, q.Enqueued, name)
	counter(mqDelivered, q.Delivered, name)
	counter(mqAcked, q.Acked, name)
	counter(mqRedelivered, q.Redelivered, name)
	counter(mqDeadLettered, q.DeadLettered, name)
	counter(mqDropped, q.Dropped, name)
	counter(mqExpired, q.Expired, name)
	counter(mqRejected, q.Rejected, name)
	counter(mqRecovered, q.Recovered, name)
	buckets := make(map[float64]uint64, len(q.AckLatency.Buckets))
	for _, b := range q.AckLatency.Buckets {
		buckets[b.UpperBound] = b.Count
	}
	ch <- prometheus.MustNewConstHistogram(mqAckLatency, q.AckLatency.Count, q.AckLatency.SumSeconds, buckets, name)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
