package appkit

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// Meter keeps one Window per channel and prints a line per channel every
// interval.
type Meter struct {
	mu       sync.Mutex
	channels []*meteredChannel
}

// Channel is one metered channel; its methods are safe for concurrent use.
type Channel struct{ m *meteredChannel }

type meteredChannel struct {
	label string
	mu    sync.Mutex
	w     Window
	total int
}

// Add registers a channel under label (printed at the start of its lines).
func (m *Meter) Add(label string) Channel {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &meteredChannel{label: label}
	m.channels = append(m.channels, c)
	return Channel{c}
}

// Observe records a received message of size bytes and its latency.
func (c Channel) Observe(size int, latency time.Duration) {
	c.m.mu.Lock()
	c.m.w.Observe(size, latency)
	c.m.mu.Unlock()
}

// Lost records n messages the channel lost (a lapped subscriber).
func (c Channel) Lost(n uint64) {
	c.m.mu.Lock()
	c.m.w.Lost += n
	c.m.mu.Unlock()
}

// Report prints every channel's window to out every interval until ctx
// ends, then a line with each channel's total.
func (m *Meter) Report(ctx context.Context, out io.Writer, interval time.Duration) {
	start := time.Now()
	last := start
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, c := range m.channels {
				c.mu.Lock()
				fmt.Fprintf(out, "[total] %-28s %d messages\n", c.label, c.total+c.w.Messages)
				c.mu.Unlock()
			}
			return
		case now := <-t.C:
			m.mu.Lock()
			for _, c := range m.channels {
				c.mu.Lock()
				w := c.w
				c.w = Window{latencies: w.latencies[:0:0]}
				c.total += w.Messages
				c.mu.Unlock()
				fmt.Fprintf(out, "[%4.0fs] %-28s %s\n", now.Sub(start).Seconds(), c.label, w.Summary(now.Sub(last)))
			}
			m.mu.Unlock()
			last = now
		}
	}
}
