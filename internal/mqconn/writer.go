// Package mqconn holds what both ends of a podipc message-queue connection
// need beyond the wire format (internal/mqwire): the frame writer that
// batches a connection's outgoing frames, and the kernel's credentials of
// the process at the other end of a Unix socket.
package mqconn

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Writer sends the frames that a connection's users append to its outbox
// (Lock, append, Unlock). Whoever appends calls Flush. On a quiet connection (no write for
// directWriteGap) the appending goroutine writes the outbox itself with a
// non-blocking write, so a lone request pays no goroutine hand-off; on a busy
// one it wakes the connection's writer goroutine (Run), so that frames
// appended meanwhile are batched into one write. Only Run ever blocks on
// the socket: what a non-blocking write leaves is handed to it.
type Writer struct {
	nc      net.Conn
	raw     syscall.RawConn // nil if nc offers none: then only Run writes
	timeout time.Duration   // bounds a blocked write; 0 means none

	// mu guards the outbox and the state below; owners append to out under it.
	mu      sync.Mutex
	out     []byte
	mark    int  // offset of the last frame in out that may still be extended; -1 if none
	closing bool // no more appends; Run flushes and returns
	dead    bool // a write failed; appends are dropped

	// writeMu serializes writes and guards pending, off and the raw-write
	// arguments.
	writeMu   sync.Mutex
	pending   []byte // taken from out, written up to off
	off       int
	rawWrite  func(fd uintptr) bool
	rawBuf    []byte
	rawN      int
	rawErr    error
	lastWrite atomic.Int64 // monotonic nanoseconds of the last write
	// running is set while the writer goroutine is between a wake-up and
	// going back to sleep: it will write whatever is appended meanwhile.
	running atomic.Bool

	wake    chan struct{}
	drained chan struct{} // signalled after every write
	done    chan struct{} // closed when Run returns
}

// MaxKeptBuffer is the largest output buffer a Writer keeps once written (it
// has two: the one being written and the one frames are appended to). A
// burst's larger buffer is dropped, so that an idle connection pins at most
// twice this much: the sidecar budgets every connection's buffers in its
// memory limit (pkg/channelconfig BrokerConnectionBytes).
const MaxKeptBuffer = 64 << 10

// NewWriter returns the writer of nc. A blocked write fails after timeout
// (0: never). The caller starts Run in a goroutine of its own.
func NewWriter(nc net.Conn, timeout time.Duration) *Writer {
	w := &Writer{
		nc:      nc,
		timeout: timeout,
		mark:    -1,
		wake:    make(chan struct{}, 1),
		drained: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	w.rawWrite = func(fd uintptr) bool {
		w.rawN, w.rawErr = syscall.Write(int(fd), w.rawBuf)
		return true
	}
	return w
}

// directWriteGap is how long a connection must have been quiet for an
// appending goroutine to write itself rather than wake the writer goroutine.
const directWriteGap = 8 * time.Microsecond

// monoEpoch is the origin of Writer's monotonic clock.
var monoEpoch = time.Now()

func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// appendable reports, with mu held, whether frames may be appended.
func (w *Writer) appendable() bool { return !w.closing && !w.dead }

// Lock locks the outbox and returns it with mark, the offset of its last
// frame that may still be extended (-1 if none), and ok: whether frames may
// be appended (false once the writer is closing or a write failed; then
// nothing appended is sent). The caller appends only if ok, and always
// calls Unlock, with the outbox and mark it ends with. No other Writer
// method may be called in between.
func (w *Writer) Lock() (out []byte, mark int, ok bool) {
	w.mu.Lock()
	return w.out, w.mark, w.appendable()
}

// Unlock stores the outbox and its mark back and unlocks it. Then Flush
// sends what was appended.
func (w *Writer) Unlock(out []byte, mark int) {
	w.out, w.mark = out, mark
	w.mu.Unlock()
}

// Append appends a frame encoded by enc unless the writer takes no more
// frames, and reports whether it did. Then Flush sends it.
func (w *Writer) Append(enc func([]byte) []byte) bool {
	w.mu.Lock()
	ok := w.appendable()
	if ok {
		w.out, w.mark = enc(w.out), -1
	}
	w.mu.Unlock()
	return ok
}

// Wake wakes the writer goroutine, which writes the outbox.
func (w *Writer) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// signalDrained tells a reader waiting for the outbox to shrink to look again.
func (w *Writer) signalDrained() {
	select {
	case w.drained <- struct{}{}:
	default:
	}
}

// take moves the outbox into pending once pending is fully written and
// reports whether there is anything to write. writeMu must be held.
func (w *Writer) take() bool {
	if w.off < len(w.pending) {
		return true
	}
	w.mu.Lock()
	w.pending, w.out = w.out, w.pending[:0]
	if cap(w.out) > MaxKeptBuffer {
		w.out = nil // do not keep a burst's buffer
	}
	w.mark = -1
	w.mu.Unlock()
	w.off = 0
	return len(w.pending) > 0
}

// Flush writes the outbox from the calling goroutine if that needs neither
// waiting for another writer nor blocking on the socket; otherwise it leaves
// the rest to the writer goroutine.
func (w *Writer) Flush() {
	// A running writer goroutine needs only the signal; reading the clock
	// costs more than that here (over 100 ns in a VM).
	if w.raw == nil || w.running.Load() {
		w.Wake()
		return
	}
	now := monoNow()
	if now-w.lastWrite.Load() < int64(directWriteGap) || !w.writeMu.TryLock() {
		w.Wake()
		return
	}
	for w.take() {
		n, err := w.tryWrite(w.pending[w.off:])
		w.off += n
		w.lastWrite.Store(now)
		if err != nil || w.off < len(w.pending) {
			break // the writer goroutine retries, blocking, and handles errors
		}
	}
	more := w.off < len(w.pending)
	w.writeMu.Unlock()
	w.signalDrained()
	if !more {
		w.mu.Lock()
		more = len(w.out) > 0 || w.closing
		w.mu.Unlock()
	}
	if more {
		w.Wake()
	}
}

// tryWrite writes as much of b as the socket accepts without blocking.
// writeMu must be held.
func (w *Writer) tryWrite(b []byte) (int, error) {
	w.rawBuf = b
	err := w.raw.Write(w.rawWrite)
	n, werr := w.rawN, w.rawErr
	w.rawBuf = nil
	if err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	if errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR) {
		werr = nil
	}
	return n, werr
}

// Run is the connection's writer goroutine. It returns after a write fails
// (reporting the error to onError) or, once closing, when all is written;
// it closes the connection either way.
func (w *Writer) Run(onError func(error)) {
	defer close(w.done)
	defer w.nc.Close()
	for range w.wake {
		w.running.Store(true)
		w.writeMu.Lock()
		for w.take() {
			err := w.write()
			if err != nil {
				w.writeMu.Unlock()
				w.mu.Lock()
				w.dead, w.out = true, nil
				w.mu.Unlock()
				onError(err)
				return
			}
		}
		w.writeMu.Unlock()
		w.running.Store(false)
		w.signalDrained()
		w.mu.Lock()
		closing, more := w.closing, len(w.out) > 0
		w.mu.Unlock()
		if closing {
			if !more {
				return
			}
			w.Wake()
		}
	}
}

// write writes pending from off, without blocking if the socket takes it
// all (no deadline to arm then), otherwise blocking for at most the write
// timeout. writeMu must be held.
func (w *Writer) write() error {
	if w.raw != nil {
		n, err := w.tryWrite(w.pending[w.off:])
		w.off += n
		if err != nil || w.off == len(w.pending) {
			w.lastWrite.Store(monoNow())
			return err
		}
	}
	if w.timeout > 0 {
		w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	n, err := w.nc.Write(w.pending[w.off:])
	w.off += n
	w.lastWrite.Store(monoNow())
	return err
}

// Close stops appends and makes Run return once everything is written.
func (w *Writer) Close() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.Wake()
}

// Backlog returns the size of the outbox not yet taken by a writer, and
// whether a write failed.
func (w *Writer) Backlog() (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.out), w.dead
}

// Done is closed when Run has returned (and closed the connection).
func (w *Writer) Done() <-chan struct{} { return w.done }

// Drained receives after writes: a goroutine waiting for the outbox to
// shrink (see Backlog) looks again.
func (w *Writer) Drained() <-chan struct{} { return w.drained }
