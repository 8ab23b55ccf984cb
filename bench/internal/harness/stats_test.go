package harness

import (
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1}, 5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its input: %v", in)
			}
		}
	}
}

func TestSpreadOf(t *testing.T) {
	s := spreadOf([]float64{110, 90, 100})
	if s.Median != 100 || s.Min != 90 || s.Max != 110 || math.Abs(s.Percent-20) > 1e-9 {
		t.Errorf("spreadOf = %+v, want median 100, 90..110, 20%%", s)
	}
	if s := spreadOf([]float64{42}); s.Percent != 0 || s.Median != 42 {
		t.Errorf("one value: %+v", s)
	}
	if s := spreadOf(nil); s != (Spread{}) {
		t.Errorf("no values: %+v", s)
	}
}

// TestCombine: the figures of a repeated job are the medians of its
// repeats, metric by metric, even when they come from different repeats.
func TestCombine(t *testing.T) {
	res := Result{Backend: "pipe", Kind: KindRTT, Size: 64, Repeats: []Repeat{
		{RTT: &RTTStats{Samples: 100, Min: 5, Mean: 12, P50: 10, P99: 90, P999: 200, Max: 900}},
		{RTT: &RTTStats{Samples: 100, Min: 4, Mean: 14, P50: 12, P99: 50, P999: 300, Max: 500}},
		{RTT: &RTTStats{Samples: 80, Min: 6, Mean: 13, P50: 11, P99: 70, P999: 250, Max: 700}},
	}}
	combine(&res)
	want := RTTStats{Samples: 100, Min: 5, Mean: 13, P50: 11, P99: 70, P999: 250, Max: 700}
	if res.RTT == nil || *res.RTT != want {
		t.Fatalf("combined %+v, want %+v", res.RTT, want)
	}
	if s := res.Spread["p50_ns"]; s.Min != 10 || s.Max != 12 || math.Abs(s.Percent-100*2.0/11) > 1e-9 {
		t.Errorf("p50 spread %+v", s)
	}

	tp := Result{Backend: "pipe", Kind: KindThroughput, Size: 1000, Repeats: []Repeat{
		{Throughput: newThroughput(300, 1, 1000)},
		{Throughput: newThroughput(100, 1, 1000)},
		{Throughput: newThroughput(200, 1, 1000)},
	}}
	combine(&tp)
	if tp.Throughput == nil || tp.Throughput.MsgsPerS != 200 || tp.Throughput.GBPerS != 200*1000/1e9 || tp.Throughput.Messages != 200 {
		t.Fatalf("combined throughput %+v", tp.Throughput)
	}
	if s := tp.Spread["msgs_per_s"]; s.Percent != 100 {
		t.Errorf("msgs/s spread %+v, want 100%%", s)
	}
}

// TestOldReportRepeats: a result saved before repeats existed counts as
// one repeat of unknown load.
func TestOldReportRepeats(t *testing.T) {
	old := rtt(nameShmSpin, 64, 300)
	reps := old.repeats()
	if len(reps) != 1 || reps[0].RTT.P50 != 300 || reps[0].Load.Peak() >= 0 {
		t.Fatalf("repeats of an old result: %+v", reps)
	}
	if vs := rttMetrics[0].values(old); len(vs) != 1 || vs[0] != 300 {
		t.Errorf("p50 values %v", vs)
	}
	if failed := (Result{Backend: "x", Kind: KindRTT, Error: "boom"}); len(failed.repeats()) != 0 {
		t.Error("a failed result has repeats")
	}
}

func TestParseLoad(t *testing.T) {
	if got := parseLoad("1.25 0.80 0.50 3/120 4242\n"); got != 1.25 {
		t.Errorf("parseLoad = %v", got)
	}
	for _, bad := range []string{"", "x 1 2"} {
		if got := parseLoad(bad); got != -1 {
			t.Errorf("parseLoad(%q) = %v, want -1", bad, got)
		}
	}
}

func TestProfileName(t *testing.T) {
	job := DefaultConfig().job(nameShmSpin, KindThroughput, 4<<10)
	if got := profileName(job, 2); got != "shm-spin-throughput-4KiB-r2" {
		t.Errorf("profileName = %q", got)
	}
}
