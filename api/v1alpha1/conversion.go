package v1alpha1

import (
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podipc/podipc/pkg/channelconfig"
)

// Conversion between the API's settings types and pkg/channelconfig's
// model, which the sidecar serves and in which the Go defaulting and
// validation are written. The two have the same fields; a test holds them
// to each other field by field.

// Model is s in the channel model.
func (s *ChannelSettings) Model() channelconfig.ChannelSettings {
	out := channelconfig.ChannelSettings{Type: channelconfig.ChannelType(s.Type)}
	if s.SharedMemory != nil {
		m := s.SharedMemory.model()
		out.SharedMemory = &m
	}
	if s.MessageQueue != nil {
		m := s.MessageQueue.model()
		out.MessageQueue = &m
	}
	return out
}

// FromModel is the model's settings as the API's.
func FromModel(m channelconfig.ChannelSettings) ChannelSettings {
	out := ChannelSettings{Type: ChannelType(m.Type)}
	if m.SharedMemory != nil {
		s := sharedMemoryFromModel(m.SharedMemory)
		out.SharedMemory = &s
	}
	if m.MessageQueue != nil {
		s := messageQueueFromModel(m.MessageQueue)
		out.MessageQueue = &s
	}
	return out
}

func (s *SharedMemorySettings) model() channelconfig.SharedMemorySettings {
	return channelconfig.SharedMemorySettings{
		Mode:      channelconfig.SharedMemoryMode(s.Mode),
		SlotSize:  s.SlotSize,
		SlotCount: s.SlotCount,
		Overflow:  channelconfig.SharedMemoryOverflow(s.Overflow),
	}
}

func sharedMemoryFromModel(m *channelconfig.SharedMemorySettings) SharedMemorySettings {
	return SharedMemorySettings{
		Mode:      SharedMemoryMode(m.Mode),
		SlotSize:  m.SlotSize,
		SlotCount: m.SlotCount,
		Overflow:  SharedMemoryOverflow(m.Overflow),
	}
}

func (s *MessageQueueSettings) model() channelconfig.MessageQueueSettings {
	return channelconfig.MessageQueueSettings{
		MaxDepth:        s.MaxDepth,
		MaxBytes:        s.MaxBytes,
		MaxMessageSize:  s.MaxMessageSize,
		Delivery:        channelconfig.Delivery(s.Delivery),
		AckTimeout:      channelconfig.Duration{Duration: s.AckTimeout.Duration},
		MaxRedeliveries: copyInt32(s.MaxRedeliveries),
		DeadLetterQueue: s.DeadLetterQueue,
		Overflow:        channelconfig.MessageQueueOverflow(s.Overflow),
		Persistence:     channelconfig.Persistence(s.Persistence),
		DefaultTTL:      channelconfig.Duration{Duration: s.DefaultTTL.Duration},
	}
}

func messageQueueFromModel(m *channelconfig.MessageQueueSettings) MessageQueueSettings {
	return MessageQueueSettings{
		MaxDepth:        m.MaxDepth,
		MaxBytes:        m.MaxBytes,
		MaxMessageSize:  m.MaxMessageSize,
		Delivery:        Delivery(m.Delivery),
		AckTimeout:      metav1.Duration{Duration: m.AckTimeout.Duration},
		MaxRedeliveries: copyInt32(m.MaxRedeliveries),
		DeadLetterQueue: m.DeadLetterQueue,
		Overflow:        MessageQueueOverflow(m.Overflow),
		Persistence:     Persistence(m.Persistence),
		DefaultTTL:      metav1.Duration{Duration: m.DefaultTTL.Duration},
	}
}

func copyInt32(p *int32) *int32 {
	if p == nil {
		return nil
	}
	n := *p
	return &n
}

// ConfigFor is the channel configuration of a pod that the IPCChannels apply
// to: one channel per object, named after it, with every default filled in
// and sorted by name, so that the same set of channels always gives the same
// bytes (channelconfig.Marshal).
func ConfigFor(items []IPCChannel) *channelconfig.Config {
	cfg := &channelconfig.Config{APIVersion: channelconfig.APIVersion, Kind: channelconfig.Kind, Channels: make([]channelconfig.Channel, 0, len(items))}
	for i := range items {
		c := channelconfig.Channel{Name: items[i].Name, ChannelSettings: items[i].Spec.ChannelSettings.Model()}
		c.Default()
		cfg.Channels = append(cfg.Channels, c)
	}
	slices.SortFunc(cfg.Channels, func(a, b channelconfig.Channel) int { return strings.Compare(a.Name, b.Name) })
	return cfg
}
