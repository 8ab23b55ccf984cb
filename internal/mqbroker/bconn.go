package mqbroker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podipc/podipc/internal/mqconn"
	"github.com/podipc/podipc/internal/mqwire"
)

const (
	// The room the small responses take in the outbox: a SEND_OK, an ERROR
	// without its text.
	sendOKRoom     = 32
	errorFrameRoom = 32
	// outboxLimit is the size of unsent responses at which a connection's
	// reader stops reading until its writer catches up.
	outboxLimit = 1 << 20
)

// errViolation marks a protocol violation by the client.
var errViolation = errors.New("protocol violation")

// bconn is the broker's side of one client connection: a reader goroutine
// that decodes and executes frames, and a writer goroutine that sends what
// the reader and the queues append to the outbox.
type bconn struct {
	b   *Broker
	nc  net.Conn
	id  uint64
	log *slog.Logger
	rd  *mqwire.Reader
	// src counts the reader's reads from the socket, each of which may
	// have waited.
	src *countingReader

	w *mqconn.Writer

	pendingSends atomic.Int64
	pendingBytes atomic.Int64
	parked       atomic.Int32

	mu        sync.Mutex
	consumers map[uint32]*consumer
}

func newBconn(b *Broker, nc net.Conn, id uint64) *bconn {
	src := &countingReader{r: nc}
	log := b.log.With("conn", id)
	if cred, err := mqconn.PeerCred(nc); err == nil {
		// Who is at the other end, as the kernel saw it connect.
		log = log.With("pid", cred.Pid, "uid", cred.Uid)
	}
	return &bconn{
		b:         b,
		nc:        nc,
		id:        id,
		log:       log,
		src:       src,
		rd:        mqwire.NewReader(src, mqconn.ReadBufferSize, int(b.welcome.MaxFrame)),
		w:         mqconn.NewWriter(nc, b.opts.WriteTimeout),
		consumers: make(map[uint32]*consumer),
	}
}

// serve runs the connection until it ends.
func (c *bconn) serve() {
	go c.w.Run(c.writeFailed)
	bt := c.b.getBatch()
	err := c.readLoop(bt)
	code, text := c.classify(err)
	c.teardown(bt)
	bt.finish()
	c.b.putBatch(bt)
	c.closeOutbox(code, text)
	<-c.w.Done()
}

func (c *bconn) classify(err error) (mqwire.Code, string) {
	switch {
	case errors.Is(err, io.EOF):
		c.log.Debug("client closed connection")
		return mqwire.CodeOK, ""
	case errors.Is(err, mqwire.ErrMalformed), errors.Is(err, mqwire.ErrFrameTooLarge), errors.Is(err, errViolation):
		c.log.Warn("closing connection after protocol violation", "err", err)
		return mqwire.CodeBadRequest, err.Error()
	case c.b.shuttingDown():
		return mqwire.CodeShuttingDown, "broker shutting down"
	default:
		c.log.Debug("connection ended", "err", err)
		return mqwire.CodeOK, ""
	}
}

func (c *bconn) readLoop(bt *batch) error {
	for {
		reads := c.src.reads
		typ, p, err := c.rd.Next()
		if err != nil {
			return err
		}
		if c.src.reads != reads {
			bt.resetClock() // the frame may have been waited for
		}
		if err := c.handle(bt, typ, p); err != nil {
			return err
		}
		if c.rd.Buffered() == 0 || bt.full() {
			bt.finish()
			c.waitForWriter()
		}
	}
}

// countingReader counts the reads of the reader it wraps.
type countingReader struct {
	r     io.Reader
	reads uint64
}

func (cr *countingReader) Read(p []byte) (int, error) {
	cr.reads++
	return cr.r.Read(p)
}

// waitForWriter applies backpressure: a client that does not read its
// responses stops being read.
func (c *bconn) waitForWriter() {
	for {
		if n, dead := c.w.Backlog(); n <= outboxLimit || dead {
			return
		}
		select {
		case <-c.w.Drained():
		case <-c.w.Done():
			return
		case <-c.b.done:
			return
		}
	}
}

func (c *bconn) handle(bt *batch, typ mqwire.FrameType, p []byte) error {
	switch typ {
	case mqwire.TypeSend:
		s, err := mqwire.ParseSend(p)
		if err != nil {
			return err
		}
		c.handleSend(bt, s)
	case mqwire.TypeAck, mqwire.TypeNack:
		var s mqwire.Settle
		var err error
		if typ == mqwire.TypeAck {
			s, err = mqwire.ParseAck(p)
		} else {
			s, err = mqwire.ParseNack(p)
		}
		if err != nil {
			return err
		}
		if cons := c.consumer(s.Consumer); cons != nil {
			cons.q.settle(bt, cons, s, typ == mqwire.TypeAck)
		}
	case mqwire.TypeCredit:
		cr, err := mqwire.ParseCredit(p)
		if err != nil {
			return err
		}
		if cons := c.consumer(cr.Consumer); cons != nil {
			cons.q.addCredit(bt, cons, cr.N)
		}
	case mqwire.TypeConsume:
		cm, err := mqwire.ParseConsume(p)
		if err != nil {
			return err
		}
		c.handleConsume(bt, cm)
	case mqwire.TypeCancel:
		cn, err := mqwire.ParseCancel(p)
		if err != nil {
			return err
		}
		c.mu.Lock()
		cons := c.consumers[cn.Consumer]
		delete(c.consumers, cn.Consumer)
		c.mu.Unlock()
		if cons != nil {
			cons.q.removeConsumer(bt, cons)
		}
		c.append(func(b []byte) []byte { return mqwire.AppendCancelOK(b, cn.Req) })
		bt.wake(c)
	case mqwire.TypePing:
		tok, err := mqwire.ParsePing(p)
		if err != nil {
			return err
		}
		c.append(func(b []byte) []byte { return mqwire.AppendPing(b, mqwire.TypePong, tok) })
		bt.wake(c)
	default:
		return fmt.Errorf("%w: unexpected frame type %v", errViolation, typ)
	}
	return nil
}

func (c *bconn) handleSend(bt *batch, s mqwire.Send) {
	n := len(s.Body)
	w := &c.b.welcome
	if pending := c.pendingSends.Load(); pending >= int64(w.MaxPendingSends) ||
		(pending > 0 && c.pendingBytes.Load()+int64(n) > int64(w.MaxPendingBytes)) {
		c.appendError(s.Req, mqwire.CodeTooManyPending, "unconfirmed-send window exceeded")
		bt.wake(c)
		return
	}
	c.pendingSends.Add(1)
	c.pendingBytes.Add(int64(n))
	if n > int(w.MaxMessage) {
		bt.fail(c, s.Req, n, mqwire.CodeMessageTooLarge, "broker limit exceeded")
		return
	}
	q := c.b.lookupBytes(s.Queue)
	if q == nil {
		bt.fail(c, s.Req, n, mqwire.CodeUnknownQueue, string(s.Queue))
		return
	}
	var m *message
	if n > maxFreeBody {
		// Copy a large body before taking the queue's lock.
		m = &message{body: append(make([]byte, 0, n), s.Body...), priority: s.Priority, owned: true}
	}
	q.send(bt, c, s.Req, m, s.Body, s.Priority, time.Duration(s.TTLMillis)*time.Millisecond, time.Duration(s.TimeoutMillis)*time.Millisecond)
}

func (c *bconn) handleConsume(bt *batch, cm mqwire.Consume) {
	q := c.b.lookupBytes(cm.Queue)
	if q == nil {
		c.appendError(cm.Req, mqwire.CodeUnknownQueue, string(cm.Queue))
		bt.wake(c)
		return
	}
	autoAck := q.mode() == AtMostOnce // before c.mu: the lock order is queue, then connection
	c.mu.Lock()
	code := mqwire.CodeOK
	switch {
	case c.consumers[cm.Consumer] != nil:
		code = mqwire.CodeDuplicateID
	case len(c.consumers) >= int(c.b.welcome.MaxConsumers):
		code = mqwire.CodeTooManyConsumers
	}
	var cons *consumer
	if code == mqwire.CodeOK {
		prefetch := min(cm.Prefetch, c.b.welcome.MaxPrefetch)
		cons = &consumer{conn: c, id: cm.Consumer, q: q, autoAck: autoAck, prefetch: int(prefetch), credit: int(prefetch)}
		c.consumers[cm.Consumer] = cons
	}
	c.mu.Unlock()
	if code != mqwire.CodeOK {
		c.appendError(cm.Req, code, "")
		bt.wake(c)
		return
	}
	mode := mqwire.ModeAtLeastOnce
	if cons.autoAck {
		mode = mqwire.ModeAtMostOnce
	}
	// CONSUME_OK goes out before any delivery to the new consumer.
	c.append(func(b []byte) []byte { return mqwire.AppendConsumeOK(b, cm.Req, mode, uint32(cons.prefetch)) })
	bt.wake(c)
	if !q.addConsumer(bt, cons) {
		c.consumerClosed(cons.id, mqwire.CodeQueueDeleted, q.name)
	}
}

func (c *bconn) consumer(id uint32) *consumer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.consumers[id]
}

// teardown detaches the connection from the queues: its consumers' unacked
// messages are requeued and its blocked sends forgotten.
func (c *bconn) teardown(bt *batch) {
	c.mu.Lock()
	consumers := c.consumers
	c.consumers = map[uint32]*consumer{}
	c.mu.Unlock()
	for _, cons := range consumers {
		cons.q.removeConsumer(bt, cons)
	}
	if c.parked.Load() > 0 {
		for _, q := range c.b.queueList() {
			q.dropParked(c)
		}
	}
}

// append adds a frame to the outbox unless the connection is closing.
func (c *bconn) append(enc func([]byte) []byte) {
	c.w.Append(enc)
}

func (c *bconn) appendError(req uint32, code mqwire.Code, text string) {
	out, mark, ok := c.w.Lock(errorFrameRoom + len(text))
	if ok {
		out = mqwire.AppendError(out, mqwire.TypeError, req, code, text)
	}
	c.w.Unlock(out, mark)
}

func (c *bconn) releasePending(bodyLen int) {
	c.pendingSends.Add(-1)
	c.pendingBytes.Add(-int64(bodyLen))
}

func (c *bconn) sendOK(req uint32, id uint64, bodyLen int) {
	out, mark, ok := c.w.Lock(sendOKRoom)
	if ok {
		out = mqwire.AppendSendOK(out, req, id)
	}
	c.w.Unlock(out, mark)
	c.releasePending(bodyLen)
}

func (c *bconn) sendError(req uint32, code mqwire.Code, text string, bodyLen int) {
	c.appendError(req, code, text)
	c.releasePending(bodyLen)
}

func (c *bconn) deliver(consumerID uint32, tag uint64, m *message) {
	d := mqwire.Deliver{
		Consumer: consumerID, Tag: tag, ID: m.id, EnqueuedAt: m.enqueuedAt,
		Deliveries: m.deliveries, Priority: m.priority, Body: m.body,
	}
	if len(m.body) > maxFreeBody {
		// A body this large is never recycled (queue.recycle), so it stays
		// as it is until written: send it from where it lies.
		out, _, ok := c.w.Lock(mqwire.DeliverOverhead)
		if ok {
			out = mqwire.AppendDeliverHeader(out, d)
		}
		c.w.UnlockRef(out, m.body)
		return
	}
	out, mark, ok := c.w.Lock(mqwire.DeliverOverhead + len(m.body))
	if ok {
		out = mqwire.AppendDeliver(out, d)
	}
	c.w.Unlock(out, mark)
}

// consumerClosed tells the client that the broker ended one of its consumers.
func (c *bconn) consumerClosed(id uint32, code mqwire.Code, text string) {
	c.mu.Lock()
	delete(c.consumers, id)
	c.mu.Unlock()
	c.append(func(b []byte) []byte { return mqwire.AppendError(b, mqwire.TypeConsumerClosed, id, code, text) })
}

// flush sends what was appended (see mqconn.Writer.Flush).
func (c *bconn) flush() { c.w.Flush() }

// closeOutbox queues a GOAWAY (unless code is CodeOK) and tells the writer to
// flush and close the connection.
func (c *bconn) closeOutbox(code mqwire.Code, text string) {
	if code != mqwire.CodeOK {
		c.append(func(b []byte) []byte { return mqwire.AppendGoAway(b, code, text) })
	}
	c.w.Close()
}

func (c *bconn) writeFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.log.Warn("client stopped reading; closing connection", "timeout", c.b.opts.WriteTimeout)
	} else {
		c.log.Debug("write failed", "err", err)
	}
}

// stop makes the reader finish at the next frame boundary (shutdown).
func (c *bconn) stop() {
	c.nc.SetReadDeadline(time.Now())
}
