package shm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/testkit"
)

// mappingSizes returns the sizes of this process's mappings of the file at
// path, from /proc/self/maps (matched by inode).
func mappingSizes(t *testing.T, path string) []uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sizes []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[4] != strconv.FormatUint(st.Ino, 10) {
			continue
		}
		start, end, _ := strings.Cut(fields[0], "-")
		s, err1 := strconv.ParseUint(start, 16, 64)
		e, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("cannot parse %q", sc.Text())
		}
		sizes = append(sizes, e-s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(sizes)
	return sizes
}

// newTestControl creates a channel with CreateControl in a fresh directory.
func newTestControl(t *testing.T, opts Options) *Control {
	t.Helper()
	k, err := CreateControl(filepath.Join(testkit.TmpfsDir(t), "ch"), opts)
	if err != nil {
		t.Fatalf("CreateControl: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

// A Control maps the header and peer table only, whatever the ring's size,
// and reads the same statistics as a full mapping.
func TestControlMapsOnlyHeaderAndPeerTable(t *testing.T) {
	k := newTestControl(t, bigQueue)
	path := k.Path()
	g := computeGeometry(bigQueue.withDefaults())
	if got, want := mappingSizes(t, path), []uint64{g.slotsOffset}; !slices.Equal(got, want) {
		t.Fatalf("mappings of the %d-byte channel file: %v bytes, want only the header and peer table %v", g.fileSize, got, want)
	}
	if o := k.Options(); o.SlotSize != bigQueue.SlotSize || o.SlotCount != bigQueue.SlotCount || o.MaxPeers != DefaultMaxPeers {
		t.Errorf("Options = %+v", o)
	}

	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, _ := c.NewProducer()
	q, _ := c.NewConsumer()
	for range 3 {
		if err := p.TrySend([]byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.TryRecv(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if got, want := controlStats(t, k), c.Stats(); got != want || got.Sent != 3 || got.Depth != 2 || got.Producers != 1 || got.Consumers != 1 {
		t.Errorf("Control.Stats = %+v\nChannel.Stats = %+v", got, want)
	}
	if n, err := k.ReapDeadPeers(); n != 0 || err != nil {
		t.Errorf("ReapDeadPeers with live peers only = %d, %v", n, err)
	}
}

// A Control recovers dead peers like a Channel: a consumer killed holding a
// message gets it redelivered. The ring is mapped for the recovery and
// unmapped after it.
func TestControlReapsDeadPeers(t *testing.T) {
	for _, opts := range []Options{
		{Mode: ModeQueue, SlotSize: 32, SlotCount: 4},
		{Mode: ModeBroadcast, SlotSize: 32, SlotCount: 4},
	} {
		t.Run(opts.Mode.String(), func(t *testing.T) {
			k := newTestControl(t, opts)
			path := k.Path()
			c, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p, _ := c.NewProducer()
			if err := p.TrySend([]byte("precious")); err != nil {
				t.Fatal(err)
			}
			mapped := mappingSizes(t, path)
			startHolder(t, newFamily(t, c), "borrow-and-hold").kill()
			if st := controlStats(t, k); st.DeadPeers != 1 {
				t.Fatalf("before reaping: %+v", st)
			}
			if n, err := k.ReapDeadPeers(); n != 1 || err != nil {
				t.Fatalf("ReapDeadPeers = %d, %v; want 1", n, err)
			}
			if st := controlStats(t, k); st.DeadPeers != 0 || st.Reaped != 1 {
				t.Errorf("after reaping: %+v", st)
			}
			if got := mappingSizes(t, path); !slices.Equal(got, mapped) {
				t.Errorf("mappings after the reap %v, before %v: the ring mapped for the recovery is still there", got, mapped)
			}
			if opts.Mode == ModeBroadcast {
				return
			}
			q, _ := c.NewConsumer()
			buf := make([]byte, 32)
			n, err := q.Recv(testCtx(t, 10*time.Second), buf)
			if err != nil || string(buf[:n]) != "precious" {
				t.Fatalf("Recv after the reap = %q, %v", buf[:n], err)
			}
			if st := controlStats(t, k); st.Redelivered != 1 {
				t.Errorf("Redelivered = %d, want 1", st.Redelivered)
			}
		})
	}
}

func controlStats(t *testing.T, k *Control) Stats {
	t.Helper()
	st, err := k.Stats()
	if err != nil {
		t.Fatalf("Control.Stats: %v", err)
	}
	return st
}

// A channel file truncated under a Control (by any process that can write
// it) costs the Control's owner an ErrTruncated, not a SIGBUS: whether the
// size check sees the truncation or the access faults first.
func TestControlSurvivesTruncation(t *testing.T) {
	for _, size := range []int64{0, 100} {
		t.Run(fmt.Sprintf("to %d bytes", size), func(t *testing.T) {
			k := newTestControl(t, Options{Mode: ModeQueue, SlotSize: 64, SlotCount: 64})
			if err := os.Truncate(k.Path(), size); err != nil {
				t.Fatal(err)
			}
			if _, err := k.Stats(); !errors.Is(err, ErrTruncated) {
				t.Errorf("Stats of a truncated file: %v, want ErrTruncated", err)
			}
			if _, err := k.ReapDeadPeers(); !errors.Is(err, ErrTruncated) {
				t.Errorf("ReapDeadPeers of a truncated file: %v, want ErrTruncated", err)
			}
			// The race the size check cannot close: the file shrinks
			// after it; the access itself must not kill the process.
			err := k.faultsAsErrors(func() error {
				k.ch.Stats()
				if k.ch.mem[len(k.ch.mem)-1] != 0 { // past the end of the file: faults
					return errors.New("read a byte past the end of the file")
				}
				return nil
			})
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("a faulting access: %v, want ErrTruncated", err)
			}
			if _, err := ReadStats(k.Path()); !errors.Is(err, ErrTruncated) {
				t.Errorf("ReadStats of a truncated file: %v, want ErrTruncated", err)
			}
		})
	}
}

// OpenControl and ReadStats validate the header as Open does.
func TestOpenControlValidatesHeader(t *testing.T) {
	path := filepath.Join(testkit.TmpfsDir(t), "junk")
	if err := os.WriteFile(path, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenControl(path); !errors.Is(err, ErrNotChannel) {
		t.Errorf("OpenControl(zeros) = %v, want ErrNotChannel", err)
	}
	if _, err := ReadStats(path); !errors.Is(err, ErrNotChannel) {
		t.Errorf("ReadStats(zeros) = %v, want ErrNotChannel", err)
	}
}
