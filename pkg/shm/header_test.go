package shm

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/podipc/podipc/internal/testkit"
)

// channelBytes creates a channel with opts, lets fill act on it, and
// returns the file's bytes.
func channelBytes(t testing.TB, opts Options, fill func(*Channel)) []byte {
	t.Helper()
	path := filepath.Join(testkit.TmpfsDir(t), "seed")
	c, err := Create(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if fill != nil {
		fill(c)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	path := filepath.Join(testkit.TmpfsDir(t), "ch")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// reseal recomputes the header checksum after a test edits a field.
func reseal(b []byte) {
	binary.LittleEndian.PutUint32(b[cfgChecksum:], crcOf(b[:cfgChecksummed]))
}

func TestOpenRejectsBadFiles(t *testing.T) {
	good := channelBytes(t, Options{SlotSize: 16, SlotCount: 4, MaxPeers: 4}, nil)
	edit := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	cases := []struct {
		name  string
		data  []byte
		want  error
		field string
	}{
		{"empty", nil, ErrTruncated, "size"},
		{"shorter than header", good[:100], ErrTruncated, "size"},
		{"foreign file", edit(func(b []byte) []byte { copy(b, "\x7fELF\x02\x01\x01\x00"); return b }), ErrNotChannel, "magic"},
		{"newer version", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[cfgVersion:], 2)
			reseal(b)
			return b
		}), ErrVersion, "version"},
		{"flipped bit", edit(func(b []byte) []byte { b[cfgSlotCount] ^= 1; return b }), ErrCorrupt, "checksum"},
		{"slot count not a power of two", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[cfgSlotCount:], 3)
			reseal(b)
			return b
		}), ErrCorrupt, "slotCount"},
		{"unknown mode", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[cfgMode:], 9)
			reseal(b)
			return b
		}), ErrCorrupt, "mode"},
		{"wrong stride", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[cfgSlotStride:], 16)
			reseal(b)
			return b
		}), ErrCorrupt, "slotStride"},
		{"truncated ring", good[:len(good)-64], ErrTruncated, "size"},
		{"trailing bytes", append(append([]byte(nil), good...), 0), ErrCorrupt, "size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.data)
			c, err := Open(path)
			if err == nil {
				_ = c.Close()
				t.Fatal("Open succeeded")
			}
			var he *HeaderError
			if !errors.Is(err, tc.want) || !errors.As(err, &he) || he.Field != tc.field {
				t.Fatalf("Open = %v, want %v in field %s", err, tc.want, tc.field)
			}
			if _, err := ReadStats(path); !errors.Is(err, tc.want) {
				t.Fatalf("ReadStats = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Open(writeFile(t, good)); err != nil {
		t.Fatalf("Open of the untouched file: %v", err)
	}
}

func TestCreateRejectsExistingAndBadOptions(t *testing.T) {
	path := filepath.Join(testkit.TmpfsDir(t), "ch")
	c, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Options(); got != (Options{Mode: ModeQueue, SlotSize: DefaultSlotSize, SlotCount: DefaultSlotCount, MaxPeers: DefaultMaxPeers}) {
		t.Fatalf("Options() = %+v", got)
	}
	if _, err := Create(path, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over an existing file = %v, want ErrExists", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("a failed Create left files behind: %v", entries)
	}
	for _, o := range []Options{
		{SlotCount: 3},
		{SlotCount: 1},
		{SlotSize: -1},
		{Mode: 7},
		{Overflow: OverflowOverwrite}, // queue mode cannot overwrite
		{MaxPeers: 5000},
	} {
		if _, err := Create(filepath.Join(filepath.Dir(path), "bad"), o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Create(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
}

func TestReadStatsFromAnotherHandleDoesNotRegister(t *testing.T) {
	c := newTestChannel(t, Options{SlotSize: 16, SlotCount: 4})
	p, _ := c.NewProducer()
	q, _ := c.NewConsumer()
	_ = p.TrySend([]byte("x"))
	st, err := ReadStats(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Producers != 1 || st.Consumers != 1 || st.Sent != 1 || st.Depth != 1 {
		t.Fatalf("ReadStats = %+v", st)
	}
	_ = q.Close()
	if st, _ := ReadStats(c.Path()); st.Consumers != 0 || st.Producers != 1 {
		t.Fatalf("after consumer Close: %+v", st)
	}
}

// FuzzOpen feeds arbitrary bytes to Open and, when they pass validation,
// drives the ring state they contain: nothing may panic, read out of
// bounds or hang.
func FuzzOpen(f *testing.F) {
	small := Options{SlotSize: 16, SlotCount: 4, MaxPeers: 4}
	f.Add(channelBytes(f, small, nil))
	f.Add(channelBytes(f, small, func(c *Channel) {
		p, _ := c.NewProducer()
		q, _ := c.NewConsumer()
		for i := 0; i < 3; i++ {
			_ = p.TrySend([]byte("hello"))
		}
		_, _ = q.TryBorrow() // held at Close: redelivered
		r, _ := p.TryReserve()
		_ = r
	}))
	bc := Options{Mode: ModeBroadcast, SlotSize: 16, SlotCount: 4, MaxPeers: 4, Overflow: OverflowOverwrite}
	f.Add(channelBytes(f, bc, func(c *Channel) {
		p, _ := c.NewProducer()
		_, _ = c.Subscribe()
		for i := 0; i < 6; i++ {
			_ = p.TrySend([]byte("broadcast"))
		}
	}))
	f.Add([]byte(Magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := writeFile(t, data)
		_, _ = ReadStats(path)
		// Recoveries of garbage peer entries are logged; keep them out of
		// the fuzz worker's output pipe.
		c, err := Open(path, WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open error is not a header error: %v", err)
			}
			return
		}
		defer c.Close()
		exerciseRing(c)
	})
}

// exerciseRing runs every non-blocking operation a few times.
func exerciseRing(c *Channel) {
	_ = c.Stats()
	_, _ = c.ReapDeadPeers()
	buf := make([]byte, c.Options().SlotSize)
	if p, err := c.NewProducer(); err == nil {
		for i := 0; i < 3; i++ {
			_ = p.TrySend(buf[:i])
		}
		if r, err := p.TryReserve(); err == nil {
			_ = r.Abort()
		}
	}
	if c.Options().Mode == ModeQueue {
		if q, err := c.NewConsumer(); err == nil {
			for i := 0; i < 4; i++ {
				_, _ = q.TryRecv(buf)
			}
			if m, err := q.TryBorrow(); err == nil {
				_ = m.Bytes()
			}
		}
	} else if s, err := c.Subscribe(); err == nil {
		for i := 0; i < 4; i++ {
			_, _ = s.TryRecv(buf)
		}
	}
	_ = c.Stats()
}
