package shm

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
)

func newTestChannel(t testing.TB, opts Options) *Channel {
	t.Helper()
	c, err := Create(filepath.Join(testkit.TmpfsDir(t), "ch"), opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// encodeMsg fills buf with a self-checking message: id, length-dependent
// filler, and a CRC-32C of all that in the last 4 bytes. size >= 12.
func encodeMsg(buf []byte, id uint64, size int) []byte {
	m := buf[:size]
	binary.LittleEndian.PutUint64(m, id)
	for i := 8; i < size-4; i++ {
		m[i] = byte(id>>(8*(i%8))) ^ byte(i)
	}
	binary.LittleEndian.PutUint32(m[size-4:], crc32.Checksum(m[:size-4], castagnoli))
	return m
}

// decodeMsg checks a message made by encodeMsg and returns its id.
func decodeMsg(m []byte) (uint64, bool) {
	if len(m) < 12 {
		return 0, false
	}
	if binary.LittleEndian.Uint32(m[len(m)-4:]) != crc32.Checksum(m[:len(m)-4], castagnoli) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(m), true
}

// msgSize picks a varying message size for id within [12, limit].
func msgSize(id uint64, limit int) int {
	return 12 + int((id*2654435761)>>7)%(limit-11)
}

// dumpRing describes the ring's state words for failure messages.
func dumpRing(c *Channel) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tail=%d head=%d redeliverGen=%d scanned=%d\n", atomic.LoadUint64(c.tail), atomic.LoadUint64(c.head),
		atomic.LoadUint64(c.redeliverGen), atomic.LoadUint64(c.redeliverScanned))
	for i := uint64(0); i < uint64(c.geo.slotCount); i++ {
		w := atomic.LoadUint64(c.slotWord(c.slot(i)))
		fmt.Fprintf(&b, "  slot %d: seq=%d state=%d owner=%d\n", i, w>>seqShift, slotState(w), slotOwner(w))
	}
	for i := uint32(0); i < atomic.LoadUint32(c.peerHighWater); i++ {
		e := c.peerEntry(i)
		fmt.Fprintf(&b, "  peer %d: state=%d role=%v pid=%d\n", i, atomic.LoadUint32(entryU32(e, peerState)),
			Role(atomic.LoadUint32(entryU32(e, peerRole))), atomic.LoadUint32(entryU32(e, peerPID)))
	}
	return b.String()
}

func loadTail(c *Channel) uint64 { return atomic.LoadUint64(c.tail) }

// awaitProgress polls until the channel's tail has advanced by n positions
// or done reports true. It paces chaos tests by progress rather than by
// time, and fails the test with the ring's state if the channel stalls.
func awaitProgress(t testing.TB, c *Channel, n uint64, done func() bool) {
	t.Helper()
	from := loadTail(c)
	deadline := time.Now().Add(30 * time.Second)
	for loadTail(c)-from < n && !done() {
		if time.Now().After(deadline) {
			t.Fatalf("channel stalled at tail %d waiting for %d more messages\n%s", loadTail(c), n, dumpRing(c))
		}
		time.Sleep(100 * time.Microsecond) // polling interval, not synchronization
	}
}
