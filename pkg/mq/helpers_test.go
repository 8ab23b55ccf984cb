package mq

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/pkg/podcontract"
)

// testLogger logs warnings and errors to the test when -v is given (set
// MQ_TEST_DEBUG=1 for everything) and discards logs otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	level := slog.LevelWarn
	if os.Getenv("MQ_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// shortTempDir returns a temporary directory with a path short enough for a
// Unix socket (108 bytes), removed when the test ends.
func shortTempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "mq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type testBroker struct {
	*mqbroker.Broker
	dir    string
	socket string
	served chan error
}

// startBroker serves cfgs on a socket in a new temporary directory.
func startBroker(t testing.TB, opts mqbroker.Options, cfgs ...mqbroker.QueueConfig) *testBroker {
	t.Helper()
	dir := shortTempDir(t)
	return startBrokerIn(t, dir, opts, cfgs...)
}

func startBrokerIn(t testing.TB, dir string, opts mqbroker.Options, cfgs ...mqbroker.QueueConfig) *testBroker {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.JournalDir == "" {
		opts.JournalDir = filepath.Join(dir, "journal")
	}
	b, err := mqbroker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(context.Background(), cfgs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	tb := &testBroker{Broker: b, dir: dir, socket: podcontract.MQSocketPath(dir), served: make(chan error, 1)}
	ln, err := mqbroker.Listen(tb.socket, 0)
	if err != nil {
		t.Fatal(err)
	}
	go func() { tb.served <- b.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		// ErrShutdown: the test ended before Serve started.
		if err := <-tb.served; err != nil && !errors.Is(err, mqbroker.ErrShutdown) {
			t.Errorf("Serve: %v", err)
		}
	})
	return tb
}

func dial(t testing.TB, socket string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, WithSocketPath(socket), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func queueStats(t testing.TB, b *mqbroker.Broker, name string) mqbroker.QueueStats {
	t.Helper()
	for _, s := range b.Stats() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no stats for queue %q", name)
	return mqbroker.QueueStats{}
}

func mustSend(t testing.TB, c *Client, queue, body string, opts ...SendOption) {
	t.Helper()
	if err := c.Send(testCtx(t), queue, []byte(body), opts...); err != nil {
		t.Fatalf("Send(%q, %q): %v", queue, body, err)
	}
}

func mustReceive(t testing.TB, k *Consumer) *Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := k.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return d
}

// expectNothing checks that no message arrives within d.
func expectNothing(t testing.TB, k *Consumer, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if m, err := k.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expected no message, got %v (err %v)", m, err)
	}
}

func mustConsume(t testing.TB, c *Client, queue string, opts ...ConsumeOption) *Consumer {
	t.Helper()
	k, err := c.Consume(testCtx(t), queue, opts...)
	if err != nil {
		t.Fatalf("Consume(%q): %v", queue, err)
	}
	return k
}
