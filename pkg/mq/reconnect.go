package mq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/podipc/podipc/internal/mqwire"
)

// ReconnectPolicy says how a Client rides through the loss of its broker,
// as when the kubelet restarts a crashed or OOM-killed sidecar.
//
// While the client is disconnected, calls go on as if the broker were slow:
// sends are accepted into the send window and wait for their confirmation,
// Receive waits for messages. Once a new connection is made, the client
// sends again every request the old broker had not answered (in their
// original order) and re-attaches every consumer. A send is therefore
// confirmed at least once: one that the old broker queued but could not
// confirm before it died is queued twice. Deliveries of the lost
// connection that were not acknowledged are redelivered by the broker;
// acknowledging one fails with ErrStaleDelivery.
type ReconnectPolicy struct {
	// Window is how long the client tries to reach the broker after losing
	// it. When it passes, the client closes: every waiting call and
	// consumer fails with ErrClosed. Zero disables reconnection: the
	// client closes as soon as its connection is lost.
	Window time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff up to MaxBackoff, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// DeclareWait is how long after a reconnection an "unknown queue"
	// answer is taken to mean that the restarted broker has not declared
	// the queue yet: the request is tried again until then.
	DeclareWait time.Duration
}

// DefaultReconnectPolicy is the policy of a Client dialled without
// WithReconnect or WithoutReconnect: a minute of attempts 50 ms to 2 s
// apart, and 5 s for a restarted broker to declare its queues.
func DefaultReconnectPolicy() ReconnectPolicy {
	return ReconnectPolicy{Window: time.Minute, MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, DeclareWait: 5 * time.Second}
}

func (p ReconnectPolicy) enabled() bool { return p.Window > 0 }

func (p ReconnectPolicy) validate() error {
	switch {
	case p.Window < 0:
		return fmt.Errorf("%w: reconnect window %v", ErrInvalidArgument, p.Window)
	case !p.enabled():
		return nil
	case p.MinBackoff <= 0 || p.MaxBackoff < p.MinBackoff:
		return fmt.Errorf("%w: reconnect backoff %v to %v", ErrInvalidArgument, p.MinBackoff, p.MaxBackoff)
	case p.DeclareWait < 0:
		return fmt.Errorf("%w: reconnect declare wait %v", ErrInvalidArgument, p.DeclareWait)
	}
	return nil
}

// WithReconnect sets how the client reconnects after losing the broker.
func WithReconnect(p ReconnectPolicy) DialOption { return func(o *dialOptions) { o.reconnect = p } }

// WithoutReconnect makes the client close as soon as its connection is lost.
func WithoutReconnect() DialOption { return func(o *dialOptions) { o.reconnect = ReconnectPolicy{} } }

// ClientStats counts a client's connections.
type ClientStats struct {
	// Connected reports whether the client has a connection now.
	Connected bool
	// Disconnects counts connections lost while the client was open, and
	// Reconnects the new connections that replaced them.
	Disconnects, Reconnects uint64
	// Resent counts requests sent again on a new connection.
	Resent uint64
	// StaleDropped counts deliveries of a lost connection that the client
	// dropped unread because the broker redelivers them.
	StaleDropped uint64
}

type clientCounters struct {
	disconnects, reconnects, resent, staleDropped atomic.Uint64
}

// Stats returns the client's connection counters.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	connected := c.connected && c.err == nil
	c.mu.Unlock()
	return ClientStats{
		Connected:    connected,
		Disconnects:  c.stats.disconnects.Load(),
		Reconnects:   c.stats.reconnects.Load(),
		Resent:       c.stats.resent.Load(),
		StaleDropped: c.stats.staleDropped.Load(),
	}
}

// connectionLost handles the end of s: the client closes, or, if it
// reconnects, gives s up and starts reconnecting.
func (c *Client) connectionLost(s *session, err error) {
	c.mu.Lock()
	if c.err != nil || c.sess.Load() != s || s.gen != c.gen.Load() {
		c.mu.Unlock()
		return // closed, or handled already
	}
	if !c.policy.enabled() || errors.Is(err, ErrProtocol) {
		c.mu.Unlock()
		c.terminate(err)
		return
	}
	if c.goAway != nil {
		err = fmt.Errorf("%w (%w)", err, c.goAway)
		c.goAway = nil
	}
	c.gen.Add(1)
	c.connected = false
	c.stats.disconnects.Add(1)
	c.reconnects.Add(1)
	c.mu.Unlock()
	s.w.Close()
	s.nc.Close()
	c.log.Warn("lost the broker; reconnecting", "socket", c.path, "window", c.policy.Window, "err", err)
	go c.reconnect(s, err)
}

// perAttempt bounds one dial and handshake.
const perAttempt = 5 * time.Second

// reconnect dials until it has a new connection to resume on, the window
// passes, or the client is closed.
func (c *Client) reconnect(old *session, cause error) {
	defer c.reconnects.Done()
	<-old.readerDone
	<-old.w.Done()
	giveUp := time.Now().Add(c.policy.Window)
	backoff := c.policy.MinBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(c.life, min(time.Until(giveUp), perAttempt))
		s, err := dialSession(ctx, c.path, c.brokerUID)
		cancel()
		if err == nil {
			if c.resume(s) {
				c.log.Info("reconnected to the broker", "socket", c.path, "attempts", attempt)
			}
			return
		}
		if c.life.Err() != nil {
			return // closed
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if time.Until(giveUp) < wait {
			err := fmt.Errorf("%w: no broker at %s for %v (lost: %w; last attempt: %v)", ErrClosed, c.path, c.policy.Window, cause, err)
			c.log.Error("giving up on the broker", "err", err)
			c.terminate(err)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.life.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, c.policy.MaxBackoff)
	}
}

// resume makes s the client's connection: it sends again, in their order,
// the requests left unanswered, re-attaches the consumers, and starts s.
// It reports false if the client was closed meanwhile.
func (c *Client) resume(s *session) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		s.nc.Close()
		return false
	}
	s.gen = c.gen.Load()
	c.sess.Store(s)
	c.connected = true
	c.goAway = nil
	c.resumedAt = time.Now()
	c.stats.reconnects.Add(1)

	pending := c.calls.drain()
	slices.SortFunc(pending, func(a, b *Confirmation) int { return cmp.Compare(a.req, b.req) })
	consumers := make([]*Consumer, 0, len(c.consumers))
	for _, k := range c.consumers {
		if k.attached { // the others' CONSUME is pending
			consumers = append(consumers, k)
		}
	}
	slices.SortFunc(consumers, func(a, b *Consumer) int { return cmp.Compare(a.id, b.id) })

	var expired []*Confirmation
	// The connection is new: frames appended to it are sent or it fails
	// (and the next connection sends them), so ok needs no check here.
	room := requestRoom * (len(pending) + len(consumers))
	for _, cf := range pending {
		room += cf.bodyLen
	}
	out, _, _ := s.w.Lock(room)
	for _, cf := range pending {
		req := c.calls.add(cf)
		var ok bool
		if out, ok = cf.appendTo(out, req); !ok {
			c.calls.remove(cf)
			expired = append(expired, cf)
			continue
		}
		c.stats.resent.Add(1)
	}
	for _, k := range consumers {
		cf := c.reattachment(k, s.limits)
		out = cf.enc(out, c.calls.add(cf))
	}
	s.w.Unlock(out, -1)
	for _, cf := range expired {
		c.releaseSend(cf)
	}
	c.mu.Unlock()
	for _, cf := range expired {
		cf.resolve(fmt.Errorf("%w: the send's deadline passed while the client was reconnecting", context.DeadlineExceeded))
	}
	c.start(s)
	s.w.Flush()
	return true
}

// reattachment prepares, with c.mu held, the CONSUME that attaches k to a
// new connection. Unacknowledged deliveries of the lost connection that k
// still holds are dropped: the broker redelivers them. Deliveries of an
// AtMostOnce queue are not redelivered, so they stay, and the new
// connection's prefetch leaves room for them.
func (c *Client) reattachment(k *Consumer, limits mqwire.Welcome) *Confirmation {
	prefetch := min(k.wantPrefetch, int(limits.MaxPrefetch))
	if k.autoAck.Load() {
		prefetch = max(1, prefetch-len(k.ch))
	} else {
		for dropped := false; !dropped; {
			select {
			case <-k.ch:
				c.stats.staleDropped.Add(1)
			default:
				dropped = true
			}
		}
	}
	k.attached = false // until the new CONSUME_OK
	return &Confirmation{
		attach: k,
		enc: func(b []byte, req uint32) []byte {
			return mqwire.AppendConsume(b, req, k.id, uint32(prefetch), k.queue)
		},
		then: func(cf *Confirmation) {
			if cf.err == nil {
				k.prefetch.Store(int64(cf.prefetch))
				return
			}
			c.mu.Lock()
			if c.consumers[k.id] == k {
				delete(c.consumers, k.id)
			}
			c.mu.Unlock()
			k.finish(fmt.Errorf("mq: consumer of %q not re-attached after reconnecting: %w", k.queue, cf.err))
		},
	}
}

// retryDelay is how long a request answered "unknown queue" just after a
// reconnection waits before it is sent again.
const retryDelay = 100 * time.Millisecond

// keepForResend decides, with c.mu held, whether a reconnection makes the
// error answering cf moot, and if so keeps cf to send again: the broker
// shutting down (it is about to be restarted) or, shortly after a
// reconnection, a queue the restarted broker has not declared yet.
func (c *Client) keepForResend(cf *Confirmation, err error) bool {
	if !cf.canResend() {
		return false
	}
	switch {
	case errors.Is(err, ErrBrokerShutdown):
		c.calls.add(cf) // sent again on the next connection
		return true
	case errors.Is(err, ErrUnknownQueue) && !c.resumedAt.IsZero() && time.Since(c.resumedAt) < c.policy.DeclareWait:
		c.retrying[cf] = struct{}{}
		time.AfterFunc(retryDelay, func() { c.retry(cf) })
		return true
	}
	return false
}

// retry sends cf again after retryDelay.
func (c *Client) retry(cf *Confirmation) {
	c.mu.Lock()
	if _, ok := c.retrying[cf]; !ok {
		c.mu.Unlock()
		return // the client closed, or the caller gave up
	}
	delete(c.retrying, cf)
	req := c.calls.add(cf)
	s := c.sess.Load()
	if !c.connected {
		c.mu.Unlock()
		return // the next connection sends it
	}
	outbox, mark, appendable := s.w.Lock(requestRoom + cf.bodyLen)
	out, ok := cf.appendTo(outbox, req)
	if ok && appendable {
		outbox, mark = out, -1
	}
	s.w.Unlock(outbox, mark)
	if !ok {
		c.calls.remove(cf)
		c.releaseSend(cf)
	}
	c.mu.Unlock()
	if !ok {
		cf.resolve(fmt.Errorf("%w: the send's deadline passed while its queue was being declared", context.DeadlineExceeded))
		return
	}
	s.w.Flush()
}
