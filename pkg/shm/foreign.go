package shm

import (
	"sync/atomic"
	"unsafe"
)

// A participant that can write the channel file can write any word into a
// Queue slot. A word that no healthy ring can hold at the position a peer
// is looking at is "foreign" (docs/shm-layout.md §2.5): the ring must not
// hand it out, and must not stop at it either. These checks sit on the
// branches a healthy ring takes only after a crash, on a full ring or on a
// stale view, never on the claim-and-commit or claim-and-take path.

// repairForeign resets the slot s, whose word w is foreign for position pos
// read from counter (head or tail), to (pos+N, FREE): position pos is
// skipped by producers and consumers alike, and the ring goes on. If the
// counter moved since pos was read, the view was merely stale and nothing
// is touched: the caller reloads.
func (c *Channel) repairForeign(counter *uint64, pos uint64, s unsafe.Pointer, w uint64) {
	if atomic.LoadUint64(counter) != pos {
		return
	}
	if atomic.CompareAndSwapUint64(c.slotWord(s), w, packSlot(pos+uint64(c.geo.slotCount), stFree, 0)) {
		atomic.AddUint64(c.u64(offRetired+retRepaired), 1)
		c.signal(c.spaceSig, c.spaceWaiters)
	}
}

// redeliveryPosition returns the ring position the REDELIVER word w found
// in slot i stands for, and whether a healthy ring can hold it there: a
// position already claimed (below tail), at most one lap old, that lives
// in slot i. Anything else is foreign, is not redelivered, and is repaired
// by the head or tail pass that reaches the slot.
func (c *Channel) redeliveryPosition(i, w uint64) (uint64, bool) {
	t := atomic.LoadUint64(c.tail) // after w: tail has passed every committed position
	d := seqDiff(w, t)
	pos := t + uint64(d)
	ok := d < 0 && d >= -int64(c.geo.slotCount) && uint64(-d) <= t && pos&c.mask == i
	return pos, ok
}
