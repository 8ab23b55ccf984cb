package channelconfig

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Messages of the CEL rules of the CRD. The Go validation reports the same
// words; a test holds the generated CRD to these constants.
const (
	MsgNameTooLong                 = "metadata.name must be at most 63 characters: it is the channel's file name on the pod's tmpfs"
	MsgNameNotDNSLabel             = "metadata.name must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit): it is the channel's file name on the pod's tmpfs"
	MsgDeadLetterQueueSelf         = "deadLetterQueue must name another channel, not this one"
	MsgSharedMemoryRequired        = "sharedMemory is required when type is SharedMemory"
	MsgMessageQueueRequired        = "messageQueue is required when type is MessageQueue"
	MsgSharedMemoryForbidden       = "sharedMemory must not be set unless type is SharedMemory"
	MsgMessageQueueForbidden       = "messageQueue must not be set unless type is MessageQueue"
	MsgTypeImmutable               = "type is immutable: delete the IPCChannel and create a new one to change it"
	MsgModeImmutable               = "mode is immutable: delete the IPCChannel and create a new one to change it"
	MsgSlotSizeImmutable           = "slotSize is immutable: delete the IPCChannel and create a new one to change it"
	MsgSlotCountImmutable          = "slotCount is immutable: delete the IPCChannel and create a new one to change it"
	MsgOverflowImmutable           = "overflow is immutable: delete the IPCChannel and create a new one to change it"
	MsgOverwriteNeedsBroadcast     = "overflow Overwrite is only allowed in Broadcast mode: in Queue mode an overwritten message would be lost without any reader knowing"
	MsgRingTooLarge                = "the ring (slotSize × slotCount) must not exceed 1 GiB (1073741824 bytes)"
	MsgSlotCountPowerOfTwo         = "slotCount must be a power of two (2, 4, 8, ... 1048576)"
	MsgMaxMessageSizeAboveMaxBytes = "maxMessageSize must not exceed maxBytes"
	MsgDeadLetterQueueAtMostOnce   = "deadLetterQueue requires delivery AtLeastOnce: AtMostOnce messages are never redelivered, so none is ever dead-lettered"
	MsgDeadLetterQueueNotDNSLabel  = "deadLetterQueue must be the name of a channel: a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit)"
	MsgAckTimeoutRange             = "ackTimeout must be between 100ms and 24h"
	MsgDefaultTTLRange             = "defaultTTL must be between 0s (never expires) and 720h"
)

// dns1123Label is the pattern of a channel name, as in the CEL rules.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName checks a channel's name at path: a DNS-1123 label of at most
// MaxNameLength characters.
func ValidateName(name string, path *field.Path) field.ErrorList {
	return validateName(name, path, MsgNameTooLong, MsgNameNotDNSLabel)
}

// ValidateChannel checks one defaulted channel of a Config on its own;
// ValidateConfig also checks it against the other channels.
func ValidateChannel(c *Channel, path *field.Path) field.ErrorList {
	allErrs := ValidateName(c.Name, path.Child("name"))
	allErrs = append(allErrs, ValidateChannelSettings(&c.ChannelSettings, path)...)
	return append(allErrs, ValidateNotOwnDeadLetterQueue(c.Name, &c.ChannelSettings, path)...)
}

// ValidateConfig checks a defaulted Config: its apiVersion and
// kind, every channel, that names are unique, and that every deadLetterQueue
// names another MessageQueue channel of the document without forming a cycle.
// Errors name the channel in their path: channels[<name>].<field>.
func ValidateConfig(cfg *Config) field.ErrorList {
	var allErrs field.ErrorList
	if cfg.APIVersion != APIVersion {
		allErrs = append(allErrs, field.NotSupported(field.NewPath("apiVersion"), cfg.APIVersion, []string{APIVersion}))
	}
	if cfg.Kind != Kind {
		allErrs = append(allErrs, field.NotSupported(field.NewPath("kind"), cfg.Kind, []string{Kind}))
	}
	seen := make(map[string]bool, len(cfg.Channels))
	for i := range cfg.Channels {
		c := &cfg.Channels[i]
		path := ChannelPath(cfg, i)
		allErrs = append(allErrs, ValidateChannel(c, path)...)
		if c.Name != "" && seen[c.Name] {
			allErrs = append(allErrs, field.Duplicate(path.Child("name"), c.Name))
		}
		seen[c.Name] = true
	}
	return append(allErrs, ValidateDeadLetterQueues(cfg.Channels, func(i int) *field.Path { return ChannelPath(cfg, i) })...)
}

// ChannelPath is the field path of the i-th channel of cfg in error messages:
// channels[<name>] when the name identifies it, channels[<i>] otherwise.
func ChannelPath(cfg *Config, i int) *field.Path {
	channels := field.NewPath("channels")
	name := cfg.Channels[i].Name
	if name == "" || !dns1123Label.MatchString(name) {
		return channels.Index(i)
	}
	for j := range cfg.Channels {
		if j != i && cfg.Channels[j].Name == name {
			return channels.Index(i)
		}
	}
	return channels.Key(name)
}

// ValidateDeadLetterQueues checks that the deadLetterQueue of each channel
// names another MessageQueue channel of the set and that following them never
// loops. The controller uses it for its Valid condition; the API server cannot
// check it, as it spans objects. pathOf gives the path of the i-th channel.
func ValidateDeadLetterQueues(channels []Channel, pathOf func(i int) *field.Path) field.ErrorList {
	index := make(map[string]int, len(channels))
	for i := range channels {
		if _, dup := index[channels[i].Name]; !dup {
			index[channels[i].Name] = i
		}
	}
	// next is the channel that channel k dead-letters into, if any.
	next := func(k int) (int, bool) {
		mq := channels[k].MessageQueue
		if mq == nil || channels[k].Type != ChannelTypeMessageQueue || mq.DeadLetterQueue == "" {
			return 0, false
		}
		j, ok := index[mq.DeadLetterQueue]
		return j, ok
	}
	var allErrs field.ErrorList
	for i := range channels {
		mq := channels[i].MessageQueue
		if mq == nil || mq.DeadLetterQueue == "" || mq.DeadLetterQueue == channels[i].Name {
			continue // unset, or reported by ValidateChannel
		}
		dlq := mq.DeadLetterQueue
		path := pathOf(i).Child("messageQueue", "deadLetterQueue")
		j, ok := index[dlq]
		if !ok {
			allErrs = append(allErrs, field.NotFound(path, dlq))
			continue
		}
		if channels[j].Type != ChannelTypeMessageQueue {
			allErrs = append(allErrs, field.Invalid(path, dlq, fmt.Sprintf("deadLetterQueue must name a MessageQueue channel; %q is a %s channel", dlq, channels[j].Type)))
			continue
		}
		if cycle := deadLetterCycle(i, j, next); cycle != nil && slices.Min(cycle) == i {
			names := make([]string, 0, len(cycle)+1)
			for _, k := range cycle {
				names = append(names, channels[k].Name)
			}
			names = append(names, channels[i].Name)
			allErrs = append(allErrs, field.Invalid(path, dlq, "deadLetterQueue chain must not loop: "+strings.Join(names, " → ")))
		}
	}
	return allErrs
}

// deadLetterCycle follows the dead-letter chain from channel i, whose queue
// is j, and returns its members from i on if it comes back to i, else nil.
func deadLetterCycle(i, j int, next func(int) (int, bool)) []int {
	chain := []int{i}
	for k, ok := j, true; ok; k, ok = next(k) {
		if k == i {
			return chain
		}
		if slices.Contains(chain, k) {
			return nil // a loop that does not pass through i
		}
		chain = append(chain, k)
	}
	return nil
}

// ValidateChannelSettings checks a defaulted settings block: the type, that
// exactly the settings block of that type is set, and every field of it.
func ValidateChannelSettings(s *ChannelSettings, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	shmPath, mqPath := path.Child("sharedMemory"), path.Child("messageQueue")
	switch s.Type {
	case ChannelTypeSharedMemory, ChannelTypeMessageQueue:
		// Which block belongs is only worth saying once the type is known.
		isShm, isMQ := s.Type == ChannelTypeSharedMemory, s.Type == ChannelTypeMessageQueue
		if isShm && s.SharedMemory == nil {
			allErrs = append(allErrs, field.Required(shmPath, MsgSharedMemoryRequired))
		}
		if isMQ && s.MessageQueue == nil {
			allErrs = append(allErrs, field.Required(mqPath, MsgMessageQueueRequired))
		}
		if !isShm && s.SharedMemory != nil {
			allErrs = append(allErrs, field.Forbidden(shmPath, MsgSharedMemoryForbidden))
		}
		if !isMQ && s.MessageQueue != nil {
			allErrs = append(allErrs, field.Forbidden(mqPath, MsgMessageQueueForbidden))
		}
	case "":
		allErrs = append(allErrs, field.Required(path.Child("type"), "type is required: SharedMemory or MessageQueue"))
	default:
		allErrs = append(allErrs, field.NotSupported(path.Child("type"), s.Type, []ChannelType{ChannelTypeSharedMemory, ChannelTypeMessageQueue}))
	}
	if s.SharedMemory != nil {
		allErrs = append(allErrs, validateSharedMemory(s.SharedMemory, shmPath)...)
	}
	if s.MessageQueue != nil {
		allErrs = append(allErrs, validateMessageQueue(s.MessageQueue, mqPath)...)
	}
	return allErrs
}

// ValidateChannelSettingsUpdate reports the immutable fields that differ
// between old and new: the type and, when both are shared-memory channels,
// every field of the ring (changing its geometry needs a drain and recreate).
func ValidateChannelSettingsUpdate(newSettings, oldSettings *ChannelSettings, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if newSettings.Type != oldSettings.Type {
		allErrs = append(allErrs, field.Invalid(path.Child("type"), newSettings.Type, MsgTypeImmutable))
	}
	n, o := newSettings.SharedMemory, oldSettings.SharedMemory
	if n == nil || o == nil {
		return allErrs
	}
	shm := path.Child("sharedMemory")
	if n.Mode != o.Mode {
		allErrs = append(allErrs, field.Invalid(shm.Child("mode"), n.Mode, MsgModeImmutable))
	}
	if n.SlotSize != o.SlotSize {
		allErrs = append(allErrs, field.Invalid(shm.Child("slotSize"), n.SlotSize, MsgSlotSizeImmutable))
	}
	if n.SlotCount != o.SlotCount {
		allErrs = append(allErrs, field.Invalid(shm.Child("slotCount"), n.SlotCount, MsgSlotCountImmutable))
	}
	if n.Overflow != o.Overflow {
		allErrs = append(allErrs, field.Invalid(shm.Child("overflow"), n.Overflow, MsgOverflowImmutable))
	}
	return allErrs
}

func validateSharedMemory(s *SharedMemorySettings, path *field.Path) field.ErrorList {
	allErrs := validateEnum(s.Mode, path.Child("mode"), SharedMemoryModeQueue, SharedMemoryModeBroadcast)
	allErrs = append(allErrs, validateEnum(s.Overflow, path.Child("overflow"),
		SharedMemoryOverflowBlock, SharedMemoryOverflowFail, SharedMemoryOverflowOverwrite)...)
	allErrs = append(allErrs, validateRange(int64(s.SlotSize), MinSlotSize, MaxSlotSize, path.Child("slotSize"))...)
	slotCount := path.Child("slotCount")
	allErrs = append(allErrs, validateRange(int64(s.SlotCount), MinSlotCount, MaxSlotCount, slotCount)...)
	// As the CEL rule, which lists the powers of two from 2 to 2^20.
	if s.SlotCount&(s.SlotCount-1) != 0 || s.SlotCount < MinSlotCount || s.SlotCount > MaxSlotCount {
		allErrs = append(allErrs, field.Invalid(slotCount, s.SlotCount, MsgSlotCountPowerOfTwo))
	}
	if s.Overflow == SharedMemoryOverflowOverwrite && s.Mode != SharedMemoryModeBroadcast {
		allErrs = append(allErrs, field.Invalid(path.Child("overflow"), s.Overflow, MsgOverwriteNeedsBroadcast))
	}
	if int64(s.SlotSize)*int64(s.SlotCount) > MaxRingBytes {
		allErrs = append(allErrs, field.Invalid(slotCount, s.SlotCount, MsgRingTooLarge))
	}
	return allErrs
}

func validateMessageQueue(s *MessageQueueSettings, path *field.Path) field.ErrorList {
	allErrs := validateRange(int64(s.MaxDepth), MinMaxDepth, MaxMaxDepth, path.Child("maxDepth"))
	allErrs = append(allErrs, validateRange(s.MaxBytes, MinMaxBytes, MaxMaxBytes, path.Child("maxBytes"))...)
	allErrs = append(allErrs, validateRange(int64(s.MaxMessageSize), MinMaxMessageSize, MaxMaxMessageSize, path.Child("maxMessageSize"))...)
	if int64(s.MaxMessageSize) > s.MaxBytes {
		allErrs = append(allErrs, field.Invalid(path.Child("maxMessageSize"), s.MaxMessageSize, MsgMaxMessageSizeAboveMaxBytes))
	}
	allErrs = append(allErrs, validateEnum(s.Delivery, path.Child("delivery"), DeliveryAtLeastOnce, DeliveryAtMostOnce)...)
	allErrs = append(allErrs, validateDuration(s.AckTimeout.Duration, MinAckTimeout, MaxAckTimeout, path.Child("ackTimeout"), MsgAckTimeoutRange)...)
	if s.MaxRedeliveries == nil {
		allErrs = append(allErrs, field.Required(path.Child("maxRedeliveries"), "maxRedeliveries must be set (apply defaults first)"))
	} else {
		if n := *s.MaxRedeliveries; n < UnlimitedRedeliveries || n > MaxMaxRedeliveries {
			allErrs = append(allErrs, field.Invalid(path.Child("maxRedeliveries"), n, fmt.Sprintf("must be between 0 and %d, or %d for no limit", MaxMaxRedeliveries, UnlimitedRedeliveries)))
		}
	}
	if s.DeadLetterQueue != "" {
		dlq := path.Child("deadLetterQueue")
		allErrs = append(allErrs, validateName(s.DeadLetterQueue, dlq, "", MsgDeadLetterQueueNotDNSLabel)...)
		if s.Delivery != DeliveryAtLeastOnce {
			allErrs = append(allErrs, field.Invalid(dlq, s.DeadLetterQueue, MsgDeadLetterQueueAtMostOnce))
		}
	}
	allErrs = append(allErrs, validateEnum(s.Overflow, path.Child("overflow"),
		MessageQueueOverflowBlock, MessageQueueOverflowReject, MessageQueueOverflowDropOldest)...)
	allErrs = append(allErrs, validateEnum(s.Persistence, path.Child("persistence"), PersistenceNone, PersistenceVolume)...)
	return append(allErrs, validateDuration(s.DefaultTTL.Duration, 0, MaxDefaultTTL, path.Child("defaultTTL"), MsgDefaultTTLRange)...)
}

// ValidateNotOwnDeadLetterQueue rejects a queue that dead-letters into itself.
func ValidateNotOwnDeadLetterQueue(name string, s *ChannelSettings, path *field.Path) field.ErrorList {
	if s.MessageQueue == nil || s.MessageQueue.DeadLetterQueue == "" || s.MessageQueue.DeadLetterQueue != name {
		return nil
	}
	return field.ErrorList{field.Invalid(path.Child("messageQueue", "deadLetterQueue"), name, MsgDeadLetterQueueSelf)}
}

// validateName checks a channel name: at most MaxNameLength characters
// (tooLong is the message; empty means the schema's generic one) and a
// DNS-1123 label (notLabel is the message).
func validateName(name string, path *field.Path, tooLong, notLabel string) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(path, "a channel needs a name")}
	}
	var allErrs field.ErrorList
	if len(name) > MaxNameLength {
		if tooLong == "" {
			allErrs = append(allErrs, field.TooLong(path, name, MaxNameLength))
		} else {
			allErrs = append(allErrs, field.Invalid(path, name, tooLong))
		}
	}
	if !dns1123Label.MatchString(name) {
		allErrs = append(allErrs, field.Invalid(path, name, notLabel))
	}
	return allErrs
}

func validateRange(v, lo, hi int64, path *field.Path) field.ErrorList {
	if v < lo || v > hi {
		return field.ErrorList{field.Invalid(path, v, fmt.Sprintf("must be between %d and %d", lo, hi))}
	}
	return nil
}

func validateDuration(d, lo, hi time.Duration, path *field.Path, msg string) field.ErrorList {
	if d < lo || d > hi {
		return field.ErrorList{field.Invalid(path, d.String(), msg)}
	}
	return nil
}

func validateEnum[T ~string](v T, path *field.Path, allowed ...T) field.ErrorList {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return field.ErrorList{field.NotSupported(path, v, allowed)}
}
