//go:build !amd64 && !arm64

package fence

import "sync/atomic"

// LoadLoad orders loads; on this architecture it uses a full barrier (an
// atomic read-modify-write).
func LoadLoad() { fullBarrier() }

// StoreStore orders stores; on this architecture it uses a full barrier.
func StoreStore() { fullBarrier() }

func fullBarrier() {
	var w atomic.Uint32
	w.Add(0)
}
