package harness

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// repeatedRTT is an rtt result of backend with one repeat per p50, each
// at the load average load.
func repeatedRTT(backend string, size int, load float64, p50s ...int64) Result {
	res := Result{Backend: backend, Kind: KindRTT, Size: size}
	for _, v := range p50s {
		res.Repeats = append(res.Repeats, Repeat{RTT: &RTTStats{Samples: 10, Min: v, Mean: v, P50: v, P99: v, P999: v, Max: v}, Load: Load{load, load}})
	}
	combine(&res)
	return res
}

// noiseReport is a two-CPU run with the default rule.
func noiseReport(results ...Result) *Report {
	r := &Report{
		Machine: Machine{CPUs: 2, OnlineCPUs: 2, Date: "2026-12-07T00:00:00Z", LoadAvg: "1.00 1.00 1.00"},
		Config:  ConfigSummary{Repeat: 3, Noise: DefaultNoiseRule()},
		Results: results,
	}
	r.Verdicts = judge(r)
	return r
}

func TestNoiseRule(t *testing.T) {
	rule := NoiseRule{LoadSlack: 0.5, MaxSpread: 15}
	quiet := figure{name: "a", own: 2, loads: []Load{{1.0, 2.4}, {2.5, 2.5}}, spread: Spread{Percent: 15}, runs: 3}
	if why := rule.why(2, quiet); why != "" {
		t.Errorf("load within 2 CPUs + 0.5 and spread at the limit: %q", why)
	}
	busy := figure{name: "b", own: 2, loads: []Load{{1.0, 1.2}, {1.3, 2.6}}, runs: 3}
	if why := rule.why(2, quiet, busy); !strings.Contains(why, "load average 2.60 during b, above 2 + 0.5") || strings.Contains(why, "during a") {
		t.Errorf("busy after one repeat of b: %q", why)
	}
	if why := rule.why(8, busy); why != "" {
		t.Errorf("a load of 2.6 on 8 CPUs leaves CPUs free: %q", why)
	}
	// A job with a broker process puts a load of three on its own.
	broker := figure{name: "m", own: 3, loads: []Load{{3.4, 3.4}}}
	if why := rule.why(2, broker); why != "" {
		t.Errorf("three processes at a load of 3.4: %q", why)
	}
	broker.loads[0].After = 3.6
	if why := rule.why(2, broker); !strings.Contains(why, "above 3 + 0.5") {
		t.Errorf("three processes at a load of 3.6: %q", why)
	}
	spread := figure{name: "c", own: 2, loads: []Load{{-1, -1}}, spread: Spread{Percent: 15.1}, runs: 2}
	if why := rule.why(2, spread); !strings.Contains(why, "c spread 15.1% over 2 repeats") {
		t.Errorf("spread above the limit: %q", why)
	}
	spread.runs = 1
	if why := rule.why(2, spread); why != "" {
		t.Errorf("a single repeat has no spread to judge: %q", why)
	}
}

// TestJudgeNoisy: a verdict on a busy machine or from disagreeing repeats
// is NOISY and keeps what the medians say; a quiet, steady one is not.
func TestJudgeNoisy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		subject Result
		status  Status
		medians Status
		note    string
	}{
		{"quiet", repeatedRTT(nameShmSpin, 64, 1.9, 120, 125, 130), StatusPass, StatusPass, ""},
		{"busy", repeatedRTT(nameShmSpin, 64, 3.1, 120, 125, 130), StatusNoisy, StatusPass, "load average 3.10"},
		{"spread", repeatedRTT(nameShmSpin, 64, 1.0, 100, 200, 300), StatusNoisy, StatusMiss, "shm-spin spread 100.0% over 3 repeats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := noiseReport(repeatedRTT(nameCRing, 64, 1.0, 100, 100, 101), tc.subject)
			v := verdictFor(t, r.Verdicts, "shm spinning rtt", 64)
			if v.Status != tc.status || v.Medians != tc.medians || !strings.Contains(v.Note, tc.note) {
				t.Errorf("verdict %+v, want %s (medians %s) noting %q", v, tc.status, tc.medians, tc.note)
			}
			if tally := TallyVerdicts(r.Verdicts); tally[tc.status] != 1 {
				t.Errorf("tally %v", tally)
			}
		})
	}
	// A busy baseline makes the verdict noisy too.
	r := noiseReport(repeatedRTT(nameCRing, 64, 2.7, 100, 100, 100), repeatedRTT(nameShmSpin, 64, 1.0, 140, 140, 140))
	if v := verdictFor(t, r.Verdicts, "shm spinning rtt", 64); v.Status != StatusNoisy || !strings.Contains(v.Note, "during cring") {
		t.Errorf("busy baseline: %+v", v)
	}
}

func TestWriteTextRepeats(t *testing.T) {
	r := noiseReport(repeatedRTT(nameCRing, 64, 1.0, 100, 100, 101), repeatedRTT(nameShmSpin, 64, 3.0, 140, 150, 160))
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"each job 3×",
		"spread",
		"13.3%", // shm-spin's p50 spread: 20 of 150
		"shm-spin 64 B rtt: p50_ns 140ns..160ns (13.3%)",
		"load 3.00→3.00 3.00→3.00 3.00→3.00",
		"NOISY  shm spinning rtt p50 within 1.3× of the C ring @64 B: shm-spin is 1.50× cring (target ≤ 1.30×), medians say MISS: load average 3.00",
		"verdicts: 0 PASS, 0 MISS, 1 NOISY,",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestReportJSONRoundTrip: what -json writes reads back as the same
// report, repeats, spreads, loads and verdicts included.
func TestReportJSONRoundTrip(t *testing.T) {
	r := noiseReport(repeatedRTT(nameCRing, 64, 1.0, 100, 100, 101), repeatedRTT(nameShmSpin, 64, 3.0, 140, 150, 160))
	r.Memcpy = &MemcpyReference{Size: 1 << 20, Repeats: []MemcpyRun{{GoGBPerS: 10, CGBPerS: 20, Load: Load{1, 1.1}}, {GoGBPerS: 12, CGBPerS: 22, Load: Load{1.1, 1.2}}}}
	r.Memcpy.combine()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, &back) {
		t.Errorf("round trip changed the report:\n%+v\n%+v", r, &back)
	}
	for _, key := range []string{`"repeats"`, `"spread"`, `"load"`, `"before"`, `"medians"`, `"noise_rule"`, `"online_cpus"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
	if back.Memcpy.GoGBPerS != 11 || back.Memcpy.Best() != 21 {
		t.Errorf("memcpy medians %+v", back.Memcpy)
	}
}
