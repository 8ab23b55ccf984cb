package mq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/mqwire"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
)

func TestApplyReconfigures(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "a", MaxDepth: 1}, mqbroker.QueueConfig{Name: "b"})
	c := dial(t, b.socket)
	mustSend(t, c, "a", "1")
	blocked, err := c.SendAsync(testCtx(t), "a", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 5*time.Second, "a blocked send", func() bool { return queueStats(t, b.Broker, "a").BlockedSends == 1 })
	kb := mustConsume(t, c, "b")

	// Switch a to Reject (the blocked send fails), drop b, add c.
	err = b.Apply(testCtx(t), []mqbroker.QueueConfig{{Name: "a", MaxDepth: 1, Overflow: mqbroker.Reject}, {Name: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := blocked.Wait(testCtx(t)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("blocked send after switch to Reject: %v", err)
	}
	if _, err := kb.Receive(testCtx(t)); !errors.Is(err, ErrQueueDeleted) {
		t.Fatalf("consumer of deleted queue: %v", err)
	}
	if err := c.Send(testCtx(t), "b", []byte("x")); !errors.Is(err, ErrUnknownQueue) {
		t.Fatalf("send to deleted queue: %v", err)
	}
	mustSend(t, c, "c", "new queue")

	// Raise the depth: a accepts again, and keeps its message.
	if err := b.Apply(testCtx(t), []mqbroker.QueueConfig{{Name: "a", MaxDepth: 5, Overflow: mqbroker.Reject}, {Name: "c"}}); err != nil {
		t.Fatal(err)
	}
	mustSend(t, c, "a", "3")
	if s := queueStats(t, b.Broker, "a"); s.Depth != 2 || s.Config.MaxDepth != 5 {
		t.Fatalf("stats after raising depth %+v", s)
	}
	if names := fmt.Sprint(len(b.Stats())); names != "2" {
		t.Fatalf("%s queues after reconfiguration", names)
	}
}

func TestPersistenceSurvivesRestart(t *testing.T) {
	dir := shortTempDir(t)
	cfgs := []mqbroker.QueueConfig{{Name: "durable", Persistence: mqbroker.Volume, MaxRedeliveries: mqbroker.UnlimitedRedeliveries}, {Name: "volatile", MaxRedeliveries: mqbroker.UnlimitedRedeliveries}}
	b, err := mqbroker.New(mqbroker.Options{JournalDir: filepath.Join(dir, "j"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(testCtx(t), cfgs); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "a.sock")
	ln, err := mqbroker.Listen(sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	go b.Serve(ln)
	c := dial(t, sock)
	for i := range 5 {
		mustSend(t, c, "durable", fmt.Sprint(i), WithPriority(uint8(i%2)))
		mustSend(t, c, "volatile", fmt.Sprint(i))
	}
	k := mustConsume(t, c, "durable", WithPrefetch(2))
	mustReceive(t, k).Ack(testCtx(t)) // "1" (priority 1)
	mustReceive(t, k)                 // "3", delivered and never acknowledged
	c.Ping(testCtx(t))
	if err := b.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Receive(testCtx(t), "durable"); err == nil {
		t.Fatal("client still receiving after broker shutdown")
	}

	b2 := startBrokerIn(t, dir, mqbroker.Options{JournalDir: filepath.Join(dir, "j")}, cfgs...)
	s := queueStats(t, b2.Broker, "durable")
	if s.Recovered != 4 || s.Depth != 4 {
		t.Fatalf("recovered stats %+v", s)
	}
	if v := queueStats(t, b2.Broker, "volatile"); v.Depth != 0 {
		t.Fatalf("volatile queue kept %d messages", v.Depth)
	}
	c2 := dial(t, b2.socket)
	k2 := mustConsume(t, c2, "durable", WithPrefetch(1))
	for _, want := range []string{"3", "0", "2", "4"} {
		d := mustReceive(t, k2)
		if string(d.Body) != want {
			t.Fatalf("after restart got %q, want %q", d.Body, want)
		}
		d.Ack(testCtx(t))
	}
	// Ids continue after the recovered ones.
	cf, err := c2.SendAsync(testCtx(t), "durable", []byte("new"))
	if err != nil || cf.Err() != nil || cf.ID() != 6 {
		t.Fatalf("send after restart: id %d, %v %v", cf.ID(), err, cf.Err())
	}
}

// TestRedeliveryCountSurvivesRestart holds that a journaled queue keeps each
// message's delivery count across a broker restart: a message that has used
// its redeliveries is dead-lettered at its next failure after the restart
// rather than starting over.
func TestRedeliveryCountSurvivesRestart(t *testing.T) {
	dir := shortTempDir(t)
	opts := mqbroker.Options{JournalDir: filepath.Join(dir, "j")}
	cfgs := []mqbroker.QueueConfig{
		{Name: "work", Persistence: mqbroker.Volume, MaxRedeliveries: 2, DeadLetterQueue: "dead"},
		{Name: "dead", Persistence: mqbroker.Volume},
	}
	b := startBrokerIn(t, dir, opts, cfgs...)
	c := dial(t, b.socket)
	mustSend(t, c, "work", "poison")
	k := mustConsume(t, c, "work", WithPrefetch(1))
	mustReceive(t, k).Nack(testCtx(t), true)
	if d := mustReceive(t, k); d.Deliveries != 2 {
		t.Fatalf("second delivery has count %d", d.Deliveries)
	}
	// Held unacknowledged when the broker stops (as if it crashed).
	c.Ping(testCtx(t))
	if err := b.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	b2 := startBrokerIn(t, shortTempDir(t), opts, cfgs...)
	c2 := dial(t, b2.socket)
	d := mustReceive(t, mustConsume(t, c2, "work", WithPrefetch(1)))
	if d.Deliveries != 3 {
		t.Fatalf("first delivery after the restart has count %d, want 3", d.Deliveries)
	}
	d.Nack(testCtx(t), true)
	if dead := mustReceive(t, mustConsume(t, c2, "dead")); string(dead.Body) != "poison" {
		t.Fatalf("dead letter %q", dead.Body)
	}
	if s := queueStats(t, b2.Broker, "work"); s.DeadLettered != 1 || s.Depth != 0 {
		t.Fatalf("work stats after the restart %+v", s)
	}
}

func TestJournalCompactsUnderTraffic(t *testing.T) {
	b := startBroker(t, mqbroker.Options{JournalCompactBytes: 64 << 10}, mqbroker.QueueConfig{Name: "q", Persistence: mqbroker.Volume})
	c := dial(t, b.socket)
	k := mustConsume(t, c, "q", WithPrefetch(16))
	body := make([]byte, 1000)
	for range 500 {
		if err := c.Send(testCtx(t), "q", body); err != nil {
			t.Fatal(err)
		}
		mustReceive(t, k).Ack(testCtx(t))
	}
	c.Ping(testCtx(t))
	s := queueStats(t, b.Broker, "q")
	if s.JournalBytes > 128<<10 {
		t.Fatalf("journal of an empty queue is %d bytes after 500 KB of traffic", s.JournalBytes)
	}
	fi, err := os.Stat(filepath.Join(b.dir, "journal", "q.journal"))
	if err != nil || fi.Size() > 128<<10 {
		t.Fatalf("journal file: %v %v", fi, err)
	}
}

func TestVolumeToggle(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "before")
	if err := b.Apply(testCtx(t), []mqbroker.QueueConfig{{Name: "q", Persistence: mqbroker.Volume}}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(b.dir, "journal", "q.journal")
	mustSend(t, c, "q", "after")
	if s := queueStats(t, b.Broker, "q"); s.JournalBytes == 0 {
		t.Fatal("journal empty after switching to Volume")
	}
	if err := b.Apply(testCtx(t), []mqbroker.QueueConfig{{Name: "q"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal still there after switching to None: %v", err)
	}
	if s := queueStats(t, b.Broker, "q"); s.Depth != 2 {
		t.Fatalf("depth %d", s.Depth)
	}
}

func TestShutdownIsGraceful(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", MaxDepth: 1})
	c, err := Dial(testCtx(t), WithSocketPath(b.socket), WithoutReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustSend(t, c, "q", "queued")
	blocked, err := c.SendAsync(testCtx(t), "q", []byte("blocked"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 5*time.Second, "the send to block", func() bool { return queueStats(t, b.Broker, "q").BlockedSends == 1 })
	if err := b.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := blocked.Wait(testCtx(t)); !errors.Is(err, ErrBrokerShutdown) {
		t.Fatalf("blocked send at shutdown: %v", err)
	}
	if err := c.Send(testCtx(t), "q", nil); !errors.Is(err, ErrBrokerShutdown) {
		t.Fatalf("send after shutdown: %v", err)
	}
	if _, err := Dial(testCtx(t), WithSocketPath(b.socket)); err == nil {
		t.Fatal("dial succeeded after shutdown")
	}
}

func TestDialDefaultSocketPath(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	t.Setenv(podcontract.EnvMQSocket, "")
	t.Setenv(podcontract.EnvDir, b.dir)
	c, err := Dial(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustSend(t, c, "q", "via PODIPC_DIR")

	// PODIPC_MQ_SOCKET, which the injector sets, wins over PODIPC_DIR.
	t.Setenv(podcontract.EnvDir, t.TempDir())
	t.Setenv(podcontract.EnvMQSocket, b.socket)
	c2, err := Dial(testCtx(t))
	if err != nil {
		t.Fatalf("Dial with PODIPC_MQ_SOCKET: %v", err)
	}
	defer c2.Close()
	mustSend(t, c2, "q", "via PODIPC_MQ_SOCKET")

	t.Setenv(podcontract.EnvMQSocket, "")
	t.Setenv(podcontract.EnvDir, "")
	if _, err := Dial(testCtx(t)); !errors.Is(err, podcontract.ErrNoDir) {
		t.Fatalf("Dial without PODIPC_DIR or PODIPC_MQ_SOCKET: %v, want ErrNoDir", err)
	}
}

func TestListenRefusesLiveSocketAndReplacesStaleOne(t *testing.T) {
	b := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	if _, err := mqbroker.Listen(b.socket, 0); err == nil {
		t.Fatal("second Listen on a live socket succeeded")
	}
	fi, err := os.Stat(b.socket)
	if err != nil || fi.Mode().Perm() != podcontract.DefaultFileMode {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	stale := filepath.Join(b.dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := mqbroker.Listen(stale, 0o600)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln2.Close()
}

// closedByPeer reports whether a read error means the broker closed the
// connection (a reset if it closed with our bytes unread).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// rawConn opens a connection to the broker without the client library.
func rawConn(t *testing.T, socket string) net.Conn {
	t.Helper()
	nc, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func rawHandshake(t *testing.T, nc net.Conn) {
	t.Helper()
	if _, err := nc.Write(mqwire.AppendHello(nil, mqwire.Hello{MinVersion: 1, MaxVersion: 1})); err != nil {
		t.Fatal(err)
	}
	var buf [mqwire.WelcomeSize]byte
	if _, err := io.ReadFull(nc, buf[:]); err != nil {
		t.Fatal(err)
	}
	if w, err := mqwire.ParseWelcome(buf[:]); err != nil || w.Status != mqwire.CodeOK {
		t.Fatalf("welcome %+v %v", w, err)
	}
}

// readGoAway reads frames until a GOAWAY and returns its code; it fails if
// the broker does not close the connection afterwards.
func readGoAway(t *testing.T, nc net.Conn) mqwire.Code {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := mqwire.NewReader(nc, 4096, 1<<20)
	for {
		typ, p, err := r.Next()
		if err != nil {
			t.Fatalf("no GOAWAY before %v", err)
		}
		if typ == mqwire.TypeGoAway {
			e, err := mqwire.ParseGoAway(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.Next(); err != io.EOF {
				t.Fatalf("after GOAWAY: %v, want EOF", err)
			}
			return e.Code
		}
	}
}

// TestHostileClients checks that misbehaving connections are closed with a
// clear reason while a well-behaved client keeps working.
func TestHostileClients(t *testing.T) {
	b := startBroker(t, mqbroker.Options{HandshakeTimeout: 100 * time.Millisecond, MaxConnections: 8, MaxConnectionsPerUID: 8, WriteTimeout: time.Second},
		mqbroker.QueueConfig{Name: "q", MaxDepth: 100_000})
	good := dial(t, b.socket)
	stillWorks := func(t *testing.T) {
		t.Helper()
		mustSend(t, good, "q", "ok")
	}

	t.Run("garbage handshake", func(t *testing.T) {
		nc := rawConn(t, b.socket)
		nc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := nc.Read(make([]byte, 64)); !closedByPeer(err) {
			t.Fatalf("broker answered garbage with %d bytes, %v", n, err)
		}
		stillWorks(t)
	})
	t.Run("unsupported version", func(t *testing.T) {
		nc := rawConn(t, b.socket)
		nc.Write(mqwire.AppendHello(nil, mqwire.Hello{MinVersion: 7, MaxVersion: 9}))
		var buf [mqwire.WelcomeSize]byte
		if _, err := io.ReadFull(nc, buf[:]); err != nil {
			t.Fatal(err)
		}
		if w, _ := mqwire.ParseWelcome(buf[:]); w.Status != mqwire.CodeVersion {
			t.Fatalf("status %v", w.Status)
		}
	})
	t.Run("slowloris handshake", func(t *testing.T) {
		nc := rawConn(t, b.socket)
		nc.Write([]byte("PD"))
		start := time.Now()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Read(make([]byte, 1)); !closedByPeer(err) {
			t.Fatalf("half a handshake: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("closed after %v", d)
		}
		stillWorks(t)
	})
	t.Run("huge length prefix", func(t *testing.T) {
		nc := rawConn(t, b.socket)
		rawHandshake(t, nc)
		nc.Write([]byte{0xff, 0xff, 0xff, 0x7f, byte(mqwire.TypeSend)})
		if code := readGoAway(t, nc); code != mqwire.CodeBadRequest {
			t.Fatalf("GOAWAY code %v", code)
		}
		stillWorks(t)
	})
	t.Run("garbage frames", func(t *testing.T) {
		nc := rawConn(t, b.socket)
		rawHandshake(t, nc)
		nc.Write([]byte{3, 0, 0, 0, 0x42, 1, 2})
		if code := readGoAway(t, nc); code != mqwire.CodeBadRequest {
			t.Fatalf("GOAWAY code %v", code)
		}
		stillWorks(t)
	})
	t.Run("malformed send", func(t *testing.T) {
		nc := rawConn(t, b.socket)
		rawHandshake(t, nc)
		frame := mqwire.AppendSend(nil, 1, 0, 0, 0, "q", nil)
		frame[mqwire.HeaderSize+5] = 200 // queue name longer than the frame
		nc.Write(frame)
		if code := readGoAway(t, nc); code != mqwire.CodeBadRequest {
			t.Fatalf("GOAWAY code %v", code)
		}
	})
	t.Run("pipelined sends", func(t *testing.T) {
		nc := rawConn(t, b.socket)
		rawHandshake(t, nc)
		var frames []byte
		// Thousands of sends written before any answer is read are all
		// answered: immediately confirmed sends do not count against the
		// pending window.
		for i := range 3000 {
			frames = mqwire.AppendSend(frames, uint32(i+1), 0, 0, 0, "q", []byte("x"))
		}
		nc.Write(frames)
		r := mqwire.NewReader(nc, 4096, 1<<20)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := range 3000 {
			typ, _, err := r.Next()
			if err != nil || typ != mqwire.TypeSendOK {
				t.Fatalf("answer %d: %v %v", i, typ, err)
			}
		}
	})
	t.Run("client that never reads", func(t *testing.T) {
		nc := rawConn(t, b.socket)
		rawHandshake(t, nc)
		// Ask for a flood of deliveries and never read them: the broker
		// must give up on the connection after WriteTimeout rather than
		// buffer without bound.
		nc.Write(mqwire.AppendConsume(nil, 1, 1, 8192, "q"))
		big := make([]byte, 64<<10)
		for range 200 {
			mustSend(t, good, "q", string(big))
		}
		testkit.EventuallyTrue(t, 10*time.Second, "the stuck consumer to be dropped", func() bool {
			return queueStats(t, b.Broker, "q").Consumers == 0
		})
		stillWorks(t)
	})
	t.Run("connection flood", func(t *testing.T) {
		var conns []*Client
		var refused int
		for range 20 {
			c, err := Dial(testCtx(t), WithSocketPath(b.socket))
			if errors.Is(err, ErrTooManyConnections) {
				refused++
				continue
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			conns = append(conns, c)
		}
		if refused == 0 || len(conns)+1 > 8 {
			t.Fatalf("%d accepted, %d refused with MaxConnections 8", len(conns)+1, refused)
		}
		stillWorks(t)
		for _, c := range conns {
			c.Close()
		}
		testkit.EventuallyTrue(t, 5*time.Second, "connections to be released", func() bool {
			c, err := Dial(testCtx(t), WithSocketPath(b.socket))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	})
	t.Run("half-open flood", func(t *testing.T) {
		// Connections that never handshake hold a slot only until the
		// handshake timeout.
		var wg sync.WaitGroup
		for range 30 {
			nc, err := net.Dial("unix", b.socket)
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, nc)
			}()
		}
		wg.Wait()
		stillWorks(t)
		c := dial(t, b.socket)
		mustSend(t, c, "q", "after flood")
	})
}

// TestPendingWindowEnforced checks the unconfirmed-send window on both sides:
// the broker answers sends beyond it with ErrTooManyPending, and the client
// library never exceeds it.
func TestPendingWindowEnforced(t *testing.T) {
	b := startBroker(t, mqbroker.Options{MaxPendingSends: 4}, mqbroker.QueueConfig{Name: "q", MaxDepth: 1})
	nc := rawConn(t, b.socket)
	rawHandshake(t, nc)
	var frames []byte
	for i := range 7 {
		frames = mqwire.AppendSend(frames, uint32(i+1), 0, 0, 0, "q", []byte("x"))
	}
	nc.Write(frames)
	r := mqwire.NewReader(nc, 4096, 1<<20)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Send 1 is queued; 2-5 block (4 pending); 6 and 7 exceed the window.
	want := map[uint32]mqwire.Code{1: mqwire.CodeOK, 6: mqwire.CodeTooManyPending, 7: mqwire.CodeTooManyPending}
	for range want {
		typ, p, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case mqwire.TypeSendOK:
			ok, _ := mqwire.ParseSendOK(p)
			if want[ok.Req] != mqwire.CodeOK {
				t.Fatalf("send %d confirmed", ok.Req)
			}
		case mqwire.TypeError:
			e, _ := mqwire.ParseError(p)
			if want[e.ID] != e.Code {
				t.Fatalf("send %d failed with %v", e.ID, e.Code)
			}
		default:
			t.Fatalf("unexpected %v", typ)
		}
	}
	if s := queueStats(t, b.Broker, "q"); s.BlockedSends != 4 {
		t.Fatalf("blocked sends %d", s.BlockedSends)
	}

	c := dial(t, b.socket)
	for range 4 {
		if _, err := c.SendAsync(testCtx(t), "q", []byte("y")); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := c.SendAsync(short, "q", []byte("z")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SendAsync beyond the window: %v", err)
	}
}

// TestFailedJournalWriteIsNeverDelivered fills a real tmpfs under a
// journaled queue: a send answered with "journal write failed" must never
// reach a consumer (a producer that retries it would make a duplicate), and
// every send answered with success must.
func TestFailedJournalWriteIsNeverDelivered(t *testing.T) {
	// The broker makes its private journal directory on the tmpfs (whose
	// root, 1777, it would refuse), as the sidecar does.
	journal := filepath.Join(testkit.SizedTmpfs(t, 512<<10), "journal")
	b := startBroker(t, mqbroker.Options{JournalDir: journal},
		mqbroker.QueueConfig{Name: "q", Persistence: mqbroker.Volume, MaxBytes: 64 << 20, MaxDepth: 100_000})
	c := dial(t, b.socket)
	k := mustConsume(t, c, "q", WithPrefetch(10_000)) // attached, so a queued message is delivered at once

	body := make([]byte, 8<<10)
	succeeded := map[string]bool{}
	failures := 0
	for i := 0; failures < 5; i++ {
		if i == 2000 {
			t.Fatalf("a 512 KiB tmpfs took 2000 sends of 8 KiB without a journal write failing")
		}
		copy(body, fmt.Sprintf("%08d", i))
		err := c.Send(testCtx(t), "q", body)
		switch {
		case err == nil:
			succeeded[string(body[:8])] = true
		case errors.Is(err, ErrInternal):
			failures++
		default:
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if len(succeeded) == 0 {
		t.Fatal("no send succeeded before the tmpfs was full")
	}
	for got := 0; got < len(succeeded); got++ {
		d := mustReceive(t, k)
		if !succeeded[string(d.Body[:8])] {
			t.Fatalf("delivered message %s, whose send was answered with journal write failed", d.Body[:8])
		}
	}
	c.Ping(testCtx(t))
	expectNothing(t, k, 50*time.Millisecond)
	if s := queueStats(t, b.Broker, "q"); s.InFlight != len(succeeded) || s.Depth != 0 {
		t.Fatalf("stats %+v, want %d in flight and nothing else", s, len(succeeded))
	}
}
