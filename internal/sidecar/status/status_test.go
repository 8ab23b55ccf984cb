package status

import (
	"math"
	"strings"
	"testing"
)

func TestQuantileInterpolatesLikePrometheus(t *testing.T) {
	h := Histogram{
		Buckets: []Bucket{{UpperBound: 0.001, Count: 50}, {UpperBound: 0.002, Count: 90}, {UpperBound: 0.004, Count: 100}},
		Count:   100,
	}
	for _, c := range []struct{ q, want float64 }{
		{0.5, 0.001},    // the 50th observation closes the first bucket
		{0.25, 0.0005},  // half-way through the first bucket
		{0.7, 0.0015},   // half-way through the second
		{0.95, 0.003},   // half-way through the third
		{0.999, 0.0040}, // at the top
	} {
		if got := h.Quantile(c.q); math.Abs(got-c.want) > 1e-4 {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (&Histogram{}).Quantile(0.5); got != 0 {
		t.Errorf("empty histogram quantile = %v", got)
	}
	// Observations above the last bound report the last bound.
	over := Histogram{Buckets: []Bucket{{UpperBound: 1, Count: 1}}, Count: 10}
	if got := over.Quantile(0.99); got != 1 {
		t.Errorf("quantile in +Inf bucket = %v", got)
	}
}

func TestNotReady(t *testing.T) {
	snap := Snapshot{
		Config: Config{Applied: true, Generation: 2},
		Channels: []Channel{
			{Name: "a", Type: "SharedMemory", Declared: true, State: StateReady},
			{Name: "b", Type: "SharedMemory", Declared: true, State: StateFailed, Message: "channel b needs 10 bytes, tmpfs has 5 free"},
			{Name: "c", Type: "MessageQueue", Declared: false, State: StateRemoving},
		},
	}
	got := snap.NotReady()
	if len(got) != 1 || got[0] != "SharedMemory b: Failed: channel b needs 10 bytes, tmpfs has 5 free" {
		t.Errorf("NotReady = %q", got)
	}
	snap.Config = Config{Applied: false, Error: "bad yaml", Generation: 2}
	snap.Channels = snap.Channels[:1]
	if got := snap.NotReady(); len(got) != 1 || !strings.Contains(got[0], "bad yaml") {
		t.Errorf("NotReady with a config error = %q", got)
	}
}

// A broker at its connection limit refuses new clients: the sidecar is not
// ready, and says why.
func TestNotReadyAtConnectionLimit(t *testing.T) {
	snap := Snapshot{Config: Config{Applied: true}, Broker: &Broker{Connections: 1023, MaxConnections: 1024}}
	if got := snap.NotReady(); len(got) != 0 {
		t.Errorf("NotReady below the limit = %q", got)
	}
	snap.Broker.Connections = 1024
	if got := snap.NotReady(); len(got) != 1 || !strings.Contains(got[0], "connection limit (1024 of 1024)") {
		t.Errorf("NotReady at the limit = %q", got)
	}
}
