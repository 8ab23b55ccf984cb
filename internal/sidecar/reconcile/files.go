package reconcile

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/pkg/shm"
)

// ErrNoSpace is matched by the errors of a channel that does not fit in the
// tmpfs.
var ErrNoSpace = errors.New("not enough space on the tmpfs")

// NoSpaceError says how much a channel needs and how much the tmpfs has.
type NoSpaceError struct {
	Channel string
	Need    int64
	Free    int64
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("channel %s needs %d bytes, tmpfs has %d free", e.Channel, e.Need, e.Free)
}

// Is makes errors.Is(err, ErrNoSpace) true.
func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }

// checkSpace fails with a *NoSpaceError if the file system of dir has less
// than need bytes available. need is the channel's budget
// (v1alpha1.SharedMemorySettings.RingFileBytes), an upper bound of the file
// shm.Create makes, so a channel that passes cannot run out of space while
// its pages are faulted in, unless something else fills the tmpfs meanwhile.
func checkSpace(dir, channel string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free < need {
		return &NoSpaceError{Channel: channel, Need: need, Free: free}
	}
	return nil
}

// createChannel is shm.Create with the memory faults of a tmpfs running out of
// space turned into an error. shm.Create faults every page in (MAP_POPULATE,
// then writes the slot headers) so that the memory is charged to the sidecar;
// when the tmpfs fills up meanwhile, a write to an unbacked page raises
// SIGBUS, which would otherwise kill the sidecar. The half-made channel's
// mapping is leaked in that case; the temporary file is unlinked by
// shm.Create's own cleanup.
func createChannel(path string, opts shm.Options, copts ...shm.ChannelOption) (ch *shm.Channel, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if fault, ok := p.(interface{ Addr() uintptr }); ok {
			ch, err = nil, fmt.Errorf("%w: memory fault at %#x while faulting in %s", ErrNoSpace, fault.Addr(), path)
			return
		}
		panic(p)
	}()
	return shm.Create(path, opts, copts...)
}

// fileInUse reports whether any process holds an OFD lock on any byte of the
// file at path: every registered peer of a channel holds one on its entry of
// the peer table for as long as it lives. It needs no valid header, so it
// also tells whether an unusable file is held by someone.
func fileInUse(path string) (bool, error) {
	f, err := os.Open(path)
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
