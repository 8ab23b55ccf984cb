package appkit

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestStampAndLatency(t *testing.T) {
	msg := make([]byte, 32)
	Stamp(msg, 7)
	lat, ok := Latency(msg)
	if !ok || lat < 0 || lat > time.Second {
		t.Fatalf("Latency = %v, %v", lat, ok)
	}
	if _, ok := Latency(msg[:StampSize-1]); ok {
		t.Error("a message shorter than a stamp has a latency")
	}
}

func TestPaceKeepsTheRate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var n uint64
	if err := Pace(ctx, 1000, func(seq uint64) error {
		if seq != n {
			t.Fatalf("seq %d, want %d", seq, n)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// 300 ms at 1000/s: about 300, never more than the schedule allows.
	if n < 150 || n > 301 {
		t.Errorf("sent %d in 300ms at 1000/s", n)
	}
}

func TestWindowSummary(t *testing.T) {
	var w Window
	for i := 1; i <= 100; i++ {
		w.Observe(10, time.Duration(i)*time.Microsecond)
	}
	w.Lost = 3
	got := w.Summary(time.Second)
	for _, want := range []string{"100 msg/s", "p50 50µs", "p99 99µs", "max 100µs", "lost 3"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
}

func TestNames(t *testing.T) {
	if got := Names(" a, ,b,"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("Names = %q", got)
	}
}
