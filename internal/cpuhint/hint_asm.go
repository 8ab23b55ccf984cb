//go:build amd64 || arm64

package cpuhint

import "unsafe"

// Relax tells the CPU the thread is spin-waiting (PAUSE, YIELD): the loop
// issues fewer speculative loads of the line it polls, which leaves that
// line to the core about to write it, and a hyperthread sibling gets the
// core's resources. It does not yield to the scheduler or enter the kernel.
//
//go:noescape
func Relax()

// PrefetchWrite asks for the cache line holding addr in a state that can be
// written (PREFETCHW, PRFM PSTL1KEEP) without waiting for it.
//
//go:noescape
func PrefetchWrite(addr unsafe.Pointer)
