package mq

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
)

// Child roles (see TestMain), configured by these variables.
const (
	envSocket   = "MQ_TEST_SOCKET"
	envJournal  = "MQ_TEST_JOURNAL"
	envQueue    = "MQ_TEST_QUEUE"
	envCount    = "MQ_TEST_COUNT"
	envProducer = "MQ_TEST_PRODUCER"
	envPrefetch = "MQ_TEST_PREFETCH"
)

var roles = map[string]func(context.Context) error{
	"broker":             roleBroker,
	"producer":           roleProducer,
	"pipelined-producer": rolePipelinedProducer,
	"consumer":           roleConsumer,
	"ordered-consumer":   roleOrderedConsumer,
	"impostor":           roleImpostor,
	"hog":                roleHog,
	"journal-forger":     roleJournalForger,
}

func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

// roleBroker serves one persistent queue until SIGTERM (or SIGKILL).
func roleBroker(ctx context.Context) error {
	b, err := mqbroker.New(mqbroker.Options{JournalDir: os.Getenv(envJournal)})
	if err != nil {
		return err
	}
	err = b.Apply(ctx, []mqbroker.QueueConfig{{Name: os.Getenv(envQueue), Persistence: mqbroker.Volume, MaxDepth: 1_000_000, AckTimeout: 5 * time.Second, MaxRedeliveries: mqbroker.UnlimitedRedeliveries}})
	if err != nil {
		return err
	}
	ln, err := mqbroker.Listen(os.Getenv(envSocket), 0)
	if err != nil {
		return err
	}
	fmt.Println("READY")
	go func() {
		<-ctx.Done()
		b.Shutdown(context.Background())
	}()
	return b.Serve(ln)
}

// dialRetry dials until it succeeds or ctx ends (the broker may be restarting).
func dialRetry(ctx context.Context, socket string, opts ...DialOption) (*Client, error) {
	for {
		c, err := Dial(ctx, append([]DialOption{WithSocketPath(socket)}, opts...)...)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		t := time.NewTimer(5 * time.Millisecond) // retry interval
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// roleProducer sends MQ_TEST_COUNT messages "p<producer>-<seq> <priority>"
// with pseudo-random priorities, printing "C <body>" for each confirmed one.
// Its client does not reconnect: it dials again and resends the unconfirmed
// message itself if the broker goes away.
func roleProducer(ctx context.Context) error {
	socket, queue, n, id := os.Getenv(envSocket), os.Getenv(envQueue), envInt(envCount), envInt(envProducer)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	var c *Client
	for i := 0; i < n; {
		if c == nil {
			var err error
			if c, err = dialRetry(ctx, socket, WithoutReconnect()); err != nil {
				return err
			}
		}
		prio := uint8(rng.IntN(MaxPriority + 1))
		body := fmt.Sprintf("p%d-%06d %d", id, i, prio)
		padded := make([]byte, 64)
		copy(padded, body)
		cf, err := c.SendAsync(ctx, queue, padded, WithPriority(prio))
		if err == nil {
			err = cf.Wait(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrBrokerShutdown) {
				return err
			}
			c.Close()
			c = nil
			rng = rand.New(rand.NewPCG(uint64(id), 7)) // replay the same priorities
			for range i {
				rng.IntN(MaxPriority + 1)
			}
			continue
		}
		fmt.Fprintf(out, "C %s\n", body)
		if i%64 == 0 {
			out.Flush()
		}
		i++
	}
	return nil
}

// rolePipelinedProducer sends MQ_TEST_COUNT messages "p<producer>-<seq> 0"
// on one client with up to 64 unconfirmed at a time, printing "C <body>"
// for each confirmed one. It counts on the client to ride through broker
// restarts: any error fails it.
func rolePipelinedProducer(ctx context.Context) error {
	socket, queue, n, id := os.Getenv(envSocket), os.Getenv(envQueue), envInt(envCount), envInt(envProducer)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	c, err := Dial(ctx, WithSocketPath(socket), WithReconnect(ReconnectPolicy{
		Window: 30 * time.Second, MinBackoff: time.Millisecond, MaxBackoff: 50 * time.Millisecond, DeclareWait: 5 * time.Second,
	}))
	if err != nil {
		return err
	}
	defer c.Close()
	type sent struct {
		body string
		cf   *Confirmation
	}
	var window []sent
	confirm := func() error {
		s := window[0]
		window = window[1:]
		if err := s.cf.Wait(ctx); err != nil {
			return fmt.Errorf("send %s: %w", s.body, err)
		}
		fmt.Fprintf(out, "C %s\n", s.body)
		return nil
	}
	for i := range n {
		body := fmt.Sprintf("p%d-%06d 0", id, i)
		padded := make([]byte, 64)
		copy(padded, body)
		cf, err := c.SendAsync(ctx, queue, padded)
		if err != nil {
			return fmt.Errorf("send %s: %w", body, err)
		}
		window = append(window, sent{body, cf})
		if len(window) == 64 {
			if err := confirm(); err != nil {
				return err
			}
			out.Flush()
		}
	}
	for len(window) > 0 {
		if err := confirm(); err != nil {
			return err
		}
	}
	if st := c.Stats(); st.Reconnects == 0 {
		return fmt.Errorf("the client never reconnected: %+v", st)
	}
	return nil
}

// roleConsumer receives messages forever, printing "G <body>" for each
// before acknowledging it.
func roleConsumer(ctx context.Context) error {
	c, err := Dial(ctx, WithSocketPath(os.Getenv(envSocket)))
	if err != nil {
		return err
	}
	k, err := c.Consume(ctx, os.Getenv(envQueue), WithPrefetch(envInt(envPrefetch)))
	if err != nil {
		return err
	}
	for {
		d, err := k.Receive(ctx)
		if err != nil {
			return err
		}
		// Unbuffered on purpose: what was printed is what a SIGKILL leaves.
		os.Stdout.Write(append(append([]byte("G "), trimBody(d.Body)...), '\n'))
		if err := d.Ack(ctx); err != nil {
			return err
		}
	}
}

// roleOrderedConsumer receives MQ_TEST_COUNT messages and checks that, per
// producer and priority, they arrive in the order they were sent.
func roleOrderedConsumer(ctx context.Context) error {
	c, err := Dial(ctx, WithSocketPath(os.Getenv(envSocket)))
	if err != nil {
		return err
	}
	defer c.Close()
	k, err := c.Consume(ctx, os.Getenv(envQueue), WithPrefetch(envInt(envPrefetch)))
	if err != nil {
		return err
	}
	last := map[string]int{}
	for range envInt(envCount) {
		d, err := k.Receive(ctx)
		if err != nil {
			return err
		}
		producer, seq, prio, err := parseBody(trimBody(d.Body))
		if err != nil {
			return err
		}
		key := producer + "/" + strconv.Itoa(prio)
		if prev, ok := last[key]; ok && seq <= prev {
			return fmt.Errorf("order violated for %s: %d after %d", key, seq, prev)
		}
		last[key] = seq
		if err := d.Ack(ctx); err != nil {
			return err
		}
	}
	fmt.Println("ORDERED", len(last))
	return c.Ping(ctx)
}

func trimBody(b []byte) string { return strings.TrimRight(string(b), "\x00") }

func parseBody(s string) (producer string, seq, prio int, err error) {
	id, p, ok := strings.Cut(s, " ")
	producer, n, ok2 := strings.Cut(id, "-")
	if !ok || !ok2 {
		return "", 0, 0, fmt.Errorf("bad body %q", s)
	}
	if seq, err = strconv.Atoi(n); err == nil {
		prio, err = strconv.Atoi(p)
	}
	return producer, seq, prio, err
}

// child is a re-executed test binary playing a role; its stdout lines go to
// the lines channel it was started with, and then its exit status to done.
type child struct {
	name string
	proc *testkit.Proc
	done chan error
}

type line struct {
	from string
	text string
}

func startChild(t *testing.T, name, role string, lines chan<- line, env ...string) *child {
	t.Helper()
	ch := &child{name: name, proc: testkit.Child(t, role, testkit.Name(name), testkit.Env(env...)), done: make(chan error, 1)}
	go func() {
		for l := range ch.proc.Lines() {
			lines <- line{from: name, text: l}
		}
		ch.done <- ch.proc.Err()
	}()
	return ch
}

func (c *child) kill() {
	_ = c.proc.Signal(syscall.SIGKILL)
}

// waitLine waits for a line satisfying match.
func waitLine(t *testing.T, lines <-chan line, within time.Duration, match func(line) bool) line {
	t.Helper()
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	for {
		select {
		case l := <-lines:
			if match(l) {
				return l
			}
		case <-timeout.C:
			t.Fatalf("no expected line within %v", within)
		}
	}
}

// TestMultiProcessConsumersKilled runs producers and consumers as separate
// processes and SIGKILLs consumers at random while messages flow, respawning
// them. Every message must be delivered and acknowledged; redeliveries of
// messages whose consumer died are the only duplicates.
func TestMultiProcessConsumersKilled(t *testing.T) {
	const producers, perProducer, consumers = 2, 3000, 3
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "work", MaxDepth: 1_000_000, MaxRedeliveries: mqbroker.UnlimitedRedeliveries})
	lines := make(chan line, 1024)
	env := []string{envSocket + "=" + b.socket, envQueue + "=work", envPrefetch + "=16"}
	spawnConsumer := func(i int) *child {
		return startChild(t, fmt.Sprintf("consumer-%d", i), "consumer", lines, env...)
	}
	cons := make([]*child, consumers)
	for i := range cons {
		cons[i] = spawnConsumer(i)
	}
	prods := make([]*child, producers)
	for i := range prods {
		prods[i] = startChild(t, fmt.Sprintf("producer-%d", i), "producer", lines,
			append(env, envCount+"="+strconv.Itoa(perProducer), envProducer+"="+strconv.Itoa(i))...)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	confirmed, got := map[string]bool{}, map[string]int{}
	received, kills, spawned := 0, 0, consumers
	nextKill := 100 + rng.IntN(400)
	total := producers * perProducer
	deadline := time.After(60 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for done := false; !done; {
		select {
		case l := <-lines:
			kind, body, _ := strings.Cut(l.text, " ")
			switch kind {
			case "C":
				confirmed[body] = true
			case "G":
				got[body]++
				received++
				if received >= nextKill && len(confirmed) < total {
					// Kill a random consumer mid-stream and replace it.
					i := rng.IntN(consumers)
					cons[i].kill()
					cons[i] = spawnConsumer(spawned)
					spawned++
					kills++
					nextKill = received + 100 + rng.IntN(400)
				}
			}
		case <-poll.C:
			s := queueStats(t, b.Broker, "work")
			done = len(confirmed) == total && s.Acked == uint64(total) && s.Depth == 0 && s.InFlight == 0
		case <-deadline:
			t.Fatalf("timed out: %d confirmed, %d distinct received, stats %+v", len(confirmed), len(got), queueStats(t, b.Broker, "work"))
		}
	}
	for _, p := range prods {
		if err := <-p.done; err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
	}
	// Drain what the consumers printed before the last acknowledgements.
	for draining := true; draining; {
		select {
		case l := <-lines:
			if kind, body, _ := strings.Cut(l.text, " "); kind == "G" {
				got[body]++
				received++
			}
		default:
			draining = false
		}
	}
	for body := range confirmed {
		if got[body] == 0 {
			t.Fatalf("message %q confirmed to its producer but never delivered", body)
		}
	}
	s := queueStats(t, b.Broker, "work")
	if s.Enqueued != uint64(total) || s.Acked != uint64(total) {
		t.Fatalf("stats %+v", s)
	}
	dups := received - len(got)
	t.Logf("%d messages, %d consumer kills: %d deliveries printed, %d duplicates (%.2f%%), broker redeliveries %d",
		total, kills, received, dups, 100*float64(dups)/float64(total), s.Redelivered)
	if kills < 3 {
		t.Fatalf("only %d kills happened; the test did not exercise consumer death", kills)
	}
}

// TestMultiProcessBrokerKilled runs the broker in its own process with a
// journal and SIGKILLs it repeatedly while a producer process sends: every
// message confirmed to the producer must be delivered after the restarts.
// With "redial" the clients do not reconnect and the applications dial
// again; with "reconnect" one client each rides through every restart, and
// any error the producer or the consumer sees fails the test.
func TestMultiProcessBrokerKilled(t *testing.T) {
	t.Run("redial", func(t *testing.T) { testBrokerKilled(t, false) })
	t.Run("reconnect", func(t *testing.T) { testBrokerKilled(t, true) })
}

func testBrokerKilled(t *testing.T, reconnect bool) {
	const total, restarts = 3000, 3
	dir := shortTempDir(t)
	socket := podcontract.MQSocketPath(dir)
	lines := make(chan line, 1024)
	env := []string{envSocket + "=" + socket, envQueue + "=durable", envJournal + "=" + filepath.Join(dir, "journal")}
	brokerLines := make(chan line, 16)
	startBrokerProc := func(i int) *child {
		name := fmt.Sprintf("broker-%d", i)
		ch := startChild(t, name, "broker", brokerLines, env...)
		waitLine(t, brokerLines, 10*time.Second, func(l line) bool { return l.from == name && l.text == "READY" })
		return ch
	}
	broker := startBrokerProc(0)
	producerRole := "producer"
	if reconnect {
		producerRole = "pipelined-producer"
	}
	prod := startChild(t, "producer", producerRole, lines, append(env, envCount+"="+strconv.Itoa(total), envProducer+"=0")...)

	// Consume concurrently in this process.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	got := map[string]int{}
	var consumerWG sync.WaitGroup
	consumerWG.Add(1)
	consumerErr := make(chan error, 1)
	go func() {
		defer consumerWG.Done()
		opts := []DialOption{WithoutReconnect()}
		if reconnect {
			opts = []DialOption{WithReconnect(fastReconnect)}
		}
		for ctx.Err() == nil {
			c, err := dialRetry(ctx, socket, opts...)
			if err != nil {
				return
			}
			k, err := c.Consume(ctx, "durable", WithPrefetch(32))
			for err == nil {
				var d *Delivery
				if d, err = k.Receive(ctx); err == nil {
					mu.Lock()
					got[trimBody(d.Body)]++
					mu.Unlock()
					if err = d.Ack(ctx); reconnect && errors.Is(err, ErrStaleDelivery) {
						err = nil // it is redelivered
					}
				}
			}
			c.Close()
			if reconnect && ctx.Err() == nil {
				consumerErr <- err
				return
			}
		}
	}()

	confirmed := map[string]bool{}
	kills := 0
	deadline := time.After(60 * time.Second)
	for prodDone := false; !prodDone; {
		select {
		case l := <-lines:
			if kind, body, _ := strings.Cut(l.text, " "); kind == "C" {
				confirmed[body] = true
				if kills < restarts && len(confirmed) >= (kills+1)*total/(restarts+1) {
					broker.kill()
					<-broker.done
					kills++
					broker = startBrokerProc(kills)
				}
			}
		case err := <-prod.done:
			if err != nil {
				t.Fatalf("producer: %v", err)
			}
			prodDone = true
		case err := <-consumerErr:
			t.Fatalf("consumer: %v", err)
		case <-deadline:
			t.Fatalf("timed out with %d confirmed", len(confirmed))
		}
	}
	for draining := true; draining; {
		select {
		case l := <-lines:
			if kind, body, _ := strings.Cut(l.text, " "); kind == "C" {
				confirmed[body] = true
			}
		default:
			draining = false
		}
	}
	if len(confirmed) != total || kills != restarts {
		t.Fatalf("%d confirmed, %d kills", len(confirmed), kills)
	}
	testkit.EventuallyTrue(t, 30*time.Second, "every confirmed message to be received", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for body := range confirmed {
			if got[body] == 0 {
				return false
			}
		}
		return true
	})
	cancel()
	consumerWG.Wait()
	mu.Lock()
	dups := 0
	for _, n := range got {
		dups += n - 1
	}
	mu.Unlock()
	t.Logf("%d messages confirmed across %d broker SIGKILLs, none lost; %d duplicate deliveries (%.2f%%)",
		total, kills, dups, 100*float64(dups)/float64(total))
}

// TestMultiProcessOrdering checks FIFO order within a priority for a single
// consumer process fed by two producer processes.
func TestMultiProcessOrdering(t *testing.T) {
	const perProducer = 2000
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "ordered", MaxDepth: 1_000_000})
	lines := make(chan line, 1024)
	env := []string{envSocket + "=" + b.socket, envQueue + "=ordered", envPrefetch + "=32"}
	cons := startChild(t, "consumer", "ordered-consumer", lines, append(env, envCount+"="+strconv.Itoa(2*perProducer))...)
	var prods []*child
	for i := range 2 {
		prods = append(prods, startChild(t, fmt.Sprint("producer-", i), "producer", lines,
			append(env, envCount+"="+strconv.Itoa(perProducer), envProducer+"="+strconv.Itoa(i))...))
	}
	go func() {
		for range lines { // confirmations are not needed here
		}
	}()
	for _, p := range append(prods, cons) {
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not finish", p.name)
		}
	}
	if s := queueStats(t, b.Broker, "ordered"); s.Acked != 2*perProducer || s.Redelivered != 0 {
		t.Fatalf("stats %+v", s)
	}
}
