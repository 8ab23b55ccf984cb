package mq

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/mqwire"
)

// FuzzBrokerConnection writes arbitrary bytes after a valid handshake to a
// live broker and ends the stream: the broker must neither crash nor hang,
// must close the connection, keep its queue accounting consistent and keep
// serving a well-behaved client.
func FuzzBrokerConnection(f *testing.F) {
	var seq []byte
	seq = mqwire.AppendSend(seq, 1, 3, 0, 0, "q", []byte("a"))
	seq = mqwire.AppendConsume(seq, 2, 7, 4, "q")
	seq = mqwire.AppendAck(seq, 7, 1, 2, 3)
	seq = mqwire.AppendNack(seq, 7, true, 4)
	seq = mqwire.AppendCredit(seq, 7, 2)
	seq = mqwire.AppendCancel(seq, 3, 7)
	seq = mqwire.AppendPing(seq, mqwire.TypePing, 9)
	f.Add(seq)
	f.Add(mqwire.AppendSend(nil, 1, 0, 10, 5, "dlq", []byte("ttl")))
	f.Add(mqwire.AppendConsume(mqwire.AppendSend(nil, 1, 0, 0, 0, "full", nil), 2, 1, 1, "full"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})

	b := startBroker(f, mqbroker.Options{MaxPendingSends: 8, HandshakeTimeout: time.Second},
		mqbroker.QueueConfig{Name: "q", AckTimeout: 5 * time.Millisecond, MaxRedeliveries: 2, DeadLetterQueue: "dlq"},
		mqbroker.QueueConfig{Name: "dlq", MaxDepth: 5, Overflow: mqbroker.DropOldest},
		mqbroker.QueueConfig{Name: "full", MaxDepth: 1, Delivery: mqbroker.AtMostOnce})
	good := dial(f, b.socket)
	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.Dial("unix", b.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		nc.Write(mqwire.AppendHello(nil, mqwire.Hello{MinVersion: 1, MaxVersion: 1}))
		var w [mqwire.WelcomeSize]byte
		if _, err := io.ReadFull(nc, w[:]); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		nc.Write(data)
		// After our end of the stream the broker must close the connection,
		// whatever the data did: read until then, failing on a hang.
		nc.(*net.UnixConn).CloseWrite()
		r := mqwire.NewReader(nc, 4096, 1<<24)
		for {
			if _, _, err := r.Next(); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("broker did not close the connection: %v", err)
				}
				break
			}
		}
		nc.Close()
		for _, s := range b.Stats() {
			if s.Depth < 0 || s.Bytes < 0 || s.InFlight < 0 || s.BlockedSends < 0 {
				t.Fatalf("inconsistent stats %+v", s)
			}
		}
		if err := good.Ping(testCtx(t)); err != nil {
			t.Fatalf("well-behaved client broken: %v", err)
		}
	})
}
