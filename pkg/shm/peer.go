package shm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/cpuhint"
	"github.com/podipc/podipc/internal/futex"
	"github.com/podipc/podipc/internal/ofdlock"
)

// Role is what a registered peer does on a channel.
type Role uint32

const (
	RoleProducer   Role = 1
	RoleConsumer   Role = 2
	RoleSubscriber Role = 3
)

func (r Role) String() string {
	switch r {
	case RoleProducer:
		return "producer"
	case RoleConsumer:
		return "consumer"
	case RoleSubscriber:
		return "subscriber"
	}
	return fmt.Sprintf("Role(%d)", uint32(r))
}

// noOwner marks "nobody in particular" in blocking results.
const noOwner = ^uint32(0)

// peer is one registration in the peer table: an entry, the lock byte that
// proves it alive, and the descriptor that holds the lock.
type peer struct {
	ch    *Channel
	idx   uint32
	role  Role
	lock  *os.File // a description of its own: the kernel drops its locks when the process dies
	entry unsafe.Pointer
	cfg   peerConfig
	owner io.Closer // the public Producer, Consumer or Subscriber, closed by Channel.Close

	sent, received, lost, redelivered, abandoned *uint64

	// wakeDone is the Done channel of the last context a sleep of this
	// peer registered a cancellation wake-up for. Callers usually pass the
	// same long-lived context on every call, so the registration is kept
	// and reused rather than made and dropped per sleep.
	wakeDone <-chan struct{}
	wakeStop func() bool
}

// armWake makes sure cancellation of ctx wakes the futex word sig.
func (p *peer) armWake(ctx context.Context, sig *uint32) {
	done := ctx.Done()
	if done == nil || done == p.wakeDone {
		return
	}
	p.disarmWake()
	p.wakeDone = done
	p.wakeStop = context.AfterFunc(ctx, func() { p.ch.wakeIfMapped(sig) })
}

func (p *peer) disarmWake() {
	if p.wakeStop != nil {
		p.wakeStop()
	}
	p.wakeDone, p.wakeStop = nil, nil
}

func (c *Channel) peerEntry(i uint32) unsafe.Pointer {
	return unsafe.Add(c.base, c.geo.peersOffset+uint64(i)*peerBytes)
}

func (c *Channel) peerLockOffset(i uint32) int64 {
	return int64(c.geo.peersOffset + uint64(i)*peerBytes)
}

func entryU32(e unsafe.Pointer, off uintptr) *uint32 { return (*uint32)(unsafe.Add(e, off)) }
func entryU64(e unsafe.Pointer, off uintptr) *uint64 { return (*uint64)(unsafe.Add(e, off)) }

// reopen returns a new open file description of the channel's inode (not
// of whatever file is at the path now).
func (c *Channel) reopen() (*os.File, error) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", c.file.Fd()), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen channel file for a peer lock: %w", err)
	}
	return f, nil
}

// register claims a free peer entry for role: it takes the entry's lock
// byte through a fresh description (the kernel arbitrates between
// registrants), recovers whatever a dead previous holder left behind, then
// publishes the entry.
func (c *Channel) register(p *peer, role Role, opts []PeerOption, owner io.Closer) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	cfg := defaultPeerConfig()
	for _, o := range opts {
		o(&cfg)
	}
	lock, err := c.reopen()
	if err != nil {
		return fmt.Errorf("shm: register %v: %w", role, err)
	}
	if role == RoleProducer && c.geo.mode == ModeBroadcast {
		if err := ofdlock.TryLock(lock, offControl+ctlProducerLock); err != nil {
			_ = lock.Close()
			if errors.Is(err, ofdlock.ErrLocked) {
				return ErrProducerExists
			}
			return fmt.Errorf("shm: register %v: %w", role, err)
		}
	}
	for i := uint32(0); i < c.geo.maxPeers; i++ {
		err := ofdlock.TryLock(lock, c.peerLockOffset(i))
		if errors.Is(err, ofdlock.ErrLocked) {
			continue
		}
		if err != nil {
			_ = lock.Close()
			return fmt.Errorf("shm: register %v: %w", role, err)
		}
		*p = peer{ch: c, idx: i, role: role, lock: lock, entry: c.peerEntry(i), cfg: cfg, owner: owner}
		if atomic.LoadUint32(entryU32(p.entry, peerState)) != peerFree {
			if err := c.recoverLocked(i, "registration found a dead peer's entry"); err != nil {
				_ = lock.Close()
				return fmt.Errorf("shm: register %v: %w", role, err)
			}
		}
		p.publish()
		c.mu.Lock()
		c.peers[p] = struct{}{}
		c.mu.Unlock()
		return nil
	}
	_ = lock.Close()
	return ErrPeerTableFull
}

func (p *peer) publish() {
	e := p.entry
	p.sent = entryU64(e, peerSent)
	p.received = entryU64(e, peerReceived)
	p.lost = entryU64(e, peerLost)
	p.redelivered = entryU64(e, peerRedelivered)
	p.abandoned = entryU64(e, peerAbandoned)
	for _, ctr := range []*uint64{p.sent, p.received, p.lost, p.redelivered, p.abandoned} {
		atomic.StoreUint64(ctr, 0)
	}
	atomic.StoreUint32(entryU32(e, peerRole), uint32(p.role))
	atomic.StoreUint32(entryU32(e, peerPID), uint32(os.Getpid()))
	atomic.AddUint32(entryU32(e, peerGeneration), 1)
	atomic.StoreUint64(entryU64(e, peerStarted), uint64(time.Now().UnixNano()))
	atomic.StoreUint64(entryU64(e, peerCursor), atomic.LoadUint64(p.ch.tail))
	atomic.StoreUint32(entryU32(e, peerState), peerActive)
	for {
		hw := atomic.LoadUint32(p.ch.peerHighWater)
		if hw > p.idx || atomic.CompareAndSwapUint32(p.ch.peerHighWater, hw, p.idx+1) {
			return
		}
	}
}

// unregister folds the entry's counters into the retired totals, frees the
// entry and drops the lock.
func (p *peer) unregister() error {
	c := p.ch
	p.disarmWake()
	c.retire(p.idx)
	c.mu.Lock()
	delete(c.peers, p)
	c.mu.Unlock()
	if err := p.lock.Close(); err != nil {
		return fmt.Errorf("shm: unregister %v %d: %w", p.role, p.idx, err)
	}
	return nil
}

// retire folds entry i's counters into the header totals and frees the
// entry. A reader summing both may count a retiring peer twice for an
// instant; the totals never go backwards.
func (c *Channel) retire(i uint32) {
	e := c.peerEntry(i)
	pairs := [...]struct{ from, to uintptr }{
		{peerSent, retSent}, {peerReceived, retReceived}, {peerLost, retLost},
		{peerRedelivered, retRedelivered}, {peerAbandoned, retAbandoned},
	}
	for _, pr := range pairs {
		if v := atomic.LoadUint64(entryU64(e, pr.from)); v != 0 {
			atomic.AddUint64(c.u64(offRetired+pr.to), v)
		}
	}
	atomic.StoreUint32(entryU32(e, peerState), peerFree)
	for _, pr := range pairs {
		atomic.StoreUint64(entryU64(e, pr.from), 0)
	}
	if c.geo.mode == ModeBroadcast {
		// A departed subscriber may be what a blocked producer waits for.
		c.signal(c.spaceSig, c.spaceWaiters)
	}
}

// recoverPeer recovers peer i if it is dead: it takes i's lock byte itself,
// which succeeds only if no live description holds it and keeps anyone from
// registering as i meanwhile. It reports whether it recovered an entry.
func (c *Channel) recoverPeer(i uint32, why string) (bool, error) {
	if i >= c.geo.maxPeers {
		return false, corruptf("peer index %d beyond peer table of %d", i, c.geo.maxPeers)
	}
	c.recoverMu.Lock()
	defer c.recoverMu.Unlock()
	off := c.peerLockOffset(i)
	if err := ofdlock.TryLock(c.file, off); err != nil {
		if errors.Is(err, ofdlock.ErrLocked) {
			return false, nil
		}
		return false, fmt.Errorf("shm: recover peer %d: %w", i, err)
	}
	defer func() { _ = ofdlock.Unlock(c.file, off) }()
	if atomic.LoadUint32(entryU32(c.peerEntry(i), peerState)) == peerFree {
		return false, nil
	}
	if err := c.recoverLocked(i, why); err != nil {
		return false, err
	}
	return true, nil
}

// recoverLocked undoes what dead peer i left in the ring. The caller holds
// i's lock byte. It is idempotent, so a recoverer that dies halfway leaves a
// state the next recoverer finishes:
//   - (p, WRITING, i)  -> (p, ABANDONED, i): never committed, consumers skip it;
//   - (p, READING, i)  -> (p, REDELIVER, i): delivered again to another consumer;
//   - any REDELIVER slot of i bumps redeliverGen so consumers scan for it.
//
// A handle without the ring mapped (a Control) maps it for the scan only.
func (c *Channel) recoverLocked(i uint32, why string) error {
	e := c.peerEntry(i)
	role := Role(atomic.LoadUint32(entryU32(e, peerRole)))
	pid := atomic.LoadUint32(entryU32(e, peerPID))
	var abandoned, redeliver uint64
	if c.geo.mode == ModeQueue {
		slots, unmapRing, err := c.ringForRecovery()
		if err != nil {
			return fmt.Errorf("shm: recover peer %d: %w", i, err)
		}
		defer unmapRing()
		for s := uint64(0); s < uint64(c.geo.slotCount); s++ {
			word := c.slotWord(unsafe.Add(slots, s*uint64(c.geo.slotStride)))
			for {
				w := atomic.LoadUint64(word)
				if slotOwner(w) != i {
					break
				}
				st := slotState(w)
				var next uint32
				switch st {
				case stWriting:
					next = stAbandoned
				case stReading:
					next = stRedeliver
				case stRedeliver:
					redeliver++
				}
				if next == 0 {
					break
				}
				if atomic.CompareAndSwapUint64(word, w, w&^(stateMask<<stateShift)|uint64(next)<<stateShift) {
					if next == stAbandoned {
						abandoned++
					} else {
						redeliver++
					}
					break
				}
			}
		}
		if abandoned > 0 {
			atomic.AddUint64(c.u64(offRetired+retAbandoned), abandoned)
		}
		if redeliver > 0 {
			atomic.AddUint64(c.redeliverGen, 1)
		}
	}
	c.retire(i)
	atomic.AddUint64(c.u64(offRetired+retReaped), 1)
	c.signal(c.dataSig, c.dataWaiters)
	c.signal(c.spaceSig, c.spaceWaiters)
	c.log.Info("recovered dead peer", "peer", i, "role", role, "pid", pid, "reason", why,
		"abandonedSlots", abandoned, "redeliverSlots", redeliver)
	return nil
}

// ringForRecovery returns the address of slot 0 and a function to call when
// done with it. A handle that maps the whole file returns its own mapping;
// one that maps only the header and peer table (a Control) maps the ring
// until the function is called, so a supervisor holds the ring's pages in
// its address space only while it recovers a dead peer.
func (c *Channel) ringForRecovery() (unsafe.Pointer, func(), error) {
	if c.slots != nil {
		return c.slots, func() {}, nil
	}
	// slotsOffset is a multiple of 4096, not necessarily of the system's
	// page size (64 KiB on some arm64 kernels): map from the page it is in.
	start := c.geo.slotsOffset &^ uint64(os.Getpagesize()-1)
	mem, err := unix.Mmap(int(c.file.Fd()), int64(start), int(c.geo.fileSize-start), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map the ring: %w", err)
	}
	return unsafe.Add(unsafe.Pointer(&mem[0]), c.geo.slotsOffset-start), func() { _ = unix.Munmap(mem) }, nil
}

// ReapDeadPeers recovers every registered peer whose process is gone: their
// uncommitted slots are skipped, their borrowed messages redelivered, their
// entries freed. Blocked peers do this on their own for the peer in their
// way; a supervisor (the sidecar) calls ReapDeadPeers periodically so that a
// message a dead consumer held is redelivered even when nobody is blocked.
// It returns how many peers it recovered.
func (c *Channel) ReapDeadPeers() (int, error) {
	n := 0
	hw := min(atomic.LoadUint32(c.peerHighWater), c.geo.maxPeers)
	for i := uint32(0); i < hw; i++ {
		if atomic.LoadUint32(entryU32(c.peerEntry(i), peerState)) == peerFree {
			continue
		}
		ok, err := c.recoverPeer(i, "reaper")
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// waitSet names the futex word and waiter count a blocked call sleeps on.
type waitSet struct{ sig, waiters *uint32 }

func (c *Channel) dataWait() waitSet  { return waitSet{c.dataSig, c.dataWaiters} }
func (c *Channel) spaceWait() waitSet { return waitSet{c.spaceSig, c.spaceWaiters} }

// attemptFunc is one non-blocking try of a blocking operation: done when it
// made progress, otherwise owner names the peer whose slot is in the way
// (noOwner if none: a plainly empty or full ring).
type attemptFunc func() (done bool, owner uint32, err error)

// await repeats try until it is done, fails, or ctx ends, waiting between
// attempts per the peer's strategy. Sleeping is the Dekker handshake of
// docs/shm-layout.md: read the signal word, count ourselves as a waiter,
// re-check, and only then futex-wait on the value read. While the slot in
// the way is owned by a peer, sleeps are bounded by the liveness check
// interval and the owner is recovered if its lock turns out free.
// spinYieldEvery is how often a spinning wait lets other goroutines run.
const spinYieldEvery = 100 * time.Microsecond

func (p *peer) await(ctx context.Context, ws waitSet, try attemptFunc) error {
	done, _, err := try()
	if done || err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var owner uint32
	start := time.Now()
	lastCheck, lastYield := start, start
	if p.cfg.wait != WaitBlock {
		for i := 1; ; i++ {
			done, owner, err = try()
			if done || err != nil {
				return err
			}
			cpuhint.Relax()
			if i%64 != 0 {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			now := time.Now()
			if owner != noOwner && now.Sub(lastCheck) >= p.cfg.liveCheck {
				lastCheck = now
				if _, err := p.ch.recoverPeer(owner, "blocked waiter found it dead"); err != nil {
					return err
				}
			}
			if p.cfg.wait == WaitHybrid && now.Sub(start) >= p.cfg.spinFor {
				break
			}
			// Let the process's other goroutines run now and then, not on
			// every check: a yield costs far more than a try (on a
			// goroutine locked to its thread, a thread hand-off through
			// the kernel), and a spinning peer's message is usually a
			// few tries away.
			if now.Sub(lastYield) >= spinYieldEvery {
				lastYield = now
				runtime.Gosched()
			}
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		seen := atomic.LoadUint32(ws.sig)
		atomic.AddUint32(ws.waiters, 1)
		done, owner, err = try()
		if done || err != nil {
			atomic.AddUint32(ws.waiters, ^uint32(0))
			return err
		}
		p.armWake(ctx, ws.sig)
		var timeout time.Duration
		if owner != noOwner {
			timeout = p.cfg.liveCheck
		}
		werr := futex.Wait(ws.sig, seen, timeout)
		atomic.AddUint32(ws.waiters, ^uint32(0))
		switch {
		case errors.Is(werr, futex.ErrTimeout):
			if _, err := p.ch.recoverPeer(owner, "blocked waiter found it dead"); err != nil {
				return err
			}
		case werr != nil:
			return fmt.Errorf("shm: wait: %w", werr)
		}
	}
}
