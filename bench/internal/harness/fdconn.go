package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The kernel transports use blocking descriptors and raw read/write system
// calls, as a C program would: an os.File of a pipe or socket would go
// through Go's poller, adding goroutine parking to every message.

// fileLink is a link whose two sides are sets of descriptors: the
// coordinator keeps own, the peer inherits peer.
type fileLink struct {
	own, peer []*os.File
	params    map[string]string
	// open builds side A's Conn from own.
	open func(own []*os.File) (Conn, error)
	// cleanup, if set, runs on Close.
	cleanup func() error
}

func (l *fileLink) Handoff() Handoff {
	return Handoff{Files: l.peer, Params: l.params}
}

func (l *fileLink) Open() (Conn, error) { return l.open(l.own) }

func (l *fileLink) Close() error {
	// Closing an os.File twice is harmless, so the link can close what the
	// Conn and the harness may already have closed.
	closeFiles(l.own)
	closeFiles(l.peer)
	if l.cleanup != nil {
		return l.cleanup()
	}
	return nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// filesFromFDs wraps raw descriptors, which must be blocking.
func filesFromFDs(name string, fds ...int) []*os.File {
	fs := make([]*os.File, len(fds))
	for i, fd := range fds {
		fs[i] = os.NewFile(uintptr(fd), fmt.Sprintf("%s-%d", name, i))
	}
	return fs
}

// wantFiles checks that the peer inherited n descriptors.
func wantFiles(h Handoff, n int) error {
	if len(h.Files) != n {
		return fmt.Errorf("handoff has %d files, want %d", len(h.Files), n)
	}
	return nil
}

// streamConn frames fixed-size messages on a byte stream: every message is
// exactly size bytes, so no length prefix is needed.
type streamConn struct {
	r, w *os.File // kept so the descriptors live as long as the Conn
	rfd  int
	wfd  int
	buf  []byte
}

func newStreamConn(r, w *os.File, size int) *streamConn {
	return &streamConn{r: r, w: w, rfd: int(r.Fd()), wfd: int(w.Fd()), buf: make([]byte, size)}
}

func (c *streamConn) Send(_ context.Context, msg []byte) error {
	return writeAll(c.wfd, msg)
}

func (c *streamConn) Recv(context.Context) ([]byte, error) {
	for got := 0; got < len(c.buf); {
		n, err := unix.Read(c.rfd, c.buf[got:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, fmt.Errorf("read: %w", err)
		case n == 0:
			return nil, fmt.Errorf("read: %w after %d of %d bytes", io.ErrUnexpectedEOF, got, len(c.buf))
		}
		got += n
	}
	return c.buf, nil
}

func (c *streamConn) Release() error { return nil }

func (c *streamConn) Close() error {
	return errors.Join(closeQuiet(c.r), closeQuiet(c.w))
}

// packetConn sends each message as one datagram of a SOCK_SEQPACKET socket.
type packetConn struct {
	f   *os.File
	fd  int
	buf []byte // one byte longer than a message, to detect longer ones
}

func newPacketConn(f *os.File, size int) *packetConn {
	return &packetConn{f: f, fd: int(f.Fd()), buf: make([]byte, size+1)}
}

func (c *packetConn) Send(_ context.Context, msg []byte) error {
	for {
		n, err := unix.Write(c.fd, msg)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("send packet: %w", err)
		case n != len(msg):
			return fmt.Errorf("send packet: wrote %d of %d bytes", n, len(msg))
		}
		return nil
	}
}

func (c *packetConn) Recv(context.Context) ([]byte, error) {
	for {
		n, err := unix.Read(c.fd, c.buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, fmt.Errorf("receive packet: %w", err)
		case n == 0:
			return nil, fmt.Errorf("receive packet: %w", io.EOF)
		}
		return c.buf[:n], nil
	}
}

func (c *packetConn) Release() error { return nil }

func (c *packetConn) Close() error { return closeQuiet(c.f) }

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// closeQuiet closes f, ignoring that it may already be closed.
func closeQuiet(f *os.File) error {
	if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
