package cpuhint

import (
	"testing"
	"unsafe"
)

// The hints must not fault, whatever the address (a prefetch is only a
// hint), and must not change the memory they name.
func TestHintsChangeNothing(t *testing.T) {
	buf := make([]byte, 256)
	for i := range buf {
		buf[i] = byte(i)
	}
	for off := range len(buf) {
		PrefetchWrite(unsafe.Pointer(&buf[off]))
	}
	PrefetchWrite(nil)
	PrefetchWrite(unsafe.Add(unsafe.Pointer(&buf[0]), 1<<40)) // far past the buffer: unmapped
	for range 1000 {
		Relax()
	}
	for i, b := range buf {
		if b != byte(i) {
			t.Fatalf("byte %d is %d after the hints, want %d", i, b, byte(i))
		}
	}
}
