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

	"golang.org/x/sys/unix"
)

// Writer sends the frames that a connection's users append to its outbox
// (Lock, append, Unlock or UnlockRef). Whoever appends calls Flush. On a
// quiet connection (no write for directWriteGap) the appending goroutine
// writes the outbox itself with a non-blocking write, so a lone request pays
// no goroutine hand-off; on a busy one it wakes the connection's writer
// goroutine (Run), so that frames appended meanwhile are batched into one
// write. Only Run ever blocks on the socket: what a non-blocking write leaves
// is handed to it.
//
// The outbox is a sequence of segments written with one writev: frames are
// appended to fixed-size chunks (a full chunk is sealed and a fresh one
// begun, so a burst never regrows and recopies one ever larger buffer), and a
// large body can be queued by reference (UnlockRef), so that it is not copied
// at all. Written chunks are reused.
type Writer struct {
	nc      net.Conn
	raw     syscall.RawConn // nil if nc offers none: then only Run writes
	timeout time.Duration   // bounds a blocked write; 0 means none

	// mu guards the outbox and the state below; owners append to out under it.
	mu     sync.Mutex
	out    []byte   // the chunk frames are appended to
	start  int      // out[:start] is already in segs
	segs   [][]byte // queued before out[start:]: sealed chunks' frames and referenced bodies
	queued int      // bytes in segs
	sealed [][]byte // chunks whose frames are in segs, to reuse once written
	free   [][]byte // empty chunks for reuse
	mark   int      // offset in out of the last frame that may still be extended; -1 if none
	// closing: no more appends; Run flushes and returns. dead: a write
	// failed; appends are dropped.
	closing, dead bool

	// writeMu serializes writes and guards pending, written and the
	// raw-write arguments.
	writeMu   sync.Mutex
	pending   [][]byte // taken from the outbox; written up to pending[next]
	next      int
	written   [][]byte // chunks of pending, to reuse once it is all written
	rawWrite  func(fd uintptr) bool
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

// MaxKeptBuffer is the size of a Writer's chunks, and how much of them an
// idle connection keeps (the chunk it appends to and one spare): the
// sidecar budgets every connection's buffers in its memory limit
// (pkg/channelconfig BrokerConnectionBytes). A frame larger than a chunk
// gets a buffer of its own, dropped once written.
const MaxKeptBuffer = 64 << 10

// A Writer keeps up to busyChunks written chunks for reuse while it has
// more to write, so that a stream of frames does not allocate, and
// idleChunks of them (besides the one it appends to) once it has written
// everything.
const (
	busyChunks = 8
	idleChunks = 1
)

// maxIovecs bounds the segments of one writev (the kernel's IOV_MAX is 1024).
const maxIovecs = 1024

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
		if rest := w.pending[w.next:]; len(rest) == 1 {
			w.rawN, w.rawErr = syscall.Write(int(fd), rest[0])
		} else {
			w.rawN, w.rawErr = unix.Writev(int(fd), rest[:min(len(rest), maxIovecs)])
		}
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
// nothing appended is sent). room is how many bytes the caller means to
// append: the outbox returned has that much spare capacity (an estimate
// only costs a reallocation if it is short). The caller appends only if ok,
// and always calls Unlock or UnlockRef, with the outbox and mark it ends
// with. No other Writer method may be called in between.
func (w *Writer) Lock(room int) (out []byte, mark int, ok bool) {
	w.mu.Lock()
	ok = w.appendable()
	if ok && (w.out == nil || cap(w.out)-len(w.out) < room) {
		w.newChunk(room)
	}
	return w.out, w.mark, ok
}

// newChunk seals the chunk being appended to and begins one with room
// bytes free. mu must be held.
func (w *Writer) newChunk(room int) {
	if len(w.out) > w.start {
		w.segs = append(w.segs, w.out[w.start:])
		w.queued += len(w.out) - w.start
	}
	if cap(w.out) == MaxKeptBuffer {
		if len(w.out) > 0 {
			w.sealed = append(w.sealed, w.out[:0])
		} else if len(w.free) < busyChunks {
			w.free = append(w.free, w.out)
		}
	}
	switch n := len(w.free); {
	case room > MaxKeptBuffer:
		w.out = make([]byte, 0, room)
	case n > 0:
		w.out, w.free[n-1] = w.free[n-1], nil
		w.free = w.free[:n-1]
	default:
		w.out = make([]byte, 0, MaxKeptBuffer)
	}
	w.start, w.mark = 0, -1
}

// Unlock stores the outbox and its mark back and unlocks it. Then Flush
// sends what was appended.
func (w *Writer) Unlock(out []byte, mark int) {
	w.out, w.mark = out, mark
	w.mu.Unlock()
}

// UnlockRef is Unlock for an outbox whose last frame ends with body, which
// the caller did not append (the frame's length counts it): body is queued
// by reference after out and written from where it lies, so the caller must
// not modify it, ever (it may be written after a failed connection has been
// given up). Unless ok was false, body is sent.
func (w *Writer) UnlockRef(out []byte, body []byte) {
	w.out, w.mark = out, -1
	if w.appendable() && len(body) > 0 {
		if len(out) > w.start {
			w.segs = append(w.segs, out[w.start:])
			w.queued += len(out) - w.start
		}
		w.segs = append(w.segs, body)
		w.queued += len(body)
		w.start = len(out)
	}
	w.mu.Unlock()
}

// appendRoom is the room Append asks for: enough for any frame but a
// message.
const appendRoom = 512

// Append appends a frame encoded by enc unless the writer takes no more
// frames, and reports whether it did. Then Flush sends it.
func (w *Writer) Append(enc func([]byte) []byte) bool {
	out, _, ok := w.Lock(appendRoom)
	if ok {
		out = enc(out)
	}
	w.Unlock(out, -1)
	return ok
}

// hasOutbox reports whether frames wait to be taken. mu must be held.
func (w *Writer) hasOutbox() bool { return len(w.segs) > 0 || len(w.out) > w.start }

// idle drops the spare chunks an idle writer does not keep. mu must be held.
func (w *Writer) idle() {
	if len(w.free) > idleChunks {
		clear(w.free[idleChunks:])
		w.free = w.free[:idleChunks]
	}
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
	if w.next < len(w.pending) {
		return true
	}
	w.mu.Lock()
	for _, c := range w.written {
		if len(w.free) < busyChunks {
			w.free = append(w.free, c)
		}
	}
	clear(w.written)
	if len(w.out) > w.start {
		w.segs = append(w.segs, w.out[w.start:])
	}
	w.pending, w.segs, w.next = w.segs, w.pending[:0], 0
	w.written, w.sealed = w.sealed, w.written[:0]
	if w.out != nil {
		// Keep a chunk for reuse; drop a frame's own larger buffer, even
		// an empty one (Lock(room) on a path that then appended nothing).
		if cap(w.out) == MaxKeptBuffer {
			w.written = append(w.written, w.out[:0])
		}
		w.out = nil // Lock begins a chunk
	}
	w.start, w.queued, w.mark = 0, 0, -1
	w.mu.Unlock()
	return len(w.pending) > 0
}

// unwritten reports whether some of pending is not written yet. writeMu
// must be held.
func (w *Writer) unwritten() bool { return w.next < len(w.pending) }

// advance marks the next n bytes of pending written. writeMu must be held.
func (w *Writer) advance(n int) {
	for w.next < len(w.pending) && n >= len(w.pending[w.next]) {
		n -= len(w.pending[w.next])
		w.pending[w.next] = nil // do not pin a written body
		w.next++
	}
	if w.next < len(w.pending) {
		w.pending[w.next] = w.pending[w.next][n:]
	}
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
		err := w.tryWrite()
		w.lastWrite.Store(now)
		if err != nil || w.unwritten() {
			break // the writer goroutine retries, blocking, and handles errors
		}
	}
	more := w.unwritten()
	w.writeMu.Unlock()
	w.signalDrained()
	if !more {
		w.mu.Lock()
		more = w.hasOutbox() || w.closing
		if !more {
			w.idle()
		}
		w.mu.Unlock()
	}
	if more {
		w.Wake()
	}
}

// tryWrite writes as much of pending as the socket accepts without
// blocking. writeMu must be held.
func (w *Writer) tryWrite() error {
	err := w.raw.Write(w.rawWrite)
	n, werr := w.rawN, w.rawErr
	if err != nil {
		return err
	}
	if n > 0 {
		w.advance(n)
	}
	if errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR) {
		werr = nil
	}
	return werr
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
				w.fail()
				w.writeMu.Unlock()
				onError(err)
				return
			}
		}
		w.writeMu.Unlock()
		w.running.Store(false)
		w.signalDrained()
		w.mu.Lock()
		closing, more := w.closing, w.hasOutbox()
		if !more {
			w.idle()
		}
		w.mu.Unlock()
		if closing {
			if !more && w.finished() {
				return
			}
			w.Wake()
		}
	}
}

// fail gives up the outbox after a write failed: appends are dropped from
// now on, and nothing queued (chunks, bodies by reference) stays pinned.
// writeMu must be held.
func (w *Writer) fail() {
	w.pending, w.next, w.written = nil, 0, nil
	w.mu.Lock()
	w.dead, w.out, w.segs, w.queued, w.start = true, nil, nil, 0, 0
	w.sealed, w.free = nil, nil
	w.mu.Unlock()
}

// finished reports, once the writer is closing and its outbox empty,
// whether everything taken is written too: a Flush on another goroutine may
// still be writing frames it took, and the connection must outlive that.
func (w *Writer) finished() bool {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	return !w.unwritten()
}

// write writes pending, without blocking if the socket takes it all (no
// deadline to arm then), otherwise blocking for at most the write timeout.
// writeMu must be held.
func (w *Writer) write() error {
	if w.raw != nil {
		err := w.tryWrite()
		if err != nil || !w.unwritten() {
			w.lastWrite.Store(monoNow())
			return err
		}
	}
	if w.timeout > 0 {
		w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	// WriteTo consumes the segments it writes in place (emptying the
	// written ones, trimming a partly written one); none is empty before.
	bufs := net.Buffers(w.pending[w.next:])
	_, err := bufs.WriteTo(w.nc)
	for w.next < len(w.pending) && len(w.pending[w.next]) == 0 {
		w.next++
	}
	if err == nil && w.timeout > 0 {
		// The deadline bounds this write only: left armed, it would fail
		// the next write made after it passes, however fast that one is.
		err = w.nc.SetWriteDeadline(time.Time{})
	}
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
	return w.queued + len(w.out) - w.start, w.dead
}

// Done is closed when Run has returned (and closed the connection).
func (w *Writer) Done() <-chan struct{} { return w.done }

// Drained receives after writes: a goroutine waiting for the outbox to
// shrink (see Backlog) looks again.
func (w *Writer) Drained() <-chan struct{} { return w.drained }
