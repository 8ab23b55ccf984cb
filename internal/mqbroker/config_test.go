package mqbroker

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	c := QueueConfig{Name: "q"}.Defaulted()
	if c.MaxDepth != DefaultMaxDepth || c.MaxBytes != DefaultMaxBytes || c.MaxMessageSize != DefaultMaxMessageSize ||
		c.Delivery != AtLeastOnce || c.AckTimeout != DefaultAckTimeout || c.Overflow != Block || c.Persistence != None {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if small := (QueueConfig{Name: "q", MaxBytes: 100}).Defaulted(); small.MaxMessageSize != 100 {
		t.Fatalf("MaxMessageSize not clamped to MaxBytes: %d", small.MaxMessageSize)
	}
	bad := []QueueConfig{
		{Name: ""},
		{Name: "has space"},
		{Name: "-dash"},
		{Name: "q", MaxDepth: -1},
		{Name: "q", MaxBytes: 10, MaxMessageSize: 11},
		{Name: "q", Delivery: "Sometimes"},
		{Name: "q", Overflow: "Explode"},
		{Name: "q", Persistence: "Cloud"},
		{Name: "q", AckTimeout: time.Microsecond},
		{Name: "q", MaxRedeliveries: -2},
		{Name: "q", DeadLetterQueue: "q"},
		{Name: "q", DefaultTTL: -time.Second},
	}
	for _, cfg := range bad {
		if err := cfg.Defaulted().Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: got %v, want ErrInvalidConfig", cfg, err)
		}
	}
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string][]QueueConfig{
		"duplicate":       {{Name: "a"}, {Name: "a"}},
		"missing DLQ":     {{Name: "a", DeadLetterQueue: "b"}},
		"no journal dir":  {{Name: "a", Persistence: Volume}},
		"over broker max": {{Name: "a", MaxMessageSize: 32 << 20, MaxBytes: 64 << 20}},
	} {
		if err := b.Apply(context.Background(), set); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v, want ErrInvalidConfig", name, err)
		}
	}
}
