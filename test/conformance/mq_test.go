package conformance

// The message-queue half of the suite: Go (pkg/mq), C (libpodipc's
// podipc-mq-peer) and Python (python3 -m podipc.mqpeer) producers and
// consumers on the same queues of one real broker (internal/mqbroker, as
// the sidecar runs it), speaking docs/mq-protocol.md. The peers' commands
// and output are in docs/clients.md ("The conformance peers").

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/mq"
	"github.com/podipc/podipc/pkg/podcontract"
)

// mqCommand returns the native client's mq peer command line for args.
func (c client) mqCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	build(t)
	if c.name == "C" {
		return exec.Command(filepath.Join(cDir, "build", "podipc-mq-peer"), args...)
	}
	cmd := exec.Command(python, append([]string{"-m", "podipc.mqpeer"}, args...)...)
	cmd.Env = pythonEnv()
	return cmd
}

func startMQ(t *testing.T, c client, args ...string) *proc {
	t.Helper()
	return &proc{testkit.Start(t, c.mqCommand(t, args...), testkit.Name(c.name+" mq "+args[0]))}
}

// startBroker serves cfgs on a socket in a fresh tmpfs directory, as the
// sidecar does, and returns the socket's path. A queue that does not say
// how often a message may be redelivered gets the sidecar's default (5):
// the broker's zero makes the first failed delivery final, and a consumer
// that exits holding prefetched deliveries fails them.
func startBroker(t *testing.T, cfgs ...mqbroker.QueueConfig) string {
	t.Helper()
	for i := range cfgs {
		if cfgs[i].MaxRedeliveries == 0 {
			cfgs[i].MaxRedeliveries = channelconfig.DefaultMaxRedeliveries
		}
	}
	dir := testkit.TmpfsDir(t)
	b, err := mqbroker.New(mqbroker.Options{JournalDir: filepath.Join(dir, "journal")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(context.Background(), cfgs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	socket := podcontract.MQSocketPath(dir)
	ln, err := mqbroker.Listen(socket, 0)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- b.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("broker Shutdown: %v", err)
		}
		if err := <-served; err != nil && !errors.Is(err, mqbroker.ErrShutdown) {
			t.Errorf("broker Serve: %v", err)
		}
	})
	return socket
}

func dialMQ(t *testing.T, socket string) *mq.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mq.Dial(ctx, mq.WithSocketPath(socket), mq.WithoutReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// goSend sends count messages of producer id in the suite's format,
// pipelined, and waits for every confirmation.
func goSend(ctx context.Context, c *mq.Client, queue string, id, count uint32, size int, opts ...mq.SendOption) error {
	confs := make([]*mq.Confirmation, 0, 256)
	wait := func() error {
		for _, cf := range confs {
			if err := cf.Wait(ctx); err != nil {
				return err
			}
		}
		confs = confs[:0]
		return nil
	}
	for seq := uint32(0); seq < count; seq++ {
		b := make([]byte, size)
		fill(b, id, seq)
		cf, err := c.SendAsync(ctx, queue, b, opts...)
		if err != nil {
			return fmt.Errorf("send %d/%d: %w", id, seq, err)
		}
		if confs = append(confs, cf); len(confs) == cap(confs) {
			if err := wait(); err != nil {
				return fmt.Errorf("send %d/%d: %w", id, seq, err)
			}
		}
	}
	return wait()
}

// endMarkers sends n end markers: each consumer stops at the first it takes.
func endMarkers(ctx context.Context, t *testing.T, c *mq.Client, queue string, n int) {
	t.Helper()
	for i := range n {
		b := make([]byte, 16)
		fill(b, endMarker, uint32(i))
		if err := c.Send(ctx, queue, b); err != nil {
			t.Fatalf("end marker: %v", err)
		}
	}
}

// received is one delivery a consumer reported.
type received struct {
	id, seq, deliveries uint32
}

// parseMsg parses a peer's "msg ID SEQ DELIVERIES" line.
func parseMsg(line string) (received, error) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "msg" {
		return received{}, fmt.Errorf("not a msg line: %q", line)
	}
	var v [3]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 32)
		if err != nil {
			return received{}, fmt.Errorf("bad msg line %q: %v", line, err)
		}
		v[i] = n
	}
	return received{uint32(v[0]), uint32(v[1]), uint32(v[2])}, nil
}

// nativeDeliveries collects a finished consumer's "msg" lines, failing on
// anything else but its closing "done N".
func nativeDeliveries(t *testing.T, p *proc) []received {
	t.Helper()
	var got []received
	lines := p.wait(t)
	for i, l := range lines {
		if strings.HasPrefix(l, "done ") && i == len(lines)-1 {
			if want := fmt.Sprintf("done %d", len(got)); l != want {
				t.Errorf("%s: %q after %d messages", p.Name(), l, len(got))
			}
			return got
		}
		r, err := parseMsg(l)
		if err != nil {
			t.Fatalf("%s: %v", p.Name(), err)
		}
		got = append(got, r)
	}
	t.Fatalf("%s ended without a done line: %q", p.Name(), lines)
	return nil
}

// goConsume takes messages until the first end marker (stop < 0) or until
// stop messages, acking each, and reports them.
func goConsume(ctx context.Context, c *mq.Client, queue string, prefetch, stop int) ([]received, error) {
	k, err := c.Consume(ctx, queue, mq.WithPrefetch(prefetch))
	if err != nil {
		return nil, err
	}
	defer func() { _ = k.Close() }()
	var got []received
	for stop < 0 || len(got) < stop {
		d, err := k.Receive(ctx)
		if err != nil {
			return got, fmt.Errorf("after %d messages: %w", len(got), err)
		}
		id, seq, err := check(d.Body)
		if err != nil {
			return got, err
		}
		got = append(got, received{id, seq, uint32(d.Deliveries)})
		if err := d.Ack(ctx); err != nil {
			return got, err
		}
		if id == endMarker {
			break
		}
	}
	return got, c.Ping(ctx) // every ack applied
}

// exactlyOnce checks that every message of counts (producer id: messages)
// was received once and nothing else but ends end markers.
func exactlyOnce(t *testing.T, counts map[uint32]uint32, ends int, got []received) {
	t.Helper()
	seen := map[[2]uint32]int{}
	markers := 0
	for _, r := range got {
		if r.id == endMarker {
			markers++
			continue
		}
		if n, ok := counts[r.id]; !ok || r.seq >= n {
			t.Errorf("message %d/%d was never sent", r.id, r.seq)
			continue
		}
		seen[[2]uint32{r.id, r.seq}]++
	}
	for id, n := range counts {
		for seq := range n {
			if c := seen[[2]uint32{id, seq}]; c != 1 {
				t.Errorf("message %d/%d received %d times", id, seq, c)
			}
		}
	}
	if markers != ends {
		t.Errorf("%d end markers received, %d sent", markers, ends)
	}
}

// TestMQMixed: Go, C and Python producers and consumers on one queue of the
// broker; every message is delivered to exactly one consumer, intact.
func TestMQMixed(t *testing.T) {
	const goCount, size = 20000, 64
	socket := startBroker(t, mqbroker.QueueConfig{Name: "mixed", MaxDepth: 1 << 20, MaxBytes: 1 << 30})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var consumers []*proc
	for _, c := range clients {
		p := startMQ(t, c, "consume", socket, "mixed", "0", "64", "ack")
		if l := p.line(t, 30*time.Second); l != "ready" {
			t.Fatalf("%s consumer: %q, want ready", c.name, l)
		}
		consumers = append(consumers, p)
	}
	var (
		mu     sync.Mutex
		goGot  []received
		goErr  error
		goDone = make(chan struct{})
	)
	go func() {
		defer close(goDone)
		got, err := goConsume(ctx, dialMQ(t, socket), "mixed", 64, -1)
		mu.Lock()
		goGot, goErr = got, err
		mu.Unlock()
	}()

	counts := map[uint32]uint32{0: goCount}
	var producers []*proc
	for i, c := range clients {
		id := uint32(i + 1)
		counts[id] = c.count
		producers = append(producers, startMQ(t, c, "send", socket, "mixed", fmt.Sprint(id), fmt.Sprint(c.count), fmt.Sprint(size)))
	}
	if err := goSend(ctx, dialMQ(t, socket), "mixed", 0, goCount, size); err != nil {
		t.Fatalf("Go producer: %v", err)
	}
	for i, p := range producers {
		if out := p.wait(t); len(out) != 1 || out[0] != fmt.Sprintf("sent %d", clients[i].count) {
			t.Fatalf("%s producer: %q", clients[i].name, out)
		}
	}
	endMarkers(ctx, t, dialMQ(t, socket), "mixed", len(consumers)+1)

	var all []received
	for i, p := range consumers {
		got := nativeDeliveries(t, p)
		t.Logf("%s consumer: %d messages", clients[i].name, len(got))
		all = append(all, got...)
	}
	<-goDone
	if goErr != nil {
		t.Fatalf("Go consumer: %v", goErr)
	}
	t.Logf("Go consumer: %d messages", len(goGot))
	exactlyOnce(t, counts, len(consumers)+1, append(all, goGot...))
}

// TestMQRedeliveryOnKill: a C or Python consumer SIGKILLed holding
// unacknowledged deliveries; the broker redelivers every one of them to a
// Go consumer, marked as redelivered.
func TestMQRedeliveryOnKill(t *testing.T) {
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			const count, held = 200, 16
			socket := startBroker(t, mqbroker.QueueConfig{Name: "work"})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := goSend(ctx, dialMQ(t, socket), "work", 7, count, 100); err != nil {
				t.Fatal(err)
			}
			p := startMQ(t, c, "consume", socket, "work", fmt.Sprint(count), fmt.Sprint(held), "hold")
			if l := p.line(t, 30*time.Second); l != "ready" {
				t.Fatalf("%s consumer: %q, want ready", c.name, l)
			}
			heldSeqs := map[uint32]bool{}
			for range held {
				r, err := parseMsg(p.line(t, 30*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				heldSeqs[r.seq] = true
			}
			p.kill(t)

			got, err := goConsume(ctx, dialMQ(t, socket), "work", 64, count)
			if err != nil {
				t.Fatalf("Go consumer: %v", err)
			}
			exactlyOnce(t, map[uint32]uint32{7: count}, 0, got)
			for _, r := range got {
				if heldSeqs[r.seq] != (r.deliveries == 2) {
					t.Errorf("message %d: delivered %d times, held by the killed consumer: %v", r.seq, r.deliveries, heldSeqs[r.seq])
				}
			}
		})
	}
}

// TestMQDeadLetterMixed: a C producer, a Python consumer that rejects every
// message (NACK without requeue) and a Go consumer of the dead-letter queue;
// then the same with the languages turned around. Every message ends in the
// dead-letter queue once, intact.
func TestMQDeadLetterMixed(t *testing.T) {
	for _, roles := range [][2]client{{clientC, clientPython}, {clientPython, clientC}} {
		producer, rejecter := roles[0], roles[1]
		t.Run(producer.name+"-to-"+rejecter.name, func(t *testing.T) {
			const count = 300
			socket := startBroker(t,
				mqbroker.QueueConfig{Name: "jobs", DeadLetterQueue: "jobs.dlq"},
				mqbroker.QueueConfig{Name: "jobs.dlq"})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rej := startMQ(t, rejecter, "consume", socket, "jobs", fmt.Sprint(count), "32", "nack")
			if l := rej.line(t, 30*time.Second); l != "ready" {
				t.Fatalf("%s consumer: %q, want ready", rejecter.name, l)
			}
			prod := startMQ(t, producer, "send", socket, "jobs", "3", fmt.Sprint(count), "256")
			if out := prod.wait(t); len(out) != 1 || out[0] != fmt.Sprintf("sent %d", count) {
				t.Fatalf("%s producer: %q", producer.name, out)
			}
			rejected := nativeDeliveries(t, rej)
			exactlyOnce(t, map[uint32]uint32{3: count}, 0, rejected)

			got, err := goConsume(ctx, dialMQ(t, socket), "jobs.dlq", 64, count)
			if err != nil {
				t.Fatalf("Go consumer of the dead-letter queue: %v", err)
			}
			exactlyOnce(t, map[uint32]uint32{3: count}, 0, got)
		})
	}
}

// TestMQPriorityAcrossLanguages: messages queued by a C producer at
// priority 0 and a Python producer at priority 9 before any consumer; a Go
// consumer takes every priority-9 message first, each producer's in order.
func TestMQPriorityAcrossLanguages(t *testing.T) {
	const count = 100
	socket := startBroker(t, mqbroker.QueueConfig{Name: "prio"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, c := range []client{clientC, clientPython} {
		p := startMQ(t, c, "send", socket, "prio", fmt.Sprint(i+1), fmt.Sprint(count), "32", fmt.Sprint(9*i))
		if out := p.wait(t); len(out) != 1 || out[0] != fmt.Sprintf("sent %d", count) {
			t.Fatalf("%s producer: %q", c.name, out)
		}
	}
	got, err := goConsume(ctx, dialMQ(t, socket), "prio", 1, 2*count)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		want := received{id: 2, seq: uint32(i)}
		if i >= count {
			want = received{id: 1, seq: uint32(i - count)}
		}
		if r.id != want.id || r.seq != want.seq {
			t.Fatalf("delivery %d: message %d/%d, want %d/%d (priority 9 first, then 0, each in order)", i, r.id, r.seq, want.id, want.seq)
		}
	}
}

// TestMQNativeRefuseImpostor: with PODIPC_BROKER_UID naming another UID
// than the broker's, the native clients refuse to talk to it.
func TestMQNativeRefuseImpostor(t *testing.T) {
	socket := startBroker(t, mqbroker.QueueConfig{Name: "q"})
	for _, c := range clients {
		cmd := c.mqCommand(t, "send", socket, "q", "1", "1", "16")
		cmd.Env = append(cmd.Environ(), "PODIPC_BROKER_UID=4242")
		out, err := cmd.Output()
		if err == nil {
			t.Errorf("%s sent to a broker not running as the UID it was told: %q", c.name, out)
			continue
		}
		if !strings.HasPrefix(string(out), "error impostor") {
			t.Errorf("%s: %q, want an impostor error", c.name, out)
		}
	}
}
