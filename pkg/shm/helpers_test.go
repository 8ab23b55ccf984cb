package shm

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testDir returns a fresh directory on a tmpfs when there is one.
func testDir(t testing.TB) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "podipc-shm-test-")
		if err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

func newTestChannel(t testing.TB, opts Options) *Channel {
	t.Helper()
	c, err := Create(filepath.Join(testDir(t), "ch"), opts)
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

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronization
	}
}
