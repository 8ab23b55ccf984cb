package harness

import "time"

// goMemcpy measures single-thread copy() bandwidth for size-byte buffers
// during d, in GB/s (1e9 bytes per second). Source and destination stay
// hot in the cache: this is the best a copying transport could do.
func goMemcpy(size int, d time.Duration) float64 {
	src := newMessage(size)
	dst := make([]byte, size)
	copy(dst, src)
	start := time.Now()
	var n int
	for time.Since(start) < d {
		for range 16 {
			copy(dst, src)
		}
		n += 16
	}
	return float64(n) * float64(size) / time.Since(start).Seconds() / 1e9
}
