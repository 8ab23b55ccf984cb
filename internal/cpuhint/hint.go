// Package cpuhint gives pkg/shm's spin loops the two CPU hints C code gets
// from compiler builtins and Go has no intrinsic for: a spin-wait pause,
// and a prefetch of a cache line for writing.
//
// Both only change timing, never results: each is a single instruction
// (PAUSE and PREFETCHW on amd64, YIELD and PRFM PSTL1KEEP on arm64, nothing
// elsewhere) in a small assembly routine, and a prefetch never faults, so
// any address may be passed.
package cpuhint
