package mq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/testkit"
)

func TestSendReceiveAck(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "hello")
	k := mustConsume(t, c, "q")
	d := mustReceive(t, k)
	if string(d.Body) != "hello" || d.Deliveries != 1 || d.Redelivered() || d.ID != 1 {
		t.Fatalf("delivery %+v", d)
	}
	if err := d.Ack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(testCtx(t)); !errors.Is(err, ErrAlreadySettled) {
		t.Fatalf("second Ack: %v", err)
	}
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	s := queueStats(t, b.Broker, "q")
	if s.Enqueued != 1 || s.Delivered != 1 || s.Acked != 1 || s.Depth != 0 || s.InFlight != 0 || s.Consumers != 1 {
		t.Fatalf("stats %+v", s)
	}
	if s.AckLatency.Count != 1 || s.AckLatency.Buckets[len(s.AckLatency.Buckets)-1].Count != 1 {
		t.Fatalf("latency histogram %+v", s.AckLatency)
	}
}

func TestUnknownQueue(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c := dial(t, b.socket)
	err := c.Send(testCtx(t), "nope", []byte("x"))
	if !errors.Is(err, ErrUnknownQueue) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Send to unknown queue: %v", err)
	}
	if _, err := c.Consume(testCtx(t), "nope"); !errors.Is(err, ErrUnknownQueue) {
		t.Fatalf("Consume unknown queue: %v", err)
	}
	mustSend(t, c, "q", "still works")
}

// TestPriorityOrder sends messages of mixed priorities before a consumer with
// prefetch 1 attaches: they must come out highest priority first, FIFO within
// a priority.
func TestPriorityOrder(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c := dial(t, b.socket)
	var want []string
	byPrio := map[uint8][]string{}
	for i := range 60 {
		p := uint8((i * 7) % 10)
		body := fmt.Sprintf("p%d-%02d", p, i)
		byPrio[p] = append(byPrio[p], body)
		mustSend(t, c, "q", body, WithPriority(p))
	}
	for p := 9; p >= 0; p-- {
		want = append(want, byPrio[uint8(p)]...)
	}
	k := mustConsume(t, c, "q", WithPrefetch(1))
	for i, w := range want {
		d := mustReceive(t, k)
		if string(d.Body) != w {
			t.Fatalf("message %d: got %q, want %q", i, d.Body, w)
		}
		if int(d.Priority) != int(w[1]-'0') {
			t.Fatalf("message %q has priority %d", d.Body, d.Priority)
		}
		d.Ack(testCtx(t))
	}
	if _, err := c.SendAsync(testCtx(t), "q", nil, WithPriority(10)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("priority 10: %v", err)
	}
}

func TestRedeliveryOnNack(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", MaxRedeliveries: mqbroker.UnlimitedRedeliveries})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "a")
	mustSend(t, c, "q", "b")
	k := mustConsume(t, c, "q", WithPrefetch(1))
	d := mustReceive(t, k)
	if err := d.Nack(testCtx(t), true); err != nil {
		t.Fatal(err)
	}
	// The requeued message goes back to the head of its priority.
	d = mustReceive(t, k)
	if string(d.Body) != "a" || d.Deliveries != 2 || !d.Redelivered() {
		t.Fatalf("redelivery %q deliveries %d", d.Body, d.Deliveries)
	}
	d.Ack(testCtx(t))
	if d = mustReceive(t, k); string(d.Body) != "b" || d.Deliveries != 1 {
		t.Fatalf("next %q deliveries %d", d.Body, d.Deliveries)
	}
	d.Ack(testCtx(t))
	c.Ping(testCtx(t))
	if s := queueStats(t, b.Broker, "q"); s.Redelivered != 1 || s.Acked != 2 || s.Delivered != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRedeliveryOnAckTimeout(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", AckTimeout: 50 * time.Millisecond, MaxRedeliveries: mqbroker.UnlimitedRedeliveries})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "slow")
	k := mustConsume(t, c, "q", WithPrefetch(2))
	start := time.Now()
	first := mustReceive(t, k)
	second := mustReceive(t, k)
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Fatalf("redelivered after %v, before the ack timeout", elapsed)
	}
	if string(second.Body) != "slow" || second.Deliveries != 2 {
		t.Fatalf("redelivery %q deliveries %d", second.Body, second.Deliveries)
	}
	// The late ack of the first delivery is ignored; the second one counts.
	first.Ack(testCtx(t))
	second.Ack(testCtx(t))
	c.Ping(testCtx(t))
	if s := queueStats(t, b.Broker, "q"); s.Acked != 1 || s.InFlight != 0 || s.Redelivered != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRedeliveryOnDisconnect(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", MaxRedeliveries: mqbroker.UnlimitedRedeliveries})
	prod := dial(t, b.socket)
	for i := range 5 {
		mustSend(t, prod, "q", fmt.Sprint(i))
	}
	dying := dial(t, b.socket)
	k := mustConsume(t, dying, "q", WithPrefetch(5))
	for range 5 {
		mustReceive(t, k)
	}
	if s := queueStats(t, b.Broker, "q"); s.InFlight != 5 {
		t.Fatalf("in flight %d before disconnect", s.InFlight)
	}
	dying.Close()
	k2 := mustConsume(t, dial(t, b.socket), "q", WithPrefetch(5))
	for i := range 5 {
		d := mustReceive(t, k2)
		if string(d.Body) != fmt.Sprint(i) || d.Deliveries != 2 {
			t.Fatalf("after disconnect got %q (deliveries %d), want %d", d.Body, d.Deliveries, i)
		}
	}
}

func TestDeadLetterAfterMaxRedeliveries(t *testing.T) {
	b := startBroker(t, mqbroker.Options{},
		mqbroker.QueueConfig{Name: "work", MaxRedeliveries: 2, DeadLetterQueue: "dead"},
		mqbroker.QueueConfig{Name: "dead"})
	c := dial(t, b.socket)
	mustSend(t, c, "work", "poison")
	k := mustConsume(t, c, "work", WithPrefetch(1))
	for i := 1; i <= 3; i++ {
		d := mustReceive(t, k)
		if d.Deliveries != i {
			t.Fatalf("delivery %d has count %d", i, d.Deliveries)
		}
		d.Nack(testCtx(t), true)
	}
	dead := mustReceive(t, mustConsume(t, c, "dead"))
	if string(dead.Body) != "poison" || dead.Deliveries != 1 {
		t.Fatalf("dead letter %q deliveries %d", dead.Body, dead.Deliveries)
	}
	expectNothing(t, k, 20*time.Millisecond)
	if s := queueStats(t, b.Broker, "work"); s.DeadLettered != 1 || s.Redelivered != 2 || s.Depth != 0 || s.InFlight != 0 {
		t.Fatalf("work stats %+v", s)
	}
}

// TestMaxRedeliveriesZeroAndUnlimited holds the one meaning of
// MaxRedeliveries that the API documents: 0 makes the first failed delivery
// final, UnlimitedRedeliveries never dead-letters.
func TestMaxRedeliveriesZeroAndUnlimited(t *testing.T) {
	b := startBroker(t, mqbroker.Options{},
		mqbroker.QueueConfig{Name: "once", MaxRedeliveries: 0, DeadLetterQueue: "dead"},
		mqbroker.QueueConfig{Name: "forever", MaxRedeliveries: mqbroker.UnlimitedRedeliveries, DeadLetterQueue: "dead"},
		mqbroker.QueueConfig{Name: "dead"})
	c := dial(t, b.socket)
	mustSend(t, c, "once", "first failure is final")
	mustReceive(t, mustConsume(t, c, "once")).Nack(testCtx(t), true)
	if d := mustReceive(t, mustConsume(t, c, "dead")); string(d.Body) != "first failure is final" {
		t.Fatalf("dead letter %q", d.Body)
	}
	if s := queueStats(t, b.Broker, "once"); s.DeadLettered != 1 || s.Redelivered != 0 {
		t.Fatalf("once stats %+v", s)
	}

	mustSend(t, c, "forever", "again")
	k := mustConsume(t, c, "forever", WithPrefetch(1))
	const tries = 50
	for i := 1; i <= tries; i++ {
		d := mustReceive(t, k)
		if d.Deliveries != i {
			t.Fatalf("delivery %d has count %d", i, d.Deliveries)
		}
		if i < tries {
			d.Nack(testCtx(t), true)
		} else {
			d.Ack(testCtx(t))
		}
	}
	c.Ping(testCtx(t))
	if s := queueStats(t, b.Broker, "forever"); s.DeadLettered != 0 || s.Redelivered != tries-1 || s.Acked != 1 {
		t.Fatalf("forever stats %+v", s)
	}
}

func TestNackWithoutRequeue(t *testing.T) {
	b := startBroker(t, mqbroker.Options{},
		mqbroker.QueueConfig{Name: "work", DeadLetterQueue: "dead"},
		mqbroker.QueueConfig{Name: "dead"},
		mqbroker.QueueConfig{Name: "nodlq"})
	c := dial(t, b.socket)
	mustSend(t, c, "work", "bad")
	mustReceive(t, mustConsume(t, c, "work")).Nack(testCtx(t), false)
	if d := mustReceive(t, mustConsume(t, c, "dead")); string(d.Body) != "bad" {
		t.Fatalf("dead letter %q", d.Body)
	}
	mustSend(t, c, "nodlq", "gone")
	mustReceive(t, mustConsume(t, c, "nodlq")).Nack(testCtx(t), false)
	c.Ping(testCtx(t))
	if s := queueStats(t, b.Broker, "nodlq"); s.DeadLettered != 1 || s.Depth != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTTL(t *testing.T) {
	b := startBroker(t, mqbroker.Options{},
		mqbroker.QueueConfig{Name: "q", DeadLetterQueue: "expired"},
		mqbroker.QueueConfig{Name: "expired"},
		mqbroker.QueueConfig{Name: "short", DefaultTTL: 30 * time.Millisecond})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "stale", WithTTL(30*time.Millisecond))
	mustSend(t, c, "q", "fresh")
	mustSend(t, c, "short", "default ttl")
	testkit.EventuallyTrue(t, 5*time.Second, "messages to expire without a consumer", func() bool {
		return queueStats(t, b.Broker, "q").Expired == 1 && queueStats(t, b.Broker, "short").Expired == 1
	})
	if d := mustReceive(t, mustConsume(t, c, "q")); string(d.Body) != "fresh" {
		t.Fatalf("got %q, want the message without TTL", d.Body)
	}
	if d := mustReceive(t, mustConsume(t, c, "expired")); string(d.Body) != "stale" {
		t.Fatalf("dead-lettered %q", d.Body)
	}
	if s := queueStats(t, b.Broker, "short"); s.Depth != 0 {
		t.Fatalf("short queue depth %d", s.Depth)
	}
}

func TestOverflowReject(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", MaxDepth: 2, Overflow: mqbroker.Reject},
		mqbroker.QueueConfig{Name: "bytes", MaxBytes: 10, Overflow: mqbroker.Reject})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "1")
	mustSend(t, c, "q", "2")
	if err := c.Send(testCtx(t), "q", []byte("3")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third send: %v", err)
	}
	mustSend(t, c, "bytes", "12345")
	mustSend(t, c, "bytes", "12345")
	if err := c.Send(testCtx(t), "bytes", []byte("1")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("send over MaxBytes: %v", err)
	}
	if s := queueStats(t, b.Broker, "q"); s.Rejected != 1 || s.Depth != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestOverflowDropOldest(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", MaxDepth: 3, Overflow: mqbroker.DropOldest})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "low-1", WithPriority(1))
	mustSend(t, c, "q", "high", WithPriority(5))
	mustSend(t, c, "q", "low-2", WithPriority(1))
	mustSend(t, c, "q", "new-1", WithPriority(3)) // drops low-1
	mustSend(t, c, "q", "new-2", WithPriority(3)) // drops low-2
	k := mustConsume(t, c, "q", WithPrefetch(1))
	for _, want := range []string{"high", "new-1", "new-2"} {
		d := mustReceive(t, k)
		if string(d.Body) != want {
			t.Fatalf("got %q, want %q", d.Body, want)
		}
		d.Ack(testCtx(t))
	}
	if s := queueStats(t, b.Broker, "q"); s.Dropped != 2 || s.Enqueued != 5 {
		t.Fatalf("stats %+v", s)
	}
}

func TestOverflowBlock(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", MaxDepth: 1})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "first")

	// A send with a short deadline gives up when it passes; the broker drops
	// the blocked message rather than queueing it later.
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := c.Send(short, "q", []byte("impatient"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked send past deadline: %v", err)
	}
	testkit.EventuallyTrue(t, 5*time.Second, "the broker to drop the timed-out send", func() bool {
		return queueStats(t, b.Broker, "q").BlockedSends == 0
	})

	cf, err := c.SendAsync(testCtx(t), "q", []byte("patient"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 5*time.Second, "the send to block", func() bool { return queueStats(t, b.Broker, "q").BlockedSends == 1 })
	select {
	case <-cf.Done():
		t.Fatalf("blocked send confirmed while the queue is full: %v", cf.Err())
	default:
	}
	k := mustConsume(t, c, "q", WithPrefetch(1))
	if d := mustReceive(t, k); string(d.Body) != "first" {
		t.Fatalf("got %q", d.Body)
	}
	if err := cf.Wait(testCtx(t)); err != nil {
		t.Fatalf("blocked send after room freed: %v", err)
	}
	if s := queueStats(t, b.Broker, "q"); s.Enqueued != 2 || s.Depth != 1 || s.BlockedSends != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestPrefetchBoundsInFlight checks that a consumer never holds more than its
// prefetch, and that a consumer that stops acknowledging does not starve a
// competing one.
func TestPrefetchBoundsInFlight(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c := dial(t, b.socket)
	for i := range 20 {
		mustSend(t, c, "q", fmt.Sprint(i))
	}
	slow := mustConsume(t, dial(t, b.socket), "q", WithPrefetch(3))
	testkit.EventuallyTrue(t, 5*time.Second, "3 messages in flight", func() bool { return queueStats(t, b.Broker, "q").InFlight == 3 })
	if s := queueStats(t, b.Broker, "q"); s.Depth != 17 || s.Delivered != 3 {
		t.Fatalf("slow consumer took more than its prefetch: %+v", s)
	}
	fastClient := dial(t, b.socket)
	fast := mustConsume(t, fastClient, "q", WithPrefetch(2))
	for range 17 {
		d := mustReceive(t, fast)
		if err := d.Ack(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fastClient.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if s := queueStats(t, b.Broker, "q"); s.InFlight != 3 || s.Depth != 0 {
		t.Fatalf("stats %+v", s)
	}
	d := mustReceive(t, slow)
	d.Ack(testCtx(t))
	mustSend(t, c, "q", "more")
	testkit.EventuallyTrue(t, 5*time.Second, "the freed credit to be used", func() bool { return queueStats(t, b.Broker, "q").Delivered == 21 })
}

func TestAtMostOnce(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", Delivery: mqbroker.AtMostOnce})
	c := dial(t, b.socket)
	for i := range 10 {
		mustSend(t, c, "q", fmt.Sprint(i))
	}
	k := mustConsume(t, c, "q", WithPrefetch(2))
	if !k.AutoAck() {
		t.Fatal("consumer of an AtMostOnce queue is not auto-ack")
	}
	testkit.EventuallyTrue(t, 5*time.Second, "2 deliveries", func() bool { return queueStats(t, b.Broker, "q").Delivered == 2 })
	if s := queueStats(t, b.Broker, "q"); s.InFlight != 0 || s.Depth != 8 || s.Acked != 2 {
		t.Fatalf("stats before Receive %+v", s)
	}
	for i := range 10 {
		d := mustReceive(t, k)
		if string(d.Body) != fmt.Sprint(i) {
			t.Fatalf("got %q want %d", d.Body, i)
		}
		if err := d.Ack(testCtx(t)); err != nil {
			t.Fatalf("Ack on auto-ack delivery: %v", err)
		}
	}
	if s := queueStats(t, b.Broker, "q"); s.Depth != 0 || s.Acked != 10 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMessageTooLarge(t *testing.T) {
	b := startBroker(t, mqbroker.Options{MaxMessageSize: 1 << 16}, mqbroker.QueueConfig{Name: "q", MaxMessageSize: 100})
	c := dial(t, b.socket)
	if err := c.Send(testCtx(t), "q", make([]byte, 101)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("over queue limit: %v", err)
	}
	if err := c.Send(testCtx(t), "q", make([]byte, 1<<16+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("over broker limit: %v", err)
	}
	if err := c.Send(testCtx(t), "q", make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
}

func TestReceiveConvenience(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "one")
	mustSend(t, c, "q", "two")
	for _, want := range []string{"one", "two"} {
		d, err := c.Receive(testCtx(t), "q")
		if err != nil || string(d.Body) != want {
			t.Fatalf("Receive: %v %v", d, err)
		}
		d.Ack(testCtx(t))
	}
	if _, err := c.Receive(testCtx(t), "missing"); !errors.Is(err, ErrUnknownQueue) {
		t.Fatalf("Receive from unknown queue: %v", err)
	}
}

func TestSendAsyncPipelining(t *testing.T) {
	b := startBroker(t, mqbroker.Options{MaxPendingSends: 16}, mqbroker.QueueConfig{Name: "q", MaxDepth: 100_000})
	c := dial(t, b.socket)
	const n = 2000
	cfs := make([]*Confirmation, 0, n)
	for i := range n {
		cf, err := c.SendAsync(testCtx(t), "q", []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		cfs = append(cfs, cf)
	}
	for i, cf := range cfs {
		if err := cf.Wait(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if cf.ID() != uint64(i+1) {
			t.Fatalf("confirmation %d has id %d", i, cf.ID())
		}
	}
	if s := queueStats(t, b.Broker, "q"); s.Depth != n {
		t.Fatalf("depth %d", s.Depth)
	}
}

func TestConsumerClose(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", MaxRedeliveries: mqbroker.UnlimitedRedeliveries})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "x")
	k := mustConsume(t, c, "q")
	d := mustReceive(t, k)
	k.Close()
	if err := d.Ack(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack after Close: %v", err)
	}
	if _, err := k.Receive(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
	// The unacknowledged message goes to the next consumer.
	if d := mustReceive(t, mustConsume(t, c, "q")); string(d.Body) != "x" || d.Deliveries != 2 {
		t.Fatalf("redelivery after Close: %q %d", d.Body, d.Deliveries)
	}
}

// TestCloseFlushesAcks checks that acknowledgements made just before Close
// reach the broker rather than causing redeliveries.
func TestCloseFlushesAcks(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	prod := dial(t, b.socket)
	const n = 500
	for i := range n {
		mustSend(t, prod, "q", fmt.Sprint(i))
	}
	c := dial(t, b.socket)
	k := mustConsume(t, c, "q", WithPrefetch(n))
	for range n {
		if err := mustReceive(t, k).Ack(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	testkit.EventuallyTrue(t, 5*time.Second, "the broker to see the consumer leave", func() bool {
		return queueStats(t, b.Broker, "q").Consumers == 0
	})
	if s := queueStats(t, b.Broker, "q"); s.Acked != n || s.Redelivered != 0 || s.Depth != 0 {
		t.Fatalf("stats after Close %+v", s)
	}
}

// A consumer with a large prefetch that never acknowledges holds at most
// MaxBytes of the queue's messages in flight: with as much again waiting,
// the queue's memory stays within twice MaxBytes, and further sends are
// refused by the overflow policy instead of piling up in the broker.
func TestInFlightBytesAreBounded(t *testing.T) {
	const body, maxBytes = 1024, 4096
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", MaxBytes: maxBytes, Overflow: mqbroker.Reject})
	c := dial(t, b.socket)
	k := mustConsume(t, c, "q", WithPrefetch(100))
	msg := make([]byte, body)
	sent := 0
	for ; sent < 100; sent++ {
		if err := c.Send(testCtx(t), "q", msg); errors.Is(err, ErrQueueFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	s := queueStats(t, b.Broker, "q")
	if s.InFlightBytes > maxBytes || s.Bytes > maxBytes || sent != 2*maxBytes/body {
		t.Fatalf("after %d sends: %d bytes in flight, %d waiting, limit %d each", sent, s.InFlightBytes, s.Bytes, maxBytes)
	}
	var held []*Delivery
	for range maxBytes / body {
		held = append(held, mustReceive(t, k))
	}
	expectNothing(t, k, 50*time.Millisecond)
	for _, d := range held {
		if err := d.Ack(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	// Acknowledging frees the in-flight room: the waiting messages come.
	for range maxBytes / body {
		if err := mustReceive(t, k).Ack(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if s := queueStats(t, b.Broker, "q"); s.InFlightBytes != 0 || s.Depth != 0 || s.Acked != uint64(sent) {
		t.Fatalf("after the acks: %+v", s)
	}
}

// Sends parked on full Block queues are bounded in bytes over every
// connection: past the bound a send fails at once with queue full, and the
// bound's use goes back to zero as the parked sends are admitted.
func TestBlockedSendBytesAreBoundedAcrossConnections(t *testing.T) {
	b := startBroker(t, mqbroker.Options{MaxBlockedSendBytes: 64 << 10},
		mqbroker.QueueConfig{Name: "q", MaxDepth: 1, MaxRedeliveries: mqbroker.UnlimitedRedeliveries})
	body := make([]byte, 16<<10)
	mustSend(t, dial(t, b.socket), "q", "fills the queue")
	var parked []*Confirmation
	for i := range 4 { // 64 KiB, from four connections
		cf, err := dial(t, b.socket).SendAsync(testCtx(t), "q", body)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		parked = append(parked, cf)
	}
	testkit.EventuallyTrue(t, 5*time.Second, "four sends to park", func() bool { return b.ConnStats().BlockedSendBytes == 64<<10 })
	if err := dial(t, b.socket).Send(testCtx(t), "q", body); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("a send past the bound: %v, want ErrQueueFull at once", err)
	}
	for _, cf := range parked {
		select {
		case <-cf.Done():
			t.Fatalf("a parked send finished early: %v", cf.Err())
		default:
		}
	}
	k := mustConsume(t, dial(t, b.socket), "q")
	for range 5 {
		mustReceive(t, k).Ack(testCtx(t))
	}
	for i, cf := range parked {
		if err := cf.Wait(testCtx(t)); err != nil {
			t.Fatalf("parked send %d: %v", i, err)
		}
	}
	if cs := b.ConnStats(); cs.BlockedSendBytes != 0 || cs.MaxBlockedSendBytes != 64<<10 {
		t.Fatalf("ConnStats after the sends were admitted %+v", cs)
	}
}
