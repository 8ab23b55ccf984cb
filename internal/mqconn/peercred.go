package mqconn

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// PeerCred returns the credentials the kernel recorded for the process at
// the other end of the Unix socket nc when it connected or listened.
func PeerCred(nc net.Conn) (*unix.Ucred, error) {
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
