package shm

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/podipc/podipc/internal/regularfile"
	"golang.org/x/sys/unix"
)

// Control is a supervisor's handle on a channel file: it reads the
// channel's statistics and recovers its dead peers, and nothing else. It
// maps only the header and the peer table (the first slotsOffset bytes of
// the file: 12 KiB with the default 64 peers, whatever the ring's size), so
// a process that supervises many large channels, like the podipc sidecar,
// keeps none of their rings in its address space. Recovering a dead
// Queue-mode peer needs the slots' state words: ReapDeadPeers maps the ring
// for the length of that recovery only.
//
// A Control never registers as a peer. It is safe for concurrent use.
type Control struct {
	ch *Channel // maps the header and peer table only; ch.slots is nil
}

// OpenControl opens the existing channel file at path for supervision. The
// header is validated as by Open.
func OpenControl(path string, copts ...ChannelOption) (*Control, error) {
	k, err := openControl(path, os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE, newChannelConfig(copts))
	if err != nil {
		return nil, fmt.Errorf("shm: open %s: %w", path, err)
	}
	return k, nil
}

// openControl opens the file at path with flag, validates its header and
// maps its header and peer table with prot.
func openControl(path string, flag, prot int, cfg channelConfig) (*Control, error) {
	f, err := regularfile.Open(path, flag, 0)
	if err != nil {
		return nil, err
	}
	g, err := readGeometry(f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	k, err := mapControl(path, f, g, cfg, prot)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return k, nil
}

// CreateControl creates a channel file exactly as Create does (allocated
// up front, initialised, published atomically; a *NoSpaceError when it
// does not fit) and returns a Control on it instead of a Channel: the ring
// is mapped only while it is initialised. Its blocks stay allocated, and
// charged to the creating process's memory cgroup, after it is unmapped.
func CreateControl(path string, opts Options, copts ...ChannelOption) (*Control, error) {
	cfg := newChannelConfig(copts)
	c, err := create(path, opts, cfg, 0)
	if err != nil {
		return nil, err
	}
	f, g := c.file, c.geo
	if err := c.unmap(); err != nil {
		_ = f.Close()
		return nil, err
	}
	k, err := mapControl(path, f, g, cfg, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("shm: create %s: %w", path, err)
	}
	return k, nil
}

// mapControl maps the header and peer table of the channel file f. The
// returned Control owns f.
func mapControl(path string, f *os.File, g geometry, cfg channelConfig, prot int) (*Control, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, int(g.slotsOffset), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap header and peer table: %w", err)
	}
	return &Control{ch: newChannel(path, f, mem, g, cfg)}, nil
}

// Path returns the channel file's path.
func (k *Control) Path() string { return k.ch.Path() }

// Options returns the options the channel was created with.
func (k *Control) Options() Options { return k.ch.Options() }

// Stats reads the channel's counters and peers, like Channel.Stats. It
// fails with ErrTruncated, instead of faulting, if the file was truncated.
func (k *Control) Stats() (Stats, error) {
	var st Stats
	err := k.guard(func() error {
		st = k.ch.Stats()
		return nil
	})
	return st, err
}

// ReapDeadPeers recovers every registered peer whose process is gone, like
// Channel.ReapDeadPeers. In Queue mode the ring is mapped while a dead
// peer's slots are recovered, and only then. It fails with ErrTruncated,
// instead of faulting, if the file was truncated.
func (k *Control) ReapDeadPeers() (int, error) {
	var n int
	err := k.guard(func() (err error) {
		n, err = k.ch.ReapDeadPeers()
		return err
	})
	return n, err
}

// guard runs f, which reads or writes the mapped file, so that a file
// truncated under the mapping (by any process that can write it) costs the
// supervisor an error rather than a SIGBUS that kills it: it checks the
// file's size first, and turns a fault during f (a truncation racing the
// check) into ErrTruncated. f must release what it holds with defer, as
// the recovery of dead peers does.
func (k *Control) guard(f func() error) error {
	if err := k.checkSize(); err != nil {
		return err
	}
	return k.faultsAsErrors(f)
}

// faultsAsErrors runs f, turning a memory fault into ErrTruncated.
func (k *Control) faultsAsErrors(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if fault, ok := r.(interface{ Addr() uintptr }); ok {
			err = fmt.Errorf("shm: %s: %w under the mapping (fault at %#x)", k.ch.Path(), ErrTruncated, fault.Addr())
			return
		}
		panic(r)
	}()
	return f()
}

// checkSize fails with ErrTruncated if the file is shorter than its header
// said when it was opened.
func (k *Control) checkSize() error {
	var st unix.Stat_t
	if err := unix.Fstat(int(k.ch.file.Fd()), &st); err != nil {
		return fmt.Errorf("shm: %s: stat: %w", k.ch.Path(), err)
	}
	if uint64(st.Size) < k.ch.geo.fileSize {
		return fmt.Errorf("shm: %s: %w: %d bytes, the channel needs %d", k.ch.Path(), ErrTruncated, st.Size, k.ch.geo.fileSize)
	}
	return nil
}

// Close unmaps the header and closes the file. The file stays.
func (k *Control) Close() error { return k.ch.Close() }
