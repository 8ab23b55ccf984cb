package mqbroker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podipc/podipc/internal/mqconn"
	"github.com/podipc/podipc/internal/mqjournal"
	"github.com/podipc/podipc/internal/mqwire"
	"github.com/podipc/podipc/internal/regularfile"
	"github.com/podipc/podipc/pkg/podcontract"
)

// Options configure a Broker. Zero fields take the documented defaults.
type Options struct {
	// JournalDir holds the journals of queues with Persistence Volume
	// (normally a directory on the pod's tmpfs). Required for such queues.
	// It must be a directory only the broker's user can write, else it is
	// set aside and made anew (see Apply).
	JournalDir string
	// PrivateRoot, if set, is a directory above JournalDir (the pod's
	// tmpfs root): every directory below it down to JournalDir must be only
	// the broker's user's too, else it is set aside likewise. A container
	// that can write the root can otherwise plant a directory of its own on
	// the way, in which the broker could not set aside what it refuses.
	PrivateRoot string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// MaxConnections bounds concurrent connections, including those still
	// in their handshake (default 1024).
	MaxConnections int
	// MaxConnectionsPerUID bounds the concurrent connections of the
	// processes of one user, as the kernel reports the peer (SO_PEERCRED),
	// so that one container cannot take them all (default a quarter of
	// MaxConnections).
	MaxConnectionsPerUID int
	// MaxBlockedSendBytes bounds the body bytes of the sends waiting for
	// room in full Block queues, over every connection: a send past it fails
	// at once with a queue-full error (default 64 MiB).
	MaxBlockedSendBytes int64
	// HandshakeTimeout bounds how long a new connection may take to send
	// its handshake (default 5s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds how long a client may leave the broker's writes
	// blocked before it is disconnected (default 30s).
	WriteTimeout time.Duration
	// MaxMessageSize bounds every queue's MaxMessageSize (default 16 MiB).
	MaxMessageSize int
	// MaxPendingSends and MaxPendingBytes bound a connection's unconfirmed
	// sends (defaults 1024 and 16 MiB).
	MaxPendingSends int
	MaxPendingBytes int
	// MaxPrefetch bounds one consumer's prefetch (default 8192).
	MaxPrefetch int
	// MaxConsumersPerConn bounds the consumers of one connection (default 256).
	MaxConsumersPerConn int
	// JournalCompactBytes is the journal size below which it is never
	// compacted (default 1 MiB).
	JournalCompactBytes int64
}

func (o Options) defaulted() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&o.MaxConnections, 1024)
	setDefault(&o.MaxConnectionsPerUID, max(o.MaxConnections/4, 1))
	setDefault(&o.MaxBlockedSendBytes, 64<<20)
	setDefault(&o.HandshakeTimeout, 5*time.Second)
	setDefault(&o.WriteTimeout, 30*time.Second)
	setDefault(&o.MaxMessageSize, 16<<20)
	setDefault(&o.MaxPendingSends, 1024)
	setDefault(&o.MaxPendingBytes, 16<<20)
	setDefault(&o.MaxPrefetch, 8192)
	setDefault(&o.MaxConsumersPerConn, 256)
	setDefault(&o.JournalCompactBytes, 1<<20)
	return o
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Broker serves queues to clients over Unix domain sockets.
type Broker struct {
	opts    Options
	log     *slog.Logger
	epoch   time.Time
	welcome mqwire.Welcome
	nextTag atomic.Uint64
	batches sync.Pool

	applyMu sync.Mutex
	queues  atomic.Pointer[map[string]*queue]

	// blockedBytes is the body bytes of every queue's parked sends.
	blockedBytes atomic.Int64

	mu          sync.Mutex
	listeners   map[net.Listener]struct{}
	conns       map[*bconn]struct{}
	handshaking map[net.Conn]struct{}
	// byUID counts the connections (handshaking included) of each peer UID.
	byUID      map[uint32]int
	nextConnID uint64
	closing    bool
	done       chan struct{}
	wg         sync.WaitGroup
}

// New returns a broker with no queues; call Apply to declare them and
// Serve to accept clients.
func New(opts Options) (*Broker, error) {
	opts = opts.defaulted()
	maxFrame := opts.MaxMessageSize + mqwire.SendOverhead + mqwire.MaxQueueName
	if opts.MaxMessageSize > 1<<30 {
		return nil, fmt.Errorf("%w: MaxMessageSize %d exceeds 1 GiB", ErrInvalidOptions, opts.MaxMessageSize)
	}
	b := &Broker{
		opts:  opts,
		log:   opts.Logger,
		epoch: time.Now(),
		welcome: mqwire.Welcome{
			Version:         mqwire.Version1,
			MaxFrame:        uint32(max(maxFrame, mqwire.MinFrameLimit)),
			MaxMessage:      uint32(opts.MaxMessageSize),
			MaxPendingSends: uint32(opts.MaxPendingSends),
			MaxPendingBytes: uint32(min(opts.MaxPendingBytes, 1<<31)),
			MaxPrefetch:     uint32(opts.MaxPrefetch),
			MaxConsumers:    uint32(opts.MaxConsumersPerConn),
		},
		listeners:   map[net.Listener]struct{}{},
		conns:       map[*bconn]struct{}{},
		handshaking: map[net.Conn]struct{}{},
		byUID:       map[uint32]int{},
		done:        make(chan struct{}),
	}
	b.queues.Store(&map[string]*queue{})
	b.batches.New = func() any { return &batch{b: b} }
	return b, nil
}

type instant struct{ mono, wall int64 }

func (b *Broker) now() instant {
	t := time.Now()
	return instant{mono: int64(t.Sub(b.epoch)), wall: t.UnixNano()}
}

func (b *Broker) getBatch() *batch   { return b.batches.Get().(*batch) }
func (b *Broker) putBatch(bt *batch) { b.batches.Put(bt) }

func (b *Broker) lookup(name string) *queue { return (*b.queues.Load())[name] }

func (b *Broker) lookupBytes(name []byte) *queue { return (*b.queues.Load())[string(name)] }

func (b *Broker) queueList() []*queue { return slices.Collect(maps.Values(*b.queues.Load())) }

func (b *Broker) journalPath(queue string) string {
	return filepath.Join(b.opts.JournalDir, queue+".journal")
}

// journalDir creates the journal directory if it is missing and checks that
// only the broker's user can write it (and, under Options.PrivateRoot, each
// directory between that root and it): on the pod's tmpfs, whose root every
// container can write, another container may have renamed it away and put
// its own in its place, with forged journals. Such a directory (or a
// symbolic link, or a file) is not used: it is renamed aside and a new one
// made, and refused says so, for the queues whose journals it held.
func (b *Broker) journalDir() (refused string, err error) {
	dir := filepath.Clean(b.opts.JournalDir)
	chain := []string{dir}
	if root := b.opts.PrivateRoot; root != "" {
		root = filepath.Clean(root)
		for d := filepath.Dir(dir); d != root && strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
			chain = append([]string{d}, chain...)
		}
	}
	if err := os.MkdirAll(filepath.Dir(chain[0]), 0o700); err != nil {
		return "", fmt.Errorf("create journal directory: %w", err)
	}
	for _, d := range chain {
		why, err := b.privateDir(d)
		if err != nil {
			return "", err
		}
		if why != "" && refused == "" {
			refused = why
		}
	}
	return refused, nil
}

// privateDir makes sure that dir is a directory only the broker's user can
// write, setting aside what is there otherwise (see journalDir).
func (b *Broker) privateDir(dir string) (refused string, err error) {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create journal directory: %w", err)
	}
	bad := regularfile.CheckPrivateDir(dir)
	if bad == nil {
		return "", nil
	}
	aside, err := quarantine(dir)
	if err != nil {
		return "", fmt.Errorf("journal directory refused (%w), setting it aside: %w", bad, err)
	}
	b.log.Error("refused the journal directory: it was set aside and the journaled queues start empty", "err", bad, "setAside", aside)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("create journal directory: %w", err)
	}
	if err := regularfile.CheckPrivateDir(dir); err != nil {
		return "", fmt.Errorf("journal directory: %w", err)
	}
	return fmt.Sprintf("the journal directory was refused and set aside as %s: %v", filepath.Base(aside), bad), nil
}

// quarantine renames path (a symbolic link itself, not its target) to a
// new name beside it that says it was refused, and returns that name.
func quarantine(path string) (string, error) {
	aside := fmt.Sprintf("%s.refused-%d", path, time.Now().UnixNano())
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	return aside, nil
}

func (b *Broker) journalOptions() mqjournal.Options {
	return mqjournal.Options{
		MaxRecord:       mqjournal.RecordOverhead + b.opts.MaxMessageSize,
		CompactMinBytes: b.opts.JournalCompactBytes,
	}
}

func (q *queue) mode() DeliveryMode {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg.Delivery
}

// Apply makes the broker's queues match cfgs: it creates the queues that are
// new (restoring their journals), reconfigures those that changed, and
// deletes those no longer declared (their consumers are told, their messages
// and journals discarded). A configuration that does not validate changes
// nothing. Errors opening or switching a journal are reported after the rest
// of the configuration has been applied.
func (b *Broker) Apply(ctx context.Context, cfgs []QueueConfig) error {
	cfgs, err := validateSet(cfgs)
	if err != nil {
		return err
	}
	needJournal := false
	dirRefused := ""
	for _, c := range cfgs {
		if c.MaxMessageSize > b.opts.MaxMessageSize {
			return fmt.Errorf("%w: queue %q: MaxMessageSize %d exceeds the broker's %d", ErrInvalidConfig, c.Name, c.MaxMessageSize, b.opts.MaxMessageSize)
		}
		needJournal = needJournal || c.Persistence == Volume
	}
	if needJournal {
		if b.opts.JournalDir == "" {
			return fmt.Errorf("%w: Persistence Volume needs Options.JournalDir", ErrInvalidConfig)
		}
		if dirRefused, err = b.journalDir(); err != nil {
			return err
		}
	}
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	if b.shuttingDown() {
		return ErrShutdown
	}
	old := *b.queues.Load()
	next := make(map[string]*queue, len(cfgs))
	bt := b.getBatch()
	defer b.putBatch(bt)
	var errs []error
	for _, cfg := range cfgs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		bt.resetClock() // opening a journal takes a while
		if q, ok := old[cfg.Name]; ok {
			if err := q.update(bt, cfg); err != nil {
				errs = append(errs, fmt.Errorf("queue %q: %w", cfg.Name, err))
			}
			next[cfg.Name] = q
			continue
		}
		q := newQueue(b, cfg)
		if cfg.Persistence == Volume {
			if err := q.openJournal(dirRefused); err != nil {
				errs = append(errs, fmt.Errorf("queue %q: %w", cfg.Name, err))
				continue
			}
		}
		next[cfg.Name] = q
		b.log.Info("queue created", "queue", cfg.Name, "delivery", cfg.Delivery, "persistence", cfg.Persistence)
	}
	if len(errs) > 0 && ctx.Err() != nil {
		// Keep the queues that were not reached rather than deleting them.
		for name, q := range old {
			if _, ok := next[name]; !ok {
				next[name] = q
			}
		}
	}
	b.queues.Store(&next)
	for name, q := range old {
		if _, ok := next[name]; !ok {
			q.remove(bt)
			b.log.Info("queue deleted", "queue", name)
		}
	}
	bt.finish()
	return errors.Join(errs...)
}

// Stats returns a snapshot of every queue's statistics, sorted by name.
func (b *Broker) Stats() []QueueStats {
	qs := b.queueList()
	out := make([]QueueStats, 0, len(qs))
	for _, q := range qs {
		out = append(out, q.stats())
	}
	slices.SortFunc(out, func(a, b QueueStats) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Listen creates a Unix socket listener at path with the given file mode
// (podcontract.DefaultFileMode if zero). A stale socket file left by a dead
// broker is replaced, and so is anything else in the way: a file that is not
// a socket, or a socket served by a process of another user (an impostor). A
// socket served by a process of this user is another broker: an error. The
// socket file is removed when the listener closes.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if mode == 0 {
		mode = podcontract.DefaultFileMode
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			// Never a broker's: something a container put in the way.
			if err := os.RemoveAll(path); err != nil {
				return nil, fmt.Errorf("listen %s: remove what is there (%v, not a socket): %w", path, fi.Mode().Type(), err)
			}
		} else {
			if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
				// A socket served by another user is no broker of ours but an
				// impostor planted by some container: take its place.
				cred, err := mqconn.PeerCred(c)
				ours := err == nil && int(cred.Uid) == os.Getuid()
				c.Close()
				if ours {
					return nil, fmt.Errorf("listen %s: another broker is serving it", path)
				}
			}
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("remove stale socket: %w", err)
			}
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set socket mode: %w", err)
	}
	return ln, nil
}

// ListenAndServe listens on path (see Listen) and serves until Shutdown.
func (b *Broker) ListenAndServe(path string, mode os.FileMode) error {
	ln, err := Listen(path, mode)
	if err != nil {
		return err
	}
	return b.Serve(ln)
}

// Serve accepts connections on ln until Shutdown, which makes it return nil.
// It closes ln when it returns.
func (b *Broker) Serve(ln net.Listener) error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		ln.Close()
		return ErrShutdown
	}
	b.listeners[ln] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.listeners, ln)
		b.mu.Unlock()
		ln.Close()
	}()
	b.log.Info("broker serving", "addr", ln.Addr().String())
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if b.shuttingDown() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors or similar: wait and retry.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				b.log.Warn("accept failed, retrying", "err", err, "backoff", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-b.done:
					t.Stop()
					return nil
				}
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		b.admitConn(nc)
	}
}

// refusalSlack is how many connections beyond MaxConnections are still
// answered with a refusal rather than closed at once.
const refusalSlack = 64

// peer is who is at the other end of a connection, as the kernel saw it
// connect; known is false if the kernel could not say.
type peer struct {
	pid, uid uint32
	known    bool
}

// refusal is why a connection is refused.
type refusal int

const (
	admitted refusal = iota
	tooManyConnections
	tooManyForUID
)

func (b *Broker) admitConn(nc net.Conn) {
	var p peer
	if cred, err := mqconn.PeerCred(nc); err == nil {
		p = peer{pid: uint32(cred.Pid), uid: cred.Uid, known: true}
	}
	b.mu.Lock()
	total := len(b.conns) + len(b.handshaking)
	if b.closing || total >= b.opts.MaxConnections+refusalSlack {
		b.mu.Unlock()
		nc.Close()
		return
	}
	why := admitted
	switch {
	case total >= b.opts.MaxConnections:
		why = tooManyConnections
	case p.known && b.byUID[p.uid] >= b.opts.MaxConnectionsPerUID:
		why = tooManyForUID
	}
	b.handshaking[nc] = struct{}{}
	if why == admitted && p.known {
		b.byUID[p.uid]++
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go b.handshake(nc, p, why)
}

// release forgets a connection of p that was admitted.
func (b *Broker) release(p peer) {
	if !p.known {
		return
	}
	if b.byUID[p.uid]--; b.byUID[p.uid] <= 0 {
		delete(b.byUID, p.uid)
	}
}

func (b *Broker) handshake(nc net.Conn, p peer, why refusal) {
	defer b.wg.Done()
	refuse := why != admitted
	registered := false
	defer func() {
		if !registered {
			b.mu.Lock()
			delete(b.handshaking, nc)
			if !refuse {
				b.release(p)
			}
			b.mu.Unlock()
			nc.Close()
		}
	}()
	timeout := b.opts.HandshakeTimeout
	if refuse {
		timeout = min(timeout, time.Second)
	}
	nc.SetDeadline(time.Now().Add(timeout))
	var buf [mqwire.HelloSize]byte
	if _, err := io.ReadFull(nc, buf[:]); err != nil {
		b.log.Debug("handshake failed", "err", err)
		return
	}
	w := b.welcome
	hello, err := mqwire.ParseHello(buf[:])
	switch {
	case err != nil:
		b.log.Debug("bad handshake", "err", err)
		return
	case hello.MinVersion > mqwire.Version1 || hello.MaxVersion < mqwire.Version1:
		w = mqwire.Welcome{Version: mqwire.Version1, Status: mqwire.CodeVersion}
	case why == tooManyConnections:
		w = mqwire.Welcome{Version: mqwire.Version1, Status: mqwire.CodeTooManyConns}
		b.log.Warn("refused connection: the broker is at its connection limit", "pid", p.pid, "uid", p.uid, "max", b.opts.MaxConnections)
	case why == tooManyForUID:
		w = mqwire.Welcome{Version: mqwire.Version1, Status: mqwire.CodeTooManyConns}
		b.log.Warn("refused connection: its user is at its connection limit", "pid", p.pid, "uid", p.uid, "maxPerUID", b.opts.MaxConnectionsPerUID)
	case b.shuttingDown():
		w = mqwire.Welcome{Version: mqwire.Version1, Status: mqwire.CodeShuttingDown}
	}
	if _, err := nc.Write(mqwire.AppendWelcome(nil, w)); err != nil || w.Status != mqwire.CodeOK {
		return
	}
	nc.SetDeadline(time.Time{})
	b.mu.Lock()
	delete(b.handshaking, nc)
	if b.closing {
		b.mu.Unlock()
		return
	}
	b.nextConnID++
	c := newBconn(b, nc, b.nextConnID)
	b.conns[c] = struct{}{}
	registered = true
	b.mu.Unlock()
	c.log.Debug("client connected")
	c.serve()
	b.mu.Lock()
	delete(b.conns, c)
	b.release(p)
	b.mu.Unlock()
}

// ConnStats is a snapshot of the broker's connection and memory bounds and
// their use.
type ConnStats struct {
	// Connections counts the open connections, handshakes included, and
	// MaxConnections bounds them.
	Connections    int
	MaxConnections int
	// ByUID counts the admitted connections of each peer UID, and
	// MaxConnectionsPerUID bounds each count.
	ByUID                map[uint32]int
	MaxConnectionsPerUID int
	// BlockedSendBytes is the body bytes of the sends waiting for room in
	// full Block queues, and MaxBlockedSendBytes bounds it.
	BlockedSendBytes    int64
	MaxBlockedSendBytes int64
}

// ConnStats returns the connections' and blocked sends' bounds and use.
func (b *Broker) ConnStats() ConnStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return ConnStats{
		Connections:          len(b.conns) + len(b.handshaking),
		MaxConnections:       b.opts.MaxConnections,
		ByUID:                maps.Clone(b.byUID),
		MaxConnectionsPerUID: b.opts.MaxConnectionsPerUID,
		BlockedSendBytes:     b.blockedBytes.Load(),
		MaxBlockedSendBytes:  b.opts.MaxBlockedSendBytes,
	}
}

// reserveBlocked accounts n more bytes of parked sends, unless that would
// pass MaxBlockedSendBytes.
func (b *Broker) reserveBlocked(n int) bool {
	for {
		cur := b.blockedBytes.Load()
		if cur+int64(n) > b.opts.MaxBlockedSendBytes {
			return false
		}
		if b.blockedBytes.CompareAndSwap(cur, cur+int64(n)) {
			return true
		}
	}
}

func (b *Broker) shuttingDown() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// Shutdown stops accepting connections, lets every connection finish the
// frames it has already received (their confirmations are sent), tells the
// clients with a GOAWAY frame, and flushes and closes the journals. Messages
// delivered but not acknowledged stay in the journal. If ctx ends first,
// connections are closed abruptly and ctx's error is returned.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	first := !b.closing
	if first {
		b.closing = true
		close(b.done)
	}
	for ln := range b.listeners {
		ln.Close()
	}
	for nc := range b.handshaking {
		nc.Close()
	}
	for c := range b.conns {
		c.stop()
	}
	b.mu.Unlock()

	finished := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(finished)
	}()
	var err error
	select {
	case <-finished:
	case <-ctx.Done():
		err = ctx.Err()
		b.mu.Lock()
		for c := range b.conns {
			c.nc.Close()
		}
		b.mu.Unlock()
		<-finished
	}
	if first {
		b.applyMu.Lock()
		for _, q := range b.queueList() {
			if cerr := q.close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("queue %q: %w", q.name, cerr))
			}
		}
		b.applyMu.Unlock()
		b.log.Info("broker stopped")
	}
	return err
}

// Close shuts the broker down without waiting for connections to finish.
func (b *Broker) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
