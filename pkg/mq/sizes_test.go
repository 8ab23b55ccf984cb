package mq

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/podipc/podipc/internal/mqbroker"
)

// patterned returns a body of n bytes that differs for every i.
func patterned(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*7 + j*13 + j>>8)
	}
	return b
}

// Pipelined sends of every size, small ones copied into the writers'
// chunks and large ones written by reference (the broker's stored body; the
// client's kept copy when reconnection is on), reach the consumer intact and
// in order, and the sender may reuse its buffer as soon as SendAsync
// returns.
func TestBodiesOfEverySizeArriveIntact(t *testing.T) {
	sizes := []int{0, 1, 63, 4<<10 - 1, 4 << 10, 4<<10 + 1, 64<<10 - 40, 64 << 10, 64<<10 + 1, 300 << 10, 1 << 20}
	for _, reconnect := range []bool{true, false} {
		t.Run(fmt.Sprintf("reconnect=%v", reconnect), func(t *testing.T) {
			tb := startBroker(t, mqbroker.Options{}, mqbroker.QueueConfig{
				Name: "q", MaxMessageSize: 1 << 20, MaxBytes: 64 << 20, MaxDepth: 1 << 16,
			})
			ctx := testCtx(t)
			opts := []DialOption{WithSocketPath(tb.socket)}
			if !reconnect {
				opts = append(opts, WithoutReconnect())
			}
			prod, err := Dial(ctx, opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { prod.Close() })
			cons := dial(t, tb.socket)
			k := mustConsume(t, cons, "q", WithPrefetch(64))

			const rounds = 6
			done := make(chan error, 1)
			go func() {
				for i := range rounds * len(sizes) {
					d, err := k.Receive(ctx)
					if err != nil {
						done <- err
						return
					}
					if want := patterned(i, sizes[i%len(sizes)]); !bytes.Equal(d.Body, want) {
						done <- fmt.Errorf("message %d: %d bytes differ from the %d sent", i, len(d.Body), len(want))
						return
					}
					if err := d.Ack(ctx); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			var cfs []*Confirmation
			buf := make([]byte, 1<<20)
			for i := range rounds * len(sizes) {
				body := buf[:sizes[i%len(sizes)]]
				copy(body, patterned(i, len(body)))
				cf, err := prod.SendAsync(ctx, "q", body)
				if err != nil {
					t.Fatal(err)
				}
				clear(body) // the send must not depend on the caller's buffer
				cfs = append(cfs, cf)
			}
			for i, cf := range cfs {
				if err := cf.Wait(ctx); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatal("the consumer did not receive every message")
			}
		})
	}
}
