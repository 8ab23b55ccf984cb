package harness

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func findRow(t *testing.T, c Comparison, backend, metric string) ComparisonRow {
	t.Helper()
	for _, row := range c.Rows {
		if row.Backend == backend && row.Metric == metric {
			return row
		}
	}
	t.Fatalf("no row %s %s in %+v", backend, metric, c.Rows)
	return ComparisonRow{}
}

func TestCompare(t *testing.T) {
	before := noiseReport(
		repeatedRTT(nameCRing, 64, 1.0, 100, 100, 102),
		repeatedRTT(nameShmSpin, 64, 1.0, 300, 310, 320),
		repeatedRTT("pipe", 64, 1.0, 1000, 1000, 1000),
		rtt("mqueue", 64, 5000), // from a report without repeats
	)
	after := noiseReport(
		repeatedRTT(nameCRing, 64, 1.0, 101, 101, 103),
		repeatedRTT(nameShmSpin, 64, 1.0, 120, 125, 135),
		repeatedRTT("pipe", 64, 1.0, 800, 1200, 1500),
		rtt("mqueue", 64, 4000),
		tput(nameShmSpin, 64, 1e6),
	)
	c := Compare(before, after)

	spin := findRow(t, c, nameShmSpin, "p50_ns")
	if spin.Before.Median != 310 || spin.After.Median != 125 || math.Abs(spin.Change-100*(125-310)/310.0) > 1e-9 || spin.Assessment != "better" {
		t.Errorf("shm-spin p50 row %+v", spin)
	}
	if ring := findRow(t, c, nameCRing, "p50_ns"); ring.Assessment != "within spread" {
		t.Errorf("a 1%% change within a 2%% spread: %+v", ring)
	}
	if pipe := findRow(t, c, "pipe", "p50_ns"); pipe.Assessment != "within spread" || math.Abs(pipe.Change-20) > 1e-9 {
		t.Errorf("+20%% within a 58%% spread: %+v", pipe)
	}
	if mq := findRow(t, c, "mqueue", "p50_ns"); mq.Assessment != "" || math.Abs(mq.Change+20) > 1e-9 {
		t.Errorf("single repeats: a change but no assessment: %+v", mq)
	}
	if only := findRow(t, c, nameShmSpin, "msgs_per_s"); only.Before.OK || !only.After.OK || !math.IsNaN(only.Change) {
		t.Errorf("a job only after: %+v", only)
	}

	var vc *VerdictChange
	for i := range c.Verdicts {
		if strings.HasPrefix(c.Verdicts[i].Target, "shm spinning rtt") {
			vc = &c.Verdicts[i]
		}
	}
	if vc == nil || vc.Before == nil || vc.After == nil || vc.Before.Status != StatusMiss || vc.After.Status != StatusPass {
		t.Fatalf("spinning rtt verdict change %+v", vc)
	}

	var buf bytes.Buffer
	if err := WriteComparison(&buf, before, after); err != nil {
		t.Fatal(err)
	}
	// Compare words, not the alignment.
	out := strings.Join(strings.Fields(buf.String()), " ")
	for _, want := range []string{
		"transport size metric before after change spread before spread after",
		"shm-spin 64 B p50_ns 310ns 125ns -59.7% better 6.5% of 3 12.0% of 3",
		"pipe 64 B p50_ns 1µs 1.2µs +20.0% within spread",
		"mqueue 64 B p50_ns 5µs 4µs -20.0% - -",
		"shm-spin 64 B msgs_per_s - 1.00M - - -",
		"shm spinning rtt p50 within 1.3× of the C ring @64 B MISS 3.10× → PASS 1.24×",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
}

// TestCompareWorse: a slower round trip or a lower rate beyond the spread
// reads worse.
func TestCompareWorse(t *testing.T) {
	before := noiseReport(repeatedRTT("pipe", 64, 1, 100, 100, 101))
	after := noiseReport(repeatedRTT("pipe", 64, 1, 150, 150, 151))
	if row := findRow(t, Compare(before, after), "pipe", "p50_ns"); row.Assessment != "worse" {
		t.Errorf("rtt 100 → 150 ns: %+v", row)
	}
	tp := func(rates ...float64) *Report {
		res := Result{Backend: "pipe", Kind: KindThroughput, Size: 64}
		for _, v := range rates {
			res.Repeats = append(res.Repeats, Repeat{Throughput: newThroughput(int64(v), 1, 64)})
		}
		combine(&res)
		return noiseReport(res)
	}
	if row := findRow(t, Compare(tp(1000, 1000, 1010), tp(500, 500, 505)), "pipe", "msgs_per_s"); row.Assessment != "worse" {
		t.Errorf("1000 → 500 msgs/s: %+v", row)
	}
	if row := findRow(t, Compare(tp(500, 500, 505), tp(1000, 1000, 1010)), "pipe", "msgs_per_s"); row.Assessment != "better" {
		t.Errorf("500 → 1000 msgs/s: %+v", row)
	}
}
