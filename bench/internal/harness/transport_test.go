package harness

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestMain lets the two-process tests re-run this test binary as the peer.
func TestMain(m *testing.M) {
	if IsPeer() {
		os.Exit(PeerMain())
	}
	os.Exit(m.Run())
}

// goTransports are the backends the Go harness drives.
func goTransports(t *testing.T) []Backend {
	t.Helper()
	var out []Backend
	for _, b := range Backends() {
		if b.Transport != nil {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		t.Fatal("no Go transports registered")
	}
	return out
}

// attachInProcess sets up a link and opens both of its sides in this
// process, as the coordinator and the peer would.
func attachInProcess(t *testing.T, tr Transport, spec LinkSpec) (a, b Conn) {
	t.Helper()
	link, err := tr.Setup(spec)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("unavailable here: %v", err)
	}
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := link.Close(); err != nil {
			t.Errorf("link Close: %v", err)
		}
	})
	b, err = tr.Attach(spec, link.Handoff())
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	a, err = link.Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a, b
}

func testSpec(t *testing.T, size int) LinkSpec {
	return LinkSpec{Size: size, Slots: slotsFor(size), Dir: t.TempDir()}
}

// TestTransportsPingPong runs the rtt loops of every Go transport over a
// real link, both sides in this process: every echo must come back intact
// and every round trip be timed.
func TestTransportsPingPong(t *testing.T) {
	for _, b := range goTransports(t) {
		for _, size := range []int{MinSize, 64, 4 << 10, 1 << 20} {
			t.Run(b.Name+"/"+FormatSize(size), func(t *testing.T) {
				a, peer := attachInProcess(t, b.Transport, testSpec(t, size))
				job := Job{Kind: KindRTT, Size: size, Warmup: 5, Samples: 50}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				echoed := make(chan error, 1)
				go func() { echoed <- echoSide(ctx, peer, job) }()
				samples := make([]int64, job.Samples)
				n, err := pingSide(ctx, a, job, samples)
				if err != nil {
					t.Fatalf("pingSide: %v", err)
				}
				if err := <-echoed; err != nil {
					t.Fatalf("echoSide: %v", err)
				}
				if n != job.Samples {
					t.Fatalf("took %d samples, want %d", n, job.Samples)
				}
				for i, s := range samples {
					if s <= 0 {
						t.Fatalf("sample %d is %d ns", i, s)
					}
				}
			})
		}
	}
}

// TestTransportsStream runs the throughput loops of every Go transport:
// the receiver must count exactly the timed messages the sender sent.
func TestTransportsStream(t *testing.T) {
	for _, b := range goTransports(t) {
		for _, size := range []int{64, 1 << 20} {
			t.Run(b.Name+"/"+FormatSize(size), func(t *testing.T) {
				a, peer := attachInProcess(t, b.Transport, testSpec(t, size))
				job := Job{Kind: KindThroughput, Size: size, Warmup: 20, Duration: 20 * time.Millisecond, VerifyEvery: 3}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				type received struct {
					n   int64
					d   time.Duration
					err error
				}
				got := make(chan received, 1)
				go func() {
					n, d, err := recvSide(ctx, peer, job)
					got <- received{n, d, err}
				}()
				if err := sendSide(ctx, a, job); err != nil {
					t.Fatalf("sendSide: %v", err)
				}
				r := <-got
				if r.err != nil {
					t.Fatalf("recvSide: %v", r.err)
				}
				if r.n < 1 || r.d <= 0 {
					t.Fatalf("received %d timed messages in %v", r.n, r.d)
				}
			})
		}
	}
}

// TestConnsDoNotAllocate guards the timed loops: a Send and Recv of any Go
// transport must not allocate, or GC would be part of the measurement.
func TestConnsDoNotAllocate(t *testing.T) {
	for _, b := range goTransports(t) {
		t.Run(b.Name, func(t *testing.T) {
			if _, ok := b.Transport.(allocatingTransport); ok {
				t.Skip("a client library measured as shipped: it allocates, and its timed loops keep the GC on")
			}
			a, peer := attachInProcess(t, b.Transport, testSpec(t, 64))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			msg := newMessage(64)
			allocs := testing.AllocsPerRun(100, func() {
				if err := a.Send(ctx, msg); err != nil {
					t.Fatal(err)
				}
				if _, err := peer.Recv(ctx); err != nil {
					t.Fatal(err)
				}
				if err := peer.Release(); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per message, want 0", allocs)
			}
		})
	}
}

// TestPingBudget: a budget bounds the whole rtt job, warm-up included, and
// still yields samples, so that a slow transport or a busy machine cannot
// stretch a run or leave it without figures.
func TestPingBudget(t *testing.T) {
	a, peer := attachInProcess(t, pipeTransport{}, testSpec(t, 64))
	job := Job{Kind: KindRTT, Size: 64, Warmup: 1 << 30, Samples: 1 << 20, Budget: 50 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	echoed := make(chan error, 1)
	go func() { echoed <- echoSide(ctx, peer, job) }()
	start := time.Now()
	n, err := pingSide(ctx, a, job, make([]int64, job.Samples))
	if err != nil {
		t.Fatalf("pingSide: %v", err)
	}
	if err := <-echoed; err != nil {
		t.Fatalf("echoSide: %v", err)
	}
	if n < 1 || n >= job.Samples {
		t.Fatalf("took %d samples, want some but fewer than %d", n, job.Samples)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a 50ms budget ran %v", took)
	}
}
