//go:build amd64 || arm64

package fence

// LoadLoad orders every load before it before every load after it.
//
//go:noescape
func LoadLoad()

// StoreStore orders every store before it before every store after it.
//
//go:noescape
func StoreStore()
