package mqbroker

import (
	"errors"
	"fmt"
	"time"

	"github.com/podipc/podipc/internal/mqwire"
)

// DeliveryMode says when the broker forgets a delivered message.
type DeliveryMode string

// Delivery modes.
const (
	// AtLeastOnce keeps a delivered message until the consumer acknowledges
	// it, and redelivers it otherwise.
	AtLeastOnce DeliveryMode = "AtLeastOnce"
	// AtMostOnce forgets a message as soon as it is handed to a consumer.
	AtMostOnce DeliveryMode = "AtMostOnce"
)

// Overflow says what a send to a full queue does.
type Overflow string

// Overflow policies.
const (
	// Block delays the send's confirmation until there is room or the
	// sender's deadline passes.
	Block Overflow = "Block"
	// Reject fails the send with ErrQueueFull.
	Reject Overflow = "Reject"
	// DropOldest makes room by discarding the oldest message of the lowest
	// priority present, and counts it as dropped.
	DropOldest Overflow = "DropOldest"
)

// Persistence says where a queue's messages live.
type Persistence string

// Persistence modes.
const (
	// None keeps messages in the broker's memory: they survive application
	// restarts but not a broker restart.
	None Persistence = "None"
	// Volume also writes them to a journal in the broker's journal
	// directory (the pod's tmpfs), so they survive a broker crash.
	Volume Persistence = "Volume"
)

// Defaults applied by QueueConfig.Defaulted.
const (
	DefaultMaxDepth       = 10_000
	DefaultMaxBytes       = 16 << 20
	DefaultMaxMessageSize = 1 << 20
	DefaultAckTimeout     = 30 * time.Second
)

// UnlimitedRedeliveries as QueueConfig.MaxRedeliveries redelivers a message
// however often its deliveries fail.
const UnlimitedRedeliveries = -1

// QueueConfig declares one queue.
type QueueConfig struct {
	// Name identifies the queue: 1 to 255 characters from [A-Za-z0-9._-],
	// not starting with '.' or '-'.
	Name string
	// MaxDepth bounds the number of messages waiting for delivery.
	MaxDepth int
	// MaxBytes bounds the body bytes of the messages waiting for delivery.
	MaxBytes int64
	// MaxMessageSize bounds one message body.
	MaxMessageSize int
	// Delivery is AtLeastOnce (the default) or AtMostOnce.
	Delivery DeliveryMode
	// AckTimeout is how long a delivered message may stay unacknowledged
	// before it is redelivered.
	AckTimeout time.Duration
	// MaxRedeliveries is how many times a message may be redelivered; the
	// next failure dead-letters it. Zero means the first failed delivery is
	// final; UnlimitedRedeliveries means no limit. It is not defaulted: the
	// zero value is a limit like any other.
	MaxRedeliveries int
	// DeadLetterQueue names the queue that receives messages that were
	// rejected, redelivered too often, or expired. Empty means they are
	// discarded (and counted).
	DeadLetterQueue string
	// Overflow is what a send to a full queue does; Block by default.
	Overflow Overflow
	// Persistence is None (the default) or Volume.
	Persistence Persistence
	// DefaultTTL, if positive, is the time to live of messages sent without one.
	DefaultTTL time.Duration
}

// Defaulted returns c with every unset field set to its default.
func (c QueueConfig) Defaulted() QueueConfig {
	if c.MaxDepth == 0 {
		c.MaxDepth = DefaultMaxDepth
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = int(min(int64(DefaultMaxMessageSize), c.MaxBytes))
	}
	if c.Delivery == "" {
		c.Delivery = AtLeastOnce
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.Overflow == "" {
		c.Overflow = Block
	}
	if c.Persistence == "" {
		c.Persistence = None
	}
	return c
}

// Validate reports the first problem with a defaulted configuration.
func (c QueueConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: queue %q: %s", ErrInvalidConfig, c.Name, fmt.Sprintf(format, args...))
	}
	if err := validateName(c.Name); err != nil {
		return bad("%v", err)
	}
	switch {
	case c.MaxDepth <= 0:
		return bad("MaxDepth %d must be positive", c.MaxDepth)
	case c.MaxBytes <= 0:
		return bad("MaxBytes %d must be positive", c.MaxBytes)
	case c.MaxMessageSize <= 0 || int64(c.MaxMessageSize) > c.MaxBytes:
		return bad("MaxMessageSize %d must be positive and at most MaxBytes %d", c.MaxMessageSize, c.MaxBytes)
	case c.Delivery != AtLeastOnce && c.Delivery != AtMostOnce:
		return bad("unknown Delivery %q", c.Delivery)
	case c.AckTimeout < time.Millisecond:
		return bad("AckTimeout %v must be at least 1ms", c.AckTimeout)
	case c.MaxRedeliveries < UnlimitedRedeliveries:
		return bad("MaxRedeliveries %d must be at least 0, or UnlimitedRedeliveries (-1)", c.MaxRedeliveries)
	case c.Overflow != Block && c.Overflow != Reject && c.Overflow != DropOldest:
		return bad("unknown Overflow %q", c.Overflow)
	case c.Persistence != None && c.Persistence != Volume:
		return bad("unknown Persistence %q", c.Persistence)
	case c.DefaultTTL < 0:
		return bad("DefaultTTL %v must not be negative", c.DefaultTTL)
	case c.DeadLetterQueue == c.Name:
		return bad("a queue cannot be its own dead-letter queue")
	}
	if c.DeadLetterQueue != "" {
		if err := validateName(c.DeadLetterQueue); err != nil {
			return bad("DeadLetterQueue: %v", err)
		}
	}
	return nil
}

// validateSet defaults and validates a whole configuration: every queue, unique
// names, and dead-letter queues that exist.
func validateSet(cfgs []QueueConfig) ([]QueueConfig, error) {
	out := make([]QueueConfig, len(cfgs))
	names := make(map[string]bool, len(cfgs))
	for i, c := range cfgs {
		c = c.Defaulted()
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if names[c.Name] {
			return nil, fmt.Errorf("%w: queue %q declared twice", ErrInvalidConfig, c.Name)
		}
		names[c.Name] = true
		out[i] = c
	}
	for _, c := range out {
		if c.DeadLetterQueue != "" && !names[c.DeadLetterQueue] {
			return nil, fmt.Errorf("%w: queue %q: dead-letter queue %q is not declared", ErrInvalidConfig, c.Name, c.DeadLetterQueue)
		}
	}
	return out, nil
}

func validateName(name string) error {
	if name == "" || len(name) > mqwire.MaxQueueName {
		return fmt.Errorf("name must have 1 to %d characters", mqwire.MaxQueueName)
	}
	if name[0] == '.' || name[0] == '-' {
		return errors.New("name must not start with '.' or '-'")
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			return fmt.Errorf("name contains %q; allowed are letters, digits, '.', '_' and '-'", ch)
		}
	}
	return nil
}
