package mq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podipc/podipc/internal/mqconn"
	"github.com/podipc/podipc/internal/mqwire"
	"github.com/podipc/podipc/pkg/podcontract"
)

// Client is a connection to the broker. It is safe for concurrent use; sends
// and acknowledgements from all goroutines are batched onto the connection by
// one writer goroutine, and one reader goroutine dispatches what arrives.
//
// Unless dialled WithoutReconnect, a Client outlives its connection: when
// the broker goes away (the sidecar restarts) it dials again with backoff
// for up to the ReconnectPolicy's window, sends again every request the old
// broker had not answered, and re-attaches its consumers, so callers see
// neither an error nor a lost confirmed message (see ReconnectPolicy).
type Client struct {
	path      string
	brokerUID int // -1: not checked
	log       *slog.Logger
	policy    ReconnectPolicy

	// life ends when the client is closed; it bounds reconnection.
	life       context.Context
	endLife    context.CancelFunc
	reconnects sync.WaitGroup

	// sess is the current connection. It is replaced, under mu, only by a
	// reconnection; between losing a connection and replacing it, sess is
	// the lost one, whose writer drops what is appended.
	sess atomic.Pointer[session]
	// gen counts connections lost: deliveries of an older generation are
	// stale (their connection is gone and the broker redelivers them).
	gen atomic.Uint64

	stats clientCounters

	mu           sync.Mutex
	calls        requestTable
	consumers    map[uint32]*Consumer
	nextConsumer uint32
	defaults     map[string]*Consumer
	pendingSends int
	pendingBytes int
	windowFreed  chan struct{} // closed when the send window frees; nil if nobody waits
	connected    bool
	resumedAt    time.Time                  // when the last reconnection completed
	retrying     map[*Confirmation]struct{} // requests waiting to be sent again (see retryLater)
	err          error                      // why the client is closed
	goAway       error
}

// session is one connection to the broker and the goroutines serving it.
type session struct {
	nc         net.Conn
	rd         *mqwire.Reader
	w          *mqconn.Writer
	limits     mqwire.Welcome
	gen        uint64
	readerDone chan struct{}

	// Guarded by w.mu: what the frame at w.mark is, if it is an ACK, NACK
	// or CREDIT that later settlements of the same consumer can be merged into.
	lastKind     mqwire.FrameType
	lastConsumer uint32
	lastRequeue  bool
	lastCount    int
}

// Dial connects to the broker, by default at $PODIPC_MQ_SOCKET (see
// DefaultSocketPath), and performs the handshake. It fails at once if the
// broker is not there; reconnection applies to a connection once made.
func Dial(ctx context.Context, opts ...DialOption) (*Client, error) {
	o := dialOptions{reconnect: DefaultReconnectPolicy()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.path == "" {
		p, err := DefaultSocketPath()
		if err != nil {
			return nil, err
		}
		o.path = p
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if err := o.reconnect.validate(); err != nil {
		return nil, err
	}
	brokerUID := -1
	if o.brokerUID != nil {
		brokerUID = *o.brokerUID
	} else if uid, ok, err := podcontract.BrokerUID(); err != nil {
		return nil, fmt.Errorf("mq: %w", err)
	} else if ok {
		brokerUID = uid
	}
	s, err := dialSession(ctx, o.path, brokerUID)
	if err != nil {
		return nil, err
	}
	c := &Client{
		path:      o.path,
		brokerUID: brokerUID,
		log:       o.logger,
		policy:    o.reconnect,
		consumers: map[uint32]*Consumer{},
		defaults:  map[string]*Consumer{},
		retrying:  map[*Confirmation]struct{}{},
		connected: true,
	}
	c.life, c.endLife = context.WithCancel(context.Background())
	c.sess.Store(s)
	c.start(s)
	return c, nil
}

// dialSession connects to the broker at path, checks that it runs as
// brokerUID (unless negative) and performs the handshake.
func dialSession(ctx context.Context, path string, brokerUID int) (*session, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("mq: dial %s: %w", path, err)
	}
	if err := checkBroker(nc, brokerUID); err != nil {
		nc.Close()
		return nil, fmt.Errorf("mq: dial %s: %w", path, err)
	}
	w, err := handshake(ctx, nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("mq: handshake with %s: %w", path, err)
	}
	return &session{
		nc:         nc,
		limits:     w,
		rd:         mqwire.NewReader(nc, mqconn.ReadBufferSize, int(w.MaxFrame)),
		w:          mqconn.NewWriter(nc, clientWriteTimeout),
		readerDone: make(chan struct{}),
	}, nil
}

// start runs s's reader and writer goroutines.
func (c *Client) start(s *session) {
	go c.readLoop(s)
	go s.w.Run(func(err error) { c.connectionLost(s, fmt.Errorf("%w: write: %v", ErrClosed, err)) })
}

// clientWriteTimeout bounds how long a write to a broker that stopped
// reading may block before the connection is given up.
const clientWriteTimeout = 30 * time.Second

// The room frames take in the outbox (mqconn.Writer.Lock): a settlement or
// the tag that extends one; a request other than a send (a longer one costs
// a reallocation, not an error).
const (
	settleRoom  = 32
	requestRoom = 512
)

// sendByReference is the body size from which a send's kept copy (see
// newSendConfirmation) is written from where it lies instead of being copied
// into the outbox.
const sendByReference = 4 << 10

func handshake(ctx context.Context, nc net.Conn) (mqwire.Welcome, error) {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	hello := mqwire.AppendHello(nil, mqwire.Hello{MinVersion: mqwire.Version1, MaxVersion: mqwire.Version1})
	if _, err := nc.Write(hello); err != nil {
		return mqwire.Welcome{}, ctxOr(ctx, err)
	}
	var buf [mqwire.WelcomeSize]byte
	if _, err := io.ReadFull(nc, buf[:]); err != nil {
		return mqwire.Welcome{}, ctxOr(ctx, err)
	}
	w, err := mqwire.ParseWelcome(buf[:])
	if err != nil {
		return mqwire.Welcome{}, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if w.Status != mqwire.CodeOK {
		return mqwire.Welcome{}, brokerError(w.Status, "connection refused")
	}
	if w.Version != mqwire.Version1 {
		return mqwire.Welcome{}, fmt.Errorf("%w: broker chose version %d", ErrUnsupportedVersion, w.Version)
	}
	if !stop() {
		return mqwire.Welcome{}, ctx.Err()
	}
	nc.SetDeadline(time.Time{})
	return w, nil
}

func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// MaxMessageSize is the largest body the broker accepts on any queue.
func (c *Client) MaxMessageSize() int { return int(c.sess.Load().limits.MaxMessage) }

// Confirmation is the broker's answer to an asynchronous send.
type Confirmation struct {
	// answered is set once the fields below the mutex are final.
	answered atomic.Bool
	mu       sync.Mutex
	// done is made by the first caller that waits before the answer (or
	// asks for Done), so that a pipelined sender that looks only after the
	// answer came never allocates it.
	done chan struct{}

	err     error
	id      uint64
	req     uint32
	bodyLen int
	isSend  bool
	// CONSUME_OK fields.
	mode     uint8
	prefetch uint32

	// What a reconnection sends again, if the request is still unanswered
	// when its connection is lost: the send (with a copy of its body), or
	// the request's encoder. Neither is set when the client does not
	// reconnect.
	resend send
	enc    func(b []byte, req uint32) []byte
	// attach is the consumer a CONSUME attaches; it counts as attached
	// (and is re-attached by a reconnection) from its CONSUME_OK on.
	attach *Consumer
	// then, if set, runs after the answer is resolved.
	then func(*Confirmation)
}

// send is what a send needs to be sent again on a new connection.
type send struct {
	kept     bool
	priority uint8
	ttl      uint32
	queue    string
	body     []byte
	deadline time.Time // zero: none
}

// Confirmations of sends that keep small bodies for a reconnection are
// allocated together with them: one allocation per send instead of two.
type (
	confirmation64 struct {
		cf Confirmation
		b  [64]byte
	}
	confirmation512 struct {
		cf Confirmation
		b  [512]byte
	}
)

// newSendConfirmation returns the Confirmation of a send of body, keeping
// a copy of body if keep.
func newSendConfirmation(body []byte, keep bool) *Confirmation {
	var cf *Confirmation
	switch n := len(body); {
	case !keep:
		cf = &Confirmation{}
	case n <= 64:
		x := new(confirmation64)
		x.cf.resend.body = x.b[:n:n]
		cf = &x.cf
	case n <= 512:
		x := new(confirmation512)
		x.cf.resend.body = x.b[:n:n]
		cf = &x.cf
	default:
		cf = &Confirmation{}
		cf.resend.body = make([]byte, n)
	}
	cf.bodyLen, cf.isSend, cf.resend.kept = len(body), true, keep
	copy(cf.resend.body, body)
	return cf
}

// appendTo encodes cf's request with id req onto b, and reports false if it
// is a send whose deadline has passed.
func (cf *Confirmation) appendTo(b []byte, req uint32) ([]byte, bool) {
	if !cf.resend.kept {
		return cf.enc(b, req), true
	}
	s := &cf.resend
	timeout, ok := timeoutMillis(s.deadline)
	if !ok {
		return b, false
	}
	return mqwire.AppendSend(b, req, s.priority, s.ttl, timeout, s.queue, s.body), true
}

// canResend reports whether a reconnection can send cf again.
func (cf *Confirmation) canResend() bool { return cf.resend.kept || cf.enc != nil }

// timeoutMillis is the wire's send timeout for deadline (0: none), rounded
// up; false if the deadline has passed.
func timeoutMillis(deadline time.Time) (uint32, bool) {
	if deadline.IsZero() {
		return 0, true
	}
	left := time.Until(deadline)
	if left <= 0 {
		return 0, false
	}
	ms := (left + time.Millisecond - 1) / time.Millisecond
	return uint32(min(max(ms, 1), 1<<32-1)), true
}

// resolve records the answer (fields set before it, and err) and wakes the
// waiters. It is called once.
func (cf *Confirmation) resolve(err error) {
	cf.err = err
	cf.mu.Lock()
	cf.answered.Store(true)
	if cf.done != nil {
		close(cf.done)
	}
	cf.mu.Unlock()
}

// pending returns a channel that is closed when the answer comes, or nil if
// it has come.
func (cf *Confirmation) pending() <-chan struct{} {
	if cf.answered.Load() {
		return nil
	}
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if cf.answered.Load() {
		return nil
	}
	if cf.done == nil {
		cf.done = make(chan struct{})
	}
	return cf.done
}

// Done is closed when the broker has answered (or the connection is lost).
func (cf *Confirmation) Done() <-chan struct{} {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if cf.done == nil {
		cf.done = make(chan struct{})
		if cf.answered.Load() {
			close(cf.done)
		}
	}
	return cf.done
}

// Err is the send's outcome once Done is closed: nil if the message is
// queued (and journaled, for a persistent queue).
func (cf *Confirmation) Err() error {
	if ch := cf.pending(); ch != nil {
		<-ch
	}
	return cf.err
}

// ID is the message's id in its queue, once Done is closed without error.
func (cf *Confirmation) ID() uint64 {
	if ch := cf.pending(); ch != nil {
		<-ch
	}
	return cf.id
}

// Wait waits for the answer or for ctx to end.
func (cf *Confirmation) Wait(ctx context.Context) error {
	ch := cf.pending()
	if ch == nil {
		return cf.err
	}
	select {
	case <-ch:
		return cf.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Send sends body to queue and waits for the broker's confirmation. If ctx
// ends first, Send returns ctx's error and the message may or may not have
// been queued. When the queue is full and its overflow policy is Block, the
// broker holds the confirmation until there is room or ctx's deadline.
func (c *Client) Send(ctx context.Context, queue string, body []byte, opts ...SendOption) error {
	cf, err := c.SendAsync(ctx, queue, body, opts...)
	if err != nil {
		return err
	}
	return cf.Wait(ctx)
}

// SendAsync sends body to queue without waiting for the confirmation, so a
// producer can have many sends in flight. It blocks only while the
func (c *Client) SendAsync(ctx context.Context, queue string, body []byte, opts ...SendOption) (*Confirmation, error) {
	so, err := newSendOptions(opts)
	if err != nil {
		return nil, err
	}
	if queue == "" || len(queue) > mqwire.MaxQueueName {
		return nil, fmt.Errorf("%w: queue name length %d", ErrInvalidArgument, len(queue))
	}
	if limit := c.MaxMessageSize(); len(body) > limit {
		return nil, fmt.Errorf("%w: %d bytes, broker limit %d", ErrMessageTooLarge, len(body), limit)
	}
	deadline, _ := ctx.Deadline()
	timeout, ok := timeoutMillis(deadline)
	if !ok {
		timeout = 1 // the broker answers at once if the queue is full
	}
	ttl := uint32(so.ttl / time.Millisecond)
	cf := newSendConfirmation(body, c.policy.enabled())
	cf.resend.queue, cf.resend.priority, cf.resend.ttl, cf.resend.deadline = queue, so.priority, ttl, deadline
	req, s, pipelined, err := c.reserveSend(ctx, cf)
	if err != nil {
		return nil, err
	}
	if kept := cf.resend.body; len(kept) >= sendByReference {
		// The copy kept for a resend is never modified: send it from
		// where it lies rather than copy it again.
		out, _, ok := s.w.Lock(mqwire.SendOverhead + len(queue))
		if ok {
			out = mqwire.AppendSendHeader(out, req, so.priority, ttl, timeout, queue, len(kept))
		}
		s.w.UnlockRef(out, kept)
	} else {
		out, mark, ok := s.w.Lock(mqwire.SendOverhead + len(queue) + len(body))
		if ok {
			out, mark = mqwire.AppendSend(out, req, so.priority, ttl, timeout, queue, body), -1
		}
		s.w.Unlock(out, mark)
	}
	if pipelined {
		// Other sends are on their way: leave the write to the writer
		// goroutine, which batches this frame with those that follow,
		// rather than make one system call per send.
		s.w.Wake()
	} else {
		s.w.Flush()
	}
	return cf, nil
}

// reserveSend waits for room in the send window and registers cf. It
// returns the session to send on (if it is lost meanwhile, a reconnection
// sends cf again) and reports whether other sends are still unanswered (the
// caller pipelines).
func (c *Client) reserveSend(ctx context.Context, cf *Confirmation) (uint32, *session, bool, error) {
	c.mu.Lock()
	for {
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, nil, false, err
		}
		limits := c.sess.Load().limits
		if c.pendingSends == 0 || (c.pendingSends < int(limits.MaxPendingSends) &&
			c.pendingBytes+cf.bodyLen <= int(limits.MaxPendingBytes)) {
			break
		}
		if c.windowFreed == nil {
			c.windowFreed = make(chan struct{})
		}
		freed := c.windowFreed
		c.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return 0, nil, false, ctx.Err()
		}
		c.mu.Lock()
	}
	c.pendingSends++
	c.pendingBytes += cf.bodyLen
	req := c.calls.add(cf)
	pipelined := c.pendingSends > 1
	s := c.sess.Load()
	c.mu.Unlock()
	return req, s, pipelined, nil
}

// releaseSend, with c.mu held, takes an answered or abandoned send out of
// the send window and wakes the senders waiting for room once there is
// enough. Requests that are not sends are left alone.
func (c *Client) releaseSend(cf *Confirmation) {
	if !cf.isSend {
		return
	}
	c.pendingSends--
	c.pendingBytes -= cf.bodyLen
	if c.windowFreed != nil && c.windowRoomy() {
		close(c.windowFreed)
		c.windowFreed = nil
	}
}

// windowRoomy reports, with c.mu held, whether the send window has room
// enough to wake senders blocked on it: a quarter of it free, or nothing
// pending. Waking them at once on every answer would hand a busy sender one
// slot per wake-up.
func (c *Client) windowRoomy() bool {
	limits := c.sess.Load().limits
	return c.pendingSends == 0 ||
		(4*c.pendingSends <= 3*int(limits.MaxPendingSends) && 4*c.pendingBytes <= 3*int(limits.MaxPendingBytes))
}

// call sends a request frame and waits for its answer.
func (c *Client) call(ctx context.Context, cf *Confirmation, enc func(b []byte, req uint32) []byte) error {
	if c.policy.enabled() {
		cf.enc = enc
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	req := c.calls.add(cf)
	s := c.sess.Load()
	c.mu.Unlock()
	out, mark, ok := s.w.Lock(requestRoom)
	if ok {
		out, mark = enc(out, req), -1
	}
	s.w.Unlock(out, mark)
	s.w.Flush()
	err := cf.Wait(ctx)
	if err != nil && !cf.answered.Load() {
		// ctx ended first: nobody waits for the answer any more.
		c.mu.Lock()
		c.calls.remove(cf)
		delete(c.retrying, cf)
		c.mu.Unlock()
	}
	return err
}

// Ping waits for a round trip to the broker. Because the broker handles a
// connection's frames in order, a returned Ping also means every earlier
// Ack and Nack of this client has been applied.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, &Confirmation{}, func(b []byte, req uint32) []byte { return mqwire.AppendPing(b, mqwire.TypePing, uint64(req)) })
}

// Consume attaches a consumer to queue. Competing consumers of a queue (in
// this or other clients) share its messages.
func (c *Client) Consume(ctx context.Context, queue string, opts ...ConsumeOption) (*Consumer, error) {
	o := consumeOptions{prefetch: DefaultPrefetch}
	for _, opt := range opts {
		opt(&o)
	}
	if o.prefetch <= 0 {
		return nil, fmt.Errorf("%w: prefetch %d", ErrInvalidArgument, o.prefetch)
	}
	if queue == "" || len(queue) > mqwire.MaxQueueName {
		return nil, fmt.Errorf("%w: queue name length %d", ErrInvalidArgument, len(queue))
	}
	prefetch := min(o.prefetch, int(c.sess.Load().limits.MaxPrefetch))
	// Room for twice the prefetch: after a reconnection the new broker
	// grants a full prefetch while deliveries of the lost connection may
	// still wait here (see Client.resume).
	k := &Consumer{c: c, queue: queue, wantPrefetch: prefetch, ch: make(chan *Delivery, 2*prefetch), done: make(chan struct{})}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	for {
		c.nextConsumer++
		if _, used := c.consumers[c.nextConsumer]; !used && c.nextConsumer != 0 {
			break
		}
	}
	k.id = c.nextConsumer
	c.consumers[k.id] = k
	c.mu.Unlock()
	cf := &Confirmation{attach: k}
	err := c.call(ctx, cf, func(b []byte, req uint32) []byte {
		return mqwire.AppendConsume(b, req, k.id, uint32(prefetch), queue)
	})
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("mq: consume %q: %w", queue, err)
	}
	k.autoAck.Store(cf.mode == mqwire.ModeAtMostOnce)
	k.prefetch.Store(int64(cf.prefetch))
	return k, nil
}

// Receive returns the next message of queue from a consumer the client
// creates on first use (with DefaultPrefetch). Use Consume for control over
// prefetch or to stop consuming.
func (c *Client) Receive(ctx context.Context, queue string) (*Delivery, error) {
	c.mu.Lock()
	k := c.defaults[queue]
	c.mu.Unlock()
	if k == nil {
		nk, err := c.Consume(ctx, queue)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if k = c.defaults[queue]; k == nil {
			k = nk
			c.defaults[queue] = k
		}
		c.mu.Unlock()
		if k != nk {
			nk.Close()
		}
	}
	d, err := k.Receive(ctx)
	if err != nil && !errors.Is(err, ctx.Err()) {
		c.mu.Lock()
		if c.defaults[queue] == k {
			delete(c.defaults, queue)
		}
		c.mu.Unlock()
	}
	return d, err
}

// Close flushes pending acknowledgements and closes the connection. Sends
// not yet confirmed fail with ErrClosed; messages delivered but not
// acknowledged are redelivered by the broker.
func (c *Client) Close() error {
	c.terminate(ErrClosed)
	c.reconnects.Wait()
	s := c.sess.Load()
	<-s.w.Done()
	<-s.readerDone
	return nil
}

// terminate closes the client with err as the reason given to every waiter.
func (c *Client) terminate(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if c.goAway != nil {
		err = c.goAway
	}
	c.err = err
	calls, consumers := c.calls.drain(), c.consumers
	for cf := range c.retrying {
		calls = append(calls, cf)
	}
	clear(c.retrying)
	c.consumers = map[uint32]*Consumer{}
	if c.windowFreed != nil {
		close(c.windowFreed)
		c.windowFreed = nil
	}
	s := c.sess.Load()
	c.mu.Unlock()
	c.endLife()
	s.w.Close()
	for _, cf := range calls {
		cf.resolve(err)
	}
	for _, k := range consumers {
		k.finish(err)
	}
}

func (c *Client) readLoop(s *session) {
	defer close(s.readerDone)
	for {
		typ, p, err := s.rd.Next()
		if s.gen != c.gen.Load() {
			// The connection was given up (its writer failed); what it
			// still carries is answered again on the next one.
			s.nc.Close()
			return
		}
		if err == nil {
			err = c.handle(s, typ, p)
		}
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				err = fmt.Errorf("%w: connection lost: %v", ErrClosed, err)
			} else {
				c.log.Error("closing connection", "err", err)
			}
			c.connectionLost(s, err)
			s.nc.Close()
			return
		}
	}
}

func (c *Client) handle(s *session, typ mqwire.FrameType, p []byte) error {
	switch typ {
	case mqwire.TypeDeliver:
		d, err := mqwire.ParseDeliver(p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		return c.dispatch(s, d)
	case mqwire.TypeSendOK:
		ok, err := mqwire.ParseSendOK(p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		c.complete(ok.Req, func(cf *Confirmation) { cf.id = ok.ID }, nil)
	case mqwire.TypeError:
		e, err := mqwire.ParseError(p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		c.complete(e.ID, nil, brokerError(e.Code, e.Text))
	case mqwire.TypeConsumeOK:
		ok, err := mqwire.ParseConsumeOK(p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		c.complete(ok.Req, func(cf *Confirmation) { cf.mode, cf.prefetch = ok.Mode, ok.Prefetch }, nil)
	case mqwire.TypeCancelOK:
		req, err := mqwire.ParseCancelOK(p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		c.complete(req, nil, nil)
	case mqwire.TypePong:
		tok, err := mqwire.ParsePing(p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		c.complete(uint32(tok), nil, nil)
	case mqwire.TypeConsumerClosed:
		e, err := mqwire.ParseError(p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		c.mu.Lock()
		k := c.consumers[e.ID]
		delete(c.consumers, e.ID)
		c.mu.Unlock()
		if k != nil {
			k.finish(brokerError(e.Code, e.Text))
		}
	case mqwire.TypeGoAway:
		e, err := mqwire.ParseGoAway(p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		c.mu.Lock()
		c.goAway = brokerError(e.Code, e.Text)
		c.mu.Unlock()
		c.log.Info("broker is closing the connection", "reason", e.Code.String(), "text", e.Text)
	default:
		return fmt.Errorf("%w: unexpected frame type %v", ErrProtocol, typ)
	}
	return nil
}

// complete hands the broker's answer to the request's waiter. An answer
// that a reconnection makes moot (the broker shutting down, or a queue the
// restarted broker has not declared yet) keeps the request for sending again.
func (c *Client) complete(req uint32, fill func(*Confirmation), err error) {
	c.mu.Lock()
	cf := c.calls.take(req)
	if cf != nil && err != nil && c.keepForResend(cf, err) {
		c.mu.Unlock()
		return
	}
	if cf != nil {
		c.releaseSend(cf)
	}
	if cf != nil && cf.attach != nil && err == nil && c.consumers[cf.attach.id] == cf.attach {
		cf.attach.attached = true
	}
	c.mu.Unlock()
	if cf == nil {
		if req == 0 && err != nil {
			c.log.Error("broker reported a connection error", "err", err)
		}
		return // answer to a request whose caller gave up
	}
	if fill != nil {
		fill(cf)
	}
	cf.resolve(err)
	if cf.then != nil {
		cf.then(cf)
	}
}

func (c *Client) dispatch(s *session, d mqwire.Deliver) error {
	c.mu.Lock()
	k := c.consumers[d.Consumer]
	c.mu.Unlock()
	if k == nil {
		return nil // cancelled locally; the broker requeues it
	}
	del := newDelivery(len(d.Body))
	copy(del.Body, d.Body)
	del.ID, del.Priority, del.Deliveries = d.ID, d.Priority, int(d.Deliveries)
	del.EnqueuedAt = time.Unix(0, d.EnqueuedAt)
	del.consumer, del.tag, del.gen = k, d.Tag, s.gen
	select {
	case k.ch <- del:
		return nil
	default:
		return fmt.Errorf("%w: broker exceeded consumer %d's prefetch", ErrProtocol, d.Consumer)
	}
}

// Deliveries with small bodies are allocated together with their body: one
// allocation per message instead of two. The body lies after the Delivery's
// pointers, so the garbage collector does not scan it.
type (
	delivery64 struct {
		d Delivery
		b [64]byte
	}
	delivery256 struct {
		d Delivery
		b [256]byte
	}
	delivery1024 struct {
		d Delivery
		b [1024]byte
	}
)

// newDelivery returns a Delivery with an n-byte Body.
func newDelivery(n int) *Delivery {
	switch {
	case n <= 64:
		x := new(delivery64)
		x.d.Body = x.b[:n:n]
		return &x.d
	case n <= 256:
		x := new(delivery256)
		x.d.Body = x.b[:n:n]
		return &x.d
	case n <= 1024:
		x := new(delivery1024)
		x.d.Body = x.b[:n:n]
		return &x.d
	}
	return &Delivery{Body: make([]byte, n)}
}

// appendSettle queues an ACK, NACK or CREDIT on s, merging it into the
// previous frame when that is a settlement of the same kind and consumer.
func appendSettle(s *session, kind mqwire.FrameType, consumer uint32, requeue bool, tag uint64) error {
	out, mark, ok := s.w.Lock(settleRoom)
	if !ok {
		s.w.Unlock(out, mark)
		return ErrClosed
	}
	if mark >= 0 && s.lastKind == kind && s.lastConsumer == consumer && s.lastRequeue == requeue && s.lastCount < 4096 {
		if kind == mqwire.TypeCredit {
			mqwire.AddCredit(out, mark, 1)
		} else {
			out = mqwire.AppendTag(out, mark, tag)
		}
		s.lastCount++
		s.w.Unlock(out, mark)
		return nil // whoever appended the frame flushes it
	}
	mark, s.lastKind, s.lastConsumer, s.lastRequeue, s.lastCount = len(out), kind, consumer, requeue, 1
	switch kind {
	case mqwire.TypeAck:
		out = mqwire.AppendAck(out, consumer, tag)
	case mqwire.TypeNack:
		out = mqwire.AppendNack(out, consumer, requeue, tag)
	default:
		out = mqwire.AppendCredit(out, consumer, 1)
	}
	s.w.Unlock(out, mark)
	s.w.Flush()
	return nil
}

// Consumer receives the messages of one queue.
type Consumer struct {
	c            *Client
	id           uint32
	queue        string
	wantPrefetch int
	autoAck      atomic.Bool
	prefetch     atomic.Int64
	ch           chan *Delivery
	// attached is set, under c.mu, once the broker confirmed the consumer;
	// a reconnection re-attaches the attached ones.
	attached bool

	closeOnce sync.Once
	err       error
	done      chan struct{}
}

// Queue is the consumer's queue.
func (k *Consumer) Queue() string { return k.queue }

// Prefetch is the prefetch the broker granted.
func (k *Consumer) Prefetch() int { return int(k.prefetch.Load()) }

// AutoAck reports whether the queue delivers at most once, in which case
// Ack and Nack do nothing.
func (k *Consumer) AutoAck() bool { return k.autoAck.Load() }

// Receive returns the next message, waiting for one until ctx ends. After
// the consumer is closed (by Close, by the broker deleting the queue, or by
// the connection closing) it returns the messages already received and then
// the reason it was closed. Unacknowledged deliveries of a connection lost
// meanwhile are skipped: the broker redelivers them.
func (k *Consumer) Receive(ctx context.Context) (*Delivery, error) {
	for {
		d, err := k.next(ctx)
		if err != nil {
			return nil, err
		}
		if k.autoAck.Load() || d.gen == k.c.gen.Load() {
			return k.received(d), nil
		}
		k.c.stats.staleDropped.Add(1)
	}
}

func (k *Consumer) next(ctx context.Context) (*Delivery, error) {
	select {
	case d := <-k.ch:
		return d, nil
	default:
	}
	select {
	case d := <-k.ch:
		return d, nil
	case <-k.done:
		select {
		case d := <-k.ch:
			return d, nil
		default:
			return nil, k.err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (k *Consumer) received(d *Delivery) *Delivery {
	if k.autoAck.Load() {
		_ = appendSettle(k.c.sess.Load(), mqwire.TypeCredit, k.id, false, 0)
	}
	return d
}

// Close detaches the consumer. The broker redelivers to other consumers the
// messages this one has not acknowledged (for an AtMostOnce queue, messages
// already on their way to it are lost).
func (k *Consumer) Close() error {
	c := k.c
	c.mu.Lock()
	active := c.consumers[k.id] == k
	if active {
		delete(c.consumers, k.id)
	}
	s := c.sess.Load()
	c.mu.Unlock()
	if active {
		// Nobody waits for the CANCEL_OK; request id 0 is never used.
		s.w.Append(func(out []byte) []byte { return mqwire.AppendCancel(out, 0, k.id) })
		s.w.Flush()
	}
	k.finish(fmt.Errorf("%w: consumer closed", ErrClosed))
	return nil
}

func (k *Consumer) finish(err error) {
	k.closeOnce.Do(func() {
		k.err = err
		close(k.done)
	})
}

// Delivery is a message handed to a consumer.
type Delivery struct {
	// Body is the message; the application owns it.
	Body []byte
	// ID is the message's id in its queue (a dead-lettered message gets a
	// new one).
	ID uint64
	// Priority is the message's priority.
	Priority uint8
	// Deliveries counts the times the message has been delivered, this one
	// included; more than 1 means it is a redelivery.
	Deliveries int
	// EnqueuedAt is when the broker queued the message.
	EnqueuedAt time.Time

	consumer *Consumer
	tag      uint64
	gen      uint64 // the connection generation it came on
	settled  atomic.Bool
}

// Redelivered reports whether the message was delivered before.
func (d *Delivery) Redelivered() bool { return d.Deliveries > 1 }

// Ack acknowledges the message: the broker forgets it. Acks are pipelined:
// Ack returns once the ack is queued on the connection (Client.Ping waits
// until the broker has applied it). It fails with ErrClosed if the consumer
// or client is closed, and with ErrStaleDelivery if the connection the
// message came on was lost since: either way the broker redelivers it.
func (d *Delivery) Ack(ctx context.Context) error { return d.settle(ctx, mqwire.TypeAck, false) }

// Nack rejects the message: with requeue it goes back to the head of its
// priority for redelivery (counting towards MaxRedeliveries), without it is
// dead-lettered (or discarded if the queue has no dead-letter queue).
func (d *Delivery) Nack(ctx context.Context, requeue bool) error {
	return d.settle(ctx, mqwire.TypeNack, requeue)
}

func (d *Delivery) settle(ctx context.Context, kind mqwire.FrameType, requeue bool) error {
	k := d.consumer
	if k.autoAck.Load() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !d.settled.CompareAndSwap(false, true) {
		return ErrAlreadySettled
	}
	select {
	case <-k.done:
		return k.err
	default:
	}
	s := k.c.sess.Load()
	if s.gen != d.gen || d.gen != k.c.gen.Load() {
		return d.stale()
	}
	if err := appendSettle(s, kind, k.id, requeue, d.tag); err != nil {
		if d.gen != k.c.gen.Load() {
			return d.stale()
		}
		return err
	}
	return nil
}

func (d *Delivery) stale() error {
	return fmt.Errorf("%w: message %d of queue %s came on a connection lost since; the broker redelivers it",
		ErrStaleDelivery, d.ID, d.consumer.queue)
}
