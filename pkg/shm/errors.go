package shm

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotChannel: the file does not start with the channel magic (a foreign file).
	ErrNotChannel = errors.New("not a channel file")
	// ErrVersion: the file uses a layout version this library does not read.
	ErrVersion = errors.New("unsupported layout version")
	// ErrCorrupt: the header or the ring holds values no valid channel can hold.
	ErrCorrupt = errors.New("corrupt channel")
	// ErrTruncated: the file is shorter than its header says (also matches ErrCorrupt).
	ErrTruncated = fmt.Errorf("%w: truncated", ErrCorrupt)
	// ErrInvalidOptions: Create was given options it cannot honour.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrExists: Create found a file at the path already.
	ErrExists = errors.New("channel file already exists")
	// ErrNoSpace matches every *NoSpaceError: the file system (the pod's
	// tmpfs) has no room for the channel file Create was making.
	ErrNoSpace = errors.New("no space for the channel file")
	// ErrFull: the ring has no free slot and the call does not block.
	ErrFull = errors.New("channel full")
	// ErrEmpty: there is no message and the call does not block.
	ErrEmpty = errors.New("channel empty")
	// ErrMessageTooLarge: a message does not fit a slot, or a receive buffer is
	// smaller than the message (the message is kept for the next receive).
	ErrMessageTooLarge = errors.New("message too large")
	// ErrWrongMode: the operation does not exist in this channel's mode.
	ErrWrongMode = errors.New("operation not valid in this channel mode")
	// ErrProducerExists: a Broadcast channel already has a live producer.
	ErrProducerExists = errors.New("broadcast channel already has a producer")
	// ErrPeerTableFull: every peer entry is held by a live participant.
	ErrPeerTableFull = errors.New("peer table full")
	// ErrOutstanding: a reservation or borrowed message is still held; commit,
	// abort or release it first.
	ErrOutstanding = errors.New("a reservation or borrowed message is outstanding")
	// ErrNotHeld: Commit, Abort or Release on a handle whose reservation or
	// message was already committed, aborted or released (or whose peer was
	// closed): the handle is stale and acts on nothing.
	ErrNotHeld = errors.New("the reservation or message is no longer held")
	// ErrClosed: the channel or peer was closed.
	ErrClosed = errors.New("closed")
	// ErrLapped matches every *LappedError.
	ErrLapped = errors.New("subscriber lapped")
)

// HeaderError says which header field of a channel file is wrong and why.
// It matches the sentinel it wraps (ErrNotChannel, ErrVersion, ErrCorrupt or
// ErrTruncated) under errors.Is.
type HeaderError struct {
	Field  string
	Reason string
	Err    error
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("%v: header field %s: %s", e.Err, e.Field, e.Reason)
}

func (e *HeaderError) Unwrap() error { return e.Err }

func headerErr(sentinel error, field, format string, args ...any) error {
	return &HeaderError{Field: field, Reason: fmt.Sprintf(format, args...), Err: sentinel}
}

// LappedError reports that a Broadcast subscriber fell a whole ring behind
// and the producer overwrote Lost messages it had not read. The subscriber's
// cursor has moved to the oldest message still available; the next receive
// continues from there.
type LappedError struct {
	Lost uint64
}

func (e *LappedError) Error() string {
	return fmt.Sprintf("subscriber lapped, %d messages lost", e.Lost)
}

// Is makes errors.Is(err, ErrLapped) true for every *LappedError.
func (e *LappedError) Is(target error) bool { return target == ErrLapped }

// TooLargeError reports the size of a message that did not fit the buffer
// or slot it was meant for. It matches ErrMessageTooLarge.
type TooLargeError struct {
	Size  int // the message's length
	Limit int // the room there was
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("message of %d bytes exceeds %d", e.Size, e.Limit)
}

func (e *TooLargeError) Is(target error) bool { return target == ErrMessageTooLarge }

// NoSpaceError reports that Create could not allocate a channel file: how
// many bytes the file needs and how many its file system had available
// afterwards. Create allocates every block of the file before anything is
// written through the mapping, so a full tmpfs is this error and never a
// SIGBUS. It matches ErrNoSpace, and its Err (ENOSPC or EDQUOT) under
// errors.Is.
type NoSpaceError struct {
	Path string
	Need int64 // the size of the channel file
	Free int64 // bytes available to the caller on its file system; -1 if unknown
	Err  error
}

func (e *NoSpaceError) Error() string {
	if e.Free < 0 {
		return fmt.Sprintf("shm: create %s: the channel file needs %d bytes: %v", e.Path, e.Need, e.Err)
	}
	return fmt.Sprintf("shm: create %s: the channel file needs %d bytes, its file system has %d available: %v",
		e.Path, e.Need, e.Free, e.Err)
}

func (e *NoSpaceError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNoSpace) true for every *NoSpaceError.
func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
