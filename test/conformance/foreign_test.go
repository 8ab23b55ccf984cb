package conformance

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/testkit"
)

// forger is a second mapping of a channel file through which a test writes
// garbage into Queue slot words, as a misbehaving participant would
// (docs/shm-layout.md §2.1, §2.5).
type forger struct {
	mem                 []byte
	slots, stride, mask uint64
}

func newForger(t *testing.T, path string) *forger {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	le := binary.LittleEndian
	return &forger{
		mem:    mem,
		stride: uint64(le.Uint32(mem[0x1C:])),
		mask:   uint64(le.Uint32(mem[0x20:])) - 1,
		slots:  le.Uint64(mem[0x30:]),
	}
}

func (f *forger) word(off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&f.mem[off])) }

// forge stores (seq, state, owner) into the word of the slot of position pos.
func (f *forger) forge(pos, seq uint64, state, owner uint32) {
	atomic.StoreUint64(f.word(f.slots+(pos&f.mask)*f.stride), seq<<16|uint64(state&0xF)<<12|uint64(owner&0xFFF))
}

func (f *forger) bumpRedeliverGen() { atomic.AddUint64(f.word(0x280), 1) }

const (
	stFull      = 2
	stRedeliver = 5
)

// TestForeignSlotWords: Go writes foreign words into a Queue ring (one over
// a committed message, and the issue-11 REDELIVER word naming a slot a Go
// producer holds reserved, with the redelivery generation bumped) and a C
// or Python consumer takes from it. The native consumer must skip and
// repair the first (counted in the shared `repaired` counter Go reads),
// must not hand out the reservation, and the queue must go on.
func TestForeignSlotWords(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) { testForeignSlotWords(t, c, filepath.Join(dir, "foreign-"+c.name)) })
	}
}

func testForeignSlotWords(t *testing.T, c client, path string) {
	ch, p := smallQueue(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := make([]byte, 48)
	for seq := uint32(1); seq <= 3; seq++ { // positions 0, 1, 2
		fill(msg, 7, seq)
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	res, err := p.Reserve(ctx) // position 3, not committed
	if err != nil {
		t.Fatal(err)
	}
	fill(res.Buf()[:48], 9, 99) // what a consumer handed the reservation would print

	f := newForger(t, path)
	f.forge(1, 1+3, stFull, 0)    // over message 2: a sequence no lap explains
	f.forge(5, 3, stRedeliver, 0) // names position 3, which lives in another slot
	f.bumpRedeliverGen()          // so that consumers scan for redeliveries

	consumer := start(t, c, "consume", path)
	for _, want := range []string{"got 7 1", "got 7 3"} {
		if l := consumer.line(t, 30*time.Second); l != want {
			t.Fatalf("%s consumer printed %q, want %q (the reservation is 'got 9 99')", c.name, l, want)
		}
	}
	if st := ch.Stats(); st.Repaired != 1 {
		t.Fatalf("after the %s consumer passed the forged slot: stats %+v, want 1 repaired", c.name, st)
	}
	fill(res.Buf()[:48], 7, 4)
	if err := res.Commit(48); err != nil {
		t.Fatal(err)
	}
	for seq := uint32(5); seq <= 12; seq++ { // the producer repairs the REDELIVER slot on its way
		fill(msg, 7, seq)
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	end := make([]byte, 16)
	binary.LittleEndian.PutUint32(end, endMarker)
	if err := p.Send(ctx, end); err != nil {
		t.Fatal(err)
	}
	got := consumer.wait(t)
	var want []string
	for seq := 4; seq <= 12; seq++ {
		want = append(want, fmt.Sprintf("got 7 %d", seq))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s consumer then printed %q, want %q", c.name, got, want)
	}
	if st := ch.Stats(); st.Repaired != 2 || st.Sent != st.Received+1 {
		t.Fatalf("stats %+v: want 2 repaired and only message 2 lost", st)
	}
}
