package harness

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/pkg/mq"
)

// setupMQ starts a broker process for an mq link and returns the link.
func setupMQ(t *testing.T, delivery mqbroker.DeliveryMode, size int) *mqLink {
	t.Helper()
	link, err := mqTransport{delivery: delivery}.Setup(testSpec(t, size))
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	l := link.(*mqLink)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestMQLinkLifecycle: Setup starts a broker process that serves the link's
// socket; Close stops it and removes its directory.
func TestMQLinkLifecycle(t *testing.T) {
	l := setupMQ(t, mqbroker.AtLeastOnce, 64)
	if _, err := os.Stat(l.socket); err != nil {
		t.Fatalf("broker socket: %v", err)
	}
	select {
	case <-l.broker.exited:
		t.Fatalf("broker process exited: %v", l.broker.err)
	default:
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-l.broker.exited:
	default:
		t.Fatal("broker process still running after Close")
	}
	if l.broker.err != nil {
		t.Errorf("broker process exit status after a clean stop: %v", l.broker.err)
	}
	if _, err := os.Stat(l.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("broker directory left behind: %v", err)
	}
}

// TestMQSocketDirFallback: a directory whose path is too long for a Unix
// socket is replaced by the temporary directory.
func TestMQSocketDirFallback(t *testing.T) {
	long := filepath.Join(t.TempDir(), "a-directory-name-long-enough-to-push-the-socket-path-past-the-limit-of-sun-path")
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	dir, err := mqSocketDir(long)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if p := podcontract.MQSocketPath(dir); len(p) > maxSocketPath {
		t.Fatalf("socket path %q is %d bytes, longer than %d", p, len(p), maxSocketPath)
	}
}

// TestMQFailedSendSurfaces: a send the broker refuses is reported at the
// side's next receive at the latest, never lost in the pipeline.
func TestMQFailedSendSurfaces(t *testing.T) {
	a, _ := attachInProcess(t, mqTransport{delivery: mqbroker.AtLeastOnce}, testSpec(t, 64))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tooBig := newMessage(128) // the queues take 64-byte messages
	stamp(tooBig, 0, 0)
	if err := a.Send(ctx, tooBig); err != nil {
		t.Fatalf("Send queues without waiting, got %v", err)
	}
	_, err := a.Recv(ctx)
	if !errors.Is(err, mq.ErrMessageTooLarge) {
		t.Fatalf("Recv after a refused send = %v, want ErrMessageTooLarge", err)
	}
}

// TestMQLastSendConfirmed: the flagged last message of a stream returns only
// once every send is confirmed, so a streaming side ends with no failure
// unreported.
func TestMQLastSendConfirmed(t *testing.T) {
	a, _ := attachInProcess(t, mqTransport{delivery: mqbroker.AtMostOnce}, testSpec(t, 64))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := newMessage(64)
	for seq := range uint64(100) {
		stamp(msg, seq, 0)
		if err := a.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	stamp(msg, 100, flagLast)
	if err := a.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if c := a.(*mqClientConn); c.n != 0 {
		t.Fatalf("%d sends unconfirmed after the last one", c.n)
	}
}

// TestMQBrokerDeathFailsSides: when the broker process dies mid-run, a side
// waiting for a message gets an error at once instead of waiting out its
// deadline.
func TestMQBrokerDeathFailsSides(t *testing.T) {
	l := setupMQ(t, mqbroker.AtLeastOnce, 64)
	a, err := l.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		_, err := a.Recv(ctx)
		got <- err
	}()
	if err := l.broker.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, mq.ErrClosed) {
			t.Fatalf("Recv with the broker killed = %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Recv still waiting 30s after the broker was killed")
	}
}

// TestMQVerdicts checks the mq targets against hand-made results.
func TestMQVerdicts(t *testing.T) {
	r := &Report{Results: []Result{
		rtt(nameUnixStream, 64, 10_000), rtt(nameMQAtLeastOnce, 64, 19_000), rtt(nameMQAtMostOnce, 64, 31_000),
		rtt(nameUnixStream, 4096, 12_000), rtt(nameMQAtLeastOnce, 4096, 40_000),
		{Backend: nameMQAtMostOnce, Kind: KindRTT, Size: 4096, Error: "boom"},
		tput(nameNATS, 64, 500e3), tput(nameMQAtLeastOnce, 64, 900e3),
		tput(nameMQAtLeastOnce, 4096, 100e3), tput(nameNATS, 4096, 125e3),
		tput(nameMQAtLeastOnce, 1<<20, 300), // NATS not measured at 1 MiB
	}}
	vs := judge(r)
	for _, tc := range []struct {
		target string
		size   int
		status Status
		ratio  float64
	}{
		{"mq with acks rtt", 64, StatusPass, 1.9},
		{"mq with acks rtt", 4096, StatusMiss, 3.33},
		{"mq at-most-once rtt", 64, StatusMiss, 3.1},
		{"mq at-most-once rtt", 4096, StatusNA, 0},
		{"mq with acks throughput at least 1.5×", 64, StatusPass, 1.8},
		{"mq with acks throughput at least NATS", 4096, StatusMiss, 0.8},
		{"mq with acks throughput at least NATS", 1 << 20, StatusNA, 0},
	} {
		v := verdictFor(t, vs, tc.target, tc.size)
		if v.Status != tc.status || (tc.ratio != 0 && (v.Ratio < tc.ratio-0.01 || v.Ratio > tc.ratio+0.01)) {
			t.Errorf("%s @%d: %s ratio %.3f, want %s %.3f", tc.target, tc.size, v.Status, v.Ratio, tc.status, tc.ratio)
		}
	}
}
