package harness

import (
	"errors"
	"testing"
)

func TestStampsRoundTrip(t *testing.T) {
	for _, size := range []int{MinSize, 64, 4096} {
		msg := newMessage(size)
		stamp(msg, 42, flagLast)
		if err := checkStamps(msg, 42, size); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if err := checkPayload(msg, 42, payloadSum(size)); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if flags(msg) != flagLast {
			t.Fatalf("size %d: flags %d, want %d", size, flags(msg), flagLast)
		}
	}
}

// TestStampsDetectCorruption: a receiver must reject a message that is not
// the one expected, whichever part is wrong.
func TestStampsDetectCorruption(t *testing.T) {
	const size = 256
	tests := []struct {
		name   string
		mangle func([]byte) []byte
		seq    uint64
	}{
		{"stale message", func(b []byte) []byte { return b }, 8},
		{"torn header", func(b []byte) []byte { b[0] ^= 1; return b }, 7},
		{"torn trailer", func(b []byte) []byte { b[size-1] ^= 0x80; return b }, 7},
		{"wrong size field", func(b []byte) []byte { b[8]++; return b }, 7},
		{"short", func(b []byte) []byte { return b[:size-1] }, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := newMessage(size)
			stamp(msg, 7, 0)
			err := checkStamps(tt.mangle(msg), tt.seq, size)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("checkStamps = %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("payload", func(t *testing.T) {
		msg := newMessage(size)
		stamp(msg, 7, 0)
		msg[size/2] ^= 0xff
		if err := checkStamps(msg, 7, size); err != nil {
			t.Fatalf("stamps of a message with a bad payload: %v", err)
		}
		if err := checkPayload(msg, 7, payloadSum(size)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("checkPayload = %v, want ErrCorrupt", err)
		}
	})
}

func TestSummarize(t *testing.T) {
	// 1..1000 in reverse: the nearest-rank percentiles are exact.
	s := make([]int64, 1000)
	for i := range s {
		s[i] = int64(1000 - i)
	}
	got := summarize(s)
	want := RTTStats{Samples: 1000, Min: 1, Mean: 500, P50: 500, P99: 990, P999: 999, Max: 1000}
	if *got != want {
		t.Fatalf("summarize = %+v, want %+v", *got, want)
	}
	if one := summarize([]int64{7}); one.P50 != 7 || one.P999 != 7 {
		t.Fatalf("one sample: %+v", *one)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"64": 64, "64B": 64, "4KiB": 4096, "4k": 4096, " 1 MiB": 1 << 20, "2MB": 2 << 20} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "-1", "1.5KiB", "12Q"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
	for n, want := range map[int]string{64: "64 B", 4096: "4 KiB", 1 << 20: "1 MiB", 1500: "1500 B"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSlotsFor(t *testing.T) {
	for size, want := range map[int]int{64: 1024, 4096: 1024, 16 << 10: 1024, 20 << 10: 512, 200 << 10: 64, 1 << 20: 16, 4 << 20: 8} {
		if got := slotsFor(size); got != want {
			t.Errorf("slotsFor(%d) = %d, want %d", size, got, want)
		}
	}
}
