package shm

import (
	"context"
	"fmt"
	"unsafe"
)

// Message is a received message borrowed in place from its slot. Bytes is
// valid until Release. A consumer or subscriber holds at most one Message
// at a time.
type Message struct {
	rel  releaser
	pos  uint64
	slot unsafe.Pointer
	data []byte
	held bool
	// keptForRecv marks a message Recv could not copy (buffer too small):
	// the next Recv or Borrow returns it again.
	keptForRecv bool
}

type releaser interface{ release(m *Message) error }

// Bytes returns the message payload (exact length as sent, possibly empty).
func (m *Message) Bytes() []byte { return m.data }

// Release hands the slot back. In Broadcast mode with OverflowOverwrite it
// reports a *LappedError if the producer overwrote the slot while it was
// borrowed: the bytes read may be mixed, so copy and validate them before
// relying on them, and discard them on this error.
func (m *Message) Release() error {
	if !m.held {
		return nil
	}
	return m.rel.release(m)
}

// receiver is the part shared by Consumer and Subscriber: borrowing with a
// given non-blocking attempt, copying receive on top of it.
type receiver struct {
	peer
	msg    Message
	tryFn  attemptFunc
	closed bool
}

func (r *receiver) borrow(ctx context.Context, block bool) (*Message, error) {
	switch {
	case r.closed:
		return nil, ErrClosed
	case r.msg.held && r.msg.keptForRecv:
		r.msg.keptForRecv = false
		return &r.msg, nil
	case r.msg.held:
		return nil, ErrOutstanding
	}
	if !block {
		done, _, err := r.tryFn()
		if err != nil {
			return nil, err
		}
		if !done {
			return nil, ErrEmpty
		}
		return &r.msg, nil
	}
	if err := r.await(ctx, r.ch.dataWait(), r.tryFn); err != nil {
		return nil, fmt.Errorf("shm: receive: %w", err)
	}
	return &r.msg, nil
}

// recv copies the next message into buf. If buf is too small it keeps the
// message for the next call and returns a *TooLargeError.
func (r *receiver) recv(ctx context.Context, buf []byte, block bool) (int, error) {
	m, err := r.borrow(ctx, block)
	if err != nil {
		return 0, err
	}
	if len(m.data) > len(buf) {
		m.keptForRecv = true
		return 0, &TooLargeError{Size: len(m.data), Limit: len(buf)}
	}
	n := copy(buf, m.data)
	if err := m.Release(); err != nil {
		return 0, err
	}
	return n, nil
}

func (r *receiver) hold(pos uint64, s unsafe.Pointer, data []byte) {
	r.msg.pos, r.msg.slot, r.msg.data, r.msg.held, r.msg.keptForRecv = pos, s, data, true, false
}
