package shm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
)

// Multi-process tests re-exec the test binary (internal/testkit) as
// children playing the roles below, configured by these variables. Children
// record what they did as little-endian uint64s appended to their record
// file, one write(2) per entry so a SIGKILL never leaves half an entry.
const (
	childPathEnv  = "PODIPC_SHM_CHILD_PATH"
	childOutEnv   = "PODIPC_SHM_CHILD_OUT"
	childInstEnv  = "PODIPC_SHM_CHILD_INSTANCE"
	childCountEnv = "PODIPC_SHM_CHILD_COUNT"
	childIndexEnv = "PODIPC_SHM_CHILD_INDEX"

	lapMarker = uint64(1) << 63 // subscriber record: lost count follows in the low bits
	exitTorn  = 3               // a child saw a message failing its checksum
)

func TestMain(m *testing.M) {
	roles := testkit.Roles{}
	for _, role := range []string{"producer", "consumer", "subscriber", "reserve-and-hold", "borrow-and-hold"} {
		roles[role] = func([]string) error { return testkit.Exit(runChild(role)) }
	}
	testkit.Main(m, roles)
}

// runChild runs one child role until its work is done or its stdin closes.
func runChild(role string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the parent closes our stdin to stop us
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	count, _ := strconv.ParseUint(os.Getenv(childCountEnv), 10, 64)
	inst, _ := strconv.ParseUint(os.Getenv(childInstEnv), 10, 64)
	index, _ := strconv.Atoi(os.Getenv(childIndexEnv))
	out, err := os.OpenFile(os.Getenv(childOutEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rec := &recorder{f: out}
	c, err := Open(os.Getenv(childPathEnv), WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch role {
	case "producer":
		err = childProducer(ctx, c, rec, inst, count)
	case "consumer":
		err = childConsumer(ctx, c, rec, index)
	case "subscriber":
		err = childSubscriber(ctx, c, rec, count)
	case "reserve-and-hold":
		err = childHold(ctx, c, rec, true)
	case "borrow-and-hold":
		err = childHold(ctx, c, rec, false)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if errors.Is(err, errTorn) {
		fmt.Fprintln(os.Stderr, err)
		return exitTorn
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, role, err)
		return 1
	}
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

var errTorn = errors.New("torn or corrupt message")

type recorder struct{ f *os.File }

func (r *recorder) record(v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	_, err := r.f.Write(b[:])
	return err
}

// childProducer sends ids inst<<32|i; with count > 0 it sends count
// messages (Queue) or up to position count (Broadcast), else until stopped.
// Each id is recorded after Commit returns.
func childProducer(ctx context.Context, c *Channel, rec *recorder, inst, count uint64) error {
	p, err := c.NewProducer()
	if err != nil {
		return err
	}
	size := c.Options().SlotSize
	for i := uint64(0); count == 0 || i < count; i++ {
		r, err := p.Reserve(ctx)
		if err != nil {
			return err
		}
		id := inst<<32 | i
		if c.Options().Mode == ModeBroadcast {
			if count > 0 && r.current().pos >= count {
				return r.Abort()
			}
			id = r.current().pos
		}
		n := len(encodeMsg(r.Buf(), id, msgSize(id, size)))
		if err := r.Commit(n); err != nil {
			return err
		}
		if err := rec.record(id); err != nil {
			return err
		}
	}
	return nil
}

// childConsumer takes messages, checks them, records each id before
// releasing it: a consumer killed between the two is the only source of a
// duplicate. Even-indexed consumers borrow, odd ones copy with Recv.
func childConsumer(ctx context.Context, c *Channel, rec *recorder, index int) error {
	q, err := c.NewConsumer()
	if err != nil {
		return err
	}
	buf := make([]byte, c.Options().SlotSize)
	for {
		if index%2 == 1 {
			n, err := q.Recv(ctx, buf)
			if err != nil {
				return err
			}
			id, ok := decodeMsg(buf[:n])
			if !ok {
				return fmt.Errorf("%w: %x", errTorn, buf[:n])
			}
			if err := rec.record(id); err != nil {
				return err
			}
			continue
		}
		m, err := q.Borrow(ctx)
		if err != nil {
			return err
		}
		id, ok := decodeMsg(m.Bytes())
		if !ok {
			return fmt.Errorf("%w: %x", errTorn, m.Bytes())
		}
		if err := rec.record(id); err != nil {
			return err
		}
		if err := m.Release(); err != nil {
			return err
		}
	}
}

// childSubscriber reads until position count, checking each message
// carries the position it was read at; laps are recorded as markers.
func childSubscriber(ctx context.Context, c *Channel, rec *recorder, count uint64) error {
	s, err := c.Subscribe()
	if err != nil {
		return err
	}
	if err := rec.record(s.cursor); err != nil { // where this subscriber starts
		return err
	}
	buf := make([]byte, c.Options().SlotSize)
	for s.cursor < count || count == 0 {
		want := s.cursor
		n, err := s.Recv(ctx, buf)
		var lapped *LappedError
		if errors.As(err, &lapped) {
			if err := rec.record(lapMarker | lapped.Lost); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		id, ok := decodeMsg(buf[:n])
		if !ok || id != want {
			return fmt.Errorf("%w at position %d: id %d ok=%v", errTorn, want, id, ok)
		}
		if err := rec.record(id); err != nil {
			return err
		}
	}
	return nil
}

// childHold reserves a slot (writing half a message into it) or borrows a
// message, records that it did, and holds it until killed.
func childHold(ctx context.Context, c *Channel, rec *recorder, reserve bool) error {
	if reserve {
		p, err := c.NewProducer()
		if err != nil {
			return err
		}
		r, err := p.Reserve(ctx)
		if err != nil {
			return err
		}
		copy(r.Buf(), "half a mess")
		if err := rec.record(r.current().pos); err != nil {
			return err
		}
	} else if c.Options().Mode == ModeBroadcast {
		// A subscriber that stops reading: its cursor holds the producer.
		s, err := c.Subscribe()
		if err != nil {
			return err
		}
		if err := rec.record(s.cursor); err != nil {
			return err
		}
	} else {
		q, err := c.NewConsumer()
		if err != nil {
			return err
		}
		m, err := q.Borrow(ctx)
		if err != nil {
			return err
		}
		if err := rec.record(uint64(len(m.Bytes()))); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// child is a running child process.
type child struct {
	role   string
	index  int
	inst   uint64
	out    string
	proc   *testkit.Proc
	killed bool
}

type family struct {
	t      *testing.T
	path   string
	dir    string
	nextID uint64
	all    []*child
}

func newFamily(t *testing.T, c *Channel) *family {
	return &family{t: t, path: c.Path(), dir: t.TempDir(), nextID: 1}
}

func (f *family) spawn(role string, index int, count uint64) *child {
	f.t.Helper()
	ch := &child{role: role, index: index, inst: f.nextID}
	f.nextID++
	ch.out = filepath.Join(f.dir, fmt.Sprintf("%s-%d-%d.rec", role, index, ch.inst))
	ch.proc = testkit.Child(f.t, role, testkit.Name(fmt.Sprintf("%s#%d", role, ch.inst)), testkit.Env(
		childPathEnv+"="+f.path, childOutEnv+"="+ch.out,
		childInstEnv+"="+strconv.FormatUint(ch.inst, 10), childCountEnv+"="+strconv.FormatUint(count, 10),
		childIndexEnv+"="+strconv.Itoa(index)))
	f.all = append(f.all, ch)
	return ch
}

func (ch *child) kill() {
	ch.killed = true
	_ = ch.proc.Kill()
}

// stop closes the child's stdin, which tells it to finish, and waits as
// wait does.
func (ch *child) stop(t *testing.T, within time.Duration) {
	t.Helper()
	_ = ch.proc.Stdin().Close()
	ch.wait(t, within)
}

// wait waits for a child to exit and fails the test unless it exited 0.
func (ch *child) wait(t *testing.T, within time.Duration) {
	t.Helper()
	ch.proc.WaitSuccess(t, within)
}

func (ch *child) exited() bool { return ch.proc.Exited() }

// status is the child's exit status, an error while it still runs.
func (ch *child) status() error {
	if !ch.proc.Exited() {
		return errors.New("still running")
	}
	return ch.proc.Err()
}

func (ch *child) records(t *testing.T) []uint64 {
	t.Helper()
	b, err := os.ReadFile(ch.out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	out := make([]uint64, 0, len(b)/8)
	for i := 0; i+8 <= len(b); i += 8 {
		out = append(out, binary.LittleEndian.Uint64(b[i:]))
	}
	return out
}

func scale(full, reduced int) int {
	if testing.Short() || raceEnabled {
		return reduced
	}
	return full
}
