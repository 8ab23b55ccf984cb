package shm

import (
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Mode selects the delivery semantics of a channel.
type Mode uint32

const (
	// ModeQueue delivers each message to exactly one consumer (at least once
	// if a consumer dies holding it). Any number of producers and consumers.
	ModeQueue Mode = 1
	// ModeBroadcast delivers every message to every subscriber, each with its
	// own cursor. One producer at a time.
	ModeBroadcast Mode = 2
)

func (m Mode) String() string {
	switch m {
	case ModeQueue:
		return "queue"
	case ModeBroadcast:
		return "broadcast"
	}
	return fmt.Sprintf("Mode(%d)", uint32(m))
}

// Overflow says what a producer does when the ring is full.
type Overflow uint32

const (
	// OverflowBlock makes Send and Reserve wait (bounded by their context)
	// until a slot frees. In Broadcast mode the producer waits for the
	// slowest live subscriber.
	OverflowBlock Overflow = 0
	// OverflowFail makes Send and Reserve return ErrFull at once.
	OverflowFail Overflow = 1
	// OverflowOverwrite (Broadcast only) never waits: the producer overwrites
	// the oldest message and subscribers that had not read it are lapped.
	OverflowOverwrite Overflow = 2
)

func (o Overflow) String() string {
	switch o {
	case OverflowBlock:
		return "block"
	case OverflowFail:
		return "fail"
	case OverflowOverwrite:
		return "overwrite"
	}
	return fmt.Sprintf("Overflow(%d)", uint32(o))
}

// Defaults applied by Create to zero-valued Options fields.
const (
	DefaultSlotSize  = 4096
	DefaultSlotCount = 1024
	DefaultMaxPeers  = 64
)

// Options fix the shape of a channel at Create. They are stored in the file
// header; Open reads them back.
type Options struct {
	Mode      Mode     // ModeQueue (default when zero) or ModeBroadcast
	SlotSize  int      // largest message in bytes; default DefaultSlotSize
	SlotCount int      // ring capacity, a power of two >= 2; default DefaultSlotCount
	Overflow  Overflow // what a producer does when the ring is full
	MaxPeers  int      // size of the peer table (<= 4096); default DefaultMaxPeers
}

func (o Options) withDefaults() Options {
	if o.Mode == 0 {
		o.Mode = ModeQueue
	}
	if o.SlotSize == 0 {
		o.SlotSize = DefaultSlotSize
	}
	if o.SlotCount == 0 {
		o.SlotCount = DefaultSlotCount
	}
	if o.MaxPeers == 0 {
		o.MaxPeers = DefaultMaxPeers
	}
	return o
}

// validate returns the name of the offending field and why.
func (o Options) validate() (string, error) {
	switch {
	case o.Mode != ModeQueue && o.Mode != ModeBroadcast:
		return "mode", fmt.Errorf("unknown mode %d", uint32(o.Mode))
	case o.Overflow > OverflowOverwrite:
		return "overflow", fmt.Errorf("unknown overflow policy %d", uint32(o.Overflow))
	case o.Overflow == OverflowOverwrite && o.Mode != ModeBroadcast:
		return "overflow", fmt.Errorf("overflow %v is only valid in broadcast mode", o.Overflow)
	case o.SlotSize < 0 || o.SlotSize > maxSlotSize:
		return "slotSize", fmt.Errorf("slot size %d outside [0, %d]", o.SlotSize, maxSlotSize)
	case o.SlotCount < 2 || o.SlotCount > maxSlotCount || o.SlotCount&(o.SlotCount-1) != 0:
		return "slotCount", fmt.Errorf("slot count %d is not a power of two in [2, %d]", o.SlotCount, maxSlotCount)
	case o.MaxPeers < 1 || o.MaxPeers > maxPeerLimit:
		return "maxPeers", fmt.Errorf("max peers %d outside [1, %d]", o.MaxPeers, maxPeerLimit)
	}
	if g := computeGeometry(o); g.fileSize > maxFileSize {
		return "fileSize", fmt.Errorf("channel would need %d bytes, limit %d", g.fileSize, uint64(maxFileSize))
	}
	return "", nil
}

// WaitStrategy says how a blocked call waits.
type WaitStrategy int

const (
	// WaitHybrid spins briefly, then sleeps on a futex. The default.
	WaitHybrid WaitStrategy = iota
	// WaitSpin busy-polls until the call can proceed: lowest latency, one
	// CPU burnt per waiter.
	WaitSpin
	// WaitBlock sleeps on the futex right away: no CPU while idle, a wake-up
	// syscall on the other side.
	WaitBlock
)

// PeerOption configures a producer, consumer or subscriber.
type PeerOption func(*peerConfig)

type peerConfig struct {
	wait      WaitStrategy
	spinFor   time.Duration
	liveCheck time.Duration
}

func defaultPeerConfig() peerConfig {
	return peerConfig{wait: WaitHybrid, spinFor: 20 * time.Microsecond, liveCheck: 50 * time.Millisecond}
}

// WithWait selects the wait strategy of a peer.
func WithWait(s WaitStrategy) PeerOption { return func(c *peerConfig) { c.wait = s } }

// WithSpinDuration sets how long WaitHybrid spins before sleeping.
func WithSpinDuration(d time.Duration) PeerOption { return func(c *peerConfig) { c.spinFor = d } }

// WithLivenessCheck sets how long a blocked peer sleeps before it checks
// whether the peer it waits for (the owner of the slot in its way) is
// still alive. Default 50ms.
func WithLivenessCheck(d time.Duration) PeerOption {
	return func(c *peerConfig) {
		if d > 0 {
			c.liveCheck = d
		}
	}
}

// ChannelOption configures the process-local handle returned by Create or Open.
type ChannelOption func(*channelConfig)

type channelConfig struct {
	logger *slog.Logger
	perm   os.FileMode
}

// WithLogger sets the logger for rare events (dead-peer recovery). Default:
// slog.Default(), as in pkg/mq; pass slog.New(slog.DiscardHandler) to
// silence them.
func WithLogger(l *slog.Logger) ChannelOption { return func(c *channelConfig) { c.logger = l } }

// WithFileMode sets the permission bits Create gives the channel file.
// Default podcontract.DefaultFileMode (0666; the umask does not apply).
func WithFileMode(perm os.FileMode) ChannelOption {
	return func(c *channelConfig) { c.perm = perm.Perm() }
}
