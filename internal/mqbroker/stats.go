package mqbroker

import (
	"math"
	"time"
)

// QueueStats is a snapshot of one queue's state and counters. Counters are
// cumulative since the queue was created in this broker process.
type QueueStats struct {
	Name string
	// Config is the queue's effective configuration.
	Config QueueConfig

	// Depth is the number of messages waiting for delivery, Bytes their
	// body bytes.
	Depth int
	Bytes int64
	// InFlight is the number of delivered, unacknowledged messages.
	InFlight int
	// InFlightBytes is their body bytes. The queue stops delivering while
	// it is at Config.MaxBytes (the consumers' prefetch notwithstanding).
	InFlightBytes int64
	// Consumers is the number of attached consumers.
	Consumers int
	// BlockedSends is the number of sends waiting for room.
	BlockedSends int
	// JournalBytes is the journal's size (Persistence Volume only).
	JournalBytes int64
	// JournalRefused, if not empty, is why the journal found when the queue
	// was created was not replayed: another user could have written it (or
	// its directory), so it was set aside and the queue started empty.
	JournalRefused string

	Enqueued     uint64 // messages accepted from producers
	Delivered    uint64 // deliveries, including redeliveries
	Acked        uint64 // acknowledged (or auto-acknowledged) messages
	Redelivered  uint64 // deliveries of a message delivered before
	DeadLettered uint64 // messages moved to the dead-letter queue or discarded as dead
	Dropped      uint64 // messages discarded by DropOldest or a full dead-letter queue
	Expired      uint64 // messages whose TTL passed before delivery
	Rejected     uint64 // sends refused because the queue was full
	Recovered    uint64 // messages restored from the journal at start

	// AckLatency is the distribution of the time from enqueue to
	// acknowledgement (to delivery, for AtMostOnce queues).
	AckLatency Histogram
}

// Histogram is a cumulative histogram in the form Prometheus expects.
type Histogram struct {
	// Buckets are cumulative: Buckets[i].Count counts observations
	// <= Buckets[i].UpperBound. The implicit +Inf bucket is Count.
	Buckets []Bucket
	Count   uint64
	Sum     time.Duration
}

// Bucket is one histogram bucket.
type Bucket struct {
	UpperBound time.Duration
	Count      uint64
}

// latencyBounds are the upper bounds of the latency histogram buckets.
var latencyBounds = [...]time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}

// latencyHistogram accumulates observations; the owner synchronizes it.
type latencyHistogram struct {
	counts [len(latencyBounds) + 1]uint64
	count  uint64
	sum    int64
}

func (h *latencyHistogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i]++
	h.count++
	if h.sum < math.MaxInt64-int64(d) {
		h.sum += int64(d)
	}
}

func (h *latencyHistogram) snapshot() Histogram {
	out := Histogram{Buckets: make([]Bucket, len(latencyBounds)), Count: h.count, Sum: time.Duration(h.sum)}
	var cum uint64
	for i, b := range latencyBounds {
		cum += h.counts[i]
		out.Buckets[i] = Bucket{UpperBound: b, Count: cum}
	}
	return out
}
