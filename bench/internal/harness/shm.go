package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/podipc/podipc/pkg/shm"
)

// shmTransport is a pair of podipc Queue-mode channels (A→B and B→A) in
// files on the tmpfs, one producer and one consumer on each.
type shmTransport struct {
	wait shm.WaitStrategy
	// zeroCopy receives by borrowing the message in its slot (Borrow /
	// Release) and sends by reserving a slot and writing the message into
	// it (Reserve / Commit), instead of Recv and Send, which copy.
	zeroCopy bool
}

// Handoff parameters: the channel files, named by direction.
const (
	paramAToB = "a-to-b"
	paramBToA = "b-to-a"
)

func (t shmTransport) Setup(spec LinkSpec) (Link, error) {
	base := filepath.Join(spec.Dir, fmt.Sprintf("podipc-bench-%d-%08x", os.Getpid(), rand.Uint32()))
	l := &shmLink{t: t, spec: spec, params: map[string]string{paramAToB: base + "-ab", paramBToA: base + "-ba"}}
	opts := shm.Options{Mode: shm.ModeQueue, SlotSize: spec.Size, SlotCount: spec.Slots}
	for _, path := range []string{l.params[paramAToB], l.params[paramBToA]} {
		ch, err := shm.Create(path, opts)
		if err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("create channel: %w", err)
		}
		l.chans = append(l.chans, ch)
	}
	return l, nil
}

func (t shmTransport) Attach(spec LinkSpec, h Handoff) (Conn, error) {
	ab, err := shm.Open(h.Params[paramAToB])
	if err != nil {
		return nil, err
	}
	ba, err := shm.Open(h.Params[paramBToA])
	if err != nil {
		_ = ab.Close()
		return nil, err
	}
	return t.conn(ba, ab, spec.Size, ab, ba)
}

// conn makes a Conn that sends on out and receives from in; it closes
// owned when it is closed.
func (t shmTransport) conn(out, in *shm.Channel, size int, owned ...*shm.Channel) (Conn, error) {
	c := &shmConn{zeroCopy: t.zeroCopy, buf: make([]byte, size), owned: owned}
	var err error
	if c.p, err = out.NewProducer(shm.WithWait(t.wait)); err != nil {
		return nil, errors.Join(fmt.Errorf("new producer: %w", err), c.Close())
	}
	if c.c, err = in.NewConsumer(shm.WithWait(t.wait)); err != nil {
		return nil, errors.Join(fmt.Errorf("new consumer: %w", err), c.Close())
	}
	return c, nil
}

// shmLink holds the channels the coordinator created; it removes their
// files on Close.
type shmLink struct {
	t      shmTransport
	spec   LinkSpec
	params map[string]string
	chans  []*shm.Channel // A→B, B→A
}

func (l *shmLink) Handoff() Handoff { return Handoff{Params: l.params} }

func (l *shmLink) Open() (Conn, error) {
	return l.t.conn(l.chans[0], l.chans[1], l.spec.Size)
}

func (l *shmLink) Close() error {
	var errs []error
	for _, ch := range l.chans {
		errs = append(errs, ch.Close())
	}
	for _, path := range l.params {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// shmConn is one side's producer and consumer.
type shmConn struct {
	p        *shm.Producer
	c        *shm.Consumer
	zeroCopy bool
	buf      []byte      // Recv's destination (copy API)
	borrowed shm.Message // held between Recv and Release (zero-copy API)
	holding  bool
	owned    []*shm.Channel
}

func (c *shmConn) Send(ctx context.Context, msg []byte) error {
	if !c.zeroCopy {
		return c.p.Send(ctx, msg)
	}
	r, err := c.p.Reserve(ctx)
	if err != nil {
		return err
	}
	// Writing the message into the slot stands for producing it in place.
	return r.Commit(copy(r.Buf(), msg))
}

func (c *shmConn) Recv(ctx context.Context) ([]byte, error) {
	if !c.zeroCopy {
		n, err := c.c.Recv(ctx, c.buf)
		return c.buf[:n], err
	}
	m, err := c.c.Borrow(ctx)
	if err != nil {
		return nil, err
	}
	c.borrowed, c.holding = m, true
	return m.Bytes(), nil
}

func (c *shmConn) Release() error {
	if !c.holding {
		return nil
	}
	c.holding = false
	return c.borrowed.Release()
}

func (c *shmConn) Close() error {
	var errs []error
	if c.p != nil {
		errs = append(errs, c.p.Close())
	}
	if c.c != nil {
		errs = append(errs, c.c.Close())
	}
	for _, ch := range c.owned {
		errs = append(errs, ch.Close())
	}
	return errors.Join(errs...)
}
