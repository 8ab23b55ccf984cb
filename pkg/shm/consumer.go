package shm

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Consumer receives messages from a Queue channel; each message goes to
// exactly one consumer (again to another one if its consumer dies holding
// it). A Consumer is for one goroutine at a time.
type Consumer struct {
	receiver
}

// NewConsumer registers a consumer on a Queue channel.
func (c *Channel) NewConsumer(opts ...PeerOption) (*Consumer, error) {
	if c.geo.mode != ModeQueue {
		return nil, fmt.Errorf("shm: new consumer on a %v channel: %w", c.geo.mode, ErrWrongMode)
	}
	q := &Consumer{}
	if err := c.register(&q.peer, RoleConsumer, opts, q); err != nil {
		return nil, err
	}
	q.rel = q
	q.tryFn = q.tryTake
	q.copyFn = q.tryTakeCopy
	return q, nil
}

// Borrow waits for the next message and returns it in place; call Release
// when done with it. If the consumer dies before Release the message is
// delivered again to another consumer.
func (q *Consumer) Borrow(ctx context.Context) (Message, error) { return q.borrow(ctx, true) }

// TryBorrow is Borrow that never blocks: ErrEmpty if there is no message.
func (q *Consumer) TryBorrow() (Message, error) { return q.borrow(context.Background(), false) }

// Recv waits for the next message and copies it into buf, returning its
// length. If buf is too small it returns a *TooLargeError and keeps the
// message for the next Recv or Borrow.
func (q *Consumer) Recv(ctx context.Context, buf []byte) (int, error) { return q.recv(ctx, buf, true) }

// TryRecv is Recv that never blocks: ErrEmpty if there is no message.
func (q *Consumer) TryRecv(buf []byte) (int, error) {
	return q.recv(context.Background(), buf, false)
}

// Close hands a borrowed message back for redelivery and unregisters.
func (q *Consumer) Close() error {
	if q.closed {
		return nil
	}
	q.closed = true
	var err error
	if q.cur.held {
		c := q.ch
		q.cur.held = false
		w := packSlot(q.cur.pos, stReading, q.idx)
		if atomic.CompareAndSwapUint64(c.slotWord(q.cur.slot), w, packSlot(q.cur.pos, stRedeliver, q.idx)) {
			atomic.AddUint64(c.redeliverGen, 1)
			c.signal(c.dataSig, c.dataWaiters)
		} else {
			err = corruptf("borrowed slot changed hands")
		}
	}
	if uerr := q.unregister(); uerr != nil {
		return uerr
	}
	return err
}

func (q *Consumer) release(m *borrowed) error {
	c := q.ch
	m.held = false
	m.keptForRecv = false
	n := uint64(c.geo.slotCount)
	if !atomic.CompareAndSwapUint64(c.slotWord(m.slot), packSlot(m.pos, stReading, q.idx), packSlot(m.pos+n, stFree, 0)) {
		return fmt.Errorf("shm: release position %d: %w", m.pos, corruptf("slot no longer borrowed by this consumer"))
	}
	c.signal(c.spaceSig, c.spaceWaiters)
	return nil
}

// take borrows the slot at pos once its state word was CASed to READING.
func (q *Consumer) take(pos uint64) (bool, uint32, error) {
	c := q.ch
	s := c.slot(pos)
	n := *c.slotLen(s)
	if n > c.geo.slotSize {
		// A committed length never exceeds the slot: the slot is garbage.
		// Drop it (counted as abandoned) so the ring keeps working, and
		// report it rather than read out of bounds.
		atomic.StoreUint64(c.slotWord(s), packSlot(pos+uint64(c.geo.slotCount), stFree, 0))
		atomic.AddUint64(c.u64(offRetired+retAbandoned), 1)
		c.signal(c.spaceSig, c.spaceWaiters)
		return false, noOwner, corruptf("slot %d: length %d exceeds slot size %d", pos&c.mask, n, c.geo.slotSize)
	}
	q.hold(pos, s, c.payload(s)[:n:n])
	atomic.AddUint64(q.received, 1)
	return true, noOwner, nil
}

// tryTake is the consumer side of the Queue ring (docs/shm-layout.md).
func (q *Consumer) tryTake() (bool, uint32, error) {
	c := q.ch
	if atomic.LoadUint64(c.redeliverGen) != atomic.LoadUint64(c.redeliverScanned) {
		if ok, err := q.takeRedelivery(); ok || err != nil {
			return ok, noOwner, err
		}
	}
	n := int64(c.geo.slotCount)
	for range maxClaimAttempts {
		h := atomic.LoadUint64(c.head)
		s := c.slot(h)
		w := atomic.LoadUint64(c.slotWord(s))
		d := seqDiff(w, h)
		switch {
		case d == 0:
			switch slotState(w) {
			case stFull:
				if atomic.CompareAndSwapUint64(c.slotWord(s), w, packSlot(h, stReading, q.idx)) {
					atomic.CompareAndSwapUint64(c.head, h, h+1)
					return q.take(h)
				}
			case stReading, stRedeliver:
				atomic.CompareAndSwapUint64(c.head, h, h+1) // someone took h: help
			case stAbandoned:
				if atomic.CompareAndSwapUint64(c.slotWord(s), w, packSlot(h+uint64(n), stFree, 0)) {
					atomic.CompareAndSwapUint64(c.head, h, h+1)
					c.signal(c.spaceSig, c.spaceWaiters)
				}
			case stFree:
				return false, noOwner, nil // empty
			case stWriting:
				return false, slotOwner(w), nil // being written
			default:
				c.repairForeign(c.head, h, s, w)
			}
		case d == -n && h >= uint64(n):
			// The slot still holds position h-N, which head passed: only a
			// consumer can be holding it, and position h is not produced.
			if st := slotState(w); st == stReading || st == stRedeliver {
				return false, noOwner, nil
			}
			c.repairForeign(c.head, h, s, w)
		case d == n && slotState(w) <= stRedeliver:
			// Position h was taken and freed; if head still says h, its
			// consumer died before advancing it: help.
			if atomic.LoadUint64(c.head) == h {
				atomic.CompareAndSwapUint64(c.head, h, h+1)
			}
		default:
			c.repairForeign(c.head, h, s, w)
		}
	}
	return false, noOwner, corruptf("no progress taking a message after %d attempts", maxClaimAttempts)
}

// tryTakeCopy is Recv's attempt (docs/shm-layout.md §2.3, "Copying
// consumers"): it copies the payload out of a FULL head slot while the slot
// is FULL, then frees it with one compare-and-swap, (h,FULL) to (h+N,FREE).
// A FULL slot's payload does not change, so a copy whose CAS succeeds is
// whole; one whose CAS fails was of a slot another consumer took, and is
// discarded. Anything else (a redelivery to scan, another state, a buffer
// too small) takes the borrowing path, tryTake.
func (q *Consumer) tryTakeCopy() (bool, uint32, error) {
	c := q.ch
	if atomic.LoadUint64(c.redeliverGen) == atomic.LoadUint64(c.redeliverScanned) {
		h := atomic.LoadUint64(c.head)
		s := c.slot(h)
		w := atomic.LoadUint64(c.slotWord(s))
		if seqDiff(w, h) == 0 && slotState(w) == stFull {
			if n := *c.slotLen(s); n <= c.geo.slotSize && int(n) <= len(q.copyBuf) {
				copy(q.copyBuf, c.payload(s)[:n])
				if atomic.CompareAndSwapUint64(c.slotWord(s), w, packSlot(h+uint64(c.geo.slotCount), stFree, 0)) {
					atomic.CompareAndSwapUint64(c.head, h, h+1)
					atomic.AddUint64(q.received, 1)
					q.copied = int(n)
					c.signal(c.spaceSig, c.spaceWaiters)
					return true, noOwner, nil
				}
			}
		}
	}
	return q.tryTake()
}

// takeRedelivery scans the ring for a message a dead consumer left
// (REDELIVER) and claims it. Redelivered messages come out of FIFO order.
// A scan that finds none records the generation it covered, so the fast
// path skips scanning until the next recovery.
func (q *Consumer) takeRedelivery() (bool, error) {
	c := q.ch
	gen := atomic.LoadUint64(c.redeliverGen)
	scanned := atomic.LoadUint64(c.redeliverScanned)
	for i := uint64(0); i < uint64(c.geo.slotCount); i++ {
		s := c.slot(i)
		w := atomic.LoadUint64(c.slotWord(s))
		if slotState(w) != stRedeliver {
			continue
		}
		pos, ok := c.redeliveryPosition(i, w)
		if !ok {
			continue // foreign: never hand it out (the head or tail pass repairs it)
		}
		if atomic.CompareAndSwapUint64(c.slotWord(s), w, packSlot(pos, stReading, q.idx)) {
			ok, _, err := q.take(pos)
			if ok {
				atomic.AddUint64(q.redelivered, 1)
			}
			return ok, err
		}
	}
	atomic.CompareAndSwapUint64(c.redeliverScanned, scanned, gen)
	return false, nil
}
