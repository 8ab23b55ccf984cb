package shm

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// cpuMeter reports the process's CPU time per op next to wall time: on a
// shared, oversubscribed machine wall time mostly measures the scheduler.
type cpuMeter struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) *cpuMeter {
	b.ResetTimer()
	return &cpuMeter{start: processCPU()}
}

func (m *cpuMeter) stop(b *testing.B) {
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-m.start)/float64(b.N), "cpu-ns/op")
}

var benchSizes = []int{64, 4096}

var benchWaits = []struct {
	name string
	wait WaitStrategy
}{{"spin", WaitSpin}, {"hybrid", WaitHybrid}, {"block", WaitBlock}}

// BenchmarkPingPong measures a round trip between two goroutines over two
// Queue channels (one op = one message each way).
func BenchmarkPingPong(b *testing.B) {
	for _, size := range benchSizes {
		for _, w := range benchWaits {
			b.Run(fmt.Sprintf("%dB/%s", size, w.name), func(b *testing.B) {
				opts := Options{SlotSize: size, SlotCount: 64}
				ping, pong := newTestChannel(b, opts), newTestChannel(b, opts)
				pingP, _ := ping.NewProducer(WithWait(w.wait))
				pingC, _ := ping.NewConsumer(WithWait(w.wait))
				pongP, _ := pong.NewProducer(WithWait(w.wait))
				pongC, _ := pong.NewConsumer(WithWait(w.wait))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan struct{})
				go func() {
					defer close(done)
					buf := make([]byte, size)
					for {
						n, err := pingC.Recv(ctx, buf)
						if err != nil {
							return
						}
						if pongP.Send(ctx, buf[:n]) != nil {
							return
						}
					}
				}()
				msg, buf := make([]byte, size), make([]byte, size)
				b.ReportAllocs()
				b.SetBytes(int64(2 * size))
				cpu := startCPU(b)
				for i := 0; i < b.N; i++ {
					if err := pingP.Send(ctx, msg); err != nil {
						b.Fatal(err)
					}
					if _, err := pongC.Recv(ctx, buf); err != nil {
						b.Fatal(err)
					}
				}
				cpu.stop(b)
				cancel()
				<-done
			})
		}
	}
}

// BenchmarkThroughput streams messages from one producer goroutine to one
// consumer goroutine, copying (Send/Recv) or in place (Reserve/Borrow).
func BenchmarkThroughput(b *testing.B) {
	for _, size := range benchSizes {
		for _, zeroCopy := range []bool{false, true} {
			name := fmt.Sprintf("%dB/copy", size)
			if zeroCopy {
				name = fmt.Sprintf("%dB/zerocopy", size)
			}
			b.Run(name, func(b *testing.B) {
				c := newTestChannel(b, Options{SlotSize: size, SlotCount: 1024})
				p, _ := c.NewProducer(WithWait(WaitSpin))
				q, _ := c.NewConsumer(WithWait(WaitSpin))
				ctx := context.Background()
				done := make(chan error, 1)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				cpu := startCPU(b)
				go func() {
					buf := make([]byte, size)
					for i := 0; i < b.N; i++ {
						if zeroCopy {
							m, err := q.Borrow(ctx)
							if err != nil {
								done <- err
								return
							}
							if err := m.Release(); err != nil {
								done <- err
								return
							}
						} else if _, err := q.Recv(ctx, buf); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				msg := make([]byte, size)
				for i := 0; i < b.N; i++ {
					if zeroCopy {
						r, err := p.Reserve(ctx)
						if err != nil {
							b.Fatal(err)
						}
						r.Buf()[0] = byte(i)
						if err := r.Commit(size); err != nil {
							b.Fatal(err)
						}
					} else if err := p.Send(ctx, msg); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				cpu.stop(b)
			})
		}
	}
}

// BenchmarkBroadcastThroughput streams from one producer to two subscribers.
func BenchmarkBroadcastThroughput(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			c := newTestChannel(b, Options{Mode: ModeBroadcast, SlotSize: size, SlotCount: 1024})
			p, _ := c.NewProducer(WithWait(WaitSpin))
			ctx := context.Background()
			done := make(chan error, 2)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for range 2 {
				s, _ := c.Subscribe(WithWait(WaitSpin))
				go func() {
					buf := make([]byte, size)
					for i := 0; i < b.N; i++ {
						if _, err := s.Recv(ctx, buf); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
			}
			b.ResetTimer()
			msg := make([]byte, size)
			for i := 0; i < b.N; i++ {
				if err := p.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
			for range 2 {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDataPath sends and receives in one goroutine: the cost of the
// data path itself (atomics and memcpy), without any cross-core traffic
// or scheduling. One op = one message sent and received.
func BenchmarkDataPath(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB/copy", size), func(b *testing.B) {
			c := newTestChannel(b, Options{SlotSize: size, SlotCount: 64})
			p, _ := c.NewProducer()
			q, _ := c.NewConsumer()
			msg, buf := make([]byte, size), make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				if err := p.TrySend(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := q.TryRecv(buf); err != nil {
					b.Fatal(err)
				}
			}
			cpu.stop(b)
		})
		b.Run(fmt.Sprintf("%dB/zerocopy", size), func(b *testing.B) {
			c := newTestChannel(b, Options{SlotSize: size, SlotCount: 64})
			p, _ := c.NewProducer()
			q, _ := c.NewConsumer()
			b.ReportAllocs()
			b.SetBytes(int64(size))
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				r, err := p.TryReserve()
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Commit(size); err != nil {
					b.Fatal(err)
				}
				m, err := q.TryBorrow()
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Release(); err != nil {
					b.Fatal(err)
				}
			}
			cpu.stop(b)
		})
	}
}
