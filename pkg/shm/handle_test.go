package shm

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// A Reservation kept from an earlier Reserve never acts on a later slot:
// after Commit or Abort every copy of it is stale (Buf nil, ErrNotHeld).
func TestStaleReservationIsNotHeld(t *testing.T) {
	for _, mode := range []Mode{ModeQueue, ModeBroadcast} {
		t.Run(mode.String(), func(t *testing.T) {
			c := newTestChannel(t, Options{Mode: mode, SlotSize: 64, SlotCount: 8})
			ctx := testCtx(t, 10*time.Second)
			p, err := c.NewProducer()
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			first, err := p.Reserve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			kept := first // a copy is the same handle
			if err := first.Commit(copy(first.Buf(), "one")); err != nil {
				t.Fatal(err)
			}
			for name, f := range map[string]func() error{
				"Commit again": func() error { return first.Commit(1) },
				"Abort":        first.Abort,
				"copy Commit":  func() error { return kept.Commit(1) },
			} {
				if err := f(); !errors.Is(err, ErrNotHeld) {
					t.Errorf("%s on a committed reservation: %v, want ErrNotHeld", name, err)
				}
			}
			if kept.Buf() != nil {
				t.Error("Buf of a committed reservation is not nil")
			}
			second, err := p.Reserve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			copy(second.Buf(), "two")
			if err := kept.Commit(3); !errors.Is(err, ErrNotHeld) {
				t.Fatalf("the first handle committed the second slot: %v", err)
			}
			if err := kept.Abort(); !errors.Is(err, ErrNotHeld) {
				t.Fatalf("the first handle aborted the second slot: %v", err)
			}
			if err := second.Commit(3); err != nil {
				t.Fatalf("the second reservation, untouched by the stale handle: %v", err)
			}
			third, err := p.Reserve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := third.Abort(); err != nil {
				t.Fatal(err)
			}
			if err := third.Abort(); !errors.Is(err, ErrNotHeld) {
				t.Errorf("second Abort: %v, want ErrNotHeld", err)
			}
			last, err := p.Reserve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := last.Commit(1); !errors.Is(err, ErrNotHeld) {
				t.Errorf("Commit after the producer's Close: %v, want ErrNotHeld", err)
			}
			if err := (Reservation{}).Commit(0); !errors.Is(err, ErrNotHeld) {
				t.Errorf("Commit of the zero Reservation: %v, want ErrNotHeld", err)
			}
		})
	}
}

// A Message kept from an earlier Borrow never releases a later message.
func TestStaleMessageIsNotHeld(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	p, q := producerConsumer(t)
	for _, m := range []string{"one", "two", "three"} {
		if err := p.Send(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	first, err := q.Borrow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kept := first
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := kept.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Release: %v, want ErrNotHeld", err)
	}
	if kept.Bytes() != nil {
		t.Fatal("Bytes of a released message is not nil")
	}
	second, err := q.Borrow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := kept.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("the first handle released the second message: %v", err)
	}
	if kept.Bytes() != nil {
		t.Fatal("the first handle reads the second message")
	}
	if !bytes.Equal(second.Bytes(), []byte("two")) {
		t.Fatalf("second message %q", second.Bytes())
	}
	if _, err := q.TryBorrow(); !errors.Is(err, ErrOutstanding) {
		t.Fatalf("a borrow while the second is held: %v, want ErrOutstanding", err)
	}
	if err := second.Release(); err != nil {
		t.Fatal(err)
	}
	// A message Recv kept (buffer too small) is the one the next Borrow lends.
	small := make([]byte, 2)
	if _, err := q.TryRecv(small); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Recv into 2 bytes: %v", err)
	}
	third, err := q.TryBorrow()
	if err != nil || string(third.Bytes()) != "three" {
		t.Fatalf("Borrow after a kept Recv: %q, %v", third.Bytes(), err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := third.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release after the consumer's Close: %v, want ErrNotHeld", err)
	}
	if err := (Message{}).Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release of the zero Message: %v, want ErrNotHeld", err)
	}
}

// Handles are values: the zero-copy path allocates nothing.
func TestZeroCopyHandlesAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	ctx := testCtx(t, 10*time.Second)
	p, q := producerConsumer(t)
	allocs := testing.AllocsPerRun(1000, func() {
		r, err := p.Reserve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Commit(copy(r.Buf(), "x")); err != nil {
			t.Fatal(err)
		}
		m, err := q.Borrow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Release(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per reserve/commit/borrow/release, want 0", allocs)
	}
}

// producerConsumer opens a producer and a consumer on a small new queue.
func producerConsumer(t *testing.T) (*Producer, *Consumer) {
	t.Helper()
	c := newTestChannel(t, Options{Mode: ModeQueue, SlotSize: 64, SlotCount: 8})
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	q, err := c.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return p, q
}
