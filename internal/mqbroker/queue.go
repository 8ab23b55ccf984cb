package mqbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/podipc/podipc/internal/mqjournal"
	"github.com/podipc/podipc/internal/mqwire"
)

// ttlSweepInterval bounds how often a queue scans for expired messages.
const ttlSweepInterval = 50 * time.Millisecond

// message is a queued message. While in flight it is also a node of its
// queue's in-flight list, ordered by ack deadline.
type message struct {
	id         uint64
	body       []byte
	priority   uint8
	enqueuedAt int64 // Unix nanoseconds
	expiresAt  int64 // Unix nanoseconds; 0 means never
	deliveries uint32

	tag        uint64
	consumer   *consumer
	deadline   int64 // broker-monotonic nanoseconds
	prev, next *message

	// owned is set on messages whose body the broker allocated: they are
	// reused once they leave their queue for good.
	owned bool
}

// Messages that left a queue for good are kept for reuse in its free list,
// under the queue's lock, which both ends hold anyway.
const (
	// maxFreeBody is the largest body buffer a reused message keeps; a
	// larger body is copied before the queue's lock is taken.
	maxFreeBody = 4 << 10
	// maxFree bounds a queue's free list: at most 1 MiB of bodies.
	maxFree = 256
)

// newMessage returns a message holding a copy of body: a message from the
// free list if body fits one. q.mu must be held.
func (q *queue) newMessage(body []byte, priority uint8) *message {
	var m *message
	if n := len(q.free); n > 0 && len(body) <= maxFreeBody {
		m, q.free[n-1] = q.free[n-1], nil
		q.free = q.free[:n-1]
	} else {
		m = &message{body: make([]byte, 0, max(len(body), 64))}
	}
	m.body = append(m.body[:0], body...)
	m.priority = priority
	m.owned = true
	return m
}

// recycle keeps m, which has left the queue for good and which nothing
// references any more, for newMessage. q.mu must be held.
func (q *queue) recycle(m *message) {
	if !m.owned || cap(m.body) > maxFreeBody || len(q.free) == maxFree {
		return
	}
	*m = message{body: m.body[:0]}
	q.free = append(q.free, m)
}

func (m *message) journaled() mqjournal.Message {
	return mqjournal.Message{ID: m.id, Priority: m.priority, EnqueuedAt: m.enqueuedAt, ExpiresAt: m.expiresAt, Deliveries: m.deliveries, Body: m.body}
}

// consumer is a subscription of one connection to one queue. Its fields other
// than conn and id are guarded by the queue's mutex.
type consumer struct {
	conn     *bconn
	id       uint32
	q        *queue
	autoAck  bool
	prefetch int
	credit   int
	unacked  int
	removed  bool
	// flight holds the consumer's unsettled deliveries (AtLeastOnce).
	flight flight
}

// parkedSend is a send waiting for room in a Block queue.
type parkedSend struct {
	conn     *bconn
	req      uint32
	msg      *message
	deadline int64 // broker-monotonic; 0 means none
}

// queue holds one queue's messages and consumers. Every method with a
// *batch parameter leaves side effects that need no queue lock (journal
// syncs, confirmations, writer wake-ups, dead letters) in the batch.
//
// Lock order: Broker.applyMu, then queue.mu, then any of the journal's
// mutex, bconn.mu and frameWriter.mu. No two queue locks are ever held
// together (dead letters move between queues through the batch).
type queue struct {
	b    *Broker
	name string
	log  *slog.Logger

	mu         sync.Mutex
	cfg        QueueConfig
	ready      [mqwire.MaxPriority + 1]deque
	depth      int
	bytes      int64
	ttlCount   int   // ready messages with an expiry
	nextExpiry int64 // lower bound of the ready messages' expiries (wall); 0 if none
	lastSweep  int64 // broker-monotonic
	inflight   int   // delivered, unsettled messages
	// inflightBytes is their body bytes. Deliveries stop while it is at
	// MaxBytes, so that the queue's memory stays within twice MaxBytes
	// whatever the consumers' prefetch, and however long they hold messages.
	inflightBytes int64
	ifHead        *message
	ifTail        *message
	parked        []*parkedSend
	// admitting are producers' messages to a journaled queue whose records
	// are not written yet: they count against the queue's bounds and are
	// compacted with the rest, but are not delivered until their record is
	// in the file (confirmed), and are dropped if it could not be written,
	// since their sender is told the send failed.
	admitting      []*message
	admittingBytes int64
	free           []*message // for reuse (see newMessage)
	consumers      []*consumer
	rr             int
	nextID         uint64
	journal        *mqjournal.Journal
	// journalRefused is why the journal found at start was not replayed
	// but set aside, if it was.
	journalRefused string
	timer          *time.Timer
	timerAt        int64 // broker-monotonic; 0 means not armed
	deleted        bool
	st             counters
	lat            latencyHistogram
}

type counters struct {
	enqueued, delivered, acked, redelivered, deadLettered, dropped, expired, rejected, recovered uint64
}

func newQueue(b *Broker, cfg QueueConfig) *queue {
	return &queue{
		b:      b,
		name:   cfg.Name,
		log:    b.log.With("queue", cfg.Name),
		cfg:    cfg,
		nextID: 1,
	}
}

// openJournal opens the queue's journal and restores its messages. It is
// called before the queue is visible to connections.
//
// A journal another user could have written (mqjournal.ErrUntrusted) is not
// replayed: it is renamed aside and the queue starts empty, and refused
// (non-empty if the journal directory was set aside) says so in the
// queue's stats.
func (q *queue) openJournal(refused string) error {
	path := q.b.journalPath(q.name)
	j, live, rec, err := mqjournal.Open(path, q.b.journalOptions())
	if errors.Is(err, mqjournal.ErrUntrusted) {
		aside, qerr := quarantine(path)
		if qerr != nil {
			return fmt.Errorf("%w; setting it aside: %w", err, qerr)
		}
		q.log.Error("refused the journal: it was set aside and the queue starts empty", "err", err, "setAside", aside)
		refused = fmt.Sprintf("the journal was refused and set aside as %s: %v", filepath.Base(aside), err)
		j, live, rec, err = mqjournal.Open(path, q.b.journalOptions())
	}
	if err != nil {
		return err
	}
	if rec.TornBytes > 0 {
		q.log.Warn("cut invalid journal tail", "bytes", rec.TornBytes, "reason", rec.TailErr)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.journal = j
	q.journalRefused = refused
	now := q.b.now()
	for _, jm := range live {
		m := &message{id: jm.ID, body: jm.Body, priority: min(jm.Priority, mqwire.MaxPriority), enqueuedAt: jm.EnqueuedAt, expiresAt: jm.ExpiresAt, deliveries: jm.Deliveries}
		q.pushReady(m, false, now)
		q.nextID = max(q.nextID, jm.ID+1)
	}
	q.st.recovered = uint64(len(live))
	if len(live) > 0 {
		q.log.Info("recovered messages from journal", "messages", len(live), "records", rec.Records)
	}
	q.rearm(now)
	return nil
}

// fits reports whether a body of n bytes fits the ready set.
func (q *queue) fits(n int) bool {
	return q.depth+len(q.admitting) < q.cfg.MaxDepth && q.bytes+q.admittingBytes+int64(n) <= q.cfg.MaxBytes
}

// send handles a producer's message: m, or if m is nil, a copy of body made
// under the lock from the free list.
func (q *queue) send(bt *batch, c *bconn, req uint32, m *message, body []byte, priority uint8, ttl, timeout time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		bt.fail(c, req, len(body), mqwire.CodeUnknownQueue, q.name)
		return
	}
	if len(body) > q.cfg.MaxMessageSize {
		bt.fail(c, req, len(body), mqwire.CodeMessageTooLarge, "queue limit exceeded")
		return
	}
	if m == nil {
		m = q.newMessage(body, priority)
	}
	now := bt.now()
	if ttl == 0 {
		ttl = q.cfg.DefaultTTL
	}
	if ttl > 0 {
		m.expiresAt = now.wall + int64(ttl)
	}
	if len(q.parked) > 0 || !q.fits(len(m.body)) {
		switch q.cfg.Overflow {
		case Reject:
			q.st.rejected++
			bt.fail(c, req, len(m.body), mqwire.CodeQueueFull, q.name)
			return
		case DropOldest:
			q.makeRoom(bt, len(m.body), now)
		default:
			if !q.b.reserveBlocked(len(m.body)) {
				// Parked sends hold their bodies in the sidecar's memory:
				// bounded over all connections, not only per connection.
				q.st.rejected++
				bt.fail(c, req, len(m.body), mqwire.CodeQueueFull, q.name+": the broker's bound on blocked sends is reached")
				return
			}
			p := &parkedSend{conn: c, req: req, msg: m}
			if timeout > 0 {
				p.deadline = now.mono + int64(timeout)
				q.arm(p.deadline, now)
			}
			q.parked = append(q.parked, p)
			c.parked.Add(1)
			return
		}
	}
	q.admit(bt, c, req, m, now)
	q.dispatch(bt, now)
}

// admit queues m, journals it and arranges the sender's confirmation (c is
// nil for a dead letter). A producer's message to a journaled queue is held
// in admitting until the batch has written its record (see confirmed).
func (q *queue) admit(bt *batch, c *bconn, req uint32, m *message, now instant) (*mqjournal.Journal, uint64) {
	m.id = q.nextID
	q.nextID++
	if m.enqueuedAt == 0 {
		m.enqueuedAt = now.wall
	}
	q.st.enqueued++
	var seq uint64
	if q.journal != nil {
		if q.journal.Broken() {
			q.compact()
		}
		seq = q.journal.AppendEnqueue(m.journaled())
		bt.touch(q.journal)
	}
	switch {
	case c == nil:
		q.pushReady(m, false, now)
	case q.journal == nil:
		bt.ok(c, req, m.id, len(m.body))
		q.pushReady(m, false, now)
	default:
		q.admitting = append(q.admitting, m)
		q.admittingBytes += int64(len(m.body))
		bt.confirmLater(c, req, q, m, seq)
	}
	return q.journal, seq
}

// confirmed ends the admission of m, a message in admitting: written says
// whether its journal record reached the file. A written message is queued;
// one that was not is forgotten (its sender is told that the send failed, so
// it must never be delivered).
func (q *queue) confirmed(bt *batch, m *message, written bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.admitting, m)
	if i < 0 {
		return // the queue was deleted or closed meanwhile
	}
	q.admitting = slices.Delete(q.admitting, i, i+1)
	q.admittingBytes -= int64(len(m.body))
	if !written {
		q.recycle(m)
		return
	}
	now := bt.now()
	q.pushReady(m, false, now)
	q.dispatch(bt, now)
}

func (q *queue) pushReady(m *message, front bool, now instant) {
	if front {
		q.ready[m.priority].insertByID(m)
	} else {
		q.ready[m.priority].pushBack(m)
	}
	q.depth++
	q.bytes += int64(len(m.body))
	if m.expiresAt != 0 {
		q.ttlCount++
		if q.nextExpiry == 0 || m.expiresAt < q.nextExpiry {
			q.nextExpiry = m.expiresAt
			q.arm(q.ttlDeadline(now), now)
		}
	}
}

func (q *queue) unaccount(m *message) {
	q.depth--
	q.bytes -= int64(len(m.body))
	if m.expiresAt != 0 {
		q.ttlCount--
	}
}

// popReady removes the oldest message of the highest priority.
func (q *queue) popReady() *message {
	for p := mqwire.MaxPriority; p >= 0; p-- {
		if q.ready[p].len() > 0 {
			m := q.ready[p].popFront()
			q.unaccount(m)
			return m
		}
	}
	return nil
}

// makeRoom drops the oldest messages of the lowest priority until n bytes fit.
func (q *queue) makeRoom(bt *batch, n int, now instant) {
	for q.depth > 0 && !q.fits(n) {
		for p := 0; p <= mqwire.MaxPriority; p++ {
			if q.ready[p].len() > 0 {
				m := q.ready[p].popFront()
				q.unaccount(m)
				q.st.dropped++
				q.forget(bt, m)
				break
			}
		}
	}
}

// dispatch hands ready messages to consumers with credit and admits blocked
// sends as room frees up.
func (q *queue) dispatch(bt *batch, now instant) {
	for {
		for q.depth > 0 && q.inflightBytes < q.cfg.MaxBytes {
			c := q.pickConsumer()
			if c == nil {
				break
			}
			m := q.popReady()
			if m.expiresAt != 0 && m.expiresAt <= now.wall {
				q.expire(bt, m, now)
				continue
			}
			q.deliver(bt, c, m, now)
		}
		if len(q.parked) == 0 || !q.admitParked(bt, now) {
			return
		}
	}
}

// admitParked admits blocked sends in order while they fit, or resolves them
// all if the overflow policy is no longer Block. It reports whether it
// admitted any.
func (q *queue) admitParked(bt *batch, now instant) bool {
	admitted := false
	for len(q.parked) > 0 {
		p := q.parked[0]
		if !q.fits(len(p.msg.body)) {
			switch q.cfg.Overflow {
			case Reject:
				q.st.rejected++
				bt.fail(p.conn, p.req, len(p.msg.body), mqwire.CodeQueueFull, q.name)
				q.popParked()
				continue
			case DropOldest:
				q.makeRoom(bt, len(p.msg.body), now)
			default:
				return admitted
			}
		}
		q.popParked()
		q.admit(bt, p.conn, p.req, p.msg, now)
		admitted = true
	}
	return admitted
}

// unpark accounts for p leaving the parked sends.
func (q *queue) unpark(p *parkedSend) {
	p.conn.parked.Add(-1)
	q.b.blockedBytes.Add(-int64(len(p.msg.body)))
}

func (q *queue) popParked() {
	q.unpark(q.parked[0])
	q.parked[0] = nil
	q.parked = q.parked[1:]
	if len(q.parked) == 0 {
		q.parked = nil
	}
}

func (q *queue) pickConsumer() *consumer {
	n := len(q.consumers)
	for i := range n {
		c := q.consumers[(q.rr+i)%n]
		if c.credit > 0 {
			q.rr = (q.rr + i + 1) % n
			return c
		}
	}
	return nil
}

func (q *queue) deliver(bt *batch, c *consumer, m *message, now instant) {
	m.deliveries++
	c.credit--
	q.st.delivered++
	if m.deliveries > 1 {
		q.st.redelivered++
	}
	tag := q.b.nextTag.Add(1)
	c.conn.deliver(c.id, tag, m)
	bt.wake(c.conn)
	if c.autoAck {
		q.st.acked++
		q.lat.observe(time.Duration(now.wall - m.enqueuedAt))
		q.forget(bt, m)
		return
	}
	if q.journal != nil {
		// The count survives a broker restart, so that a message that keeps
		// failing (or keeps crashing its consumer) is still dead-lettered.
		q.journal.AppendDelivered(m.id, m.deliveries)
		bt.touch(q.journal)
	}
	m.tag, m.consumer, m.deadline = tag, c, now.mono+int64(q.cfg.AckTimeout)
	c.flight.push(tag, m)
	q.inflight++
	q.inflightBytes += int64(len(m.body))
	m.prev, m.next = q.ifTail, nil
	if q.ifTail != nil {
		q.ifTail.next = m
	} else {
		q.ifHead = m
	}
	q.ifTail = m
	c.unacked++
	q.arm(m.deadline, now)
}

func (q *queue) unlinkInflight(m *message) {
	m.consumer.flight.remove(m.tag)
	q.inflight--
	q.inflightBytes -= int64(len(m.body))
	if m.prev != nil {
		m.prev.next = m.next
	} else {
		q.ifHead = m.next
	}
	if m.next != nil {
		m.next.prev = m.prev
	} else {
		q.ifTail = m.prev
	}
	m.prev, m.next = nil, nil
	m.consumer.unacked--
	m.consumer = nil
}

// forget removes a message that left the queue for good from the journal,
// and recycles it: the caller must not use m afterwards.
func (q *queue) forget(bt *batch, m *message) {
	if q.journal != nil {
		q.journal.AppendRemove(m.id, len(m.body))
		bt.touch(q.journal)
		if q.journal.ShouldCompact() {
			q.compact()
		}
	}
	q.recycle(m)
}

// compact rewrites the journal from the live messages.
func (q *queue) compact() {
	live := make([]mqjournal.Message, 0, q.depth+q.inflight+len(q.admitting))
	for p := range q.ready {
		q.ready[p].each(func(m *message) { live = append(live, m.journaled()) })
	}
	for m := q.ifHead; m != nil; m = m.next {
		live = append(live, m.journaled())
	}
	for _, m := range q.admitting {
		live = append(live, m.journaled())
	}
	if err := q.journal.Rewrite(live); err != nil {
		q.log.Error("compact journal", "err", err)
	}
}

// settle acknowledges or rejects deliveries of consumer c.
func (q *queue) settle(bt *batch, c *consumer, s mqwire.Settle, ack bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c.removed {
		return
	}
	now := bt.now()
	for i := range s.Len() {
		m := c.flight.get(s.Tag(i))
		if m == nil {
			continue // settled late: it timed out and went back to the queue
		}
		q.unlinkInflight(m)
		switch {
		case ack:
			q.st.acked++
			q.lat.observe(time.Duration(now.wall - m.enqueuedAt))
			q.forget(bt, m)
		case s.Requeue:
			q.requeue(bt, m, now)
		default:
			q.deadLetter(bt, m)
		}
	}
	if !c.autoAck {
		c.credit = min(c.credit+s.Len(), c.prefetch)
	}
	q.dispatch(bt, now)
}

// addCredit grants an at-most-once consumer more deliveries.
func (q *queue) addCredit(bt *batch, c *consumer, n uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c.removed || !c.autoAck {
		return
	}
	c.credit = int(min(int64(c.credit)+int64(n), int64(c.prefetch)))
	q.dispatch(bt, bt.now())
}

// requeue puts a message that was not acknowledged back in its place at the
// head of its priority, or dead-letters it if it was redelivered too often.
func (q *queue) requeue(bt *batch, m *message, now instant) {
	if q.cfg.MaxRedeliveries != UnlimitedRedeliveries && int(m.deliveries) > q.cfg.MaxRedeliveries {
		q.deadLetter(bt, m)
		return
	}
	if m.expiresAt != 0 && m.expiresAt <= now.wall {
		q.expire(bt, m, now)
		return
	}
	q.pushReady(m, true, now)
}

func (q *queue) deadLetter(bt *batch, m *message) {
	q.st.deadLettered++
	q.moveToDLQ(bt, m)
}

func (q *queue) expire(bt *batch, m *message, now instant) {
	q.st.expired++
	q.moveToDLQ(bt, m)
}

func (q *queue) moveToDLQ(bt *batch, m *message) {
	if q.cfg.DeadLetterQueue == "" {
		q.forget(bt, m)
		return
	}
	// The journal record that removes the message from this queue is
	// written by the batch after the dead-letter queue has journaled it.
	bt.deadLetters = append(bt.deadLetters, deadLetter{from: q, to: q.cfg.DeadLetterQueue, id: m.id, msg: m})
}

// acceptDeadLetter queues a message dead-lettered by another queue and
// returns the journal record to sync, if any.
func (q *queue) acceptDeadLetter(bt *batch, m *message) (*mqjournal.Journal, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return nil, 0
	}
	now := bt.now()
	m.deliveries, m.expiresAt, m.enqueuedAt = 0, 0, now.wall
	if !q.fits(len(m.body)) {
		if q.cfg.Overflow != DropOldest {
			q.st.dropped++
			q.log.Warn("dead-letter queue full, dropping message", "bytes", len(m.body))
			return nil, 0
		}
		q.makeRoom(bt, len(m.body), now)
	}
	j, seq := q.admit(bt, nil, 0, m, now)
	q.dispatch(bt, now)
	return j, seq
}

// journalRemove writes the REMOVE record of a message that left the queue.
func (q *queue) journalRemove(bt *batch, id uint64, bodyLen int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.journal != nil {
		q.journal.AppendRemove(id, bodyLen)
		bt.touch(q.journal)
	}
}

func (q *queue) addConsumer(bt *batch, c *consumer) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return false
	}
	q.consumers = append(q.consumers, c)
	q.dispatch(bt, bt.now())
	return true
}

// removeConsumer detaches c and requeues what it had not acknowledged.
func (q *queue) removeConsumer(bt *batch, c *consumer) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c.removed {
		return
	}
	c.removed = true
	for i, x := range q.consumers {
		if x == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			break
		}
	}
	if q.deleted {
		return
	}
	now := bt.now()
	// Newest first, so that each requeued message goes to the front.
	for m := q.ifTail; m != nil; {
		prev := m.prev
		if m.consumer == c {
			q.unlinkInflight(m)
			q.requeue(bt, m, now)
		}
		m = prev
	}
	q.dispatch(bt, now)
}

// dropParked forgets the blocked sends of a closed connection.
func (q *queue) dropParked(c *bconn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.parked[:0]
	for _, p := range q.parked {
		if p.conn == c {
			q.unpark(p)
			continue
		}
		kept = append(kept, p)
	}
	clear(q.parked[len(kept):])
	q.parked = kept
}

// onTimer redelivers messages whose ack deadline passed, fails blocked sends
// whose deadline passed and expires messages whose TTL passed.
func (q *queue) onTimer() {
	bt := q.b.getBatch()
	defer q.b.putBatch(bt)
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	q.timerAt = 0
	now := bt.now()
	for m := q.ifHead; m != nil && m.deadline <= now.mono; m = q.ifHead {
		q.unlinkInflight(m)
		q.requeue(bt, m, now)
	}
	if len(q.parked) > 0 {
		kept := q.parked[:0]
		for _, p := range q.parked {
			if p.deadline != 0 && p.deadline <= now.mono {
				q.unpark(p)
				bt.fail(p.conn, p.req, len(p.msg.body), mqwire.CodeTimeout, "queue still full at the send's deadline")
				continue
			}
			kept = append(kept, p)
		}
		clear(q.parked[len(kept):])
		q.parked = kept
	}
	if q.ttlCount > 0 && q.nextExpiry <= now.wall && now.mono-q.lastSweep >= int64(ttlSweepInterval) {
		q.sweepExpired(bt, now)
	}
	q.dispatch(bt, now)
	q.rearm(now)
	q.mu.Unlock()
	bt.finish()
}

func (q *queue) sweepExpired(bt *batch, now instant) {
	q.lastSweep = now.mono
	next := int64(0)
	for p := range q.ready {
		q.ready[p].filter(func(m *message) bool {
			if m.expiresAt == 0 {
				return true
			}
			if m.expiresAt <= now.wall {
				q.unaccount(m)
				q.expire(bt, m, now)
				return false
			}
			if next == 0 || m.expiresAt < next {
				next = m.expiresAt
			}
			return true
		})
	}
	q.nextExpiry = next
}

func (q *queue) ttlDeadline(now instant) int64 {
	at := now.mono + (q.nextExpiry - now.wall)
	return max(at, q.lastSweep+int64(ttlSweepInterval), now.mono+1)
}

// rearm arms the timer for the earliest pending deadline.
func (q *queue) rearm(now instant) {
	if q.ifHead != nil {
		q.arm(q.ifHead.deadline, now)
	}
	for _, p := range q.parked {
		if p.deadline != 0 {
			q.arm(p.deadline, now)
		}
	}
	if q.ttlCount > 0 && q.nextExpiry != 0 {
		q.arm(q.ttlDeadline(now), now)
	}
}

// arm makes sure the timer fires no later than at.
func (q *queue) arm(at int64, now instant) {
	if q.timerAt != 0 && q.timerAt <= at {
		return
	}
	q.timerAt = at
	d := time.Duration(at - now.mono)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.onTimer)
	} else {
		q.timer.Reset(d)
	}
}

// update applies a new configuration.
func (q *queue) update(bt *batch, cfg QueueConfig) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	old := q.cfg
	q.cfg = cfg
	var err error
	switch {
	case old.Persistence != Volume && cfg.Persistence == Volume:
		var j *mqjournal.Journal
		j, _, _, err = mqjournal.Open(q.b.journalPath(q.name), q.b.journalOptions())
		if err == nil {
			q.journal = j
			q.compact() // replace whatever the file held with the current messages
		}
	case old.Persistence == Volume && cfg.Persistence != Volume && q.journal != nil:
		err = q.journal.Delete()
		q.journal = nil
	}
	now := bt.now()
	q.dispatch(bt, now)
	q.rearm(now)
	return err
}

// remove deletes the queue: consumers are told, blocked sends fail, messages
// and journal are discarded.
func (q *queue) remove(bt *batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = true
	if q.timer != nil {
		q.timer.Stop()
	}
	for _, c := range q.consumers {
		c.removed = true
		c.conn.consumerClosed(c.id, mqwire.CodeQueueDeleted, q.name)
		bt.wake(c.conn)
	}
	q.consumers = nil
	for _, p := range q.parked {
		q.unpark(p)
		bt.fail(p.conn, p.req, len(p.msg.body), mqwire.CodeQueueDeleted, q.name)
	}
	q.parked = nil
	q.admitting, q.admittingBytes = nil, 0
	q.ready = [mqwire.MaxPriority + 1]deque{}
	q.inflight, q.inflightBytes = 0, 0
	q.ifHead, q.ifTail = nil, nil
	q.depth, q.bytes, q.ttlCount = 0, 0, 0
	if q.journal != nil {
		if err := q.journal.Delete(); err != nil {
			q.log.Error("delete journal", "err", err)
		}
		q.journal = nil
	}
}

// close flushes and closes the journal at shutdown, keeping its contents.
func (q *queue) close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = true
	q.admitting, q.admittingBytes = nil, 0 // journaled by Close below
	if q.timer != nil {
		q.timer.Stop()
	}
	if q.journal == nil {
		return nil
	}
	err := q.journal.Close()
	if errors.Is(err, mqjournal.ErrClosed) {
		err = nil
	}
	return err
}

func (q *queue) stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := QueueStats{
		Name:          q.name,
		Config:        q.cfg,
		Depth:         q.depth,
		Bytes:         q.bytes,
		InFlight:      q.inflight,
		InFlightBytes: q.inflightBytes,
		Consumers:     len(q.consumers),
		BlockedSends:  len(q.parked),
		Enqueued:      q.st.enqueued,
		Delivered:     q.st.delivered,
		Acked:         q.st.acked,
		Redelivered:   q.st.redelivered,
		DeadLettered:  q.st.deadLettered,
		Dropped:       q.st.dropped,
		Expired:       q.st.expired,
		Rejected:      q.st.rejected,
		Recovered:     q.st.recovered,
		AckLatency:    q.lat.snapshot(),
	}
	if q.journal != nil {
		s.JournalBytes = q.journal.Size()
		s.JournalRefused = q.journalRefused
	}
	return s
}

// deque is a ring buffer of messages.
type deque struct {
	buf  []*message
	head int
	n    int
}

func (d *deque) len() int { return d.n }

func (d *deque) grow() {
	nb := make([]*message, max(16, 2*len(d.buf)))
	for i := range d.n {
		nb[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = nb, 0
}

func (d *deque) pushBack(m *message) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.n)%len(d.buf)] = m
	d.n++
}

func (d *deque) pushFront(m *message) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = m
	d.n++
}

// insertByID puts a requeued message back where its id places it among the
// first messages: messages of one priority are queued in id order, and a
// requeued message is normally older than all of them.
func (d *deque) insertByID(m *message) {
	d.pushFront(m)
	for i := 0; i+1 < d.n; i++ {
		cur := &d.buf[(d.head+i)%len(d.buf)]
		next := &d.buf[(d.head+i+1)%len(d.buf)]
		if (*next).id > m.id {
			break
		}
		*cur, *next = *next, *cur
	}
}

func (d *deque) popFront() *message {
	m := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	if d.n == 0 && len(d.buf) > 1024 {
		*d = deque{} // give back the memory of a burst
	}
	return m
}

func (d *deque) each(f func(*message)) {
	for i := range d.n {
		f(d.buf[(d.head+i)%len(d.buf)])
	}
}

// filter keeps the messages for which keep returns true, in order.
func (d *deque) filter(keep func(*message) bool) {
	w := 0
	for i := range d.n {
		m := d.buf[(d.head+i)%len(d.buf)]
		if keep(m) {
			d.buf[(d.head+w)%len(d.buf)] = m
			w++
		}
	}
	for i := w; i < d.n; i++ {
		d.buf[(d.head+i)%len(d.buf)] = nil
	}
	d.n = w
}
