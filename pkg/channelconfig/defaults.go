package channelconfig

import (
	"time"
)

// Defaults and bounds: the one source of every default and limit of a
// channel. The kubebuilder markers on api/v1alpha1's types repeat them (a
// marker must be a literal), and a test holds the generated CRD to these
// values; another holds pkg/shm's and the broker's defaults to them.
const (
	// MaxNameLength is the longest channel name: a DNS-1123 label.
	MaxNameLength = 63

	DefaultSlotSize  = 4096
	MinSlotSize      = 64       // one cache line
	MaxSlotSize      = 16 << 20 // 16 MiB
	DefaultSlotCount = 1024
	MinSlotCount     = 2
	MaxSlotCount     = 1 << 20
	// MaxRingBytes bounds slotSize × slotCount.
	MaxRingBytes = 1 << 30

	DefaultMaxDepth        = 10000
	MinMaxDepth            = 1
	MaxMaxDepth            = 1000000
	DefaultMaxBytes        = 16 << 20
	MinMaxBytes            = 4 << 10
	MaxMaxBytes            = 4 << 30
	DefaultMaxMessageSize  = 1 << 20
	MinMaxMessageSize      = 1
	MaxMaxMessageSize      = 16 << 20
	DefaultAckTimeout      = 30 * time.Second
	MinAckTimeout          = 100 * time.Millisecond
	MaxAckTimeout          = 24 * time.Hour
	DefaultMaxRedeliveries = 5
	MaxMaxRedeliveries     = 1000
	// UnlimitedRedeliveries as maxRedeliveries redelivers a message however
	// often its deliveries fail; 0 makes the first failed delivery final.
	UnlimitedRedeliveries = -1
	MaxDefaultTTL         = 720 * time.Hour

	// MinPriority and MaxPriority are the fixed message priority levels of
	// every message queue; higher is delivered first.
	MinPriority = 0
	MaxPriority = 9
)

// Default fills the unset fields of the channel's settings block with their
// defaults, as the API server does for an IPCChannel. It does not create a
// missing settings block: a channel without the block of its type is invalid.
func (s *ChannelSettings) Default() {
	if s.SharedMemory != nil {
		s.SharedMemory.Default()
	}
	if s.MessageQueue != nil {
		s.MessageQueue.Default()
	}
}

// Default fills the unset fields with their defaults.
func (s *SharedMemorySettings) Default() {
	if s.Mode == "" {
		s.Mode = SharedMemoryModeQueue
	}
	if s.SlotSize == 0 {
		s.SlotSize = DefaultSlotSize
	}
	if s.SlotCount == 0 {
		s.SlotCount = DefaultSlotCount
	}
	if s.Overflow == "" {
		s.Overflow = SharedMemoryOverflowBlock
	}
}

// Default fills the unset fields with their defaults. A zero defaultTTL is
// its default (never expires).
func (s *MessageQueueSettings) Default() {
	if s.MaxDepth == 0 {
		s.MaxDepth = DefaultMaxDepth
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = DefaultMaxBytes
	}
	if s.MaxMessageSize == 0 {
		s.MaxMessageSize = DefaultMaxMessageSize
	}
	if s.Delivery == "" {
		s.Delivery = DeliveryAtLeastOnce
	}
	if s.AckTimeout.Duration == 0 {
		s.AckTimeout = Duration{DefaultAckTimeout}
	}
	if s.MaxRedeliveries == nil {
		n := int32(DefaultMaxRedeliveries)
		s.MaxRedeliveries = &n
	}
	if s.Overflow == "" {
		s.Overflow = MessageQueueOverflowBlock
	}
	if s.Persistence == "" {
		s.Persistence = PersistenceNone
	}
}

// Default fills the unset fields of the channel's settings with their defaults.
func (c *Channel) Default() { c.ChannelSettings.Default() }

// Default fills the unset fields of every channel with their defaults.
func (c *Config) Default() {
	for i := range c.Channels {
		c.Channels[i].Default()
	}
}
