package mq

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
)

// reportLatency adds p50 and p99 metrics for the sampled durations.
func reportLatency(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkUnixPingPong is the baseline for BenchmarkRoundTrip: a 64-byte
// ping-pong over a Unix socket between two goroutines, with no protocol.
func BenchmarkUnixPingPong(b *testing.B) {
	sock := filepath.Join(shortTempDir(b), "pp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		c.Write(buf)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, samples)
}

// BenchmarkSendConfirm measures the protocol's own round trip, the analogue
// of BenchmarkUnixPingPong: a 64-byte send and its confirmation, with a
// consumer taking the messages on another connection.
func BenchmarkSendConfirm(b *testing.B) {
	tb := startBroker(b, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", Delivery: mqbroker.AtMostOnce, MaxDepth: 1 << 20, Overflow: mqbroker.DropOldest})
	prod := dial(b, tb.socket)
	ctx := context.Background()
	body := make([]byte, 64)
	samples := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := prod.Send(ctx, "q", body); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, samples)
}

// BenchmarkRoundTrip measures one 64-byte message's full cycle through the
// broker: confirmed send, delivery to a consumer on another connection, ack.
func BenchmarkRoundTrip(b *testing.B) {
	for _, p := range []mqbroker.Persistence{mqbroker.None, mqbroker.Volume} {
		b.Run(string(p), func(b *testing.B) {
			tb := startBroker(b, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q", Persistence: p})
			prod, cons := dial(b, tb.socket), dial(b, tb.socket)
			ctx := context.Background()
			k, err := cons.Consume(ctx, "q", WithPrefetch(1))
			if err != nil {
				b.Fatal(err)
			}
			body := make([]byte, 64)
			samples := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := prod.Send(ctx, "q", body); err != nil {
					b.Fatal(err)
				}
				d, err := k.Receive(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := d.Ack(ctx); err != nil {
					b.Fatal(err)
				}
				samples = append(samples, time.Since(start))
			}
			b.StopTimer()
			reportLatency(b, samples)
		})
	}
}

// BenchmarkThroughput measures messages per second with pipelined confirmed
// sends from one connection and acknowledged receives on another.
func BenchmarkThroughput(b *testing.B) {
	for _, p := range []mqbroker.Persistence{mqbroker.None, mqbroker.Volume} {
		for _, size := range []int{64, 4 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/%dB", p, size), func(b *testing.B) {
				benchThroughput(b, p, size)
			})
		}
	}
}

func benchThroughput(b *testing.B, p mqbroker.Persistence, size int) {
	tb := startBroker(b, mqbroker.Options{}, mqbroker.QueueConfig{
		Name: "q", Persistence: p, MaxDepth: 1 << 20,
		MaxMessageSize: max(size, mqbroker.DefaultMaxMessageSize),
		MaxBytes:       max(mqbroker.DefaultMaxBytes, 4*int64(size)),
	})
	prod, cons := dial(b, tb.socket), dial(b, tb.socket)
	ctx := context.Background()
	k, err := cons.Consume(ctx, "q", WithPrefetch(1024))
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, size)
	var wg sync.WaitGroup
	wg.Add(1)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer wg.Done()
		for range b.N {
			d, err := k.Receive(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			d.Ack(ctx)
		}
	}()
	var last *Confirmation
	for range b.N {
		cf, err := prod.SendAsync(ctx, "q", body)
		if err != nil {
			b.Fatal(err)
		}
		last = cf
	}
	if err := last.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
