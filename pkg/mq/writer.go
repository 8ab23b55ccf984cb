package mq

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// frameWriter sends the frames that a connection's users append to its
// outbox. Whoever appends calls flush. On a quiet connection (no write for
// directWriteGap) the appending goroutine writes the outbox itself with a
// non-blocking write, so a lone request pays no goroutine hand-off; on a busy
// one it wakes the connection's writer goroutine (run), so that frames
// appended meanwhile are batched into one write. Only run ever blocks on
// the socket: what a non-blocking write leaves is handed to it.
type frameWriter struct {
	nc      net.Conn
	raw     syscall.RawConn // nil if nc offers none: then only run writes
	timeout time.Duration   // bounds a blocked write; 0 means none

	// mu guards the outbox and the state below; owners append to out under it.
	mu      sync.Mutex
	out     []byte
	mark    int  // offset of the last frame in out that may still be extended; -1 if none
	closing bool // no more appends; run flushes and returns
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
	done    chan struct{} // closed when run returns
}

func newFrameWriter(nc net.Conn, timeout time.Duration) *frameWriter {
	w := &frameWriter{
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

// monoEpoch is the origin of frameWriter's monotonic clock.
var monoEpoch = time.Now()

func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// appendable reports, with mu held, whether frames may be appended.
func (w *frameWriter) appendable() bool { return !w.closing && !w.dead }

// signal wakes the writer goroutine.
func (w *frameWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// signalDrained tells a reader waiting for the outbox to shrink to look again.
func (w *frameWriter) signalDrained() {
	select {
	case w.drained <- struct{}{}:
	default:
	}
}

// take moves the outbox into pending once pending is fully written and
// reports whether there is anything to write. writeMu must be held.
func (w *frameWriter) take() bool {
	if w.off < len(w.pending) {
		return true
	}
	w.mu.Lock()
	w.pending, w.out = w.out, w.pending[:0]
	if cap(w.out) > 4<<20 {
		w.out = nil // do not keep a burst's buffer
	}
	w.mark = -1
	w.mu.Unlock()
	w.off = 0
	return len(w.pending) > 0
}

// flush writes the outbox from the calling goroutine if that needs neither
// waiting for another writer nor blocking on the socket; otherwise it leaves
// the rest to the writer goroutine.
func (w *frameWriter) flush() {
	// A running writer goroutine needs only the signal; reading the clock
	// costs more than that here (over 100 ns in a VM).
	if w.raw == nil || w.running.Load() {
		w.signal()
		return
	}
	now := monoNow()
	if now-w.lastWrite.Load() < int64(directWriteGap) || !w.writeMu.TryLock() {
		w.signal()
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
		w.signal()
	}
}

// tryWrite writes as much of b as the socket accepts without blocking.
// writeMu must be held.
func (w *frameWriter) tryWrite(b []byte) (int, error) {
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

// run is the connection's writer goroutine. It returns after a write fails
// (reporting the error to onError) or, once closing, when all is written;
// it closes the connection either way.
func (w *frameWriter) run(onError func(error)) {
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
			w.signal()
		}
	}
}

// write writes pending from off, without blocking if the socket takes it
// all (no deadline to arm then), otherwise blocking for at most the write
// timeout. writeMu must be held.
func (w *frameWriter) write() error {
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

// close stops appends and makes run return once everything is written.
func (w *frameWriter) close() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.signal()
}

// backlog returns the size of the outbox not yet taken by a writer.
func (w *frameWriter) backlog() (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.out), w.dead
}
