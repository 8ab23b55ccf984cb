//go:build !amd64 && !arm64

package fence

import "sync/atomic"

var word atomic.Uint32

// LoadLoad orders loads; on this architecture it uses a full barrier.
func LoadLoad() { word.Add(0) }

// StoreStore orders stores; on this architecture it uses a full barrier.
func StoreStore() { word.Add(0) }
