package shm

import (
	"context"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/podipc/podipc/internal/cpuhint"
	"github.com/podipc/podipc/internal/fence"
)

// Producer sends messages on a channel. A Producer is for one goroutine at a
// time and holds at most one Reservation at a time; a Channel can have many
// producers (Queue) or one live producer across all processes (Broadcast).
type Producer struct {
	peer
	res    reserved
	tryFn  attemptFunc // the non-blocking claim, bound once so waiting allocates nothing
	closed bool
	bcast  broadcastProducer
}

// broadcastProducer is the state the single Broadcast producer keeps locally.
type broadcastProducer struct {
	tail        uint64 // next position; only this producer advances the shared tail
	cachedMin   uint64 // lowest live subscriber cursor seen at the last scan
	cachedEpoch uint32 // subscriberEpoch at the last scan
	laggard     uint32 // peer index holding cachedMin, or noOwner
	scanned     bool
}

// Reservation is a handle on a slot claimed by Reserve: write the message
// into Buf and Commit it, or Abort. It is a small value; copies of it are
// the same handle. After Commit or Abort (or the producer's Close) every
// copy is stale: Buf returns nil, and Commit and Abort return ErrNotHeld,
// so a handle kept from an earlier call can never act on a later slot.
type Reservation struct {
	p   *Producer
	gen uint64 // the reservation this handle was given for
}

// reserved is the producer's state for the slot it holds.
type reserved struct {
	pos  uint64
	slot unsafe.Pointer
	buf  []byte
	held bool
	gen  uint64 // counts reservations; a Reservation is current while its gen matches
}

// NewProducer registers a producer. In Broadcast mode it fails with
// ErrProducerExists while another live producer is registered.
func (c *Channel) NewProducer(opts ...PeerOption) (*Producer, error) {
	p := &Producer{}
	if err := c.register(&p.peer, RoleProducer, opts, p); err != nil {
		return nil, err
	}
	if c.geo.mode == ModeBroadcast {
		p.bcast.tail = atomic.LoadUint64(c.tail)
		p.bcast.laggard = noOwner
		p.tryFn = p.tryClaimBroadcast
	} else {
		p.tryFn = p.tryClaimQueue
	}
	return p, nil
}

// Reserve claims the next slot and returns it for writing in place. When
// the ring is full it blocks (OverflowBlock) until a slot frees or ctx
// ends, or fails with ErrFull (OverflowFail); with OverflowOverwrite it
// never waits.
func (p *Producer) Reserve(ctx context.Context) (Reservation, error) {
	if err := p.reserve(ctx); err != nil {
		return Reservation{}, err
	}
	return Reservation{p: p, gen: p.res.gen}, nil
}

func (p *Producer) reserve(ctx context.Context) error {
	if err := p.ready(); err != nil {
		return err
	}
	var err error
	if p.ch.geo.overflow == OverflowFail {
		err = p.tryOnce()
	} else {
		err = p.await(ctx, p.ch.spaceWait(), p.tryFn)
	}
	if err != nil {
		return fmt.Errorf("shm: reserve: %w", err)
	}
	return nil
}

// TryReserve is Reserve that never blocks: ErrFull if no slot is free.
func (p *Producer) TryReserve() (Reservation, error) {
	if err := p.tryReserve(); err != nil {
		return Reservation{}, err
	}
	return Reservation{p: p, gen: p.res.gen}, nil
}

func (p *Producer) tryReserve() error {
	if err := p.ready(); err != nil {
		return err
	}
	return p.tryOnce()
}

func (p *Producer) ready() error {
	switch {
	case p.closed:
		return ErrClosed
	case p.res.held:
		return ErrOutstanding
	}
	return nil
}

func (p *Producer) tryOnce() error {
	done, _, err := p.tryFn()
	if err != nil {
		return err
	}
	if !done {
		return ErrFull
	}
	return nil
}

// Send copies msg into the next slot and commits it, waiting per the
// channel's overflow policy (see Reserve).
func (p *Producer) Send(ctx context.Context, msg []byte) error {
	if len(msg) > int(p.ch.geo.slotSize) {
		return &TooLargeError{Size: len(msg), Limit: int(p.ch.geo.slotSize)}
	}
	if err := p.reserve(ctx); err != nil {
		return err
	}
	return p.commit(copy(p.res.buf, msg))
}

// TrySend is Send that never blocks: ErrFull if no slot is free.
func (p *Producer) TrySend(msg []byte) error {
	if len(msg) > int(p.ch.geo.slotSize) {
		return &TooLargeError{Size: len(msg), Limit: int(p.ch.geo.slotSize)}
	}
	if err := p.tryReserve(); err != nil {
		return err
	}
	return p.commit(copy(p.res.buf, msg))
}

// current returns the producer's reservation if r is its handle.
func (r Reservation) current() *reserved {
	if r.p == nil || !r.p.res.held || r.p.res.gen != r.gen {
		return nil
	}
	return &r.p.res
}

// Buf is the slot's whole payload area (len = the channel's slot size), or
// nil once the reservation was committed or aborted.
func (r Reservation) Buf() []byte {
	if res := r.current(); res != nil {
		return res.buf
	}
	return nil
}

// Commit publishes the first n bytes of Buf as one message. A size beyond
// the slot is a *TooLargeError and keeps the reservation.
func (r Reservation) Commit(n int) error {
	if r.current() == nil {
		return fmt.Errorf("shm: commit: %w", ErrNotHeld)
	}
	return r.p.commit(n)
}

// Abort gives the slot up unsent. In Queue mode the position is marked
// abandoned and consumers skip it; in Broadcast mode the next Reserve
// reuses it.
func (r Reservation) Abort() error {
	if r.current() == nil {
		return fmt.Errorf("shm: abort: %w", ErrNotHeld)
	}
	return r.p.abort()
}

func (p *Producer) commit(n int) error {
	r := &p.res
	if n < 0 || n > len(r.buf) {
		return &TooLargeError{Size: n, Limit: len(r.buf)}
	}
	c := p.ch
	*c.slotLen(r.slot) = uint32(n)
	r.held = false
	if c.geo.mode == ModeBroadcast {
		atomic.StoreUint64(c.slotWord(r.slot), stampCommitted(r.pos))
		p.bcast.tail = r.pos + 1
		atomic.StoreUint64(c.tail, r.pos+1)
	} else if !atomic.CompareAndSwapUint64(c.slotWord(r.slot), packSlot(r.pos, stWriting, p.idx), packSlot(r.pos, stFull, p.idx)) {
		return fmt.Errorf("shm: commit position %d: %w", r.pos, corruptf("slot no longer reserved by this producer"))
	}
	atomic.AddUint64(p.sent, 1)
	c.signal(c.dataSig, c.dataWaiters)
	return nil
}

// abort gives up the held slot, if any.
func (p *Producer) abort() error {
	r := &p.res
	if !r.held {
		return nil
	}
	r.held = false
	c := p.ch
	atomic.AddUint64(p.abandoned, 1)
	if c.geo.mode == ModeBroadcast {
		return nil
	}
	if !atomic.CompareAndSwapUint64(c.slotWord(r.slot), packSlot(r.pos, stWriting, p.idx), packSlot(r.pos, stAbandoned, p.idx)) {
		return fmt.Errorf("shm: abort position %d: %w", r.pos, corruptf("slot no longer reserved by this producer"))
	}
	c.signal(c.dataSig, c.dataWaiters)
	return nil
}

// Close aborts an outstanding reservation and unregisters the producer.
func (p *Producer) Close() error {
	if p.closed {
		return nil
	}
	abortErr := p.abort()
	p.closed = true
	if err := p.unregister(); err != nil {
		return err
	}
	return abortErr
}

func (p *Producer) hold(pos uint64, s unsafe.Pointer) {
	p.res = reserved{pos: pos, slot: s, buf: p.ch.payload(s), held: true, gen: p.res.gen + 1}
}

// maxClaimAttempts bounds the retries of one claim; a healthy ring never
// comes near it, a ring with garbage state words stops here with ErrCorrupt.
const maxClaimAttempts = 1 << 20

// tryClaimQueue is the producer side of the Queue ring (docs/shm-layout.md,
// "Queue protocol"): ownership is taken on the slot by CAS, and the tail is
// only a hint that everyone helps forward.
func (p *Producer) tryClaimQueue() (bool, uint32, error) {
	c := p.ch
	n := int64(c.geo.slotCount)
	for range maxClaimAttempts {
		t := atomic.LoadUint64(c.tail)
		s := c.slot(t)
		w := atomic.LoadUint64(c.slotWord(s))
		d := seqDiff(w, t)
		switch {
		case d == 0:
			switch slotState(w) {
			case stFree:
				// Ask for the line after the state word's for writing
				// before the claim. A consumer spinning on this slot
				// pulls that line into its cache along with the state
				// word's (the adjacent-line prefetcher fetches lines in
				// pairs), so the payload's first store there would wait
				// for a second cache-line transfer after the claim, in
				// series: measured at half the 64 B throughput and
				// 0.6 µs of the round trip (docs/benchmarks.md).
				cpuhint.PrefetchWrite(unsafe.Add(s, cacheLine))
				if atomic.CompareAndSwapUint64(c.slotWord(s), w, packSlot(t, stWriting, p.idx)) {
					atomic.CompareAndSwapUint64(c.tail, t, t+1)
					p.hold(t, s)
					return true, noOwner, nil
				}
			case stWriting, stAbandoned:
				atomic.CompareAndSwapUint64(c.tail, t, t+1) // someone claimed t: help
			default:
				// Committed (or unknown) while tail still says t: a
				// stale view, or foreign.
				c.repairForeign(c.tail, t, s, w)
			}
		case d == -n && t >= uint64(n):
			// The slot still holds position t-N: the ring is full.
			switch slotState(w) {
			case stWriting, stReading:
				return false, slotOwner(w), nil
			case stFull, stAbandoned, stRedeliver:
				return false, noOwner, nil
			default:
				c.repairForeign(c.tail, t, s, w)
			}
		case d == n:
			// Position t was taken and freed; if tail still says t, its
			// claimer died before advancing it: help.
			if atomic.LoadUint64(c.tail) != t {
				continue // stale: reload
			}
			if slotState(w) != stFree {
				c.repairForeign(c.tail, t, s, w) // position t+N claimed while tail says t
				continue
			}
			atomic.CompareAndSwapUint64(c.tail, t, t+1)
		default:
			c.repairForeign(c.tail, t, s, w)
		}
	}
	return false, noOwner, corruptf("no progress claiming a slot after %d attempts", maxClaimAttempts)
}

// tryClaimBroadcast claims the next position for the single producer. With
// OverflowBlock/OverflowFail it first makes sure every live subscriber has
// read the message the slot still holds.
func (p *Producer) tryClaimBroadcast() (bool, uint32, error) {
	c := p.ch
	b := &p.bcast
	t := b.tail
	n := uint64(c.geo.slotCount)
	if c.geo.overflow != OverflowOverwrite && t >= n {
		need := t - n + 1 // every subscriber must have read position t-N
		epoch := atomic.LoadUint32(c.subscriberEpoch)
		if !b.scanned || epoch != b.cachedEpoch || b.cachedMin < need {
			b.cachedEpoch = epoch
			b.cachedMin, b.laggard = c.minSubscriberCursor(t)
			b.scanned = true
		}
		if b.cachedMin < need {
			return false, b.laggard, nil
		}
	}
	s := c.slot(t)
	cpuhint.PrefetchWrite(unsafe.Add(s, cacheLine)) // as in tryClaimQueue
	atomic.StoreUint64(c.slotWord(s), stampWriting(t))
	fence.StoreStore()
	p.hold(t, s)
	return true, noOwner, nil
}

// minSubscriberCursor returns the lowest cursor of the registered
// subscribers (limit if there are none) and whose it is.
func (c *Channel) minSubscriberCursor(limit uint64) (uint64, uint32) {
	lowest, who := limit, noOwner
	hw := min(atomic.LoadUint32(c.peerHighWater), c.geo.maxPeers)
	for i := uint32(0); i < hw; i++ {
		e := c.peerEntry(i)
		if atomic.LoadUint32(entryU32(e, peerState)) != peerActive || Role(atomic.LoadUint32(entryU32(e, peerRole))) != RoleSubscriber {
			continue
		}
		if cur := atomic.LoadUint64(entryU64(e, peerCursor)); cur < lowest {
			lowest, who = cur, i
		}
	}
	return lowest, who
}
