package shm

import (
	"context"
	"fmt"
	"unsafe"
)

// Message is a handle on a received message borrowed in place from its
// slot. It is a small value; copies of it are the same handle. It is valid
// until Release: afterwards (and after the peer's Close) every copy is
// stale, Bytes returns nil and Release returns ErrNotHeld, so a handle kept
// from an earlier call can never act on a later message. A consumer or
// subscriber holds at most one message at a time.
type Message struct {
	r   *receiver
	gen uint64 // the borrow this handle was given for
}

// borrowed is the receiver's state for the message it holds.
type borrowed struct {
	pos  uint64
	slot unsafe.Pointer
	data []byte
	held bool
	gen  uint64 // counts borrows; a Message is current while its gen matches
	// keptForRecv marks a message Recv could not copy (buffer too small):
	// the next Recv or Borrow returns it again.
	keptForRecv bool
}

type releaser interface{ release(b *borrowed) error }

// current returns the receiver's borrowed message if m is its handle.
func (m Message) current() *borrowed {
	if m.r == nil || !m.r.cur.held || m.r.cur.gen != m.gen {
		return nil
	}
	return &m.r.cur
}

// Bytes returns the message payload (exact length as sent, possibly empty),
// or nil once the message was released.
func (m Message) Bytes() []byte {
	if b := m.current(); b != nil {
		return b.data
	}
	return nil
}

// Release hands the slot back; a second Release, or one on a stale handle,
// is ErrNotHeld. In Broadcast mode with OverflowOverwrite it reports a
// *LappedError if the producer overwrote the slot while it was borrowed:
// the bytes read may be mixed, so copy and validate them before relying on
// them, and discard them on this error.
func (m Message) Release() error {
	b := m.current()
	if b == nil {
		return fmt.Errorf("shm: release: %w", ErrNotHeld)
	}
	return m.r.rel.release(b)
}

// receiver is the part shared by Consumer and Subscriber: borrowing with a
// given non-blocking attempt, copying receive on top of it.
type receiver struct {
	peer
	cur    borrowed
	rel    releaser // the Consumer or Subscriber embedding this receiver
	tryFn  attemptFunc
	closed bool

	// copyFn, if set (a Consumer), is recv's attempt: it copies a message
	// into copyBuf and frees its slot at once when it can (setting copied;
	// nothing is held then), and otherwise borrows as tryFn does.
	copyFn  attemptFunc
	copyBuf []byte
	copied  int
}

func (r *receiver) handle() Message { return Message{r: r, gen: r.cur.gen} }

func (r *receiver) borrow(ctx context.Context, block bool) (Message, error) {
	return r.borrowWith(ctx, block, r.tryFn)
}

// borrowWith is borrow with the attempt try.
func (r *receiver) borrowWith(ctx context.Context, block bool, try attemptFunc) (Message, error) {
	switch {
	case r.closed:
		return Message{}, ErrClosed
	case r.cur.held && r.cur.keptForRecv:
		r.cur.keptForRecv = false
		return r.handle(), nil
	case r.cur.held:
		return Message{}, ErrOutstanding
	}
	if !block {
		done, _, err := try()
		if err != nil {
			return Message{}, err
		}
		if !done {
			return Message{}, ErrEmpty
		}
		return r.handle(), nil
	}
	if err := r.await(ctx, r.ch.dataWait(), try); err != nil {
		return Message{}, fmt.Errorf("shm: receive: %w", err)
	}
	return r.handle(), nil
}

// recv copies the next message into buf. If buf is too small it keeps the
// message for the next call and returns a *TooLargeError.
func (r *receiver) recv(ctx context.Context, buf []byte, block bool) (int, error) {
	if r.copyFn != nil && !r.cur.held {
		r.copyBuf = buf
		_, err := r.borrowWith(ctx, block, r.copyFn)
		r.copyBuf = nil
		if err != nil {
			return 0, err
		}
		if !r.cur.held { // copyFn copied it
			return r.copied, nil
		}
	} else if _, err := r.borrow(ctx, block); err != nil {
		return 0, err
	}
	b := &r.cur
	if len(b.data) > len(buf) {
		b.keptForRecv = true
		return 0, &TooLargeError{Size: len(b.data), Limit: len(buf)}
	}
	n := copy(buf, b.data)
	if err := r.rel.release(b); err != nil {
		return 0, err
	}
	return n, nil
}

func (r *receiver) hold(pos uint64, s unsafe.Pointer, data []byte) {
	r.cur = borrowed{pos: pos, slot: s, data: data, held: true, gen: r.cur.gen + 1}
}
