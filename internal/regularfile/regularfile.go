// Package regularfile opens files on the pod's shared tmpfs, where any
// container of the pod may have put something else: a symbolic link, a
// FIFO, a device or a directory. Open follows no symbolic link in the last
// component, never blocks (a FIFO would block a plain open until a writer
// comes), and returns only regular files.
package regularfile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotRegular: the path names something other than a regular file.
var ErrNotRegular = errors.New("not a regular file")

// Open opens the regular file at path with flag (os.O_RDONLY, os.O_RDWR,
// os.O_WRONLY, optionally os.O_CREATE with perm). A symbolic link, FIFO,
// socket, device or directory at path is refused with an error matching
// ErrNotRegular, without blocking and without following the link.
func Open(path string, flag int, perm os.FileMode) (*os.File, error) {
	fd, err := unix.Open(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, uint32(perm.Perm()))
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: a symbolic link", ErrNotRegular)}
	case errors.Is(err, unix.ENXIO):
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: a socket or an unattached device", ErrNotRegular)}
	case errors.Is(err, unix.EISDIR):
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: a directory", ErrNotRegular)}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: %s", ErrNotRegular, kind(st.Mode))}
	}
	// O_NONBLOCK means nothing for a regular file's reads and writes; clear
	// it so that the file behaves as any other.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, 0); err != nil {
		_ = unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadFile reads the regular file at path, as os.ReadFile does for any
// file: a link to /dev/zero or a FIFO is refused instead of read forever
// or waited on.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFDIR:
		return "a directory"
	}
	return fmt.Sprintf("file type %#o", mode&unix.S_IFMT)
}
