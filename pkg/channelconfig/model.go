package channelconfig

import (
	"encoding/json"
	"fmt"
	"time"
)

// The channel model. These are the types the sidecar serves and the Go
// defaulting, validation and sizing work on. api/v1alpha1 has a versioned
// twin of each settings type, carrying the kubebuilder markers of the CRD,
// and converts to and from these at its boundary (ChannelSettings
// Model and FromModel): the data plane never links the Kubernetes API
// machinery. Field names and JSON names are those of the IPCChannel's spec;
// docs/ipcchannel.md is the reference for every field.

// APIVersion and Kind head every channel configuration document.
const (
	APIVersion = "podipc.io/v1alpha1"
	Kind       = "ChannelConfig"
)

// Config is a channel configuration document: the channels of one pod, fully
// resolved. It is not a Kubernetes resource; it has an apiVersion and a kind
// so that its format can evolve.
type Config struct {
	// Kind and APIVersion, in this order: the bytes of an encoded document
	// (whose hash the injector records) are those of every earlier release.
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`

	// Channels are the channels the sidecar creates and serves. Names are
	// unique.
	Channels []Channel `json:"channels"`
}

// Channel is one channel of a Config: the name an IPCChannel has in its
// metadata and its spec without the selector.
type Channel struct {
	// Name is the channel's name, a DNS-1123 label: its file name on the tmpfs
	// and the name applications open.
	Name string `json:"name"`

	ChannelSettings
}

// ChannelType is the kind of a channel.
type ChannelType string

const (
	// ChannelTypeSharedMemory is a ring of fixed-size slots in a file on the
	// pod's tmpfs, mapped by every participant.
	ChannelTypeSharedMemory ChannelType = "SharedMemory"
	// ChannelTypeMessageQueue is a queue brokered by the sidecar over a Unix
	// socket.
	ChannelTypeMessageQueue ChannelType = "MessageQueue"
)

// ChannelSettings is a channel without its name: its type and the settings
// block of that type.
type ChannelSettings struct {
	Type         ChannelType           `json:"type"`
	SharedMemory *SharedMemorySettings `json:"sharedMemory,omitempty"`
	MessageQueue *MessageQueueSettings `json:"messageQueue,omitempty"`
}

// SharedMemoryMode is how messages of a shared-memory channel reach readers.
type SharedMemoryMode string

const (
	// SharedMemoryModeQueue delivers each message to exactly one consumer.
	SharedMemoryModeQueue SharedMemoryMode = "Queue"
	// SharedMemoryModeBroadcast delivers every message to every subscriber.
	SharedMemoryModeBroadcast SharedMemoryMode = "Broadcast"
)

// SharedMemoryOverflow is what a producer does when the ring is full.
type SharedMemoryOverflow string

const (
	// SharedMemoryOverflowBlock waits for a free slot.
	SharedMemoryOverflowBlock SharedMemoryOverflow = "Block"
	// SharedMemoryOverflowFail fails the send at once.
	SharedMemoryOverflowFail SharedMemoryOverflow = "Fail"
	// SharedMemoryOverflowOverwrite (Broadcast only) overwrites the oldest
	// message; lapped subscribers are told how many they lost.
	SharedMemoryOverflowOverwrite SharedMemoryOverflow = "Overwrite"
)

// SharedMemorySettings is the geometry and policy of a shared-memory ring.
type SharedMemorySettings struct {
	Mode      SharedMemoryMode     `json:"mode,omitempty"`
	SlotSize  int32                `json:"slotSize,omitempty"`
	SlotCount int32                `json:"slotCount,omitempty"`
	Overflow  SharedMemoryOverflow `json:"overflow,omitempty"`
}

// Delivery is the delivery guarantee of a message queue.
type Delivery string

const (
	// DeliveryAtLeastOnce keeps a delivered message until it is acknowledged.
	DeliveryAtLeastOnce Delivery = "AtLeastOnce"
	// DeliveryAtMostOnce forgets a message once it is handed to a consumer.
	DeliveryAtMostOnce Delivery = "AtMostOnce"
)

// MessageQueueOverflow is what the broker does with a message sent to a full
// queue.
type MessageQueueOverflow string

const (
	// MessageQueueOverflowBlock withholds the reply until the queue has room.
	MessageQueueOverflowBlock MessageQueueOverflow = "Block"
	// MessageQueueOverflowReject refuses the message with "queue full".
	MessageQueueOverflowReject MessageQueueOverflow = "Reject"
	// MessageQueueOverflowDropOldest discards the oldest ready message of the
	// lowest priority to make room.
	MessageQueueOverflowDropOldest MessageQueueOverflow = "DropOldest"
)

// Persistence is where a message queue keeps its messages.
type Persistence string

const (
	// PersistenceNone keeps messages in the sidecar's memory only.
	PersistenceNone Persistence = "None"
	// PersistenceVolume also journals them on the pod's tmpfs.
	PersistenceVolume Persistence = "Volume"
)

// MessageQueueSettings bounds and tunes a brokered message queue.
type MessageQueueSettings struct {
	MaxDepth        int32                `json:"maxDepth,omitempty"`
	MaxBytes        int64                `json:"maxBytes,omitempty"`
	MaxMessageSize  int32                `json:"maxMessageSize,omitempty"`
	Delivery        Delivery             `json:"delivery,omitempty"`
	AckTimeout      Duration             `json:"ackTimeout,omitzero"`
	MaxRedeliveries *int32               `json:"maxRedeliveries,omitempty"`
	DeadLetterQueue string               `json:"deadLetterQueue,omitempty"`
	Overflow        MessageQueueOverflow `json:"overflow,omitempty"`
	Persistence     Persistence          `json:"persistence,omitempty"`
	DefaultTTL      Duration             `json:"defaultTTL,omitzero"`
}

// Duration is a time.Duration written as Go writes durations ("30s",
// "1m30s"), as in an IPCChannel.
type Duration struct {
	time.Duration
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as 30s: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// DeepCopy returns a copy of c that shares nothing with it.
func (c *Config) DeepCopy() *Config {
	out := &Config{APIVersion: c.APIVersion, Kind: c.Kind, Channels: make([]Channel, len(c.Channels))}
	for i := range c.Channels {
		out.Channels[i] = Channel{Name: c.Channels[i].Name, ChannelSettings: c.Channels[i].ChannelSettings.DeepCopy()}
	}
	return out
}

// DeepCopy returns a copy of s that shares nothing with it.
func (s ChannelSettings) DeepCopy() ChannelSettings {
	if s.SharedMemory != nil {
		shm := *s.SharedMemory
		s.SharedMemory = &shm
	}
	if s.MessageQueue != nil {
		mq := *s.MessageQueue
		if mq.MaxRedeliveries != nil {
			n := *mq.MaxRedeliveries
			mq.MaxRedeliveries = &n
		}
		s.MessageQueue = &mq
	}
	return s
}
