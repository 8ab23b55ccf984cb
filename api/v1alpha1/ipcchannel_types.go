package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPCChannel declares one channel, a shared-memory ring or a message queue,
// for the injected pods of its namespace that its selector matches. The
// object's name is the channel's name: it names the channel's file on the pod's
// tmpfs and is what applications open.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ipcc,categories=podipc
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.sharedMemory.mode`
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.matchedPods`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyPods`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: it is the channel's file name on the pod's tmpfs"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit): it is the channel's file name on the pod's tmpfs"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.messageQueue) || !has(self.spec.messageQueue.deadLetterQueue) || self.spec.messageQueue.deadLetterQueue != self.metadata.name",message="deadLetterQueue must name another channel, not this one",fieldPath=".spec.messageQueue.deadLetterQueue"
type IPCChannel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the channel.
	// +required
	Spec IPCChannelSpec `json:"spec"`

	// status is what the controller observed of the channel and its pods.
	// +optional
	Status IPCChannelStatus `json:"status,omitempty,omitzero"`
}

// IPCChannelList is a list of IPCChannels.
//
// +kubebuilder:object:root=true
type IPCChannelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPCChannel `json:"items"`
}

// IPCChannelSpec is which pods get the channel and what the channel is.
type IPCChannelSpec struct {
	// selector chooses, among the injected pods of the IPCChannel's namespace,
	// those that get the channel. Omitted or empty, it selects every injected
	// pod of the namespace.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	ChannelSettings `json:",inline"`
}

// ChannelType is the kind of a channel.
//
// +kubebuilder:validation:Enum=SharedMemory;MessageQueue
type ChannelType string

const (
	// ChannelTypeSharedMemory is a ring of fixed-size slots in a file on the
	// pod's tmpfs, mapped by every participant: no copies and no kernel on the
	// data path.
	ChannelTypeSharedMemory ChannelType = "SharedMemory"
	// ChannelTypeMessageQueue is a queue brokered by the sidecar over a Unix
	// socket: acknowledgements, redelivery, dead-lettering, optional journal.
	ChannelTypeMessageQueue ChannelType = "MessageQueue"
)

// ChannelSettings is a channel without its name and without the pods it
// applies to: its type and the settings block of that type. Its twin in the
// data plane's model is channelconfig.ChannelSettings (Model converts).
//
// +kubebuilder:validation:XValidation:rule="self.type != 'SharedMemory' || has(self.sharedMemory)",message="sharedMemory is required when type is SharedMemory",fieldPath=".sharedMemory"
// +kubebuilder:validation:XValidation:rule="self.type != 'MessageQueue' || has(self.messageQueue)",message="messageQueue is required when type is MessageQueue",fieldPath=".messageQueue"
// +kubebuilder:validation:XValidation:rule="self.type == 'SharedMemory' || !has(self.sharedMemory)",message="sharedMemory must not be set unless type is SharedMemory",fieldPath=".sharedMemory"
// +kubebuilder:validation:XValidation:rule="self.type == 'MessageQueue' || !has(self.messageQueue)",message="messageQueue must not be set unless type is MessageQueue",fieldPath=".messageQueue"
type ChannelSettings struct {
	// type is SharedMemory or MessageQueue. It cannot be changed: a channel of
	// the other type is a different channel.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="type is immutable: delete the IPCChannel and create a new one to change it"
	Type ChannelType `json:"type"`

	// sharedMemory configures a SharedMemory channel; set iff type is SharedMemory.
	// An empty block ({}) takes every default.
	// +optional
	SharedMemory *SharedMemorySettings `json:"sharedMemory,omitempty"`

	// messageQueue configures a MessageQueue channel; set iff type is MessageQueue.
	// An empty block ({}) takes every default.
	// +optional
	MessageQueue *MessageQueueSettings `json:"messageQueue,omitempty"`
}

// SharedMemoryMode is how messages of a shared-memory channel reach readers.
//
// +kubebuilder:validation:Enum=Queue;Broadcast
type SharedMemoryMode string

const (
	// SharedMemoryModeQueue delivers each message to exactly one consumer;
	// several producers and several consumers may share the channel.
	SharedMemoryModeQueue SharedMemoryMode = "Queue"
	// SharedMemoryModeBroadcast delivers every message to every subscriber,
	// each reading at its own cursor; one producer.
	SharedMemoryModeBroadcast SharedMemoryMode = "Broadcast"
)

// SharedMemoryOverflow is what a producer does when the ring is full.
//
// +kubebuilder:validation:Enum=Block;Fail;Overwrite
type SharedMemoryOverflow string

const (
	// SharedMemoryOverflowBlock makes the producer wait (within its context's
	// deadline) for a free slot. In Broadcast mode it waits for the slowest live
	// subscriber.
	SharedMemoryOverflowBlock SharedMemoryOverflow = "Block"
	// SharedMemoryOverflowFail makes a send on a full ring fail at once with a
	// "full" error; the producer decides what to do.
	SharedMemoryOverflowFail SharedMemoryOverflow = "Fail"
	// SharedMemoryOverflowOverwrite (Broadcast only) never waits: the producer
	// overwrites the oldest message and a subscriber that falls a whole ring
	// behind is lapped and told how many messages it lost.
	SharedMemoryOverflowOverwrite SharedMemoryOverflow = "Overwrite"
)

// SharedMemorySettings is the geometry and policy of a shared-memory ring.
// Every field is immutable: the ring is a file that every participant has
// mapped with this geometry, so changing it means draining and recreating the
// channel, which only its owner can decide to do.
//
// +kubebuilder:validation:XValidation:rule="self.overflow != 'Overwrite' || self.mode == 'Broadcast'",message="overflow Overwrite is only allowed in Broadcast mode: in Queue mode an overwritten message would be lost without any reader knowing",fieldPath=".overflow"
// +kubebuilder:validation:XValidation:rule="self.slotSize * self.slotCount <= 1073741824",message="the ring (slotSize × slotCount) must not exceed 1 GiB (1073741824 bytes)",fieldPath=".slotCount"
type SharedMemorySettings struct {
	// mode is Queue (each message read by one consumer) or Broadcast (every
	// subscriber reads every message).
	// +optional
	// +kubebuilder:default=Queue
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="mode is immutable: delete the IPCChannel and create a new one to change it"
	Mode SharedMemoryMode `json:"mode,omitempty"`

	// slotSize is the largest message, in bytes, the channel carries: every
	// slot has this capacity. 64 B (one cache line) to 16 MiB.
	// +optional
	// +kubebuilder:default=4096
	// +kubebuilder:validation:Minimum=64
	// +kubebuilder:validation:Maximum=16777216
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="slotSize is immutable: delete the IPCChannel and create a new one to change it"
	SlotSize int32 `json:"slotSize,omitempty"`

	// slotCount is the number of slots in the ring, a power of two from 2 to
	// 1048576 (2^20).
	// +optional
	// +kubebuilder:default=1024
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=1048576
	// +kubebuilder:validation:XValidation:rule="self in [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576]",message="slotCount must be a power of two (2, 4, 8, ... 1048576)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="slotCount is immutable: delete the IPCChannel and create a new one to change it"
	SlotCount int32 `json:"slotCount,omitempty"`

	// overflow is what a producer does when the ring is full: Block (wait for
	// space; in Broadcast mode, for the slowest subscriber), Fail (return an
	// error at once) or, in Broadcast mode only, Overwrite (lap slow
	// subscribers, who are told how many messages they lost).
	// +optional
	// +kubebuilder:default=Block
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="overflow is immutable: delete the IPCChannel and create a new one to change it"
	Overflow SharedMemoryOverflow `json:"overflow,omitempty"`
}

// Delivery is the delivery guarantee of a message queue.
//
// +kubebuilder:validation:Enum=AtLeastOnce;AtMostOnce
type Delivery string

const (
	// DeliveryAtLeastOnce keeps a delivered message until the consumer
	// acknowledges it, and redelivers it if the consumer negatively
	// acknowledges it, dies, or does not acknowledge it within ackTimeout.
	DeliveryAtLeastOnce Delivery = "AtLeastOnce"
	// DeliveryAtMostOnce forgets a message once it is handed to a consumer.
	DeliveryAtMostOnce Delivery = "AtMostOnce"
)

// MessageQueueOverflow is what the broker does with a message sent to a full
// queue.
//
// +kubebuilder:validation:Enum=Block;Reject;DropOldest
type MessageQueueOverflow string

const (
	// MessageQueueOverflowBlock withholds the broker's reply to the producer
	// until the queue has room (flow control), within the producer's deadline.
	MessageQueueOverflowBlock MessageQueueOverflow = "Block"
	// MessageQueueOverflowReject refuses the message with a "queue full" error.
	MessageQueueOverflowReject MessageQueueOverflow = "Reject"
	// MessageQueueOverflowDropOldest accepts the message and discards the
	// oldest ready message of the lowest priority to make room (counted as
	// dropped).
	MessageQueueOverflowDropOldest MessageQueueOverflow = "DropOldest"
)

// Persistence is where a message queue keeps its messages.
//
// +kubebuilder:validation:Enum=None;Volume
type Persistence string

const (
	// PersistenceNone keeps messages in the sidecar's memory only: a sidecar
	// restart loses them.
	PersistenceNone Persistence = "None"
	// PersistenceVolume also appends them to a journal on the pod's tmpfs, so
	// they survive a sidecar restart (not the pod's end: the tmpfs goes with it).
	PersistenceVolume Persistence = "Volume"
)

// MessageQueueSettings bounds and tunes a brokered message queue. Every field
// can change on a live queue; the sidecar applies the change without losing
// queued messages. Every message carries a priority from 0 to 9 (higher first,
// FIFO within a priority); the levels are fixed and need no setting.
//
// +kubebuilder:validation:XValidation:rule="self.maxMessageSize <= self.maxBytes",message="maxMessageSize must not exceed maxBytes",fieldPath=".maxMessageSize"
// +kubebuilder:validation:XValidation:rule="self.delivery == 'AtLeastOnce' || !has(self.deadLetterQueue)",message="deadLetterQueue requires delivery AtLeastOnce: AtMostOnce messages are never redelivered, so none is ever dead-lettered",fieldPath=".deadLetterQueue"
type MessageQueueSettings struct {
	// maxDepth is the most messages the queue holds, counting those delivered
	// but not yet acknowledged. 1 to 1000000.
	// +optional
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxDepth int32 `json:"maxDepth,omitempty"`

	// maxBytes is the most payload bytes the queue holds, counting messages
	// delivered but not yet acknowledged. 4096 (4 KiB) to 4294967296 (4 GiB).
	// +optional
	// +kubebuilder:default=16777216
	// +kubebuilder:validation:Minimum=4096
	// +kubebuilder:validation:Maximum=4294967296
	MaxBytes int64 `json:"maxBytes,omitempty"`

	// maxMessageSize is the largest payload, in bytes, a producer may send.
	// 1 to 16777216 (16 MiB), and at most maxBytes.
	// +optional
	// +kubebuilder:default=1048576
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16777216
	MaxMessageSize int32 `json:"maxMessageSize,omitempty"`

	// delivery is AtLeastOnce (consumers acknowledge; unacknowledged messages
	// are redelivered) or AtMostOnce (a message is gone once handed out).
	// +optional
	// +kubebuilder:default=AtLeastOnce
	Delivery Delivery `json:"delivery,omitempty"`

	// ackTimeout is how long a consumer has to acknowledge a delivered
	// message before it is redelivered (AtLeastOnce only). 100ms to 24h.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('24h')",message="ackTimeout must be between 100ms and 24h"
	AckTimeout metav1.Duration `json:"ackTimeout,omitzero"`

	// maxRedeliveries is how many times a message is redelivered before it is
	// dead-lettered (or, without deadLetterQueue, dropped). 0 to 1000, or -1:
	// 0 means the first failed delivery is final, -1 means no limit (the
	// message is redelivered however often its deliveries fail). AtLeastOnce
	// only.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=-1
	// +kubebuilder:validation:Maximum=1000
	MaxRedeliveries *int32 `json:"maxRedeliveries,omitempty"`

	// deadLetterQueue names another MessageQueue channel of the same pods that
	// receives the messages that exhausted maxRedeliveries. Unset, they are
	// dropped (and counted). AtLeastOnce only.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="deadLetterQueue must be the name of a channel: a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit)"
	DeadLetterQueue string `json:"deadLetterQueue,omitempty"`

	// overflow is what happens to a message sent to a full queue: Block (the
	// producer waits for room), Reject (the send fails with "queue full") or
	// DropOldest (the oldest ready message of the lowest priority is dropped).
	// +optional
	// +kubebuilder:default=Block
	Overflow MessageQueueOverflow `json:"overflow,omitempty"`

	// persistence is None (messages live in the sidecar's memory) or Volume
	// (also journaled on the pod's tmpfs: they survive a sidecar restart).
	// +optional
	// +kubebuilder:default=None
	Persistence Persistence `json:"persistence,omitempty"`

	// defaultTTL is how long a message sent without its own time-to-live
	// stays in the queue before it expires; 0s means it never expires.
	// 0s to 720h.
	// +optional
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('720h')",message="defaultTTL must be between 0s (never expires) and 720h"
	DefaultTTL metav1.Duration `json:"defaultTTL,omitzero"`
}

// IPCChannelStatus is what the controller observed.
type IPCChannelStatus struct {
	// observedGeneration is the metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// matchedPods is how many running injected pods the selector matches.
	// +optional
	MatchedPods int32 `json:"matchedPods"`

	// readyPods is how many of the matched pods report the channel ready.
	// +optional
	ReadyPods int32 `json:"readyPods"`

	// conditions are the Valid and Ready conditions of the channel.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// Condition types of an IPCChannel.
const (
	// ConditionValid is True when the channel's spec is consistent with the
	// channels around it (for instance, its deadLetterQueue names an existing
	// MessageQueue channel), which the API server's schema cannot check.
	ConditionValid = "Valid"
	// ConditionReady is True when every matched pod reports the channel ready.
	ConditionReady = "Ready"
)

// Condition reasons of an IPCChannel.
const (
	// ReasonValid: the spec is valid.
	ReasonValid = "Valid"
	// ReasonDeadLetterQueueNotFound: deadLetterQueue names no IPCChannel of
	// type MessageQueue in the namespace.
	ReasonDeadLetterQueueNotFound = "DeadLetterQueueNotFound"
	// ReasonInvalidSpec: the spec breaks a rule checked in Go (an object
	// stored before a rule was added).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonAllPodsReady: every matched pod has the channel ready.
	ReasonAllPodsReady = "AllPodsReady"
	// ReasonPodsNotReady: some matched pods do not have the channel ready yet.
	ReasonPodsNotReady = "PodsNotReady"
	// ReasonNoMatchingPods: the selector matches no injected pod.
	ReasonNoMatchingPods = "NoMatchingPods"
)
