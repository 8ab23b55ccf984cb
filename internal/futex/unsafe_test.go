//go:build linux

package futex

import "unsafe"

func unsafeWord(mem []byte) unsafe.Pointer { return unsafe.Pointer(&mem[0]) }
