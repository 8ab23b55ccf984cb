package shm

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestBroadcastEverySubscriberSeesEveryMessageInOrder(t *testing.T) {
	c := newTestChannel(t, Options{Mode: ModeBroadcast, SlotSize: 64, SlotCount: 8})
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewProducer(); !errors.Is(err, ErrProducerExists) {
		t.Fatalf("second broadcast producer = %v, want ErrProducerExists", err)
	}
	if _, err := c.NewConsumer(); !errors.Is(err, ErrWrongMode) {
		t.Fatalf("NewConsumer on broadcast = %v, want ErrWrongMode", err)
	}
	const subs, total = 3, 3000
	ctx := testCtx(t, 60*time.Second)
	var wg sync.WaitGroup
	for s := 0; s < subs; s++ {
		sub, err := c.Subscribe(WithWait(WaitStrategy(s % 3)))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for want := uint64(0); want < total; want++ {
				var data []byte
				if want%2 == 0 {
					n, err := sub.Recv(ctx, buf)
					if err != nil {
						t.Errorf("sub %d: Recv %d: %v", s, want, err)
						return
					}
					data = buf[:n]
				} else {
					m, err := sub.Borrow(ctx)
					if err != nil {
						t.Errorf("sub %d: Borrow %d: %v", s, want, err)
						return
					}
					data = append(buf[:0], m.Bytes()...)
					if err := m.Release(); err != nil {
						t.Errorf("sub %d: Release: %v", s, err)
						return
					}
				}
				if id, ok := decodeMsg(data); !ok || id != want {
					t.Errorf("sub %d: message %d: got %d ok=%v", s, want, id, ok)
					return
				}
			}
		}()
	}
	buf := make([]byte, 64)
	for i := uint64(0); i < total; i++ {
		if err := p.Send(ctx, encodeMsg(buf, i, msgSize(i, 64))); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	wg.Wait()
	st := c.Stats()
	if st.Sent != total || st.Received != subs*total || st.Lost != 0 || st.Subscribers != subs || st.Producers != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestBroadcastBlockWaitsForSlowestAndFailReportsFull(t *testing.T) {
	for _, ov := range []Overflow{OverflowBlock, OverflowFail} {
		c := newTestChannel(t, Options{Mode: ModeBroadcast, SlotSize: 8, SlotCount: 4, Overflow: ov})
		p, _ := c.NewProducer()
		fast, _ := c.Subscribe()
		slow, _ := c.Subscribe()
		buf := make([]byte, 8)
		for i := 0; i < 4; i++ {
			if err := p.TrySend([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			if _, err := fast.TryRecv(buf); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.TrySend([]byte{4}); !errors.Is(err, ErrFull) {
			t.Fatalf("%v: TrySend with a subscriber a ring behind = %v, want ErrFull", ov, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := p.Send(ctx, []byte{4})
		cancel()
		want := error(context.DeadlineExceeded)
		if ov == OverflowFail {
			want = ErrFull
		}
		if !errors.Is(err, want) {
			t.Fatalf("%v: Send with a subscriber a ring behind = %v, want %v", ov, err, want)
		}
		if n, err := slow.TryRecv(buf); err != nil || buf[0] != 0 || n != 1 {
			t.Fatalf("%v: slow subscriber lost its oldest message: %v %v", ov, err, buf[:n])
		}
		if err := p.TrySend([]byte{4}); err != nil {
			t.Fatalf("%v: TrySend after the slowest read one: %v", ov, err)
		}
		// A subscriber that leaves stops holding the producer back.
		if err := slow.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := fast.TryRecv(buf); err != nil {
			t.Fatal(err)
		}
		for i := 5; i < 9; i++ {
			if err := p.TrySend([]byte{byte(i)}); err != nil {
				t.Fatalf("%v: TrySend %d after the slow subscriber left: %v", ov, i, err)
			}
		}
	}
}

func TestBroadcastOverwriteLapsSlowSubscriber(t *testing.T) {
	c := newTestChannel(t, Options{Mode: ModeBroadcast, SlotSize: 16, SlotCount: 8, Overflow: OverflowOverwrite})
	p, _ := c.NewProducer()
	sub, _ := c.Subscribe()
	ctx := testCtx(t, 10*time.Second)
	buf := make([]byte, 16)
	for i := uint64(0); i < 20; i++ {
		if err := p.Send(ctx, encodeMsg(buf, i, 16)); err != nil {
			t.Fatalf("overwrite Send %d: %v", i, err)
		}
	}
	// Tail is 20 and the ring holds 8: positions 0..12 are gone (12 is
	// the oldest the producer could be rewriting), 13..19 remain.
	_, err := sub.Recv(ctx, buf)
	var lapped *LappedError
	if !errors.As(err, &lapped) || !errors.Is(err, ErrLapped) || lapped.Lost != 13 {
		t.Fatalf("Recv of a lapped subscriber = %v, want LappedError{Lost: 13}", err)
	}
	for want := uint64(13); want < 20; want++ {
		n, err := sub.Recv(ctx, buf)
		if err != nil {
			t.Fatalf("Recv %d after lapping: %v", want, err)
		}
		if id, ok := decodeMsg(buf[:n]); !ok || id != want {
			t.Fatalf("after lapping got %d ok=%v, want %d", id, ok, want)
		}
	}
	// A borrow overwritten before Release is reported on Release.
	if err := p.Send(ctx, encodeMsg(buf, 20, 16)); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Borrow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(21); i < 30; i++ {
		if err := p.Send(ctx, encodeMsg(buf, i, 16)); err != nil {
			t.Fatal(err)
		}
	}
	relErr := m.Release()
	if !errors.Is(relErr, ErrLapped) || errLost(relErr) != 3 {
		t.Fatalf("Release of an overwritten borrow = %v, want LappedError{Lost: 3}", relErr)
	}
	if st := c.Stats(); st.Lost != lapped.Lost+3 || st.Sent != 30 {
		t.Fatalf("stats = %+v, want Lost %d", st, lapped.Lost+3)
	}
}

func errLost(err error) uint64 {
	var l *LappedError
	if errors.As(err, &l) {
		return l.Lost
	}
	return 0
}

func TestBroadcastSubscriberStartsAtTail(t *testing.T) {
	c := newTestChannel(t, Options{Mode: ModeBroadcast, SlotSize: 8, SlotCount: 4})
	p, _ := c.NewProducer()
	if err := p.TrySend([]byte("old")); err != nil {
		t.Fatal(err)
	}
	sub, _ := c.Subscribe()
	if _, err := sub.TryRecv(make([]byte, 8)); !errors.Is(err, ErrEmpty) {
		t.Fatalf("new subscriber got an old message: %v", err)
	}
	if err := p.TrySend([]byte("new")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := sub.TryRecv(buf); err != nil || string(buf[:n]) != "new" {
		t.Fatalf("TryRecv = %q, %v", buf[:n], err)
	}
}
