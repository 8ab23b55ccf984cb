package shm

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// foreignStates are the states a forged word can carry: the six of the
// protocol and one it does not define.
var foreignStates = []uint32{stFree, stWriting, stFull, stReading, stAbandoned, stRedeliver, 9}

// forgeRing returns a Queue channel whose head and tail have gone round
// the ring twice (so that sequences behind the current lap exist), with a
// producer and a consumer.
func forgeRing(t *testing.T) (*Channel, *Producer, *Consumer) {
	t.Helper()
	c := newTestChannel(t, Options{SlotSize: 64, SlotCount: 8, Overflow: OverflowFail})
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for i := uint64(0); i < 2*8+3; i++ {
		if err := p.TrySend(encodeMsg(buf, 1<<40|i, 16)); err != nil {
			t.Fatal(err)
		}
		if _, err := q.TryRecv(buf); err != nil {
			t.Fatal(err)
		}
	}
	return c, p, q
}

// forge writes w into the state word of the slot of position pos, as a
// participant writing garbage into the file would.
func forge(c *Channel, pos, w uint64) { atomic.StoreUint64(c.slotWord(c.slot(pos)), w) }

// flowsIntact sends count messages one at a time and checks that each comes
// out, intact and in order, and that nothing else does.
func flowsIntact(t *testing.T, c *Channel, p *Producer, q *Consumer, count int) {
	t.Helper()
	buf := make([]byte, 64)
	for i := uint64(0); i < uint64(count); i++ {
		if err := p.TrySend(encodeMsg(buf, i, msgSize(i, 64))); err != nil {
			t.Fatalf("TrySend %d: %v\n%s", i, err, dumpRing(c))
		}
		n, err := q.TryRecv(buf)
		if err != nil {
			t.Fatalf("TryRecv %d: %v\n%s", i, err, dumpRing(c))
		}
		if id, ok := decodeMsg(buf[:n]); !ok || id != i {
			t.Fatalf("TryRecv %d: got %x (id %d, intact %v)", i, buf[:n], id, ok)
		}
	}
	if _, err := q.TryRecv(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryRecv after the last message = %v, want ErrEmpty\n%s", err, dumpRing(c))
	}
}

// TestForeignWordAtTheNextPosition forges, in the slot of the position the
// next send takes, words of every state whose sequence no healthy ring can
// hold there (and one of an unknown state). The producer must repair the
// slot and skip the position, the consumer must never hand it out, the
// ring must keep going with no error, and Stats must count one repair.
func TestForeignWordAtTheNextPosition(t *testing.T) {
	const n = 8
	offsets := []int64{3, -3, 2 * n, -2 * n, 5*n + 1}
	for _, st := range foreignStates {
		for _, off := range offsets {
			t.Run(fmt.Sprintf("state%d/seq%+d", st, off), func(t *testing.T) {
				c, p, q := forgeRing(t)
				pos := loadTail(c)
				forge(c, pos, packSlot(pos+uint64(off), st, 1))
				flowsIntact(t, c, p, q, 3*n)
				if s := c.Stats(); s.Repaired != 1 || s.Sent != s.Received {
					t.Fatalf("stats %+v, want 1 repaired and every sent message received", s)
				}
			})
		}
	}
}

// TestForeignWordOverCommittedMessage forges a word over a committed
// message still in the ring. That message is lost (counted), the ones
// around it are delivered, and the ring goes on.
func TestForeignWordOverCommittedMessage(t *testing.T) {
	for _, st := range foreignStates {
		t.Run(fmt.Sprintf("state%d", st), func(t *testing.T) {
			c, p, q := forgeRing(t)
			buf := make([]byte, 64)
			first := loadTail(c)
			for i := uint64(0); i < 3; i++ {
				if err := p.TrySend(encodeMsg(buf, 100+i, 20)); err != nil {
					t.Fatal(err)
				}
			}
			forge(c, first+1, packSlot(first+1+3, st, 0))
			for _, want := range []uint64{100, 102} {
				n, err := q.TryRecv(buf)
				if err != nil {
					t.Fatalf("TryRecv: %v\n%s", err, dumpRing(c))
				}
				if id, ok := decodeMsg(buf[:n]); !ok || id != want {
					t.Fatalf("got message %d (intact %v), want %d", id, ok, want)
				}
			}
			flowsIntact(t, c, p, q, 3*8)
			if s := c.Stats(); s.Repaired != 1 || s.Received != s.Sent-1 {
				t.Fatalf("stats %+v, want 1 repaired and 1 message lost", s)
			}
		})
	}
}

// TestForeignRedeliverIsNotHandedOut is issue 11: a REDELIVER word whose
// sequence names another slot's position (one a producer holds reserved,
// not committed) and a redelivery generation bumped so that consumers
// scan. The consumer must not hand out the reservation; once it is
// committed it is delivered once, and the ring repairs the forged slot and
// goes on.
func TestForeignRedeliverIsNotHandedOut(t *testing.T) {
	const n = 8
	cases := []struct {
		name string
		word func(reserved uint64) (slot, w uint64)
	}{
		{"another slot's reservation", func(r uint64) (uint64, uint64) { return r + 2, packSlot(r, stRedeliver, 0) }},
		{"a position not produced", func(r uint64) (uint64, uint64) { return r + 3, packSlot(r+3, stRedeliver, 0) }},
		{"a lap ahead", func(r uint64) (uint64, uint64) { return r + 3, packSlot(r+3+n, stRedeliver, 0) }},
		{"two laps behind", func(r uint64) (uint64, uint64) { return r - 1, packSlot(r-1-2*n, stRedeliver, 0) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, p, q := forgeRing(t)
			buf := make([]byte, 64)
			res, err := p.TryReserve()
			if err != nil {
				t.Fatal(err)
			}
			reserved := loadTail(c) - 1
			copy(res.Buf(), "uncommitted")
			slot, w := tc.word(reserved)
			forge(c, slot, w)
			atomic.AddUint64(c.redeliverGen, 1)
			if n, err := q.TryRecv(buf); !errors.Is(err, ErrEmpty) {
				t.Fatalf("TryRecv with a reservation outstanding = %q, %v; want ErrEmpty\n%s", buf[:n], err, dumpRing(c))
			}
			if err := res.Commit(copy(res.Buf(), encodeMsg(buf, 7, 30))); err != nil {
				t.Fatal(err)
			}
			m, err := q.TryRecv(buf)
			if err != nil {
				t.Fatalf("TryRecv after the commit: %v\n%s", err, dumpRing(c))
			}
			if id, ok := decodeMsg(buf[:m]); !ok || id != 7 {
				t.Fatalf("got message %d (intact %v), want the committed 7", id, ok)
			}
			flowsIntact(t, c, p, q, 3*n)
			if s := c.Stats(); s.Repaired != 1 || s.Redelivered != 0 || s.Sent != s.Received {
				t.Fatalf("stats %+v, want 1 repaired, nothing redelivered, nothing lost", s)
			}
		})
	}
}

// TestGenuineRedeliveryIsNotRepaired: the checks let a genuine REDELIVER word (a
// consumer closed holding a message) through.
func TestGenuineRedeliveryIsNotRepaired(t *testing.T) {
	c, p, q := forgeRing(t)
	buf := make([]byte, 64)
	if err := p.TrySend(encodeMsg(buf, 5, 20)); err != nil {
		t.Fatal(err)
	}
	if _, err := q.TryBorrow(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil { // hands the borrowed message back as REDELIVER
		t.Fatal(err)
	}
	q2, err := c.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	n, err := q2.TryRecv(buf)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := decodeMsg(buf[:n]); !ok || id != 5 {
		t.Fatalf("got message %d (intact %v), want 5 again", id, ok)
	}
	flowsIntact(t, c, p, q2, 3*8)
	if s := c.Stats(); s.Repaired != 0 || s.Redelivered != 1 {
		t.Fatalf("stats %+v, want 1 redelivered and none repaired", s)
	}
}
