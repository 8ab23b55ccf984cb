package shm

import (
	"math/rand"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
)

// TestMultiProcessQueueExactlyOnce: 3 producer and 3 consumer processes;
// every message is delivered exactly once and intact.
func TestMultiProcessQueueExactlyOnce(t *testing.T) {
	const producers, consumers = 3, 3
	total := scale(200_000, 30_000)
	perProducer := uint64(total / producers)
	c := newTestChannel(t, Options{SlotSize: 256, SlotCount: 1024})
	fam := newFamily(t, c)
	var cons, prods []*child
	for i := 0; i < consumers; i++ {
		cons = append(cons, fam.spawn("consumer", i, 0))
	}
	start := time.Now()
	for i := 0; i < producers; i++ {
		prods = append(prods, fam.spawn("producer", i, perProducer))
	}
	for _, p := range prods {
		p.wait(t, 90*time.Second)
	}
	want := int(perProducer) * producers
	received := func() int {
		n := 0
		for _, q := range cons {
			n += len(q.records(t))
		}
		return n
	}
	testkit.EventuallyTrue(t, 60*time.Second, "consumers to receive every message", func() bool { return received() >= want })
	elapsed := time.Since(start)
	for _, q := range cons {
		q.stop(t, 30*time.Second)
	}

	seen := make(map[uint64]int, want)
	for _, q := range cons {
		for _, id := range q.records(t) {
			seen[id]++
		}
	}
	for _, p := range prods {
		for _, id := range p.records(t) {
			if seen[id] != 1 {
				t.Fatalf("message %#x delivered %d times, want exactly once", id, seen[id])
			}
			delete(seen, id)
		}
	}
	if len(seen) != 0 {
		t.Fatalf("%d messages received that no producer committed", len(seen))
	}
	st := c.Stats()
	if st.Sent != uint64(want) || st.Received != uint64(want) || st.Redelivered != 0 || st.Depth != 0 || st.Repaired != 0 {
		t.Fatalf("stats = %+v", st)
	}
	t.Logf("%d messages through %d producer and %d consumer processes in %v (%.0f msg/s)",
		want, producers, consumers, elapsed.Round(time.Millisecond), float64(want)/elapsed.Seconds())
}

// TestMultiProcessQueueSIGKILL kills producers and consumers at random
// while traffic flows and respawns them. Every committed message must be
// delivered at least once, intact; a message may be delivered twice only if
// a consumer was killed holding it (it recorded it, then died before
// Release).
func TestMultiProcessQueueSIGKILL(t *testing.T) {
	const producers, consumers = 2, 3
	c := newTestChannel(t, Options{SlotSize: 128, SlotCount: 64})
	fam := newFamily(t, c)
	live := map[string][]*child{}
	for i := 0; i < consumers; i++ {
		// Even-indexed consumers Borrow, record, then Release: a copying
		// Recv killed after it released but before the test recorded the
		// message would look like a loss the channel did not cause.
		live["consumer"] = append(live["consumer"], fam.spawn("consumer", 2*i, 0))
	}
	for i := 0; i < producers; i++ {
		live["producer"] = append(live["producer"], fam.spawn("producer", i, 0))
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills := 0
	chaosFor := time.Duration(scale(6, 4)) * time.Second
	for deadline := time.Now().Add(chaosFor); time.Now().Before(deadline); {
		// Kill after a random amount of progress: the channel must keep
		// moving through every kill.
		awaitProgress(t, c, uint64(1+rng.Intn(4000)), func() bool { return false })
		role := "consumer"
		if rng.Intn(2) == 0 {
			role = "producer"
		}
		i := rng.Intn(len(live[role]))
		victim := live[role][i]
		if victim.exited() {
			t.Fatalf("%s #%d exited on its own: %v", role, victim.inst, victim.status())
		}
		victim.kill()
		kills++
		live[role][i] = fam.spawn(role, victim.index, 0)
	}
	for _, p := range live["producer"] {
		p.stop(t, 30*time.Second)
	}

	committed := map[uint64]bool{}
	lastSeq := map[uint64]uint64{} // producer instance -> highest recorded sequence
	killedProducer := map[uint64]bool{}
	for _, ch := range fam.all {
		if ch.role != "producer" {
			continue
		}
		killedProducer[ch.inst] = ch.killed
		for _, id := range ch.records(t) {
			committed[id] = true
			if id&0xffffffff >= lastSeq[ch.inst] {
				lastSeq[ch.inst] = id & 0xffffffff
			}
		}
	}
	var missing func() int
	receivedAll := func() bool { return missing() == 0 }
	missing = func() int {
		got := map[uint64]bool{}
		for _, ch := range fam.all {
			if ch.role == "consumer" {
				for _, id := range ch.records(t) {
					got[id] = true
				}
			}
		}
		n := 0
		for id := range committed {
			if !got[id] {
				n++
			}
		}
		return n
	}
	// Consumers killed while holding a message leave it for redelivery;
	// the test plays the sidecar and reaps dead peers while it waits.
	drainDeadline := time.Now().Add(60 * time.Second)
	for !receivedAll() {
		if _, err := c.ReapDeadPeers(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(drainDeadline) {
			t.Fatalf("committed messages never delivered: %d missing\n%s", missing(), dumpRing(c))
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronization
	}
	for _, q := range live["consumer"] {
		q.stop(t, 30*time.Second)
	}
	for _, ch := range fam.all {
		if err := ch.status(); !ch.killed && err != nil {
			t.Fatalf("%s #%d failed: %v", ch.role, ch.inst, err)
		}
	}

	// Check every receipt.
	receipts := map[uint64]int{}
	excused := map[uint64]int{} // duplicates explained by a consumer killed holding the message
	for _, ch := range fam.all {
		if ch.role != "consumer" {
			continue
		}
		recs := ch.records(t)
		for j, id := range recs {
			receipts[id]++
			if ch.killed && j == len(recs)-1 {
				excused[id]++
			}
			inst, seq := id>>32, id&0xffffffff
			limit, known := lastSeq[inst]
			if killedProducer[inst] {
				limit++ // committed, then killed before recording it
			}
			if _, isProducer := killedProducer[inst]; !isProducer || (known && seq > limit) || (!known && seq > 0) {
				t.Fatalf("received id %#x that no producer could have committed", id)
			}
		}
	}
	dups := 0
	for id, n := range receipts {
		if n > 1 {
			dups += n - 1
			if n-1 > excused[id] {
				t.Fatalf("message %#x delivered %d times but only %d consumers died holding it", id, n, excused[id])
			}
		}
	}
	st := c.Stats()
	if st.Producers != 0 || st.Consumers != 0 {
		t.Fatalf("peers still registered after every child exited: %+v", st)
	}
	if st.Repaired != 0 {
		t.Fatalf("%d slot words taken for foreign in a ring only SIGKILL disturbed: %+v", st.Repaired, st)
	}
	t.Logf("%d kills; %d messages committed, %d receipts, %d duplicates; stats: redelivered %d, abandoned %d, reaped %d",
		kills, len(committed), sum(receipts), dups, st.Redelivered, st.Abandoned, st.Reaped)
	if len(committed) == 0 {
		t.Fatal("no traffic flowed")
	}
}

func sum(m map[uint64]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
