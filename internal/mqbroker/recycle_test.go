package mqbroker

import "testing"

// bconn.deliver writes a body over maxFreeBody by reference, from the stored
// message, until the socket takes it; that is safe only because such a body
// is never reused for another message, whatever happens to its delivery
// meanwhile (acked, requeued by a cancel, redelivered and acked elsewhere).
func TestLargeBodiesAreNeverReused(t *testing.T) {
	q := &queue{}
	for _, n := range []int{maxFreeBody + 1, 64 << 10, 1 << 20} {
		m := q.newMessage(make([]byte, n), 0)
		q.recycle(m)
		if len(q.free) != 0 {
			t.Fatalf("a message with a %d-byte body went back to the free list", n)
		}
		large := &message{body: make([]byte, n), owned: true} // as handleSend makes one
		q.recycle(large)
		if len(q.free) != 0 {
			t.Fatalf("a large message made by handleSend (%d bytes) went back to the free list", n)
		}
	}
	small := q.newMessage(make([]byte, maxFreeBody), 0)
	q.recycle(small)
	if len(q.free) != 1 {
		t.Fatalf("a message with a %d-byte body was not reused: the free list has %d", maxFreeBody, len(q.free))
	}
}
