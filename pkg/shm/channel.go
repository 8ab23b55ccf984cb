package shm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/futex"
	"github.com/podipc/podipc/internal/regularfile"
	"github.com/podipc/podipc/pkg/podcontract"
)

// Channel is one process's handle on a channel file. It is safe for
// concurrent use; the producers, consumers and subscribers made from it are
// each for one goroutine at a time.
type Channel struct {
	path string
	file *os.File // O_RDWR; its description takes peer locks during recovery
	mem  []byte
	geo  geometry
	mask uint64
	log  *slog.Logger

	base  unsafe.Pointer
	slots unsafe.Pointer // nil when only the header and peer table are mapped (Control)

	tail, head                     *uint64
	dataSig, dataWaiters           *uint32
	spaceSig, spaceWaiters         *uint32
	redeliverGen, redeliverScanned *uint64
	peerHighWater, subscriberEpoch *uint32
	recoverMu                      sync.Mutex // one recovery at a time through file's description
	mu                             sync.Mutex // guards peers and closed
	peers                          map[*peer]struct{}
	closed                         bool
	mapMu                          sync.RWMutex // held for writing to unmap, for reading by asynchronous wake-ups
	mapped                         bool
}

// Create makes a new channel file at path, sized and initialised for opts,
// and opens it. The file appears at path only once fully initialised (it is
// built under a temporary name in the same directory and hard-linked into
// place), so a concurrent Open never sees a half-written header. Create
// fails with ErrExists if path exists, and with a *NoSpaceError (errors.Is
// ErrNoSpace) saying how many bytes the channel needs if its file system
// cannot hold it: every block of the file is allocated before it is mapped,
// so a full tmpfs is an error here, never a SIGBUS in a process using the
// channel later. Nothing is left behind by a failed Create. Put channels on
// a tmpfs (/dev/shm or a memory-backed emptyDir): on a disk file system the
// kernel would write the ring back to disk.
func Create(path string, opts Options, copts ...ChannelOption) (*Channel, error) {
	return create(path, opts, newChannelConfig(copts), unix.MAP_POPULATE)
}

// create is Create with the extra mmap flags of the returned handle's
// mapping.
func create(path string, opts Options, cfg channelConfig, mapFlags int) (*Channel, error) {
	opts = opts.withDefaults()
	if field, err := opts.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidOptions, field, err)
	}
	g := computeGeometry(opts)
	g.created = time.Now().UnixNano()

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".creating-*")
	if err != nil {
		return nil, fmt.Errorf("shm: create %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() { _ = os.Remove(tmpName) }() // the linked name keeps the inode
	fail := func(err error) (*Channel, error) {
		_ = tmp.Close()
		return nil, fmt.Errorf("shm: create %s: %w", path, err)
	}
	if err := tmp.Chmod(cfg.perm); err != nil {
		return fail(err)
	}
	if err := allocate(tmp, int64(g.fileSize)); err != nil {
		if isNoSpace(err) {
			// Free the partial file first, so the error says what the
			// file system really has.
			_ = tmp.Close()
			_ = os.Remove(tmpName)
			return nil, noSpaceError(path, dir, int64(g.fileSize), err)
		}
		return fail(err)
	}
	mem, err := unix.Mmap(int(tmp.Fd()), 0, int(g.fileSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|mapFlags)
	if err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	c := newChannel(path, tmp, mem, g, cfg)
	c.initialise()
	if err := unix.Link(tmpName, path); err != nil {
		_ = c.unmap()
		if errors.Is(err, unix.EEXIST) {
			return fail(ErrExists)
		}
		return fail(fmt.Errorf("publish: %w", err))
	}
	return c, nil
}

// Open opens an existing channel file for sending and receiving. The header
// is validated before anything is mapped: a file that is not a channel, has
// another layout version, is truncated or whose header is inconsistent
// yields a *HeaderError matching ErrNotChannel, ErrVersion, ErrTruncated or
// ErrCorrupt.
func Open(path string, copts ...ChannelOption) (*Channel, error) {
	f, err := regularfile.Open(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: open %s: %w", path, err)
	}
	g, err := readGeometry(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("shm: open %s: %w", path, err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(g.fileSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("shm: open %s: mmap: %w", path, err)
	}
	return newChannel(path, f, mem, g, newChannelConfig(copts)), nil
}

// readGeometry reads and validates the header of f without mapping it.
func readGeometry(f *os.File) (geometry, error) {
	st, err := f.Stat()
	if err != nil {
		return geometry{}, err
	}
	buf := make([]byte, lineSize)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return geometry{}, err
	}
	return decodeConfig(buf[:n], st.Size())
}

func newChannelConfig(copts []ChannelOption) channelConfig {
	cfg := channelConfig{logger: slog.Default(), perm: podcontract.DefaultFileMode}
	for _, o := range copts {
		o(&cfg)
	}
	return cfg
}

func newChannel(path string, f *os.File, mem []byte, g geometry, cfg channelConfig) *Channel {
	c := &Channel{
		path:  path,
		file:  f,
		mem:   mem,
		geo:   g,
		mask:  uint64(g.slotCount) - 1,
		log:   cfg.logger.With("channel", path),
		base:  unsafe.Pointer(&mem[0]),
		peers: make(map[*peer]struct{}),
	}
	if uint64(len(mem)) == g.fileSize { // a Control maps no ring: slots stays nil
		c.slots = unsafe.Add(c.base, g.slotsOffset)
	}
	c.tail = c.u64(offTail)
	c.head = c.u64(offHead)
	c.dataSig, c.dataWaiters = c.u32(offData), c.u32(offData+4)
	c.spaceSig, c.spaceWaiters = c.u32(offSpace), c.u32(offSpace+4)
	c.redeliverGen = c.u64(offControl + ctlRedeliverGen)
	c.redeliverScanned = c.u64(offControl + ctlRedeliverScanned)
	c.peerHighWater = c.u32(offControl + ctlPeerHighWater)
	c.subscriberEpoch = c.u32(offControl + ctlSubscriberEpoch)
	c.mapped = true
	return c
}

func (c *Channel) initialise() {
	encodeConfig(c.mem[offConfig:offConfig+lineSize], c.geo)
	if c.geo.mode == ModeQueue {
		for i := uint64(0); i < uint64(c.geo.slotCount); i++ {
			atomic.StoreUint64(c.slotWord(c.slot(i)), packSlot(i, stFree, 0))
		}
	}
}

func (c *Channel) u64(off uintptr) *uint64 { return (*uint64)(unsafe.Add(c.base, off)) }
func (c *Channel) u32(off uintptr) *uint32 { return (*uint32)(unsafe.Add(c.base, off)) }

// slot returns the address of the slot that holds position pos.
func (c *Channel) slot(pos uint64) unsafe.Pointer {
	return unsafe.Add(c.slots, (pos&c.mask)*uint64(c.geo.slotStride))
}

func (c *Channel) slotWord(s unsafe.Pointer) *uint64 { return (*uint64)(s) }
func (c *Channel) slotLen(s unsafe.Pointer) *uint32  { return (*uint32)(unsafe.Add(s, slotLenOff)) }
func (c *Channel) payload(s unsafe.Pointer) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(s, slotHeaderSize)), c.geo.slotSize)
}

// Path returns the channel file's path.
func (c *Channel) Path() string { return c.path }

// Options returns the options the channel was created with.
func (c *Channel) Options() Options {
	return Options{
		Mode:      c.geo.mode,
		SlotSize:  int(c.geo.slotSize),
		SlotCount: int(c.geo.slotCount),
		Overflow:  c.geo.overflow,
		MaxPeers:  int(c.geo.maxPeers),
	}
}

// Close closes every producer, consumer and subscriber made from c (their
// borrowed messages are handed back for redelivery, their reservations
// aborted), then unmaps the file. Peers must not be in use concurrently.
// The file stays; remove it with os.Remove once nobody needs it.
func (c *Channel) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	peers := make([]*peer, 0, len(c.peers))
	for p := range c.peers {
		peers = append(peers, p)
	}
	c.mu.Unlock()
	var errs []error
	for _, p := range peers {
		if err := p.owner.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.unmap(), c.file.Close())
	return errors.Join(errs...)
}

func (c *Channel) unmap() error {
	c.mapMu.Lock()
	defer c.mapMu.Unlock()
	if !c.mapped {
		return nil
	}
	c.mapped = false
	if err := unix.Munmap(c.mem); err != nil {
		return fmt.Errorf("shm: munmap %s: %w", c.path, err)
	}
	return nil
}

// wakeIfMapped bumps and wakes sig unless the channel has been unmapped.
// Context cancellation callbacks run asynchronously and may outlive the
// mapping; they go through here.
func (c *Channel) wakeIfMapped(sig *uint32) {
	c.mapMu.RLock()
	defer c.mapMu.RUnlock()
	if c.mapped {
		_ = futex.Signal(sig)
	}
}

// signal wakes the waiters on sig if its waiter count says someone sleeps.
// This is the only syscall on the data path, and only when a peer sleeps.
func (c *Channel) signal(sig, waiters *uint32) {
	if atomic.LoadUint32(waiters) != 0 {
		_ = futex.Signal(sig)
	}
}
