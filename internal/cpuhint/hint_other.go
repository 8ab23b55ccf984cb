//go:build !amd64 && !arm64

package cpuhint

import "unsafe"

// Relax does nothing on this architecture.
func Relax() {}

// PrefetchWrite does nothing on this architecture.
func PrefetchWrite(unsafe.Pointer) {}
