// Package shm implements podipc's shared-memory channels: bounded rings of
// fixed-size slots in one file on a tmpfs, mapped MAP_SHARED by every
// participant. The data path is a few atomic operations and a memcpy (none
// for the zero-copy API); the kernel is entered only to put an idle waiter
// to sleep or to wake one.
//
// The byte layout and synchronization protocol are specified in
// docs/shm-layout.md, precisely enough to write a client in another
// language.
//
// # Channels and peers
//
// Create makes a channel file (atomically: it appears fully initialised or
// not at all). It allocates every block of the file before mapping it, so a
// tmpfs without room for the channel is a *NoSpaceError (errors.Is
// ErrNoSpace) saying how many bytes the channel needs, never a SIGBUS. Open
// maps an existing one after validating its header, and returns a
// *HeaderError (errors.Is ErrNotChannel, ErrVersion, ErrTruncated or
// ErrCorrupt) for anything that is not a well-formed channel of this layout
// version. ReadStats reads a channel's counters read-only. A Control
// (OpenControl, CreateControl) is a supervisor's handle: statistics and
// dead-peer recovery through a mapping of the header and peer table only.
//
// Every producer, consumer and subscriber registers in the channel's peer
// table. Liveness comes from the kernel: each registration holds an
// open-file-description lock on its entry's byte of the file, through a
// descriptor of its own, and the kernel releases it when the process dies
// however it dies. Dead peers are recovered by whoever finds them in the
// way (a blocked waiter checks the owner of the slot it waits for every
// 50ms by default, see WithLivenessCheck), by registration (which reuses a
// dead peer's entry only after recovering it) and by ReapDeadPeers, which
// the sidecar calls periodically.
//
// A Producer, Consumer or Subscriber is used by one goroutine at a time and
// holds at most one Reservation or borrowed Message at a time; a Channel is
// safe for concurrent use and can have any number of them.
//
// Reservation and Message are small handle values (no allocation). A
// handle is current from its Reserve or Borrow until its Commit, Abort or
// Release; after that every copy of it is stale and acts on nothing: Buf
// and Bytes return nil, Commit, Abort and Release return ErrNotHeld. A
// handle kept from an earlier call can therefore never commit, abort or
// release a later slot.
//
// # Modes
//
// ModeQueue: any number of producers and consumers; each message is taken
// by exactly one consumer. Messages from one producer to one consumer
// arrive in order. If a consumer dies holding a borrowed message, the
// message is delivered again to another consumer (at-least-once, and out of
// FIFO order); if a producer dies holding a reservation, the position is
// skipped (the message was never sent).
//
// ModeBroadcast: one producer (a second live one gets ErrProducerExists),
// any number of subscribers, each with its own cursor, each seeing every
// message from the moment it subscribed, in order. A producer that dies
// mid-message leaves nothing visible; its successor continues at the same
// position.
//
// # Overflow
//
// What a producer does when the ring is full is fixed per channel
// (Options.Overflow):
//
//   - OverflowBlock: Send and Reserve wait until a slot frees or their
//     context ends. In Broadcast mode "full" means the slowest live
//     subscriber is a whole ring behind; dead subscribers are not waited for.
//   - OverflowFail: Send and Reserve return ErrFull at once.
//   - OverflowOverwrite (Broadcast only): the producer never waits; a
//     subscriber that falls a ring behind is lapped and its next receive
//     returns a *LappedError (errors.Is ErrLapped) saying how many messages
//     it lost, then continues with the oldest message still in the ring. A
//     message borrowed in this mode may be overwritten while borrowed:
//     Release reports it, so copy and validate before trusting the bytes.
//
// TrySend and TryReserve never block regardless of the policy; TryRecv and
// TryBorrow return ErrEmpty when there is nothing to take.
//
// # Waiting
//
// Every blocking call takes a context for deadline and cancellation. How a
// peer waits is a PeerOption: WaitHybrid (default) spins for ~20µs then
// sleeps on a futex, WaitSpin busy-polls (lowest latency, one core per
// waiter), WaitBlock sleeps right away. A blocked receiver on an idle
// channel sleeps in FUTEX_WAIT and uses no CPU; producers make the wake-up
// syscall only when a waiter count says someone sleeps.
//
// # Failure model
//
// Every participant can write the whole mapping, so nothing read from it is
// followed unchecked: lengths, sequence numbers, states and peer indexes are
// range-checked, and a violation is never an out-of-bounds access. A Queue
// slot word that no healthy ring can hold at the position a peer looks at
// (docs/shm-layout.md §2.5) is reset and its position skipped, so the ring
// goes on, and counted in Stats.Repaired; a peer whose own slot was
// overwritten gets ErrCorrupt at Commit or Release. A
// participant that truncates the file under the others is out of scope (the
// others would take SIGBUS).
package shm
