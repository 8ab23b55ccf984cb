package mqbroker

import (
	"errors"
	"slices"

	"github.com/podipc/podipc/internal/mqjournal"
	"github.com/podipc/podipc/internal/mqwire"
)

// batch collects the side effects of a run of queue operations so that they
// happen once, outside the queue locks: journal writes (group commit), send
// confirmations that wait for them, dead letters, and writer wake-ups. A
// connection's reader finishes its batch when it has no more buffered input.
type batch struct {
	b           *Broker
	wakes       []*bconn
	journals    []*mqjournal.Journal
	confirms    []confirm
	deadLetters []deadLetter

	// clock is the batch's time, valid while hasClock (see now).
	clock    instant
	hasClock bool
}

// now returns the batch's time: read once, then reused until the batch
// finishes or its reader reads from the socket (resetClock), so that a burst
// of frames costs one clock read (over 100 ns in a VM) and the time is never
// older than the processing of the input at hand.
func (bt *batch) now() instant {
	if !bt.hasClock {
		bt.clock, bt.hasClock = bt.b.now(), true
	}
	return bt.clock
}

// resetClock makes the next now read the clock.
func (bt *batch) resetClock() { bt.hasClock = false }

// confirm is the answer to a send to a journaled queue, waiting for its
// journal record: SEND_OK and the message queued if the record is written,
// an error and the message forgotten if not.
type confirm struct {
	conn    *bconn
	req     uint32
	id      uint64
	bodyLen int
	q       *queue
	msg     *message
	journal *mqjournal.Journal
	seq     uint64
}

// deadLetter is a message on its way from one queue to its dead-letter queue.
type deadLetter struct {
	from *queue
	to   string
	id   uint64 // id in the source queue
	msg  *message
}

// maxBatch bounds how many operations a reader batches before finishing.
const maxBatch = 256

func (bt *batch) full() bool { return len(bt.confirms)+len(bt.deadLetters) >= maxBatch }

func (bt *batch) wake(c *bconn) {
	if !slices.Contains(bt.wakes, c) {
		bt.wakes = append(bt.wakes, c)
	}
}

func (bt *batch) touch(j *mqjournal.Journal) {
	if !slices.Contains(bt.journals, j) {
		bt.journals = append(bt.journals, j)
	}
}

// ok confirms a send at once.
func (bt *batch) ok(c *bconn, req uint32, id uint64, bodyLen int) {
	c.sendOK(req, id, bodyLen)
	bt.wake(c)
}

// confirmLater answers a send of m to the journaled queue q once the journal
// record seq is written (or could not be); q.mu is held.
func (bt *batch) confirmLater(c *bconn, req uint32, q *queue, m *message, seq uint64) {
	bt.confirms = append(bt.confirms, confirm{conn: c, req: req, id: m.id, bodyLen: len(m.body), q: q, msg: m, journal: q.journal, seq: seq})
}

// fail answers a send or request with an error.
func (bt *batch) fail(c *bconn, req uint32, bodyLen int, code mqwire.Code, text string) {
	c.sendError(req, code, text, bodyLen)
	bt.wake(c)
}

// finish performs the collected side effects. Queueing a confirmed message
// can have more (a delivery that expires it, a blocked send admitted in its
// wake), so it goes on until there are none.
func (bt *batch) finish() {
	for len(bt.deadLetters) > 0 || len(bt.journals) > 0 || len(bt.confirms) > 0 {
		bt.moveDeadLetters()
		bt.flushJournals()
		bt.confirmSends()
	}
	// Latest first: a send wakes its producer's connection (SEND_OK) before
	// the consumer's it delivered to, and the delivery is what the other
	// side of a request/reply waits for.
	for i := len(bt.wakes) - 1; i >= 0; i-- {
		bt.wakes[i].flush()
	}
	bt.hasClock = false
	clear(bt.wakes)
	bt.wakes = bt.wakes[:0]
}

func (bt *batch) moveDeadLetters() {
	for i := 0; i < len(bt.deadLetters); i++ {
		dl := bt.deadLetters[i]
		bodyLen := len(dl.msg.body)
		if to := bt.b.lookup(dl.to); to != nil {
			if j, seq := to.acceptDeadLetter(bt, dl.msg); j != nil {
				if err := j.Sync(seq); err != nil && !errors.Is(err, mqjournal.ErrClosed) {
					bt.b.log.Error("journal dead letter", "queue", dl.to, "err", err)
				}
			}
		} else {
			dl.from.log.Warn("dead-letter queue does not exist, dropping message", "deadLetterQueue", dl.to)
		}
		// Only now that the dead-letter queue holds the message may the
		// source journal forget it.
		dl.from.journalRemove(bt, dl.id, bodyLen)
	}
	clear(bt.deadLetters)
	bt.deadLetters = bt.deadLetters[:0]
}

func (bt *batch) flushJournals() {
	for _, j := range bt.journals {
		if err := j.Flush(); err != nil && !errors.Is(err, mqjournal.ErrClosed) {
			bt.b.log.Error("write journal", "err", err)
		}
	}
	clear(bt.journals)
	bt.journals = bt.journals[:0]
}

// confirmSends answers the sends waiting for their journal records. A send
// whose record was lost is answered with an error and its message is
// dropped: a producer that retries it must not make a duplicate.
func (bt *batch) confirmSends() {
	for i := 0; i < len(bt.confirms); i++ {
		cf := bt.confirms[i] // a copy: confirmed may append to bt.confirms
		err := cf.journal.Sync(cf.seq)
		written := err == nil || errors.Is(err, mqjournal.ErrClosed)
		if written {
			cf.conn.sendOK(cf.req, cf.id, cf.bodyLen)
		} else {
			cf.q.log.Debug("send failed: journal write failed", "err", err)
			cf.conn.sendError(cf.req, mqwire.CodeInternal, "journal write failed", cf.bodyLen)
		}
		bt.wake(cf.conn)
		cf.q.confirmed(bt, cf.msg, written)
	}
	clear(bt.confirms)
	bt.confirms = bt.confirms[:0]
}
