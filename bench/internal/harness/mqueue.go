package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mqueueTransport is a pair of POSIX message queues (one per direction),
// used through the raw system calls, as glibc's mq_* functions do. The
// queue descriptors are inherited by the peer; the names are unlinked as
// soon as both queues exist, so nothing is left behind.
type mqueueTransport struct{}

const (
	mqMsgMaxPath     = "/proc/sys/fs/mqueue/msg_max"
	mqMsgsizeMaxPath = "/proc/sys/fs/mqueue/msgsize_max"
	// mqMaxDepth caps the queue depth when msg_max is set very high.
	mqMaxDepth = 64
	// mqMsgOverhead is a generous estimate of the kernel's per-message
	// bookkeeping that counts against RLIMIT_MSGQUEUE.
	mqMsgOverhead = 128
)

// mqAttr is struct mq_attr: four longs and reserved space.
type mqAttr struct {
	Flags, MaxMsg, MsgSize, CurMsgs int
	_                               [4]int
}

func (mqueueTransport) Setup(spec LinkSpec) (Link, error) {
	depth := min(readSysctl(mqMsgMaxPath, 10), mqMaxDepth)
	restore, err := fitMessageQueues(spec.Size, depth)
	if err != nil {
		return nil, err
	}
	link := &fileLink{cleanup: restore}
	attr := mqAttr{MaxMsg: depth, MsgSize: spec.Size}
	var fds [2]int // A→B, B→A
	for i := range fds {
		fd, err := mqCreateAnonymous(&attr)
		if err != nil {
			closeFiles(link.own)
			_ = restore()
			return nil, err
		}
		fds[i] = fd
		link.own = append(link.own, os.NewFile(uintptr(fd), "mqueue-a"))
	}
	// The peer needs descriptors of its own: the harness closes the
	// handoff copies once the peer has inherited them.
	for _, fd := range fds {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			_ = link.Close()
			return nil, fmt.Errorf("dup queue descriptor: %w", err)
		}
		link.peer = append(link.peer, os.NewFile(uintptr(dup), "mqueue-b"))
	}
	link.open = func(own []*os.File) (Conn, error) { return newMQConn(own[0], own[1], spec.Size), nil }
	return link, nil
}

func (mqueueTransport) Attach(spec LinkSpec, h Handoff) (Conn, error) {
	if err := wantFiles(h, 2); err != nil {
		return nil, err
	}
	return newMQConn(h.Files[1], h.Files[0], spec.Size), nil
}

// fitMessageQueues makes room for two queues of depth messages of size
// bytes: RLIMIT_MSGQUEUE must cover them, and fs.mqueue.msgsize_max must
// allow the size (raised for the run if needed, when writable). It returns
// the function that restores the sysctl.
func fitMessageQueues(size, depth int) (restore func() error, err error) {
	noop := func() error { return nil }
	need := uint64(2 * depth * (size + mqMsgOverhead))
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MSGQUEUE, &rl); err != nil {
		return nil, fmt.Errorf("read RLIMIT_MSGQUEUE: %w", err)
	}
	if rl.Cur != unix.RLIM_INFINITY && rl.Cur < need {
		raised := unix.Rlimit{Cur: need, Max: max(rl.Max, need)}
		if err := unix.Setrlimit(unix.RLIMIT_MSGQUEUE, &raised); err != nil {
			return nil, fmt.Errorf("%w: two queues of %d × %s need %d B of RLIMIT_MSGQUEUE, which is %d B; raising it needs CAP_SYS_RESOURCE (%v)",
				ErrUnavailable, depth, FormatSize(size), need, rl.Max, err)
		}
	}
	old := readSysctl(mqMsgsizeMaxPath, 8192)
	if size <= old {
		return noop, nil
	}
	if err := os.WriteFile(mqMsgsizeMaxPath, []byte(strconv.Itoa(size)), 0); err != nil {
		return nil, fmt.Errorf("%w: %s exceeds fs.mqueue.msgsize_max (%d B), which cannot be raised here (%v)",
			ErrUnavailable, FormatSize(size), old, err)
	}
	return func() error {
		if err := os.WriteFile(mqMsgsizeMaxPath, []byte(strconv.Itoa(old)), 0); err != nil {
			return fmt.Errorf("restore fs.mqueue.msgsize_max: %w", err)
		}
		return nil
	}, nil
}

// readSysctl reads an integer from path, or returns def.
func readSysctl(path string, def int) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return def
	}
	return v
}

// mqCreateAnonymous creates a queue under a fresh name and unlinks the name.
func mqCreateAnonymous(attr *mqAttr) (int, error) {
	for {
		// The system call takes the name without glibc's leading slash.
		name := fmt.Sprintf("podipc-bench-%d-%016x", os.Getpid(), rand.Uint64())
		fd, err := mqOpen(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600, attr)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("mq_open %d × %d B: %w", attr.MaxMsg, attr.MsgSize, err)
		}
		if err := mqUnlink(name); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("mq_unlink %s: %w", name, err)
		}
		return fd, nil
	}
}

func mqOpen(name string, flags int, mode uint32, attr *mqAttr) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	fd, _, errno := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(flags),
		uintptr(mode), uintptr(unsafe.Pointer(attr)), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func mqUnlink(name string) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// mqConn sends on one queue and receives from the other. Waits end at the
// context's deadline (mq_timed* take an absolute CLOCK_REALTIME time).
type mqConn struct {
	send, recv *os.File
	sfd, rfd   int
	buf        []byte
}

func newMQConn(send, recv *os.File, size int) *mqConn {
	return &mqConn{send: send, recv: recv, sfd: int(send.Fd()), rfd: int(recv.Fd()), buf: make([]byte, size)}
}

func (c *mqConn) Send(ctx context.Context, msg []byte) error {
	if _, err := mqTimed(ctx, unix.SYS_MQ_TIMEDSEND, c.sfd, msg); err != nil {
		return fmt.Errorf("mq_timedsend: %w", err)
	}
	return nil
}

func (c *mqConn) Recv(ctx context.Context) ([]byte, error) {
	n, err := mqTimed(ctx, unix.SYS_MQ_TIMEDRECEIVE, c.rfd, c.buf)
	if err != nil {
		return nil, fmt.Errorf("mq_timedreceive: %w", err)
	}
	return c.buf[:n], nil
}

// mqTimed makes mq_timedsend or mq_timedreceive, which take the same
// arguments here: (mqd, buffer, length, priority 0 or no priority pointer,
// absolute timeout). It does not allocate.
func mqTimed(ctx context.Context, trap uintptr, fd int, b []byte) (int, error) {
	d, hasDeadline := ctx.Deadline()
	for {
		var n uintptr
		var errno unix.Errno
		if hasDeadline {
			ts := unix.NsecToTimespec(d.UnixNano())
			n, _, errno = unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
				0, uintptr(unsafe.Pointer(&ts)), 0)
		} else {
			n, _, errno = unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		}
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

func (c *mqConn) Release() error { return nil }

func (c *mqConn) Close() error {
	return errors.Join(closeQuiet(c.send), closeQuiet(c.recv))
}
