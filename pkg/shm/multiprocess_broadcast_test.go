package shm

import (
	"math/rand"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
)

// TestMultiProcessBroadcast runs subscriber processes against a producer
// process that is SIGKILLed and replaced midway, plus a subscriber that is
// killed and respawned over and over. With OverflowBlock the stable
// subscribers must see every position exactly once, in order, intact, and
// the dead subscribers must not stall the producer. With OverflowOverwrite
// they must see positions in order with gaps exactly as large as the
// LappedError they were told about.
func TestMultiProcessBroadcast(t *testing.T) {
	for _, ov := range []Overflow{OverflowBlock, OverflowOverwrite} {
		t.Run(ov.String(), func(t *testing.T) { testMultiProcessBroadcast(t, ov) })
	}
}

func testMultiProcessBroadcast(t *testing.T, ov Overflow) {
	const stable = 3
	total := uint64(scale(100_000, 20_000))
	c := newTestChannel(t, Options{Mode: ModeBroadcast, SlotSize: 128, SlotCount: 64, Overflow: ov})
	fam := newFamily(t, c)
	var subs []*child
	for i := 0; i < stable; i++ {
		subs = append(subs, fam.spawn("subscriber", i, total))
	}
	testkit.EventuallyTrue(t, 30*time.Second, "subscribers to register", func() bool { return c.Stats().Subscribers == stable })
	victim := fam.spawn("subscriber", stable, 0)
	producer := fam.spawn("producer", 0, total)

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	producerKilled := false
	for !producer.exited() {
		// Kill after a random amount of progress.
		awaitProgress(t, c, uint64(1+rng.Intn(3000)), producer.exited)
		if producer.exited() {
			break
		}
		if !producerKilled && loadTail(c) > total/3 {
			producer.kill()
			producerKilled = true
			producer = fam.spawn("producer", 0, total)
			continue
		}
		victim.kill()
		victim = fam.spawn("subscriber", stable, 0)
	}
	producer.wait(t, 60*time.Second)
	for _, s := range subs {
		s.wait(t, 60*time.Second)
	}
	victim.stop(t, 30*time.Second)
	if !producerKilled {
		t.Log("the producer finished before it could be killed")
	}

	for _, s := range subs {
		recs := s.records(t)
		if len(recs) == 0 || recs[0] != 0 {
			t.Fatalf("subscriber %d started at %v, want 0", s.index, recs[:min(1, len(recs))])
		}
		next, lost := uint64(0), uint64(0)
		for _, r := range recs[1:] {
			if r&lapMarker != 0 {
				if ov == OverflowBlock {
					t.Fatalf("subscriber %d lapped at %d in block mode", s.index, next)
				}
				next += r &^ lapMarker
				lost += r &^ lapMarker
				continue
			}
			if r != next {
				t.Fatalf("subscriber %d: got position %d, want %d", s.index, r, next)
			}
			next++
		}
		if next != total {
			t.Fatalf("subscriber %d ended at %d, want %d", s.index, next, total)
		}
		t.Logf("subscriber %d: %d messages, %d lost to lapping", s.index, total-lost, lost)
	}
	// Victims must also have seen a gapless, in-order stream from their
	// start position (lapping aside).
	for _, v := range fam.all {
		if v.role != "subscriber" || v.index != stable {
			continue
		}
		recs := v.records(t)
		if len(recs) == 0 {
			continue
		}
		next := recs[0]
		for _, r := range recs[1:] {
			if r&lapMarker != 0 {
				next += r &^ lapMarker
				continue
			}
			if r != next {
				t.Fatalf("victim #%d: got position %d, want %d", v.inst, r, next)
			}
			next++
		}
	}
	st := c.Stats()
	t.Logf("stats: sent %d, received %d, lost %d, reaped %d", st.Sent, st.Received, st.Lost, st.Reaped)
}
