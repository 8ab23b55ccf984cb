package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/pkg/channelconfig"
)

// queueState is what the reconciler knows of the broker's queues. The
// broker itself holds the queues; the reconciler decides which configuration
// it gets.
type queueState struct {
	// declared are the queues the running configuration declares.
	declared map[string]bool
	// applied is the configuration the broker last accepted in full;
	// applyErr is why the last Apply failed (then it is retried).
	applied  []mqbroker.QueueConfig
	applyErr error
	// states remembers each queue's last reported state, to log changes.
	states map[string]status.State
}

// sync gives the broker the declared queues plus the undeclared ones still in
// use, and reports whether every declared queue exists.
func (qs *queueState) sync(ctx context.Context, b *mqbroker.Broker, log *slog.Logger, channels []channelconfig.Channel) bool {
	qs.declared = make(map[string]bool, len(channels))
	want := make([]mqbroker.QueueConfig, 0, len(channels))
	for _, c := range channels {
		qc := queueConfig(c)
		qs.declared[c.Name] = true
		want = append(want, qc.Defaulted())
	}
	stats := b.Stats()
	for _, s := range stats {
		if !qs.declared[s.Name] && queueInUse(s) {
			want = append(want, s.Config)
		}
	}
	// A queue kept for its consumers may name a dead-letter queue that is
	// gone; its dead letters are then dropped.
	names := map[string]bool{}
	for _, c := range want {
		names[c.Name] = true
	}
	for i := range want {
		if want[i].DeadLetterQueue != "" && !names[want[i].DeadLetterQueue] {
			want[i].DeadLetterQueue = ""
		}
	}
	slices.SortFunc(want, func(a, b mqbroker.QueueConfig) int { return cmp.Compare(a.Name, b.Name) })

	if qs.applyErr != nil || !slices.Equal(want, qs.applied) {
		err := b.Apply(ctx, want)
		qs.applyErr = err
		qs.applied = nil
		if err == nil {
			qs.applied = want
		} else {
			log.Error("applying message queue configuration failed", "err", err)
		}
	}
	ok := true
	for _, c := range qs.status(b) {
		if c.Declared && !c.Ready() {
			ok = false
		}
		if qs.states == nil {
			qs.states = map[string]status.State{}
		}
		if prev, seen := qs.states[c.Name]; !seen || prev != c.State {
			qs.states[c.Name] = c.State
			logStateChange(log, "MessageQueue", c.Name, c.State, c.Message)
		}
	}
	for name := range qs.states {
		if !names[name] {
			delete(qs.states, name)
			log.Info("queue removed", "channel", name)
		}
	}
	return ok
}

// queueInUse reports whether an undeclared queue must be kept for now.
func queueInUse(s mqbroker.QueueStats) bool { return s.Consumers > 0 || s.InFlight > 0 }

// status reports every declared queue and every queue the broker still has.
func (qs *queueState) status(b *mqbroker.Broker) []status.Channel {
	var out []status.Channel
	present := map[string]bool{}
	for _, s := range b.Stats() {
		present[s.Name] = true
		c := status.Channel{
			Name:         s.Name,
			Type:         channelconfig.ChannelTypeMessageQueue,
			Declared:     qs.declared[s.Name],
			State:        status.StateReady,
			MessageQueue: queueStatus(s),
		}
		if !c.Declared {
			c.State = status.StateRemoving
			c.Message = fmt.Sprintf("no longer declared; removed once its %d consumers detach and its %d unacknowledged messages settle",
				s.Consumers, s.InFlight)
		}
		out = append(out, c)
	}
	for name := range qs.declared {
		if present[name] {
			continue
		}
		c := status.Channel{Name: name, Type: channelconfig.ChannelTypeMessageQueue, Declared: true, State: status.StatePending}
		if qs.applyErr != nil {
			c.State, c.Message = status.StateFailed, qs.applyErr.Error()
		}
		out = append(out, c)
	}
	return out
}

// queueConfig maps a declared message queue to the broker's configuration.
func queueConfig(c channelconfig.Channel) mqbroker.QueueConfig {
	s := *c.MessageQueue
	s.Default()
	qc := mqbroker.QueueConfig{
		Name:            c.Name,
		MaxDepth:        int(s.MaxDepth),
		MaxBytes:        s.MaxBytes,
		MaxMessageSize:  int(s.MaxMessageSize),
		Delivery:        mqbroker.DeliveryMode(s.Delivery),
		AckTimeout:      s.AckTimeout.Duration,
		DeadLetterQueue: s.DeadLetterQueue,
		Overflow:        mqbroker.Overflow(s.Overflow),
		Persistence:     mqbroker.Persistence(s.Persistence),
		DefaultTTL:      s.DefaultTTL.Duration,
	}
	// The two read maxRedeliveries alike: 0 is no redelivery, -1 no limit.
	qc.MaxRedeliveries = int(*s.MaxRedeliveries)
	if qc.MaxRedeliveries == channelconfig.UnlimitedRedeliveries {
		qc.MaxRedeliveries = mqbroker.UnlimitedRedeliveries
	}
	return qc
}

func queueStatus(s mqbroker.QueueStats) *status.MessageQueue {
	h := status.Histogram{Count: s.AckLatency.Count, SumSeconds: s.AckLatency.Sum.Seconds()}
	for _, b := range s.AckLatency.Buckets {
		h.Buckets = append(h.Buckets, status.Bucket{UpperBound: b.UpperBound.Seconds(), Count: b.Count})
	}
	return &status.MessageQueue{
		MaxDepth:       s.Config.MaxDepth,
		MaxBytes:       s.Config.MaxBytes,
		Depth:          s.Depth,
		Bytes:          s.Bytes,
		InFlight:       s.InFlight,
		InFlightBytes:  s.InFlightBytes,
		Consumers:      s.Consumers,
		BlockedSends:   s.BlockedSends,
		JournalBytes:   s.JournalBytes,
		JournalRefused: s.JournalRefused,
		Enqueued:       s.Enqueued,
		Delivered:      s.Delivered,
		Acked:          s.Acked,
		Redelivered:    s.Redelivered,
		DeadLettered:   s.DeadLettered,
		Dropped:        s.Dropped,
		Expired:        s.Expired,
		Rejected:       s.Rejected,
		Recovered:      s.Recovered,
		AckLatency:     h,
	}
}
