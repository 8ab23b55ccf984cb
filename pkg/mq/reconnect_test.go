package mq

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/testkit"
)

// fastReconnect keeps the tests' reconnection quick.
var fastReconnect = ReconnectPolicy{Window: 20 * time.Second, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, DeclareWait: 5 * time.Second}

func dialReconnecting(t *testing.T, socket string, p ReconnectPolicy) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), WithSocketPath(socket), WithLogger(testLogger(t)), WithReconnect(p))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func stopBroker(t *testing.T, b *testBroker) {
	t.Helper()
	if err := b.Shutdown(testCtx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestReconnectAcrossBrokerRestart restarts the broker under a client with
// a consumer, sends while it is away, and checks that the sends are
// confirmed by the new broker, the consumer gets them, and a delivery of the
// lost connection can no longer be acknowledged.
func TestReconnectAcrossBrokerRestart(t *testing.T) {
	dir := shortTempDir(t)
	q := mqbroker.QueueConfig{Name: "q", Persistence: mqbroker.Volume, MaxRedeliveries: mqbroker.UnlimitedRedeliveries}
	a := startBrokerIn(t, dir, mqbroker.Options{}, q)
	c := dialReconnecting(t, a.socket, fastReconnect)
	k := mustConsume(t, c, "q", WithPrefetch(4))
	mustSend(t, c, "q", "before")
	old := mustReceive(t, k)

	stopBroker(t, a)
	testkit.EventuallyTrue(t, 10*time.Second, "the client to notice", func() bool { return !c.Stats().Connected })
	var cfs []*Confirmation
	for i := range 3 {
		cf, err := c.SendAsync(testCtx(t), "q", fmt.Appendf(nil, "while-away-%d", i))
		if err != nil {
			t.Fatalf("SendAsync while the broker is away: %v", err)
		}
		cfs = append(cfs, cf)
	}
	b := startBrokerIn(t, dir, mqbroker.Options{}, q)
	for i, cf := range cfs {
		if err := cf.Wait(testCtx(t)); err != nil {
			t.Fatalf("send %d made while the broker was away: %v", i, err)
		}
	}
	if err := old.Ack(testCtx(t)); !errors.Is(err, ErrStaleDelivery) {
		t.Fatalf("Ack of a delivery from the lost connection: %v, want ErrStaleDelivery", err)
	}
	want := map[string]bool{"before": true, "while-away-0": true, "while-away-1": true, "while-away-2": true}
	for len(want) > 0 {
		d := mustReceive(t, k)
		if !want[string(d.Body)] {
			t.Fatalf("unexpected delivery %q", d.Body)
		}
		delete(want, string(d.Body))
		if err := d.Ack(testCtx(t)); err != nil {
			t.Fatalf("Ack after reconnecting: %v", err)
		}
	}
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if s := queueStats(t, b.Broker, "q"); s.Depth != 0 || s.InFlight != 0 {
		t.Fatalf("new broker's queue after the acks: %+v", s)
	}
	st := c.Stats()
	if !st.Connected || st.Disconnects != 1 || st.Reconnects != 1 || st.Resent < 3 {
		t.Fatalf("client stats %+v", st)
	}
}

// TestReconnectWaitsForQueueDeclaration restarts the broker without the
// queue and declares it a little later: a send made meanwhile is confirmed,
// not failed with ErrUnknownQueue, and so is a new consumer.
func TestReconnectWaitsForQueueDeclaration(t *testing.T) {
	dir := shortTempDir(t)
	a := startBrokerIn(t, dir, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c := dialReconnecting(t, a.socket, fastReconnect)
	stopBroker(t, a)
	b := startBrokerIn(t, dir, mqbroker.Options{})
	testkit.EventuallyTrue(t, 10*time.Second, "the client to reconnect", func() bool { return c.Stats().Reconnects == 1 })
	cf, err := c.SendAsync(testCtx(t), "q", []byte("early"))
	if err != nil {
		t.Fatal(err)
	}
	consumed := make(chan error, 1)
	go func() {
		k, err := c.Consume(testCtx(t), "q")
		if err == nil {
			var d *Delivery
			if d, err = k.Receive(testCtx(t)); err == nil && string(d.Body) != "early" {
				err = fmt.Errorf("got %q", d.Body)
			}
		}
		consumed <- err
	}()
	select {
	case err := <-consumed:
		t.Fatalf("consumer finished before its queue existed: %v", err)
	case <-cf.Done():
		t.Fatalf("send answered before its queue existed: %v", cf.Err())
	case <-time.After(300 * time.Millisecond): // the requests are being retried meanwhile
	}
	if err := b.Apply(testCtx(t), []mqbroker.QueueConfig{{Name: "q"}}); err != nil {
		t.Fatal(err)
	}
	if err := cf.Wait(testCtx(t)); err != nil {
		t.Fatalf("send retried until the queue was declared: %v", err)
	}
	if err := <-consumed; err != nil {
		t.Fatalf("consumer retried until the queue was declared: %v", err)
	}
}

// TestReconnectGivesUp checks that a client whose broker does not come back
// within the window closes, failing what waits with ErrClosed.
func TestReconnectGivesUp(t *testing.T) {
	dir := shortTempDir(t)
	a := startBrokerIn(t, dir, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	p := fastReconnect
	p.Window = 200 * time.Millisecond
	c := dialReconnecting(t, a.socket, p)
	k := mustConsume(t, c, "q")
	stopBroker(t, a)
	start := time.Now()
	err := c.Send(testCtx(t), "q", []byte("x"))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Send with no broker past the window: %v, want ErrClosed", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("gave up after %v, window %v", waited, p.Window)
	}
	if _, err := k.Receive(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after giving up: %v", err)
	}
	if st := c.Stats(); st.Connected || st.Reconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestWithoutReconnect keeps the old contract: the first loss closes.
func TestWithoutReconnect(t *testing.T) {
	a := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c, err := Dial(testCtx(t), WithSocketPath(a.socket), WithoutReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stopBroker(t, a)
	// Closed at once, whichever of the broker's GOAWAY or the broken
	// socket the client saw first.
	if err := c.Send(testCtx(t), "q", nil); !errors.Is(err, ErrBrokerShutdown) && !errors.Is(err, ErrClosed) {
		t.Fatalf("send after shutdown: %v", err)
	}
	if st := c.Stats(); st.Connected || st.Disconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReconnectPolicyValidation(t *testing.T) {
	for _, p := range []ReconnectPolicy{
		{Window: -1},
		{Window: time.Second},
		{Window: time.Second, MinBackoff: time.Second, MaxBackoff: time.Millisecond},
		{Window: time.Second, MinBackoff: time.Millisecond, MaxBackoff: time.Second, DeclareWait: -1},
	} {
		if _, err := Dial(context.Background(), WithSocketPath("/nonexistent"), WithReconnect(p)); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Dial with %+v: %v, want ErrInvalidArgument", p, err)
		}
	}
}
