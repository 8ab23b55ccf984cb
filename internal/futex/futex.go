//go:build linux

// Package futex wraps the Linux futex(2) wait and wake operations on 32-bit
// words that live in a MAP_SHARED file mapping.
//
// The operations deliberately omit FUTEX_PRIVATE_FLAG: the kernel then keys
// the wait queue on the backing inode and offset rather than on the virtual
// address, so processes that map the same file at different addresses wake
// each other.
package futex

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	opWait = 0 // FUTEX_WAIT, shared
	opWake = 1 // FUTEX_WAKE, shared
)

// ErrTimeout reports that Wait returned because its timeout elapsed.
var ErrTimeout = errors.New("futex: wait timed out")

// Wait blocks while *addr == val, until a Wake on the same word, a signal,
// or the timeout (timeout <= 0 waits without a limit). It returns nil when
// woken or when *addr already differs from val (the caller re-checks its
// condition either way), ErrTimeout when the timeout elapsed, and an error
// for anything else.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	var ts *unix.Timespec
	if timeout > 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait,
		uintptr(val), uintptr(unsafe.Pointer(ts)), 0, 0)
	switch errno {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	default:
		return fmt.Errorf("futex wait: %w", errno)
	}
}

// Wake wakes up to n waiters blocked in Wait on addr and returns how many
// it woke.
func Wake(addr *uint32, n int) (int, error) {
	if n <= 0 || n > math.MaxInt32 {
		n = math.MaxInt32
	}
	woken, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWake,
		uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("futex wake: %w", errno)
	}
	return int(woken), nil
}

// Signal bumps the sequence word addr and wakes every waiter on it. It is
// the publishing half of the wait protocol: a waiter that read the word
// before the bump either sees the new value in Wait (EAGAIN) or is woken.
func Signal(addr *uint32) error {
	atomic.AddUint32(addr, 1)
	_, err := Wake(addr, math.MaxInt32)
	return err
}
