package shm

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
)

// startHolder starts a child that reserves or borrows and holds it, and
// waits until it has.
func startHolder(t *testing.T, fam *family, role string) *child {
	t.Helper()
	ch := fam.spawn(role, 0, 0)
	testkit.EventuallyTrue(t, 30*time.Second, role+" child to hold its slot", func() bool { return len(ch.records(t)) > 0 })
	return ch
}

// TestDeadProducerMidReserveIsSkipped: a producer killed while it holds a
// reservation never makes anyone read its half-written slot; a blocked
// consumer finds it dead and skips the position.
func TestDeadProducerMidReserveIsSkipped(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 32, SlotCount: 4})
	fam := newFamily(t, c)
	// Register first, so that no registration finds the dead entry: the
	// blocked consumer must.
	p, _ := c.NewProducer()
	q, _ := c.NewConsumer(WithLivenessCheck(10 * time.Millisecond))
	startHolder(t, fam, "reserve-and-hold").kill()
	ctx := testCtx(t, 20*time.Second)
	if err := p.Send(ctx, []byte("after the dead one")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, err := q.Recv(ctx, buf)
	if err != nil || string(buf[:n]) != "after the dead one" {
		t.Fatalf("Recv = %q, %v", buf[:n], err)
	}
	if st := c.Stats(); st.Abandoned != 1 || st.Reaped != 1 || st.DeadPeers != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestDeadConsumerHoldingBorrowIsRedelivered: a consumer killed while it
// borrows a message leaves it for redelivery, found by the reaper.
func TestDeadConsumerHoldingBorrowIsRedelivered(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 32, SlotCount: 4})
	fam := newFamily(t, c)
	p, _ := c.NewProducer()
	if err := p.TrySend([]byte("precious")); err != nil {
		t.Fatal(err)
	}
	q, _ := c.NewConsumer()
	startHolder(t, fam, "borrow-and-hold").kill()
	if st := c.Stats(); st.DeadPeers != 1 {
		t.Fatalf("a killed consumer should show as a dead peer until reaped: %+v", st)
	}
	if _, err := q.TryRecv(make([]byte, 32)); !errors.Is(err, ErrEmpty) {
		t.Fatalf("before reaping, TryRecv = %v, want ErrEmpty", err)
	}
	if n, err := c.ReapDeadPeers(); n != 1 || err != nil {
		t.Fatalf("ReapDeadPeers = %d, %v; want 1", n, err)
	}
	buf := make([]byte, 32)
	n, err := q.Recv(testCtx(t, 10*time.Second), buf)
	if err != nil || string(buf[:n]) != "precious" {
		t.Fatalf("Recv = %q, %v", buf[:n], err)
	}
	if st := c.Stats(); st.Redelivered != 1 || st.DeadPeers != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestBlockedProducerRecoversDeadConsumer: the ring is full and the oldest
// slot is held by a dead consumer; the blocked producer finds it dead, the
// message is redelivered and the producer proceeds.
func TestBlockedProducerRecoversDeadConsumer(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 16, SlotCount: 2})
	fam := newFamily(t, c)
	p, _ := c.NewProducer(WithLivenessCheck(10 * time.Millisecond))
	q, _ := c.NewConsumer()
	if err := p.TrySend([]byte("first")); err != nil {
		t.Fatal(err)
	}
	holder := startHolder(t, fam, "borrow-and-hold") // holds "first"
	if err := p.TrySend([]byte("second")); err != nil {
		t.Fatal(err)
	}
	if err := p.TrySend([]byte("x")); !errors.Is(err, ErrFull) {
		t.Fatalf("TrySend = %v, want ErrFull", err)
	}
	holder.kill()
	ctx := testCtx(t, 20*time.Second)
	sent := make(chan error, 1)
	go func() { sent <- p.Send(ctx, []byte("third")) }()
	var got []string
	buf := make([]byte, 16)
	for len(got) < 3 {
		n, err := q.Recv(ctx, buf)
		if err != nil {
			t.Fatalf("Recv after %v: %v", got, err)
		}
		got = append(got, string(buf[:n]))
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// "first" comes back out of FIFO order, after "second".
	if want := []string{"second", "first", "third"}; !slices.Equal(got, want) {
		t.Fatalf("received %v, want %v", got, want)
	}
	if st := c.Stats(); st.Redelivered != 1 || st.Reaped != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestBroadcastProducerKilledMidWrite: a Broadcast producer killed while it
// holds a reservation blocks no successor and shows subscribers nothing of
// its half-written message; the successor rewrites the same position.
func TestBroadcastProducerKilledMidWrite(t *testing.T) {
	c := newTestChannel(t, Options{Mode: ModeBroadcast, SlotSize: 32, SlotCount: 4})
	fam := newFamily(t, c)
	sub, _ := c.Subscribe()
	holder := startHolder(t, fam, "reserve-and-hold")
	if _, err := c.NewProducer(); !errors.Is(err, ErrProducerExists) {
		t.Fatalf("NewProducer while a live producer holds the channel = %v, want ErrProducerExists", err)
	}
	buf := make([]byte, 32)
	if _, err := sub.TryRecv(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryRecv during the reservation = %v, want ErrEmpty", err)
	}
	holder.kill()
	if _, err := sub.TryRecv(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryRecv after the producer died = %v, want ErrEmpty", err)
	}
	p, err := c.NewProducer()
	if err != nil {
		t.Fatalf("NewProducer after the producer died: %v", err)
	}
	if err := p.TrySend([]byte("whole")); err != nil {
		t.Fatal(err)
	}
	n, err := sub.TryRecv(buf)
	if err != nil || string(buf[:n]) != "whole" || sub.cursor != 1 {
		t.Fatalf("TryRecv = %q, %v at cursor %d; want \"whole\" at position 0", buf[:n], err, sub.cursor)
	}
}

// TestBroadcastBlockedProducerSkipsDeadSubscriber: with OverflowBlock the
// producer waits for the slowest subscriber only while it lives.
func TestBroadcastBlockedProducerSkipsDeadSubscriber(t *testing.T) {
	c := newTestChannel(t, Options{Mode: ModeBroadcast, SlotSize: 16, SlotCount: 2})
	fam := newFamily(t, c)
	p, _ := c.NewProducer(WithLivenessCheck(10 * time.Millisecond))
	stuck := startHolder(t, fam, "borrow-and-hold") // subscribes, never reads
	for i := 0; i < 2; i++ {
		if err := p.TrySend([]byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.TrySend([]byte("m")); !errors.Is(err, ErrFull) {
		t.Fatalf("TrySend with a subscriber a ring behind = %v, want ErrFull", err)
	}
	stuck.kill()
	if err := p.Send(testCtx(t, 20*time.Second), []byte("m")); err != nil {
		t.Fatalf("Send after the slow subscriber died: %v", err)
	}
	if st := c.Stats(); st.Reaped != 1 || st.Subscribers != 0 {
		t.Fatalf("stats = %+v", st)
	}
}
