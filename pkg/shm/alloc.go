package shm

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Allocation granularity. tmpfs undoes an interrupted fallocate(2) whole, so
// a large file is allocated in chunks and a signal costs one chunk, not the
// file. The zero-writing fallback writes from a buffer of zeroChunk bytes.
const (
	fallocateChunk = 64 << 20
	zeroChunk      = 1 << 20
)

// allocate makes f size bytes long with every block allocated, so that no
// store through a mapping of it can fault for want of space (on a full
// tmpfs such a store raises SIGBUS). It uses fallocate(2) and, on a file
// system without it, writes zeros. Running out of space fails with an error
// matching ENOSPC or EDQUOT (see isNoSpace).
func allocate(f *os.File, size int64) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		n := min(fallocateChunk, size-off)
		err := unix.Fallocate(fd, 0, off, n)
		switch {
		case err == nil:
			off += n
		case errors.Is(err, unix.EINTR):
			// Interrupted: nothing of this chunk is kept; try it again.
		case errors.Is(err, unix.EOPNOTSUPP):
			return writeZeros(f, off, size)
		default:
			return fmt.Errorf("fallocate %d bytes at %d: %w", n, off, err)
		}
	}
	return nil
}

// writeZeros writes zeros to f from offset from up to size: the portable
// way of allocating blocks, for file systems that have no fallocate.
func writeZeros(f *os.File, from, size int64) error {
	zeros := make([]byte, min(zeroChunk, size-from))
	for off := from; off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("write zeros to allocate %d bytes: %w", size, err)
		}
		off += n
	}
	return nil
}

// isNoSpace reports whether err is the file system running out of blocks
// (ENOSPC) or the caller out of quota (EDQUOT).
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// noSpaceError describes a channel file of need bytes that did not fit in
// dir's file system. Call it after the partial file is gone, so that Free
// is what the file system really has.
func noSpaceError(path, dir string, need int64, err error) *NoSpaceError {
	e := &NoSpaceError{Path: path, Need: need, Free: -1, Err: err}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		e.Free = int64(st.Bavail) * st.Bsize
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		e.Err = errno // the bare errno: the path and call add nothing to the message
	}
	return e
}
