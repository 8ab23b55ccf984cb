package reconcile

import (
	"errors"
	"fmt"
	"os"

	"github.com/podipc/podipc/internal/regularfile"
	"golang.org/x/sys/unix"
)

// fileInUse reports whether any process holds an OFD lock on any byte of the
// file at path: every registered peer of a channel holds one on its entry of
// the peer table for as long as it lives. It needs no valid header, so it
// also tells whether an unusable file is held by someone. It never blocks
// and follows no link: what is not a regular file is held by nobody.
func fileInUse(path string) (bool, error) {
	f, err := regularfile.Open(path, os.O_RDONLY, 0)
	if errors.Is(err, regularfile.ErrNotRegular) {
		return false, nil // nobody can have mapped it as a channel
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	var opErr error
	if err := raw.Control(func(fd uintptr) {
		for {
			opErr = unix.FcntlFlock(fd, unix.F_OFD_GETLK, &lk)
			if !errors.Is(opErr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return false, err
	}
	if opErr != nil {
		return false, fmt.Errorf("test locks on %s: %w", path, opErr)
	}
	return lk.Type != unix.F_UNLCK, nil
}
