package mq

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrImpostor: the broker's socket is served by a process of another user
// than the sidecar's: some other container took the socket's place.
var ErrImpostor = errors.New("broker socket served by an impostor")

// peerCred returns the credentials the kernel recorded for the process at
// the other end of the Unix socket nc when it connected or listened.
func peerCred(nc net.Conn) (*unix.Ucred, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a Unix socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	return cred, nil
}

// checkBroker fails with ErrImpostor unless the process serving nc runs as
// uid (no check if uid is negative).
func checkBroker(nc net.Conn, uid int) error {
	if uid < 0 {
		return nil
	}
	cred, err := peerCred(nc)
	if err != nil {
		return fmt.Errorf("cannot tell who serves the broker socket: %w", err)
	}
	if int(cred.Uid) != uid {
		return fmt.Errorf("%w: served by pid %d as uid %d, the sidecar runs as uid %d", ErrImpostor, cred.Pid, cred.Uid, uid)
	}
	return nil
}
