package shm

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/podipc/podipc/internal/fence"
)

// Subscriber receives every message of a Broadcast channel, from the
// position the producer had reached when it subscribed. A Subscriber is for
// one goroutine at a time.
type Subscriber struct {
	receiver
	cursor    uint64  // next position to read
	pubCursor *uint64 // the cursor as published in the peer entry
}

// Subscribe registers a subscriber on a Broadcast channel.
func (c *Channel) Subscribe(opts ...PeerOption) (*Subscriber, error) {
	if c.geo.mode != ModeBroadcast {
		return nil, fmt.Errorf("shm: subscribe to a %v channel: %w", c.geo.mode, ErrWrongMode)
	}
	s := &Subscriber{}
	if err := c.register(&s.peer, RoleSubscriber, opts, s); err != nil {
		return nil, err
	}
	s.rel = s
	s.tryFn = s.tryRead
	s.pubCursor = entryU64(s.entry, peerCursor)
	// The entry was published with a cursor no later than the tail. Bumping
	// the epoch makes the producer rescan before its next write, so from
	// here on it respects the published cursor; only then is the start
	// position read (moving a published cursor forward is always safe).
	atomic.AddUint32(c.subscriberEpoch, 1)
	s.cursor = atomic.LoadUint64(c.tail)
	atomic.StoreUint64(s.pubCursor, s.cursor)
	return s, nil
}

// Borrow waits for the next message and returns it in place. With
// OverflowBlock the producer does not reuse the slot until Release; with
// OverflowOverwrite it may, and Release then reports a *LappedError.
func (s *Subscriber) Borrow(ctx context.Context) (Message, error) { return s.borrow(ctx, true) }

// TryBorrow is Borrow that never blocks: ErrEmpty if there is no message.
func (s *Subscriber) TryBorrow() (Message, error) { return s.borrow(context.Background(), false) }

// Recv waits for the next message and copies it into buf. If the producer
// lapped the subscriber it returns a *LappedError (errors.Is ErrLapped)
// saying how many messages were lost; the next Recv continues with the
// oldest message still in the ring.
func (s *Subscriber) Recv(ctx context.Context, buf []byte) (int, error) {
	return s.recv(ctx, buf, true)
}

// TryRecv is Recv that never blocks: ErrEmpty if there is no message.
func (s *Subscriber) TryRecv(buf []byte) (int, error) {
	return s.recv(context.Background(), buf, false)
}

// Close unregisters the subscriber; a blocked producer stops waiting for it.
func (s *Subscriber) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.cur.held = false
	return s.unregister()
}

// tryRead checks that the message at the cursor is committed and holds it.
// Lapping is detected by the slot's stamp: a stamp other than "committed at
// the cursor" means the producer has moved on past it.
func (s *Subscriber) tryRead() (bool, uint32, error) {
	c := s.ch
	cur := s.cursor
	t := atomic.LoadUint64(c.tail)
	if cur >= t {
		return false, noOwner, nil
	}
	if t-cur > uint64(c.geo.slotCount) {
		return false, noOwner, s.lap(cur)
	}
	sl := c.slot(cur)
	stamp := atomic.LoadUint64(c.slotWord(sl))
	if stamp != stampCommitted(cur) {
		return false, noOwner, s.lap(cur)
	}
	n := *c.slotLen(sl)
	fence.LoadLoad()
	if atomic.LoadUint64(c.slotWord(sl)) != stamp {
		return false, noOwner, s.lap(cur)
	}
	if n > c.geo.slotSize {
		return false, noOwner, corruptf("slot %d: length %d exceeds slot size %d", cur&c.mask, n, c.geo.slotSize)
	}
	s.hold(cur, sl, c.payload(sl)[:n:n])
	atomic.AddUint64(s.received, 1)
	return true, noOwner, nil
}

// lap moves the cursor past messages the producer overwrote and returns the
// *LappedError to report. The new cursor is the oldest position the
// producer cannot be writing over right now.
func (s *Subscriber) lap(cur uint64) error {
	c := s.ch
	t := atomic.LoadUint64(c.tail)
	next := cur + 1
	if n := uint64(c.geo.slotCount); t >= n && t-n+1 > next {
		next = t - n + 1
	}
	s.cursor = next
	atomic.StoreUint64(s.pubCursor, next)
	atomic.AddUint64(s.lost, next-cur)
	c.signal(c.spaceSig, c.spaceWaiters)
	return &LappedError{Lost: next - cur}
}

func (s *Subscriber) release(m *borrowed) error {
	c := s.ch
	m.held = false
	m.keptForRecv = false
	fence.LoadLoad() // the caller's reads of the payload happen before the re-check
	if atomic.LoadUint64(c.slotWord(m.slot)) != stampCommitted(m.pos) {
		return s.lap(m.pos)
	}
	s.cursor = m.pos + 1
	atomic.StoreUint64(s.pubCursor, s.cursor)
	c.signal(c.spaceSig, c.spaceWaiters)
	return nil
}
