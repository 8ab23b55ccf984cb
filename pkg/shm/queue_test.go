package shm

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
)

func TestQueueFIFOSingleProducerSingleConsumer(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 64, SlotCount: 8})
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 30*time.Second)
	const total = 5000 // many laps of an 8-slot ring
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		buf := make([]byte, 64)
		for i := uint64(0); i < total; i++ {
			if err := p.Send(ctx, encodeMsg(buf, i, msgSize(i, 64))); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	}()
	buf := make([]byte, 64)
	for want := uint64(0); want < total; want++ {
		n, err := q.Recv(ctx, buf)
		if err != nil {
			t.Fatalf("Recv %d: %v", want, err)
		}
		id, ok := decodeMsg(buf[:n])
		if !ok || id != want || n != msgSize(want, 64) {
			t.Fatalf("message %d: got id %d ok=%v len %d", want, id, ok, n)
		}
	}
	<-sent
	st := c.Stats()
	if st.Sent != total || st.Received != total || st.Depth != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestQueueFullEmptyAndErrFull(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 16, SlotCount: 4})
	p, _ := c.NewProducer()
	q, _ := c.NewConsumer()
	buf := make([]byte, 16)
	if _, err := q.TryRecv(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryRecv on empty = %v, want ErrEmpty", err)
	}
	for i := 0; i < 4; i++ {
		if err := p.TrySend([]byte{byte(i)}); err != nil {
			t.Fatalf("TrySend %d: %v", i, err)
		}
	}
	if err := p.TrySend([]byte{9}); !errors.Is(err, ErrFull) {
		t.Fatalf("TrySend on full = %v, want ErrFull", err)
	}
	if got := c.Stats().Depth; got != 4 {
		t.Fatalf("Depth = %d, want 4", got)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := p.Send(ctx, []byte{9}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on full with deadline = %v, want DeadlineExceeded", err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("Send gave up before its deadline")
	}
	n, err := q.TryRecv(buf)
	if err != nil || n != 1 || buf[0] != 0 {
		t.Fatalf("TryRecv = %d %v %v", n, err, buf[:n])
	}
	if err := p.TrySend([]byte{4}); err != nil {
		t.Fatalf("TrySend after a slot freed: %v", err)
	}
}

func TestQueueOverflowFailNeverBlocks(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 8, SlotCount: 2, Overflow: OverflowFail})
	p, _ := c.NewProducer()
	ctx := context.Background() // no deadline: Send must not wait
	for i := 0; i < 2; i++ {
		if err := p.Send(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Send(ctx, nil); !errors.Is(err, ErrFull) {
		t.Fatalf("Send on full OverflowFail channel = %v, want ErrFull", err)
	}
}

func TestRecvDeadlineAndCancel(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 8, SlotCount: 2})
	for _, w := range []WaitStrategy{WaitHybrid, WaitSpin, WaitBlock} {
		q, err := c.NewConsumer(WithWait(w))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := q.Recv(ctx, make([]byte, 8))
			errc <- err
		}()
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("wait %d: Recv after cancel = %v", w, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("wait %d: Recv did not return after cancel", w)
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		if _, err := q.Recv(dctx, make([]byte, 8)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait %d: Recv past deadline = %v", w, err)
		}
		dcancel()
		_ = q.Close()
	}
}

func TestZeroAndMaxLengthMessages(t *testing.T) {
	for _, mode := range []Mode{ModeQueue, ModeBroadcast} {
		c := newTestChannel(t, Options{Mode: mode, SlotSize: 100, SlotCount: 4})
		p, err := c.NewProducer()
		if err != nil {
			t.Fatal(err)
		}
		var recv func(context.Context, []byte) (int, error)
		if mode == ModeQueue {
			q, _ := c.NewConsumer()
			recv = q.Recv
		} else {
			s, _ := c.Subscribe()
			recv = s.Recv
		}
		ctx := testCtx(t, 10*time.Second)
		full := bytes.Repeat([]byte{0xAB}, 100)
		if err := p.Send(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, full); err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, make([]byte, 101)); !errors.Is(err, ErrMessageTooLarge) {
			t.Fatalf("%v: Send of 101 bytes into 100-byte slots = %v", mode, err)
		}
		buf := make([]byte, 100)
		if n, err := recv(ctx, buf); err != nil || n != 0 {
			t.Fatalf("%v: zero-length message: n=%d err=%v", mode, n, err)
		}
		// A buffer too small keeps the message for the next call.
		var tl *TooLargeError
		if _, err := recv(ctx, buf[:10]); !errors.As(err, &tl) || tl.Size != 100 || !errors.Is(err, ErrMessageTooLarge) {
			t.Fatalf("%v: Recv into short buffer = %v", mode, err)
		}
		if n, err := recv(ctx, buf); err != nil || !bytes.Equal(buf[:n], full) {
			t.Fatalf("%v: max-length message after short buffer: n=%d err=%v", mode, n, err)
		}
	}
}

func TestZeroCopyReserveCommitBorrowRelease(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 32, SlotCount: 4})
	p, _ := c.NewProducer()
	q, _ := c.NewConsumer()
	ctx := testCtx(t, 10*time.Second)

	r, err := p.Reserve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Buf()) != 32 {
		t.Fatalf("len(Buf) = %d, want slot size 32", len(r.Buf()))
	}
	if _, err := p.Reserve(ctx); !errors.Is(err, ErrOutstanding) {
		t.Fatalf("second Reserve = %v, want ErrOutstanding", err)
	}
	copy(r.Buf(), "aborted")
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	r, _ = p.Reserve(ctx)
	n := copy(r.Buf(), "in place")
	if err := r.Commit(n); err != nil {
		t.Fatal(err)
	}
	m, err := q.Borrow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Bytes()) != "in place" {
		t.Fatalf("borrowed %q; the aborted reservation must be skipped", m.Bytes())
	}
	if _, err := q.Borrow(ctx); !errors.Is(err, ErrOutstanding) {
		t.Fatalf("second Borrow = %v, want ErrOutstanding", err)
	}
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Abandoned != 1 || st.Sent != 1 || st.Received != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestQueueMPMCExactlyOnce runs goroutine producers and consumers on a small
// ring and checks every message arrives exactly once, intact.
func TestQueueMPMCExactlyOnce(t *testing.T) {
	const producers, consumers = 4, 4
	perProducer := 20000
	if testing.Short() || raceEnabled {
		perProducer = 5000
	}
	c := newTestChannel(t, Options{SlotSize: 128, SlotCount: 16})
	ctx := testCtx(t, 60*time.Second)
	var seen sync.Map
	var wg sync.WaitGroup
	var received sync.WaitGroup
	received.Add(producers * perProducer)
	for w := 0; w < producers; w++ {
		p, err := c.NewProducer()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128)
			for i := 0; i < perProducer; i++ {
				id := uint64(w)<<32 | uint64(i)
				if err := p.Send(ctx, encodeMsg(buf, id, msgSize(id, 128))); err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		}()
	}
	cctx, stop := context.WithCancel(ctx)
	var cw sync.WaitGroup
	for w := 0; w < consumers; w++ {
		q, err := c.NewConsumer()
		if err != nil {
			t.Fatal(err)
		}
		cw.Add(1)
		go func() {
			defer cw.Done()
			buf := make([]byte, 128)
			for {
				var data []byte
				if w%2 == 0 {
					n, err := q.Recv(cctx, buf)
					if err != nil {
						return
					}
					data = buf[:n]
				} else {
					m, err := q.Borrow(cctx)
					if err != nil {
						return
					}
					data = append(buf[:0], m.Bytes()...)
					if err := m.Release(); err != nil {
						t.Errorf("Release: %v", err)
					}
				}
				id, ok := decodeMsg(data)
				if !ok {
					t.Errorf("torn or corrupt message %x", data)
					continue
				}
				if _, dup := seen.LoadOrStore(id, true); dup {
					t.Errorf("message %#x delivered twice", id)
					continue
				}
				received.Done()
			}
		}()
	}
	wg.Wait()
	received.Wait()
	stop()
	cw.Wait()
	st := c.Stats()
	if want := uint64(producers * perProducer); st.Sent != want || st.Received != want || st.Repaired != 0 {
		t.Fatalf("stats sent=%d received=%d repaired=%d, want %d sent and received, none repaired", st.Sent, st.Received, st.Repaired, want)
	}
}

// TestCancelAfterCloseIsSafe: a peer that slept registers a wake-up on
// its context's cancellation and keeps it for later calls; the context may
// be cancelled as the channel is unmapped, and the wake-up must then not
// touch the mapping.
func TestCancelAfterCloseIsSafe(t *testing.T) {
	for i := 0; i < 30; i++ {
		c, err := Create(filepath.Join(testkit.TmpfsDir(t), "ch"), Options{SlotSize: 8, SlotCount: 2})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := c.NewProducer()
		q, _ := c.NewConsumer(WithWait(WaitBlock))
		ctx, cancel := context.WithCancel(context.Background())
		sent := make(chan error, 1)
		go func() {
			testkit.EventuallyTrue(t, 10*time.Second, "the consumer to sleep", func() bool { return atomic.LoadUint32(c.dataWaiters) > 0 })
			sent <- p.TrySend([]byte("x"))
		}()
		if _, err := q.Recv(ctx, make([]byte, 8)); err != nil {
			t.Fatalf("Recv = %v", err)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIdleReceiverUsesNoCPU: a receiver blocked on an empty channel (the
// default hybrid strategy) sleeps in the kernel after its short spin.
func TestIdleReceiverUsesNoCPU(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 8, SlotCount: 2})
	q, _ := c.NewConsumer()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	const idle = 500 * time.Millisecond
	before := cpu()
	ctx, cancel := context.WithTimeout(context.Background(), idle)
	defer cancel()
	if _, err := q.Recv(ctx, make([]byte, 8)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv = %v", err)
	}
	if used := cpu() - before; used > idle/10 {
		t.Fatalf("blocked for %v and used %v of CPU", idle, used)
	}
}
