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

// ErrNotPrivate: a file or directory that another user could have written:
// it is owned by another user than the process's, or writable by its group
// or by others.
var ErrNotPrivate = errors.New("not private to this user")

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

// OpenPrivate opens the regular file at path as Open does, and refuses it
// with an error matching ErrNotPrivate unless it is owned by the process's
// effective user and writable by neither its group nor others: what only
// this user can have written. The check is made on the opened file, so that
// what is checked is what is read.
func OpenPrivate(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := Open(path, flag, perm)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := private(&st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return f, nil
}

// CheckPrivateDir reports, as an error matching ErrNotRegular or
// ErrNotPrivate, why path is not a directory that only the process's
// effective user can write: a symbolic link (not followed), something other
// than a directory, another user's directory, or one its group or others
// can write.
func CheckPrivateDir(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		what := kind(st.Mode)
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			what = "a symbolic link"
		} else if st.Mode&unix.S_IFMT == unix.S_IFREG {
			what = "a regular file"
		}
		return &os.PathError{Op: "lstat", Path: path, Err: fmt.Errorf("%w: not a directory but %s", ErrNotRegular, what)}
	}
	if err := private(&st); err != nil {
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return nil
}

func private(st *unix.Stat_t) error {
	if uid := uint32(os.Geteuid()); st.Uid != uid {
		return fmt.Errorf("%w: owned by uid %d, not %d", ErrNotPrivate, st.Uid, uid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%w: mode %#o is writable by group or others", ErrNotPrivate, st.Mode&0o7777)
	}
	return nil
}

// ReadFile reads the regular file at path, as os.ReadFile does for any
// file: a link to /dev/zero or a FIFO is refused instead of read forever
// or waited on.
func ReadFile(path string) ([]byte, error) {
	return readAll(Open(path, os.O_RDONLY, 0))
}

// ReadPrivateFile reads the regular file at path as ReadFile does if only
// the process's user can have written it (see OpenPrivate).
func ReadPrivateFile(path string) ([]byte, error) {
	return readAll(OpenPrivate(path, os.O_RDONLY, 0))
}

func readAll(f *os.File, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer f.Close()
	path := f.Name()
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
