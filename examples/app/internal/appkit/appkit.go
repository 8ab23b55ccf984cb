// Package appkit is what the example producer and consumer share: finding the
// pod's channels the way an application container does (through PODIPC_DIR,
// waiting for the sidecar to create them), stamping messages with their send
// time, and summarising latencies once a second.
package appkit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/pkg/mq"
	"github.com/podipc/podipc/pkg/shm"
)

// Dir returns the pod's podipc directory from $PODIPC_DIR.
func Dir() (string, error) { return podcontract.Dir() }

// retryEvery is how often a missing channel or broker is looked for again.
const retryEvery = 50 * time.Millisecond

// OpenChannel opens the shared-memory channel name in dir, waiting (until
// ctx ends) for the sidecar to create it.
func OpenChannel(ctx context.Context, dir, name string) (*shm.Channel, error) {
	path := podcontract.ChannelPath(dir, name)
	for {
		ch, err := shm.Open(path)
		if err == nil {
			return ch, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("channel %s never appeared: %w", name, context.Cause(ctx))
		case <-time.After(retryEvery):
		}
	}
}

// DialBroker connects to the sidecar's broker in dir, waiting (until ctx
// ends) for it to listen.
func DialBroker(ctx context.Context, dir string) (*mq.Client, error) {
	path := podcontract.MQSocketPath(dir)
	for {
		c, err := mq.Dial(ctx, mq.WithSocketPath(path))
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("broker at %s: %w", path, err)
		case <-time.After(retryEvery):
		}
	}
}

// StampSize is the size of the header Stamp writes.
const StampSize = 16

// Stamp writes the send time and a sequence number at the start of msg,
// which must be at least StampSize bytes.
func Stamp(msg []byte, seq uint64) {
	binary.LittleEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(msg[8:], seq)
}

// Latency returns how long ago msg was stamped, or false if it is too short
// to carry a stamp.
func Latency(msg []byte) (time.Duration, bool) {
	if len(msg) < StampSize {
		return 0, false
	}
	sent := int64(binary.LittleEndian.Uint64(msg))
	return time.Duration(time.Now().UnixNano() - sent), true
}

// Names splits a comma-separated list, dropping empty items.
func Names(list string) []string {
	var out []string
	for n := range strings.SplitSeq(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// Pace calls send rate times a second (as fast as it can if rate <= 0)
// until ctx ends or send fails, and returns send's error or nil.
func Pace(ctx context.Context, rate int, send func(seq uint64) error) error {
	start := time.Now()
	var seq uint64
	for ctx.Err() == nil {
		due := uint64(1 << 62)
		if rate > 0 {
			due = uint64(time.Since(start).Seconds() * float64(rate))
		}
		for ; seq < due && ctx.Err() == nil; seq++ {
			if err := send(seq); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if rate <= 0 {
				break
			}
		}
		if rate > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// Window accumulates one second's worth of a channel's traffic. It is not
// safe for concurrent use; Meter guards it.
type Window struct {
	Messages  int
	Bytes     int64
	Lost      uint64
	latencies []time.Duration
}

// Observe records one received message.
func (w *Window) Observe(size int, latency time.Duration) {
	w.Messages++
	w.Bytes += int64(size)
	if len(w.latencies) < 1<<20 {
		w.latencies = append(w.latencies, latency)
	}
}

// Summary describes the window in one line.
func (w *Window) Summary(elapsed time.Duration) string {
	rate := float64(w.Messages) / elapsed.Seconds()
	line := fmt.Sprintf("%9.0f msg/s %8.2f MiB/s", rate, float64(w.Bytes)/elapsed.Seconds()/(1<<20))
	if len(w.latencies) > 0 {
		slices.Sort(w.latencies)
		q := func(p float64) time.Duration { return w.latencies[int(p*float64(len(w.latencies)-1))] }
		line += fmt.Sprintf("  latency p50 %-9v p99 %-9v max %v", round(q(0.5)), round(q(0.99)), round(w.latencies[len(w.latencies)-1]))
	}
	if w.Lost > 0 {
		line += fmt.Sprintf("  lost %d", w.Lost)
	}
	return line
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d
}
