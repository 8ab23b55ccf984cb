// Package status holds the sidecar's view of its channels at one instant: what
// the reconciler decided about each channel, and the counters read from the
// shared-memory headers and the broker. The metrics collector, the readiness
// check and the /debug/channels endpoint (which `podipc-sidecar inspect`
// reads) all render the same Snapshot, so they never disagree.
package status

import (
	"fmt"
	"time"

	"github.com/podipc/podipc/pkg/channelconfig"
)

// State is where a channel stands in reconciliation.
type State string

// States of a channel.
const (
	// StatePending: declared, not created yet.
	StatePending State = "Pending"
	// StateReady: declared and serving with the declared settings.
	StateReady State = "Ready"
	// StateBlocked: declared with settings that cannot be applied while the
	// channel has live peers (a shared-memory geometry or mode change). The
	// channel keeps serving with its old settings and is recreated once its
	// peers have left.
	StateBlocked State = "Blocked"
	// StateRemoving: no longer declared, kept until its peers have left.
	StateRemoving State = "Removing"
	// StateFailed: declared but could not be created (for example, the
	// tmpfs is too small); retried periodically.
	StateFailed State = "Failed"
)

// States lists every State, in a fixed order (for metrics).
var States = []State{StatePending, StateReady, StateBlocked, StateRemoving, StateFailed}

// Snapshot is the sidecar's state at one instant.
type Snapshot struct {
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// Config describes the configuration file and what of it runs.
	Config Config `json:"config"`
	// Channels are the channels the sidecar manages, sorted by type then
	// name: every declared one and those waiting to be removed.
	Channels []Channel `json:"channels"`
	// Counters are the sidecar's own cumulative counters.
	Counters Counters `json:"counters"`
	// Broker is the message-queue broker's connections and blocked sends,
	// with their bounds; nil without a broker.
	Broker *Broker `json:"broker,omitempty"`
}

// Broker is the broker's bounds that span queues, and their use.
type Broker struct {
	// Connections counts the open connections (handshakes included), at
	// most MaxConnections.
	Connections    int `json:"connections"`
	MaxConnections int `json:"maxConnections"`
	// ConnectionsByUID counts the connections of each peer UID (as the
	// kernel reports it), each at most MaxConnectionsPerUID.
	ConnectionsByUID     map[uint32]int `json:"connectionsByUID,omitempty"`
	MaxConnectionsPerUID int            `json:"maxConnectionsPerUID"`
	// BlockedSendBytes is the body bytes of sends waiting for room in full
	// Block queues, at most MaxBlockedSendBytes.
	BlockedSendBytes    int64 `json:"blockedSendBytes"`
	MaxBlockedSendBytes int64 `json:"maxBlockedSendBytes"`
}

// Config is the state of the configuration file.
type Config struct {
	// Path is the configuration file.
	Path string `json:"path"`
	// Applied is true when the file's current contents are what runs; false
	// while its latest contents could not be read or are invalid (the last
	// valid configuration keeps running) and before any was applied.
	Applied bool `json:"applied"`
	// Error says why the latest contents are not applied.
	Error string `json:"error,omitempty"`
	// Generation counts the distinct valid configurations applied since
	// the sidecar started.
	Generation int64 `json:"generation"`
	// AppliedAt is when the running configuration was applied.
	AppliedAt time.Time `json:"appliedAt,omitzero"`
}

// Counters are cumulative since the sidecar started.
type Counters struct {
	// ConfigErrors counts configuration contents that could not be read or
	// were invalid.
	ConfigErrors uint64 `json:"configErrors"`
	// ReconcileSuccesses and ReconcileFailures count reconciliation passes
	// that did or did not bring every channel to its declared state.
	ReconcileSuccesses uint64 `json:"reconcileSuccesses"`
	ReconcileFailures  uint64 `json:"reconcileFailures"`
	// ReapedPeers counts dead shared-memory peers the sidecar recovered.
	ReapedPeers uint64 `json:"reapedPeers"`
}

// Channel is one channel.
type Channel struct {
	Name string                    `json:"name"`
	Type channelconfig.ChannelType `json:"type"`
	// Declared is whether the running configuration declares it.
	Declared bool  `json:"declared"`
	State    State `json:"state"`
	// Message explains a state other than Ready.
	Message string `json:"message,omitempty"`

	SharedMemory *SharedMemory `json:"sharedMemory,omitempty"`
	MessageQueue *MessageQueue `json:"messageQueue,omitempty"`
}

// Ready reports whether a declared channel serves its declared settings.
func (c *Channel) Ready() bool { return c.State == StateReady }

// SharedMemory is a shared-memory channel as read from its file's header.
// Counters are cumulative over the file's life, across sidecar restarts.
type SharedMemory struct {
	Mode      string `json:"mode"`
	Overflow  string `json:"overflow"`
	SlotSize  int    `json:"slotSize"`
	SlotCount int    `json:"slotCount"`
	MaxPeers  int    `json:"maxPeers"`
	FileBytes int64  `json:"fileBytes"`

	// Depth is the number of messages written and not yet read (Queue), or
	// the unread messages of the slowest subscriber (Broadcast).
	Depth       uint64 `json:"depth"`
	Sent        uint64 `json:"sent"`
	Received    uint64 `json:"received"`
	Lost        uint64 `json:"lost"`
	Redelivered uint64 `json:"redelivered"`
	Abandoned   uint64 `json:"abandoned"`
	// Repaired counts Queue slots whose state word no healthy ring can hold
	// (written by a misbehaving participant), reset and their position
	// skipped (docs/shm-layout.md §2.5).
	Repaired    uint64 `json:"repaired"`
	ReapedPeers uint64 `json:"reapedPeers"`
	// Peers counts the live registered peers by role (producer, consumer,
	// subscriber).
	Peers map[string]int `json:"peers"`
	// DeadPeers counts registrations whose process is gone and which nobody
	// has recovered yet (the sidecar's next resync will).
	DeadPeers int `json:"deadPeers"`
}

// LivePeers is the number of live registered peers.
func (s *SharedMemory) LivePeers() int {
	n := 0
	for _, c := range s.Peers {
		n += c
	}
	return n
}

// MessageQueue is a queue as the broker reports it. Counters are cumulative
// since the queue was created in this sidecar process.
type MessageQueue struct {
	MaxDepth int   `json:"maxDepth"`
	MaxBytes int64 `json:"maxBytes"`
	Depth    int   `json:"depth"`
	Bytes    int64 `json:"bytes"`
	InFlight int   `json:"inFlight"`
	// InFlightBytes is bounded by MaxBytes: deliveries pause there.
	InFlightBytes int64 `json:"inFlightBytes"`
	Consumers     int   `json:"consumers"`
	BlockedSends  int   `json:"blockedSends"`
	JournalBytes  int64 `json:"journalBytes"`
	// JournalRefused, if not empty, is why the journal found at start was
	// not replayed but set aside (another user could have written it): the
	// queue started empty. /readyz lists it without failing.
	JournalRefused string `json:"journalRefused,omitempty"`

	Enqueued     uint64 `json:"enqueued"`
	Delivered    uint64 `json:"delivered"`
	Acked        uint64 `json:"acked"`
	Redelivered  uint64 `json:"redelivered"`
	DeadLettered uint64 `json:"deadLettered"`
	Dropped      uint64 `json:"dropped"`
	Expired      uint64 `json:"expired"`
	Rejected     uint64 `json:"rejected"`
	Recovered    uint64 `json:"recovered"`

	// AckLatency is the distribution of the time from enqueue to
	// acknowledgement (to delivery, for AtMostOnce queues).
	AckLatency Histogram `json:"ackLatency"`
}

// Histogram is a cumulative histogram of durations in seconds.
type Histogram struct {
	// Buckets are cumulative, by increasing upper bound; the +Inf bucket is
	// Count.
	Buckets    []Bucket `json:"buckets"`
	Count      uint64   `json:"count"`
	SumSeconds float64  `json:"sumSeconds"`
}

// Bucket is one histogram bucket: Count observations were at most
// UpperBound seconds.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      uint64  `json:"count"`
}

// Quantile estimates the q-quantile (0 < q < 1) of the histogram in seconds,
// by linear interpolation inside the bucket that holds it, as Prometheus'
// histogram_quantile does. It returns 0 for an empty histogram, and the
// highest bound when the quantile falls in the +Inf bucket.
func (h *Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Buckets) == 0 {
		return 0
	}
	rank := q * float64(h.Count)
	lower, below := 0.0, uint64(0)
	for _, b := range h.Buckets {
		if float64(b.Count) >= rank {
			inBucket := b.Count - below
			if inBucket == 0 {
				return b.UpperBound
			}
			return lower + (b.UpperBound-lower)*(rank-float64(below))/float64(inBucket)
		}
		lower, below = b.UpperBound, b.Count
	}
	return h.Buckets[len(h.Buckets)-1].UpperBound
}

// Warnings lists, one line each, what the sidecar serves despite: the
// message queues whose journal was refused at start (another user could
// have written it) and which started empty. They do not make it unready:
// the queues work, and the application containers a native sidecar gates
// must still start.
func (s Snapshot) Warnings() []string {
	var out []string
	for i := range s.Channels {
		c := &s.Channels[i]
		if c.Declared && c.MessageQueue != nil && c.MessageQueue.JournalRefused != "" {
			out = append(out, string(c.Type)+" "+c.Name+": "+c.MessageQueue.JournalRefused)
		}
	}
	return out
}

// NotReady lists, one line each, why the sidecar is not ready: a
// configuration that is not applied, and every declared channel that is not
// Ready. It is empty when the sidecar is ready.
func (s Snapshot) NotReady() []string {
	var out []string
	if !s.Config.Applied {
		msg := "config: not applied"
		if s.Config.Error != "" {
			msg += ": " + s.Config.Error
		}
		out = append(out, msg)
	}
	if b := s.Broker; b != nil && b.Connections >= b.MaxConnections {
		out = append(out, fmt.Sprintf("broker: at its connection limit (%d of %d): new clients are refused", b.Connections, b.MaxConnections))
	}
	for i := range s.Channels {
		c := &s.Channels[i]
		if !c.Declared || c.Ready() {
			continue
		}
		msg := string(c.Type) + " " + c.Name + ": " + string(c.State)
		if c.Message != "" {
			msg += ": " + c.Message
		}
		out = append(out, msg)
	}
	return out
}
