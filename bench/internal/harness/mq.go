package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/pkg/mq"
)

// mqTransport is podipc's message queues: two queues (A→B and B→A) of a
// broker running in a third process, used through pkg/mq's client as an
// application would. Each side has one connection, on which it sends to one
// queue and consumes the other.
//
// Every send is confirmed by the broker (SEND_OK): a side waits for the
// confirmations of its sends before it receives, and a streaming sender
// checks each one within mqSendWindow sends, so a failed send is never
// missed. Deliveries are acknowledged (AtLeastOnce) when the harness
// releases them; AtMostOnce queues forget a message as they deliver it and
// the client grants credit instead.
type mqTransport struct {
	delivery mqbroker.DeliveryMode
}

// Names of the mq backends, which the verdicts compare.
const (
	nameMQAtLeastOnce = "mq-atleastonce"
	nameMQAtMostOnce  = "mq-atmostonce"
)

const (
	// paramMQSocket is the handoff parameter naming the broker's socket.
	paramMQSocket = "mq-socket"
	// The queues, named by direction.
	mqQueueAToB = "a-to-b"
	mqQueueBToA = "b-to-a"
	// mqPrefetch is the consumers' prefetch: enough to keep a stream
	// flowing while acks travel back.
	mqPrefetch = 1024
	// mqSendWindow is how many sends a streaming side keeps to check their
	// confirmations: twice the broker's default window of unconfirmed
	// sends, so that the client's window, not this ring, holds the sender
	// back, and the oldest send has nearly always been confirmed by the
	// time the ring comes round to it.
	mqSendWindow = 2048
	// mqDialTimeout bounds connecting and subscribing.
	mqDialTimeout = 10 * time.Second
	// maxSocketPath is the longest Unix socket path (sun_path less its NUL).
	maxSocketPath = 107
)

func (t mqTransport) Setup(spec LinkSpec) (Link, error) {
	dir, err := mqSocketDir(spec.Dir)
	if err != nil {
		return nil, err
	}
	bs := brokerSpec{
		Socket:         podcontract.MQSocketPath(dir),
		MaxMessageSize: max(16<<20, spec.Size),
	}
	for _, name := range []string{mqQueueAToB, mqQueueBToA} {
		bs.Queues = append(bs.Queues, mqbroker.QueueConfig{
			Name:           name,
			Delivery:       t.delivery,
			MaxMessageSize: spec.Size,
			MaxBytes:       max(mqbroker.DefaultMaxBytes, 4*int64(spec.Size)),
		})
	}
	broker, err := startBroker(bs)
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return &mqLink{dir: dir, socket: bs.Socket, broker: broker}, nil
}

func (mqTransport) Attach(_ LinkSpec, h Handoff) (Conn, error) {
	return dialMQ(h.Params[paramMQSocket], mqQueueBToA, mqQueueAToB)
}

// mqSocketDir makes a directory for the broker's socket in dir (the tmpfs,
// where the sidecar keeps it), or in the system's temporary directory if
// dir's path is too long for a socket.
func mqSocketDir(dir string) (string, error) {
	const pattern = "podipc-bench-mq-"
	if len(filepath.Join(dir, pattern+"0123456789", podcontract.MQSocketName)) > maxSocketPath {
		dir = os.TempDir()
	}
	d, err := os.MkdirTemp(dir, pattern)
	if err != nil {
		return "", fmt.Errorf("broker directory: %w", err)
	}
	return d, nil
}

// mqLink is a running broker and its directory.
type mqLink struct {
	dir, socket string
	broker      *brokerProcess
}

func (l *mqLink) Handoff() Handoff {
	return Handoff{Params: map[string]string{paramMQSocket: l.socket}}
}

func (l *mqLink) Open() (Conn, error) {
	c, err := dialMQ(l.socket, mqQueueAToB, mqQueueBToA)
	if err != nil {
		return nil, l.broker.explain(err)
	}
	return c, nil
}

func (l *mqLink) Close() error {
	return errors.Join(l.broker.stop(), os.RemoveAll(l.dir))
}

// dialMQ connects to the broker, sends to out and consumes in.
func dialMQ(socket, out, in string) (Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), mqDialTimeout)
	defer cancel()
	client, err := mq.Dial(ctx, mq.WithSocketPath(socket), mq.WithoutReconnect()) // a benchmark fails fast
	if err != nil {
		return nil, err
	}
	cons, err := client.Consume(ctx, in, mq.WithPrefetch(mqPrefetch))
	if err != nil {
		return nil, errors.Join(err, client.Close())
	}
	c := &mqClientConn{client: client, out: out, cons: cons, sent: make([]*mq.Confirmation, mqSendWindow)}
	if path := os.Getenv(brokerProfileEnv); path != "" {
		if c.stopProfile, err = startCPUProfile(fmt.Sprintf("%s.%d.%s", path, os.Getpid(), out)); err != nil {
			return nil, errors.Join(err, client.Close())
		}
	}
	return c, nil
}

// mqClientConn is one side's connection: it sends to one queue and receives from
// the other.
type mqClientConn struct {
	client *mq.Client
	out    string
	cons   *mq.Consumer
	cur    *mq.Delivery // received and not yet released
	// sent is a ring of unconfirmed sends, the oldest at head.
	sent    []*mq.Confirmation
	head, n int
	// stopProfile, if set, ends this process's CPU profile.
	stopProfile func()
}

func (c *mqClientConn) Send(ctx context.Context, msg []byte) error {
	if c.n == len(c.sent) {
		if err := c.confirmOldest(ctx); err != nil {
			return err
		}
	}
	cf, err := c.client.SendAsync(ctx, c.out, msg)
	if err != nil {
		return fmt.Errorf("mq send: %w", err)
	}
	c.sent[(c.head+c.n)%len(c.sent)] = cf
	c.n++
	if flags(msg)&flagLast != 0 {
		return c.confirmAll(ctx)
	}
	return nil
}

// confirmOldest waits for the oldest unconfirmed send's confirmation.
func (c *mqClientConn) confirmOldest(ctx context.Context) error {
	cf := c.sent[c.head]
	c.sent[c.head] = nil
	c.head = (c.head + 1) % len(c.sent)
	c.n--
	if err := cf.Wait(ctx); err != nil {
		return fmt.Errorf("mq send confirmation: %w", err)
	}
	return nil
}

func (c *mqClientConn) confirmAll(ctx context.Context) error {
	for c.n > 0 {
		if err := c.confirmOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *mqClientConn) Recv(ctx context.Context) ([]byte, error) {
	if err := c.confirmAll(ctx); err != nil {
		return nil, err
	}
	d, err := c.cons.Receive(ctx)
	if err != nil {
		return nil, fmt.Errorf("mq receive: %w", err)
	}
	c.cur = d
	return d.Body, nil
}

func (c *mqClientConn) Release() error {
	d := c.cur
	if d == nil {
		return nil
	}
	c.cur = nil
	if err := d.Ack(context.Background()); err != nil {
		return fmt.Errorf("mq ack: %w", err)
	}
	return nil
}

func (c *mqClientConn) Close() error {
	if c.stopProfile != nil {
		c.stopProfile()
	}
	return c.client.Close()
}

// allocates marks the client library as allocating per message.
func (mqTransport) allocates() {}
