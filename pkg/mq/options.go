package mq

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/podipc/podipc/internal/mqwire"
	"github.com/podipc/podipc/pkg/podcontract"
)

// MaxPriority is the highest message priority (WithPriority); 0 is the lowest.
const MaxPriority = mqwire.MaxPriority

// DefaultSocketPath returns the broker's socket from the environment the
// injector gives application containers: $PODIPC_MQ_SOCKET, else mq.sock in
// $PODIPC_DIR (package podcontract).
func DefaultSocketPath() (string, error) {
	p, err := podcontract.MQSocket()
	if err != nil {
		return "", fmt.Errorf("mq: no broker socket (pass WithSocketPath): %w", err)
	}
	return p, nil
}

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	path      string
	logger    *slog.Logger
	reconnect ReconnectPolicy
	brokerUID *int
}

// WithBrokerUID makes the client refuse, with ErrImpostor, a broker socket
// served by a process that does not run as uid (checked with SO_PEERCRED
// on every connection). By default the client checks the UID in
// $PODIPC_BROKER_UID, which the injector sets to the sidecar's, and checks
// nothing when it is not set. A negative uid disables the check.
func WithBrokerUID(uid int) DialOption { return func(o *dialOptions) { o.brokerUID = &uid } }

// WithSocketPath dials path instead of DefaultSocketPath.
func WithSocketPath(path string) DialOption { return func(o *dialOptions) { o.path = path } }

// WithLogger sets the logger for the client's rare events (reconnects,
// connection errors). Default: slog.Default(), as in pkg/shm; pass
// slog.New(slog.DiscardHandler) to silence them.
func WithLogger(l *slog.Logger) DialOption { return func(o *dialOptions) { o.logger = l } }

// SendOption configures one send.
type SendOption func(*sendOptions)

type sendOptions struct {
	priority uint8
	ttl      time.Duration
}

// WithPriority sets the message's priority, from 0 (lowest, the default) to
// MaxPriority.
func WithPriority(p uint8) SendOption { return func(o *sendOptions) { o.priority = p } }

// WithTTL sets the message's time to live: if it is not delivered within
// ttl of its arrival at the broker it expires (and is dead-lettered if the
// queue has a dead-letter queue). Millisecond resolution.
func WithTTL(ttl time.Duration) SendOption { return func(o *sendOptions) { o.ttl = ttl } }

// newSendOptions applies opts to the defaults and checks the result. opts
// does not escape, so the options of a send cost no allocation.
func newSendOptions(opts []SendOption) (sendOptions, error) {
	var so sendOptions
	for _, o := range opts {
		o(&so)
	}
	return so, so.validate()
}

func (o sendOptions) validate() error {
	if o.priority > MaxPriority {
		return fmt.Errorf("%w: priority %d > %d", ErrInvalidArgument, o.priority, MaxPriority)
	}
	if o.ttl < 0 || o.ttl > time.Duration(1<<32-1)*time.Millisecond {
		return fmt.Errorf("%w: TTL %v out of range", ErrInvalidArgument, o.ttl)
	}
	return nil
}

// ConsumeOption configures a consumer.
type ConsumeOption func(*consumeOptions)

type consumeOptions struct {
	prefetch int
}

// DefaultPrefetch is the prefetch of a consumer created without WithPrefetch.
const DefaultPrefetch = 64

// WithPrefetch bounds how many messages the broker sends the consumer ahead
// of its acknowledgements (AtLeastOnce) or of its Receive calls (AtMostOnce).
// The broker may lower it to its own limit.
func WithPrefetch(n int) ConsumeOption { return func(o *consumeOptions) { o.prefetch = n } }
