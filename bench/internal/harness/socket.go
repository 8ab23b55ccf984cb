package harness

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// socketTransport is a connected pair of Unix domain sockets of one type:
// SOCK_STREAM (fixed-size framing) or SOCK_SEQPACKET (one packet per
// message), with the kernel's default buffer sizes where they suffice.
type socketTransport struct {
	typ int
}

func (t socketTransport) Setup(spec LinkSpec) (Link, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, t.typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	if t.typ == unix.SOCK_SEQPACKET {
		if err := fitPacket(fds, spec.Size); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			return nil, err
		}
	}
	return &fileLink{
		own:  filesFromFDs("socket-a", fds[0]),
		peer: filesFromFDs("socket-b", fds[1]),
		open: func(own []*os.File) (Conn, error) { return t.conn(own[0], spec.Size), nil },
	}, nil
}

func (t socketTransport) Attach(spec LinkSpec, h Handoff) (Conn, error) {
	if err := wantFiles(h, 1); err != nil {
		return nil, err
	}
	return t.conn(h.Files[0], spec.Size), nil
}

func (t socketTransport) conn(f *os.File, size int) Conn {
	if t.typ == unix.SOCK_SEQPACKET {
		return newPacketConn(f, size)
	}
	return newStreamConn(f, f, size)
}

// fitPacket makes the send buffers of a SOCK_SEQPACKET pair hold a packet of
// size bytes: the kernel refuses larger packets with EMSGSIZE. Beyond
// net.core.wmem_max that needs SO_SNDBUFFORCE (CAP_NET_ADMIN).
func fitPacket(fds [2]int, size int) error {
	cur, err := unix.GetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return fmt.Errorf("read SO_SNDBUF: %w", err)
	}
	// Room for two packets plus the kernel's bookkeeping; the kernel
	// doubles the value it is given.
	want := 2*size + 64<<10
	if cur >= want {
		return nil
	}
	for _, fd := range fds {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, want); err != nil {
			return fmt.Errorf("%w: a %d-byte packet exceeds the socket buffer (%d bytes) and SO_SNDBUFFORCE failed: %v",
				ErrUnavailable, size, cur, err)
		}
	}
	return nil
}
