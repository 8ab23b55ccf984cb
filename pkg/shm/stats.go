package shm

import (
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/ofdlock"
)

// Stats is a snapshot of a channel's counters and peers. Counters are sums
// of per-peer counters (each kept in its owner's cache line) plus the totals
// of peers that left; they are read without locks, so a snapshot taken
// while traffic flows is approximate but every counter is monotonic.
type Stats struct {
	Mode     Mode
	Overflow Overflow
	Capacity int    // slots in the ring
	SlotSize int    // largest message in bytes
	Depth    uint64 // messages in the ring not yet taken (Queue) or not yet read by the slowest subscriber (Broadcast)

	Sent        uint64 // messages committed
	Received    uint64 // messages taken by consumers or read by subscribers (redeliveries included)
	Lost        uint64 // messages subscribers lost to lapping
	Redelivered uint64 // messages delivered again after their consumer died holding them
	Abandoned   uint64 // reservations aborted or left uncommitted by a dead producer
	Reaped      uint64 // dead peers recovered
	Repaired    uint64 // Queue slots whose state word no healthy ring can hold, reset and their position skipped

	Producers   int // live registered producers
	Consumers   int // live registered consumers
	Subscribers int // live registered subscribers
	DeadPeers   int // entries whose process is gone but which nobody recovered yet
}

// Stats reads the channel's counters. It only reads shared memory (plus
// one F_OFD_GETLK per registered peer) and never disturbs the data path.
func (c *Channel) Stats() Stats {
	st := Stats{
		Mode:        c.geo.mode,
		Overflow:    c.geo.overflow,
		Capacity:    int(c.geo.slotCount),
		SlotSize:    int(c.geo.slotSize),
		Sent:        atomic.LoadUint64(c.u64(offRetired + retSent)),
		Received:    atomic.LoadUint64(c.u64(offRetired + retReceived)),
		Lost:        atomic.LoadUint64(c.u64(offRetired + retLost)),
		Redelivered: atomic.LoadUint64(c.u64(offRetired + retRedelivered)),
		Abandoned:   atomic.LoadUint64(c.u64(offRetired + retAbandoned)),
		Reaped:      atomic.LoadUint64(c.u64(offRetired + retReaped)),
		Repaired:    atomic.LoadUint64(c.u64(offRetired + retRepaired)),
	}
	tail := atomic.LoadUint64(c.tail)
	minCursor, haveSubscriber := tail, false
	hw := min(atomic.LoadUint32(c.peerHighWater), c.geo.maxPeers)
	for i := uint32(0); i < hw; i++ {
		e := c.peerEntry(i)
		if atomic.LoadUint32(entryU32(e, peerState)) != peerActive {
			continue
		}
		st.Sent += atomic.LoadUint64(entryU64(e, peerSent))
		st.Received += atomic.LoadUint64(entryU64(e, peerReceived))
		st.Lost += atomic.LoadUint64(entryU64(e, peerLost))
		st.Redelivered += atomic.LoadUint64(entryU64(e, peerRedelivered))
		st.Abandoned += atomic.LoadUint64(entryU64(e, peerAbandoned))
		if live, err := ofdlock.Held(c.file, c.peerLockOffset(i)); err != nil || !live {
			st.DeadPeers++
			continue
		}
		switch Role(atomic.LoadUint32(entryU32(e, peerRole))) {
		case RoleProducer:
			st.Producers++
		case RoleConsumer:
			st.Consumers++
		case RoleSubscriber:
			st.Subscribers++
			if cur := atomic.LoadUint64(entryU64(e, peerCursor)); cur < minCursor {
				minCursor = cur
			}
			haveSubscriber = true
		}
	}
	var depth uint64
	if head := atomic.LoadUint64(c.head); c.geo.mode == ModeQueue && head < tail {
		// head can pass tail for a moment when a producer died between
		// claiming a slot and advancing tail.
		depth = tail - head
	} else if c.geo.mode == ModeBroadcast && haveSubscriber {
		depth = tail - minCursor
	}
	st.Depth = min(depth, uint64(c.geo.slotCount))
	return st
}

// ReadStats opens the channel file at path read-only, validates it and
// returns its Stats. It maps only the header and peer table, never
// registers and never writes, so a monitor can call it as often as it
// likes.
func ReadStats(path string) (Stats, error) {
	k, err := openControl(path, os.O_RDONLY, unix.PROT_READ, newChannelConfig(nil))
	if err != nil {
		return Stats{}, fmt.Errorf("shm: read stats %s: %w", path, err)
	}
	defer func() { _ = k.Close() }()
	st, err := k.Stats()
	if err != nil {
		return Stats{}, fmt.Errorf("shm: read stats: %w", err)
	}
	return st, nil
}
