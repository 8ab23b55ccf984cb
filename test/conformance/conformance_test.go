// Package conformance runs the Go implementation (pkg/shm, pkg/mq) and the native C
// and Python clients (clients/c, libpodipc; clients/python, podipc) as real
// processes on the same channel files on a tmpfs and the same queues of one
// broker, and checks that they keep the same layout and protocol
// (docs/shm-layout.md, docs/mq-protocol.md): every queue message exactly
// once whoever sends and takes it, every broadcast message in order to every
// subscriber, a dead C or Python peer's message redelivered to Go, its
// reservation skipped, bad channel files rejected with the same error class;
// and for queues (mq_test.go) the same with acks, redelivery, dead letters,
// priorities and the broker's UID check.
//
// The message format the peers exchange is described in docs/clients.md.
package conformance

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/shm"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fill writes message seq of producer id into b, in the suite's format.
func fill(b []byte, id, seq uint32) {
	for k := 16; k < len(b); k++ {
		b[k] = byte(id*31 + seq*7 + uint32(k))
	}
	le := binary.LittleEndian
	le.PutUint32(b[0:], id)
	le.PutUint32(b[4:], seq)
	le.PutUint32(b[8:], crc32.Checksum(b[16:], castagnoli))
	le.PutUint32(b[12:], 0)
}

const endMarker = ^uint32(0)

// check validates a message and returns its producer id and sequence.
func check(b []byte) (id, seq uint32, err error) {
	if len(b) < 16 {
		return 0, 0, fmt.Errorf("message of %d bytes, shorter than the 16-byte header", len(b))
	}
	le := binary.LittleEndian
	id, seq = le.Uint32(b[0:]), le.Uint32(b[4:])
	if id == endMarker {
		return id, seq, nil
	}
	if got, want := le.Uint32(b[8:]), crc32.Checksum(b[16:], castagnoli); got != want {
		return id, seq, fmt.Errorf("message %d/%d: checksum %#x, computed %#x", id, seq, got, want)
	}
	return id, seq, nil
}

var (
	buildOnce sync.Once
	buildErr  error
	cDir      string // clients/c, absolute
	pyDir     string // clients/python, absolute
	python    string
)

// build builds clients/c (the library and podipc-shm-peer) once per test
// binary and finds the Python interpreter that imports clients/python.
func build(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			buildErr = fmt.Errorf("the C client needs gcc (apt-get install gcc make): %w", err)
			return
		}
		if cDir, buildErr = filepath.Abs("../../clients/c"); buildErr != nil {
			return
		}
		if pyDir, buildErr = filepath.Abs("../../clients/python"); buildErr != nil {
			return
		}
		out, err := exec.Command("make", "-s", "-C", cDir, "build/podipc-shm-peer", "build/podipc-mq-peer", "build/libpodipc.so").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make -C clients/c: %v\n%s", err, out)
			return
		}
		// Debian's interpreter first: python3-numpy and python3-pytest are its packages.
		python = os.Getenv("PODIPC_PYTHON")
		for _, p := range []string{"/usr/bin/python3", "python3"} {
			if python != "" {
				break
			}
			if path, err := exec.LookPath(p); err == nil {
				python = path
			}
		}
		if python == "" {
			buildErr = errors.New("the Python client needs python3 (apt-get install python3)")
			return
		}
		cmd := exec.Command(python, "-c", "import podipc")
		cmd.Env = pythonEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%s cannot import clients/python/podipc: %v\n%s", python, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

func pythonEnv() []string {
	return append(os.Environ(), "PYTHONPATH="+pyDir, "PODIPC_LIBRARY="+filepath.Join(cDir, "build", "libpodipc.so"))
}

// A client is a native client's podipc-shm-peer: the C tool or the Python
// module, which take the same commands and print the same lines.
type client struct {
	name  string
	count uint32 // how many messages a throughput scenario sends through it
}

var (
	clientC      = client{"C", 20000}
	clientPython = client{"Python", 10000} // pure-Python CRC-32C checks: slower
	clients      = []client{clientC, clientPython}
)

// command returns the peer's command line for args.
func (c client) command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	build(t)
	if c.name == "C" {
		return exec.Command(filepath.Join(cDir, "build", "podipc-shm-peer"), args...)
	}
	cmd := exec.Command(python, append([]string{"-m", "podipc.peer"}, args...)...)
	cmd.Env = pythonEnv()
	return cmd
}

// proc is a running peer, started through internal/testkit.
type proc struct{ *testkit.Proc }

func start(t *testing.T, c client, args ...string) *proc {
	t.Helper()
	return &proc{testkit.Start(t, c.command(t, args...), testkit.Name(c.name+" "+args[0]))}
}

// line returns the peer's next line of output, failing after d.
func (p *proc) line(t *testing.T, d time.Duration) string {
	t.Helper()
	return p.Line(t, d)
}

// wait waits for the peer to exit successfully and returns its remaining output.
func (p *proc) wait(t *testing.T) []string {
	t.Helper()
	var out []string
	for l := range p.Lines() { // until it exits
		out = append(out, l)
	}
	p.WaitSuccess(t, time.Minute) // it has exited
	return out
}

// kill SIGKILLs the peer and waits for it to be reaped.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.Kill(); err == nil {
		t.Fatalf("%s exited cleanly; it was to be killed", p.Name())
	}
}

func create(t *testing.T, path string, o shm.Options) *shm.Channel {
	t.Helper()
	ch, err := shm.Create(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	return ch
}

// smallQueue creates a Queue channel of 8 slots of 64 bytes at path and
// opens a Go producer on it, closed when the test ends.
func smallQueue(t *testing.T, path string) (*shm.Channel, *shm.Producer) {
	t.Helper()
	ch := create(t, path, shm.Options{Mode: shm.ModeQueue, SlotSize: 64, SlotCount: 8})
	p, err := ch.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return ch, p
}

// TestQueueMixed: a Go, a C and a Python producer, a Go, a C and a Python
// consumer on one queue; every message is taken exactly once with its
// content intact.
func TestQueueMixed(t *testing.T) {
	const goCount, size = 20000, 200
	path := filepath.Join(testkit.TmpfsDir(t), "mixed")
	ch := create(t, path, shm.Options{Mode: shm.ModeQueue, SlotSize: 256, SlotCount: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	counts := map[uint32]uint32{0: goCount} // producer id: messages
	var consumers, producers []*proc
	for i, c := range clients {
		id := uint32(i + 1)
		counts[id] = c.count
		consumers = append(consumers, start(t, c, "consume", path))
		producers = append(producers, start(t, c, "produce", path, fmt.Sprint(id), fmt.Sprint(c.count), fmt.Sprint(size)))
	}

	var mu sync.Mutex
	seen := map[[2]uint32]int{}
	record := func(id, seq uint32) { mu.Lock(); seen[[2]uint32{id, seq}]++; mu.Unlock() }
	goErr := make(chan error, 2)
	go func() { // the Go consumer
		q, err := ch.NewConsumer()
		if err != nil {
			goErr <- err
			return
		}
		defer q.Close()
		buf := make([]byte, 256)
		for {
			n, err := q.Recv(ctx, buf)
			if err != nil {
				goErr <- err
				return
			}
			id, seq, err := check(buf[:n])
			if err != nil {
				goErr <- err
				return
			}
			if id == endMarker {
				goErr <- nil
				return
			}
			record(id, seq)
		}
	}()
	go func() { // the Go producer, copying
		p, err := ch.NewProducer()
		if err != nil {
			goErr <- err
			return
		}
		defer p.Close()
		msg := make([]byte, size)
		for seq := uint32(0); seq < goCount; seq++ {
			fill(msg, 0, seq)
			if err := p.Send(ctx, msg); err != nil {
				goErr <- err
				return
			}
		}
		goErr <- nil
	}()
	if err := <-goErr; err != nil { // the producer (the consumer needs the end marker first)
		t.Fatal(err)
	}
	for _, p := range producers {
		p.wait(t)
	}
	// Every producer is done: one end marker per consumer, from Go.
	p, err := ch.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	end := make([]byte, 16)
	binary.LittleEndian.PutUint32(end, endMarker)
	for range 1 + len(consumers) {
		if err := p.Send(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	_ = p.Close()
	if err := <-goErr; err != nil {
		t.Fatalf("Go consumer: %v", err)
	}
	taken := map[string]int{}
	for i, c := range consumers {
		for _, l := range c.wait(t) {
			var id, seq uint32
			if _, err := fmt.Sscanf(l, "got %d %d", &id, &seq); err != nil {
				t.Fatalf("%s consumer printed %q", clients[i].name, l)
			}
			record(id, seq)
			taken[clients[i].name]++
		}
	}
	total := 0
	for id, n := range counts {
		total += int(n)
		for seq := uint32(0); seq < n; seq++ {
			if k := seen[[2]uint32{id, seq}]; k != 1 {
				t.Fatalf("message %d/%d taken %d times", id, seq, k)
			}
		}
	}
	if len(seen) != total {
		t.Fatalf("%d distinct messages, want %d", len(seen), total)
	}
	t.Logf("%d messages: %d taken by the C consumer, %d by the Python one, %d by the Go one",
		total, taken["C"], taken["Python"], total-taken["C"]-taken["Python"])
}

// TestBroadcastMixed: a Go producer, a C, a Python and a Go subscriber: all
// see every message in order; a C or Python subscriber lapped under
// OverflowOverwrite is told how many it lost.
func TestBroadcastMixed(t *testing.T) {
	const count = 20000
	dir := testkit.TmpfsDir(t)
	t.Run("block", func(t *testing.T) {
		path := filepath.Join(dir, "bcast")
		ch := create(t, path, shm.Options{Mode: shm.ModeBroadcast, SlotSize: 128, SlotCount: 64})
		var subs []*proc
		for _, c := range clients {
			sub := start(t, c, "subscribe", path, fmt.Sprint(count))
			if l := sub.line(t, 30*time.Second); l != "ready" {
				t.Fatalf("%s subscriber printed %q", c.name, l)
			}
			subs = append(subs, sub)
		}
		gsub, err := ch.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		defer gsub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		goErr := make(chan error, 1)
		go func() {
			buf := make([]byte, 128)
			for want := uint32(0); want < count; want++ {
				n, err := gsub.Recv(ctx, buf)
				if err != nil {
					goErr <- err
					return
				}
				if _, seq, err := check(buf[:n]); err != nil || seq != want {
					goErr <- fmt.Errorf("message %d: seq %d, %v", want, seq, err)
					return
				}
			}
			goErr <- nil
		}()
		p, err := ch.NewProducer()
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		msg := make([]byte, 100)
		for seq := uint32(0); seq < count; seq++ {
			fill(msg, 0, seq)
			if err := p.Send(ctx, msg); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-goErr; err != nil {
			t.Fatalf("Go subscriber: %v", err)
		}
		for i, sub := range subs {
			out := sub.wait(t)
			if want := fmt.Sprintf("received %d lost 0", count); len(out) != 1 || out[0] != want {
				t.Fatalf("%s subscriber printed %q, want %q", clients[i].name, out, want)
			}
		}
	})
	for _, c := range clients {
		t.Run("lapped/"+c.name, func(t *testing.T) { testLapped(t, c, filepath.Join(dir, "bcast-lap-"+c.name)) })
	}
}

func testLapped(t *testing.T, c client, path string) {
	ch := create(t, path, shm.Options{Mode: shm.ModeBroadcast, Overflow: shm.OverflowOverwrite, SlotSize: 64, SlotCount: 8})
	sub := start(t, c, "subscribe", path, "100", "wait")
	if l := sub.line(t, 30*time.Second); l != "ready" {
		t.Fatalf("%s subscriber printed %q", c.name, l)
	}
	p, err := ch.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msg := make([]byte, 40)
	for seq := uint32(0); seq < 100; seq++ { // 100 messages through 8 slots, never waiting
		fill(msg, 0, seq)
		if err := p.Send(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.WriteString(sub.Stdin(), "go\n"); err != nil {
		t.Fatal(err)
	}
	out := sub.wait(t)
	var received, lost int
	if len(out) != 1 {
		t.Fatalf("%s subscriber printed %q", c.name, out)
	}
	if _, err := fmt.Sscanf(out[0], "received %d lost %d", &received, &lost); err != nil {
		t.Fatalf("%s subscriber printed %q", c.name, out[0])
	}
	// The subscriber was at position 0; the producer reached 100 over 8
	// slots, so 93 were overwritten and the last 7 are still there.
	if lost != 93 || received != 7 {
		t.Fatalf("%s subscriber: received %d, lost %d; want 7 and 93", c.name, received, lost)
	}
	if st := ch.Stats(); st.Lost != 93 {
		t.Fatalf("channel stats count %d lost, want 93", st.Lost)
	}
}

// TestDeadNativePeers: a C or Python consumer killed holding a borrowed
// message, and a C or Python producer killed holding a reservation. The
// message goes to a Go consumer; the reserved position is skipped and the
// queue goes on.
func TestDeadNativePeers(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) { testDeadPeers(t, c, filepath.Join(dir, "dead-"+c.name)) })
	}
}

func testDeadPeers(t *testing.T, c client, path string) {
	ch, p := smallQueue(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := make([]byte, 48)
	fill(msg, 7, 1)
	if err := p.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	holder := start(t, c, "hold", path)
	if l := holder.line(t, 30*time.Second); l != "held 7 1" {
		t.Fatalf("%s consumer printed %q", c.name, l)
	}
	reserver := start(t, c, "reserve", path)
	if l := reserver.line(t, 30*time.Second); l != "reserved" {
		t.Fatalf("%s producer printed %q", c.name, l)
	}
	fill(msg, 7, 2)
	if err := p.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	holder.kill(t)
	reserver.kill(t)
	// The reaper pass the sidecar runs periodically finds both dead.
	if n, err := ch.ReapDeadPeers(); err != nil || n != 2 {
		t.Fatalf("ReapDeadPeers = %d, %v; want the 2 dead %s peers", n, err, c.name)
	}
	q, err := ch.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	got := map[uint32]bool{}
	buf := make([]byte, 64)
	for range 2 {
		n, err := q.Recv(ctx, buf)
		if err != nil {
			t.Fatal(err)
		}
		_, seq, err := check(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		got[seq] = true
	}
	if !got[1] || !got[2] {
		t.Fatalf("received %v, want messages 1 (redelivered) and 2", got)
	}
	if _, err := q.TryRecv(buf); !errors.Is(err, shm.ErrEmpty) {
		t.Fatalf("a third receive: %v, want ErrEmpty (the reservation is skipped, not delivered)", err)
	}
	st := ch.Stats()
	if st.Redelivered != 1 || st.Abandoned != 1 || st.Reaped != 2 {
		t.Fatalf("stats %+v: want 1 redelivered, 1 abandoned, 2 reaped", st)
	}
}

// TestBadFilesSameClass: Go, C and Python reject a corpus of bad channel
// files with the same error class.
func TestBadFilesSameClass(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	good := filepath.Join(dir, "good")
	create(t, good, shm.Options{Mode: shm.ModeQueue, SlotSize: 64, SlotCount: 4})
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	resum := func(b []byte) []byte { le.PutUint32(b[72:], crc32.Checksum(b[:72], castagnoli)); return b }
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), orig...)) }
	cases := map[string][]byte{
		"good":        orig,
		"empty":       {},
		"short":       orig[:100],
		"foreign":     edit(func(b []byte) []byte { copy(b, "\x7fELF\x02\x01\x01\x00"); return b }),
		"version":     edit(func(b []byte) []byte { le.PutUint32(b[8:], 9); return resum(b) }),
		"checksum":    edit(func(b []byte) []byte { b[24] ^= 1; return b }),
		"slotCount":   edit(func(b []byte) []byte { le.PutUint32(b[32:], 3); return resum(b) }),
		"slotStride":  edit(func(b []byte) []byte { le.PutUint32(b[28:], 8); return resum(b) }),
		"mode":        edit(func(b []byte) []byte { le.PutUint32(b[16:], 7); return resum(b) }),
		"overwrite":   edit(func(b []byte) []byte { le.PutUint32(b[20:], 2); return resum(b) }),
		"fileSize":    edit(func(b []byte) []byte { le.PutUint64(b[56:], 1<<20); return resum(b) }),
		"truncated":   orig[:len(orig)-64],
		"longer":      append(append([]byte(nil), orig...), make([]byte, 4096)...),
		"peersOffset": edit(func(b []byte) []byte { le.PutUint64(b[40:], 2048); return resum(b) }),
	}
	goClass := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case errors.Is(err, shm.ErrTruncated):
			return "truncated"
		case errors.Is(err, shm.ErrNotChannel):
			return "not-channel"
		case errors.Is(err, shm.ErrVersion):
			return "version"
		case errors.Is(err, shm.ErrCorrupt):
			return "corrupt"
		}
		return "other: " + err.Error()
	}
	for name, content := range cases {
		path := filepath.Join(dir, "bad-"+name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		gch, gerr := shm.Open(path)
		if gerr == nil {
			_ = gch.Close()
		}
		for _, c := range clients {
			out, err := c.command(t, "validate", path).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %s podipc-shm-peer validate: %v\n%s", name, c.name, err, out)
			}
			if g, n := goClass(gerr), strings.TrimSpace(string(out)); g != n {
				t.Errorf("%s: Go says %s (%v), %s says %s", name, g, gerr, c.name, n)
			}
		}
		if name != "good" && gerr == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
