package mqbroker

import "slices"

// flight is a consumer's unsettled deliveries in delivery order, which is
// increasing tag order: a settlement finds its message at the front, or by
// binary search, without hashing. A settled entry is cleared, and dropped
// once it reaches the front or once cleared entries outnumber live ones (a
// delivery left unsettled for long must not make the ring grow with every
// later one). The consumer's queue's mutex guards it.
type flight struct {
	tags []uint64
	msgs []*message
	head int // entries before head are gone
	live int // entries not cleared
}

// push records the delivery of m with tag, which exceeds every tag pushed
// before.
func (f *flight) push(tag uint64, m *message) {
	if len(f.tags) == cap(f.tags) && len(f.tags)-f.live >= max(f.live, 16) {
		f.compact() // rather than grow
	}
	f.tags = append(f.tags, tag)
	f.msgs = append(f.msgs, m)
	f.live++
}

// compact moves the live entries to the start, in order.
func (f *flight) compact() {
	n := 0
	for i := f.head; i < len(f.msgs); i++ {
		if f.msgs[i] != nil {
			f.tags[n], f.msgs[n] = f.tags[i], f.msgs[i]
			n++
		}
	}
	clear(f.msgs[n:])
	f.tags, f.msgs, f.head = f.tags[:n], f.msgs[:n], 0
}

// find returns the index of the unsettled delivery with tag, or -1.
func (f *flight) find(tag uint64) int {
	if f.head < len(f.tags) && f.tags[f.head] == tag {
		return f.head
	}
	i, ok := slices.BinarySearch(f.tags[f.head:], tag)
	if !ok || f.msgs[f.head+i] == nil {
		return -1
	}
	return f.head + i
}

// get returns the unsettled message delivered with tag, or nil.
func (f *flight) get(tag uint64) *message {
	if i := f.find(tag); i >= 0 {
		return f.msgs[i]
	}
	return nil
}

// remove forgets the delivery with tag.
func (f *flight) remove(tag uint64) {
	i := f.find(tag)
	if i < 0 {
		return
	}
	f.msgs[i] = nil
	f.live--
	for f.head < len(f.msgs) && f.msgs[f.head] == nil {
		f.head++
	}
	if f.head == len(f.msgs) {
		f.tags, f.msgs, f.head = f.tags[:0], f.msgs[:0], 0
	}
}
