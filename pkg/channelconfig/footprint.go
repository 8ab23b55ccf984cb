package channelconfig

// The memory a channel needs, as budgets the data plane must stay within. The
// injector sizes the pod's tmpfs (an emptyDir with medium Memory, whose
// sizeLimit, once exceeded, gets the pod evicted) and the sidecar's memory from
// them, so every figure rounds up.
const (
	// ShmHeaderBytes is the budget of a shared-memory channel file's header:
	// magic, version, geometry, counters, wake-up words and the peer table,
	// each on its own cache lines.
	ShmHeaderBytes = 64 << 10
	// ShmSlotHeaderBytes is the budget of each slot's own header (its sequence
	// and state word and the message length).
	ShmSlotHeaderBytes = 64
	// ShmSlotAlign is the alignment of a slot: two cache lines, so that
	// adjacent-line prefetching never couples two slots.
	ShmSlotAlign = 128

	// JournalRecordOverheadBytes is the budget of a message queue journal's
	// bookkeeping per message: the enqueue record's header and checksum and the
	// acknowledgement record.
	JournalRecordOverheadBytes = 128
	// JournalSlack and JournalCompactMinBytes bound a journal by its live
	// content: the broker compacts it once it is at least JournalCompactMinBytes
	// (pkg/mq's default) and more than half dead, and it is checked only when a
	// message leaves, so a burst of enqueues can take it to twice its live
	// content or to JournalCompactMinBytes plus its live content, whichever is
	// larger; the sum of the two bounds both.
	JournalSlack           = 2
	JournalCompactMinBytes = 1 << 20
	// BrokerMessageOverheadBytes is the budget of the sidecar's bookkeeping for
	// each queued message in memory.
	BrokerMessageOverheadBytes = 256

	// FootprintGranule is what every tmpfs figure is rounded up to: 64 KiB,
	// a whole number of pages on every kernel page size podipc runs on (4 KiB
	// and 16 KiB and 64 KiB arm64 kernels).
	FootprintGranule = 64 << 10
)

// Footprint is the memory a channel needs.
type Footprint struct {
	// TmpfsBytes is its largest size on the pod's tmpfs: the ring file of a
	// shared-memory channel, the journal of a persistent message queue.
	TmpfsBytes int64
	// SidecarMemoryBytes is the sidecar memory it needs at most: a message
	// queue's queued messages and their bookkeeping.
	SidecarMemoryBytes int64
}

// Add returns the sum of two footprints.
func (f Footprint) Add(g Footprint) Footprint {
	return Footprint{TmpfsBytes: f.TmpfsBytes + g.TmpfsBytes, SidecarMemoryBytes: f.SidecarMemoryBytes + g.SidecarMemoryBytes}
}

// Footprint is the memory the channel needs at most, with unset fields taken
// at their defaults. A channel without the settings block of its type needs
// nothing (it is invalid and never created).
func (s *ChannelSettings) Footprint() Footprint {
	switch {
	case s.Type == ChannelTypeSharedMemory && s.SharedMemory != nil:
		shm := *s.SharedMemory
		shm.Default()
		return Footprint{TmpfsBytes: shm.RingFileBytes()}
	case s.Type == ChannelTypeMessageQueue && s.MessageQueue != nil:
		mq := *s.MessageQueue
		mq.Default()
		f := Footprint{SidecarMemoryBytes: mq.liveBytes(BrokerMessageOverheadBytes)}
		if mq.Persistence == PersistenceVolume {
			f.TmpfsBytes = mq.JournalBytes()
		}
		return f
	}
	return Footprint{}
}

// RingFileBytes is the largest size of the channel's file on the tmpfs: the
// header and slotCount slots of slotSize bytes plus their headers, each slot
// aligned, rounded up to FootprintGranule. s must be defaulted.
func (s *SharedMemorySettings) RingFileBytes() int64 {
	slot := roundUp(int64(s.SlotSize)+ShmSlotHeaderBytes, ShmSlotAlign)
	return roundUp(ShmHeaderBytes+slot*int64(s.SlotCount), FootprintGranule)
}

// JournalBytes is the largest size of the queue's journal on the tmpfs
// (persistence Volume): its live content (see liveBytes) times JournalSlack,
// plus JournalCompactMinBytes, rounded up to FootprintGranule. s must be
// defaulted.
func (s *MessageQueueSettings) JournalBytes() int64 {
	return roundUp(JournalSlack*s.liveBytes(JournalRecordOverheadBytes)+JournalCompactMinBytes, FootprintGranule)
}

// liveBytes bounds the messages a queue holds, with perMessage bytes of
// bookkeeping each: up to maxBytes of bodies waiting and as much again in
// flight (the broker stops delivering there, passing it by one message at
// most), and maxDepth messages of each kind. In-flight messages are also
// bounded by the consumers' prefetch; maxDepth stands for that count here.
func (s *MessageQueueSettings) liveBytes(perMessage int64) int64 {
	return 2*s.MaxBytes + int64(s.MaxMessageSize) + 2*int64(s.MaxDepth)*perMessage
}

// Footprint is the memory all the channels of the configuration need.
func (c *Config) Footprint() Footprint {
	var f Footprint
	for i := range c.Channels {
		f = f.Add(c.Channels[i].Footprint())
	}
	return f
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }
