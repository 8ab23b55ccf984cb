// Package conformance runs the Go implementation (pkg/shm) and the native C
// client (clients/c, libpodipc) as real processes on the same channel files
// on a tmpfs, and checks that they keep the same layout and protocol
// (docs/shm-layout.md): every queue message exactly once whoever sends and
// takes it, every broadcast message in order to every subscriber, a dead
// C peer's message redelivered to Go, a dead C producer's reservation
// skipped, and bad channel files rejected with the same error class.
//
// The message format the peers exchange is described in docs/clients.md.
package conformance

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"

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
	peerOnce sync.Once
	peerPath string
	peerErr  error
)

// cPeer builds clients/c (the library and podipc-shm-peer) once per test
// binary and returns the peer's path.
func cPeer(t *testing.T) string {
	t.Helper()
	peerOnce.Do(func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			peerErr = fmt.Errorf("the C client needs gcc (apt-get install gcc make): %w", err)
			return
		}
		dir, err := filepath.Abs("../../clients/c")
		if err != nil {
			peerErr = err
			return
		}
		out, err := exec.Command("make", "-s", "-C", dir, "build/podipc-shm-peer").CombinedOutput()
		if err != nil {
			peerErr = fmt.Errorf("make -C clients/c: %v\n%s", err, out)
			return
		}
		peerPath = filepath.Join(dir, "build", "podipc-shm-peer")
	})
	if peerErr != nil {
		t.Fatal(peerErr)
	}
	return peerPath
}

// tmpfs returns a fresh directory on /dev/shm (a tmpfs) when there is one.
func tmpfs(t *testing.T) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "podipc-conformance-")
		if err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// proc is a running C peer with its stdout read line by line.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *strings.Builder
	exited chan struct{} // closed once the process is reaped; err is then set
	err    error
}

func startC(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(cPeer(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdin: stdin, lines: make(chan string, 1<<16), stderr: &strings.Builder{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// line returns the peer's next line of output, failing after d.
func (p *proc) line(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("%v ended before printing a line; stderr:\n%s", p.cmd.Args, p.stderr)
		}
		return l
	case <-time.After(d):
		t.Fatalf("%v printed nothing for %v; stderr:\n%s", p.cmd.Args, d, p.stderr)
	}
	return ""
}

// wait waits for the peer to exit successfully and returns its remaining output.
func (p *proc) wait(t *testing.T) []string {
	t.Helper()
	var out []string
	for l := range p.lines {
		out = append(out, l)
	}
	<-p.exited
	if p.err != nil {
		t.Fatalf("%v: %v; stderr:\n%s", p.cmd.Args, p.err, p.stderr)
	}
	return out
}

// kill SIGKILLs the peer and waits for it to be reaped.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Kill()
	<-p.exited
	if p.err == nil {
		t.Fatalf("%v exited cleanly; it was to be killed", p.cmd.Args)
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

// TestQueueMixed: a C and a Go producer, a C and a Go consumer on one queue;
// every message is taken exactly once with its content intact.
func TestQueueMixed(t *testing.T) {
	const perProducer, size = 20000, 200
	path := filepath.Join(tmpfs(t), "mixed")
	ch := create(t, path, shm.Options{Mode: shm.ModeQueue, SlotSize: 256, SlotCount: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cConsumer := startC(t, "consume", path)
	cProducer := startC(t, "produce", path, "1", fmt.Sprint(perProducer), fmt.Sprint(size))

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
		for seq := uint32(0); seq < perProducer; seq++ {
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
	cProducer.wait(t)
	// Both producers are done: one end marker per consumer, from Go.
	p, err := ch.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	end := make([]byte, 16)
	binary.LittleEndian.PutUint32(end, endMarker)
	for range 2 {
		if err := p.Send(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	_ = p.Close()
	if err := <-goErr; err != nil {
		t.Fatalf("Go consumer: %v", err)
	}
	fromC := 0
	for _, l := range cConsumer.wait(t) {
		var id, seq uint32
		if _, err := fmt.Sscanf(l, "got %d %d", &id, &seq); err != nil {
			t.Fatalf("C consumer printed %q", l)
		}
		record(id, seq)
		fromC++
	}
	for id := uint32(0); id < 2; id++ {
		for seq := uint32(0); seq < perProducer; seq++ {
			if n := seen[[2]uint32{id, seq}]; n != 1 {
				t.Fatalf("message %d/%d taken %d times", id, seq, n)
			}
		}
	}
	if len(seen) != 2*perProducer {
		t.Fatalf("%d distinct messages, want %d", len(seen), 2*perProducer)
	}
	t.Logf("%d messages: %d taken by the C consumer, %d by the Go one", 2*perProducer, fromC, 2*perProducer-fromC)
}

// TestBroadcastMixed: a Go producer, a C and a Go subscriber: both see every
// message in order; a C subscriber lapped under OverflowOverwrite is told
// how many it lost.
func TestBroadcastMixed(t *testing.T) {
	const count = 20000
	dir := tmpfs(t)
	t.Run("block", func(t *testing.T) {
		path := filepath.Join(dir, "bcast")
		ch := create(t, path, shm.Options{Mode: shm.ModeBroadcast, SlotSize: 128, SlotCount: 64})
		sub := startC(t, "subscribe", path, fmt.Sprint(count))
		if l := sub.line(t, 30*time.Second); l != "ready" {
			t.Fatalf("C subscriber printed %q", l)
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
		out := sub.wait(t)
		if want := fmt.Sprintf("received %d lost 0", count); len(out) != 1 || out[0] != want {
			t.Fatalf("C subscriber printed %q, want %q", out, want)
		}
	})
	t.Run("lapped", func(t *testing.T) {
		path := filepath.Join(dir, "bcast-lap")
		ch := create(t, path, shm.Options{Mode: shm.ModeBroadcast, Overflow: shm.OverflowOverwrite, SlotSize: 64, SlotCount: 8})
		sub := startC(t, "subscribe", path, "100", "wait")
		if l := sub.line(t, 30*time.Second); l != "ready" {
			t.Fatalf("C subscriber printed %q", l)
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
		if _, err := io.WriteString(sub.stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
		out := sub.wait(t)
		var received, lost int
		if len(out) != 1 {
			t.Fatalf("C subscriber printed %q", out)
		}
		if _, err := fmt.Sscanf(out[0], "received %d lost %d", &received, &lost); err != nil {
			t.Fatalf("C subscriber printed %q", out[0])
		}
		// The subscriber was at position 0; the producer reached 100 over 8
		// slots, so 93 were overwritten and the last 7 are still there.
		if lost != 93 || received != 7 {
			t.Fatalf("C subscriber: received %d, lost %d; want 7 and 93", received, lost)
		}
		if st := ch.Stats(); st.Lost != 93 {
			t.Fatalf("channel stats count %d lost, want 93", st.Lost)
		}
	})
}

// TestDeadCPeers: a C consumer killed holding a borrowed message, and a C
// producer killed holding a reservation. The message goes to a Go consumer;
// the reserved position is skipped and the queue goes on.
func TestDeadCPeers(t *testing.T) {
	path := filepath.Join(tmpfs(t), "dead")
	ch := create(t, path, shm.Options{Mode: shm.ModeQueue, SlotSize: 64, SlotCount: 8})
	p, err := ch.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := make([]byte, 48)
	fill(msg, 7, 1)
	if err := p.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	holder := startC(t, "hold", path)
	if l := holder.line(t, 30*time.Second); l != "held 7 1" {
		t.Fatalf("C consumer printed %q", l)
	}
	reserver := startC(t, "reserve", path)
	if l := reserver.line(t, 30*time.Second); l != "reserved" {
		t.Fatalf("C producer printed %q", l)
	}
	fill(msg, 7, 2)
	if err := p.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	holder.kill(t)
	reserver.kill(t)
	// The reaper pass the sidecar runs periodically finds both dead.
	if n, err := ch.ReapDeadPeers(); err != nil || n != 2 {
		t.Fatalf("ReapDeadPeers = %d, %v; want the 2 dead C peers", n, err)
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

// TestBadFilesSameClass: Go and C reject a corpus of bad channel files with
// the same error class.
func TestBadFilesSameClass(t *testing.T) {
	dir := tmpfs(t)
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
		out, err := exec.Command(cPeer(t), "validate", path).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: podipc-shm-peer validate: %v\n%s", name, err, out)
		}
		if g, c := goClass(gerr), strings.TrimSpace(string(out)); g != c {
			t.Errorf("%s: Go says %s (%v), C says %s", name, g, gerr, c)
		}
		if name != "good" && gerr == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
