//go:build linux

// Package ofdlock takes, releases and tests open-file-description (OFD)
// byte-range locks, fcntl(F_OFD_SETLK / F_OFD_GETLK).
//
// An OFD lock belongs to the open file description, not to the process: two
// descriptors opened separately in one process conflict with each other, and
// the kernel drops a lock when the last descriptor of its description is
// closed, which happens when the owning process dies however it dies. That
// makes a held lock a liveness signal that needs no timers.
package ofdlock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrLocked reports that another open file description holds a conflicting lock.
var ErrLocked = errors.New("ofdlock: byte is locked by another open file description")

func flock(typ int16, offset int64) unix.Flock_t {
	return unix.Flock_t{Type: typ, Whence: 0, Start: offset, Len: 1}
}

// TryLock takes an exclusive lock on the byte at offset through fd without
// blocking. It returns ErrLocked if someone else holds it. Locking a byte
// already locked through the same description succeeds.
func TryLock(f *os.File, offset int64) error {
	lk := flock(unix.F_WRLCK, offset)
	err := fcntlLock(f, unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return ErrLocked
	}
	if err != nil {
		return fmt.Errorf("ofdlock: lock byte %d: %w", offset, err)
	}
	return nil
}

// Unlock releases this description's lock on the byte at offset.
func Unlock(f *os.File, offset int64) error {
	lk := flock(unix.F_UNLCK, offset)
	if err := fcntlLock(f, unix.F_OFD_SETLK, &lk); err != nil {
		return fmt.Errorf("ofdlock: unlock byte %d: %w", offset, err)
	}
	return nil
}

// Held reports whether a description other than f's holds a lock on the
// byte at offset. It works on a read-only descriptor.
func Held(f *os.File, offset int64) (bool, error) {
	lk := flock(unix.F_WRLCK, offset)
	if err := fcntlLock(f, unix.F_OFD_GETLK, &lk); err != nil {
		return false, fmt.Errorf("ofdlock: test byte %d: %w", offset, err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

func fcntlLock(f *os.File, cmd int, lk *unix.Flock_t) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := raw.Control(func(fd uintptr) {
		for {
			opErr = unix.FcntlFlock(fd, cmd, lk)
			if !errors.Is(opErr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	return opErr
}
