package mqbroker

import (
	"math/rand/v2"
	"testing"
)

// TestFlight: settlements in any order find exactly the unsettled
// deliveries, and the ring neither loses live entries nor grows without
// bound while deliveries come and go.
func TestFlight(t *testing.T) {
	var f flight
	rng := rand.New(rand.NewPCG(1, 2))
	live := map[uint64]*message{}
	tag := uint64(100)
	const first = 100
	f.push(first, &message{id: first})
	live[first] = f.msgs[0]
	for round := range 50_000 {
		if len(live) < 64 && rng.IntN(2) == 0 {
			tag += 1 + uint64(rng.IntN(3)) // tags are shared by all consumers: gaps
			m := &message{id: tag}
			f.push(tag, m)
			live[tag] = m
			continue
		}
		// Settle the oldest most of the time, any other one sometimes,
		// and never the first: it stays unsettled throughout.
		var pick uint64
		for t := range live {
			if t != first && (pick == 0 || (rng.IntN(4) != 0 && t < pick)) {
				pick = t
			}
		}
		if pick == 0 {
			continue
		}
		if got := f.get(pick); got != live[pick] {
			t.Fatalf("round %d: get(%d) = %v, want %v", round, pick, got, live[pick])
		}
		f.remove(pick)
		delete(live, pick)
		if f.get(pick) != nil {
			t.Fatalf("round %d: %d still found after remove", round, pick)
		}
		if f.get(tag+1) != nil {
			t.Fatalf("round %d: found a tag never pushed", round)
		}
		if n := len(f.tags) - f.head; n < len(live) || cap(f.tags) > 256 {
			t.Fatalf("round %d: %d entries from %d for %d live", round, n, len(f.tags), len(live))
		}
	}
	for tg, m := range live {
		if f.get(tg) != m {
			t.Fatalf("live delivery %d lost", tg)
		}
	}
}
