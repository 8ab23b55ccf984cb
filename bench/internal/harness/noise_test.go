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

// withForeign sets the CPU use of res's repeats: foreign CPU per repeat,
// each of a one-second repeat (resolution 0.02).
func withForeign(res Result, foreign ...float64) Result {
	for i := range res.Repeats {
		res.Repeats[i].CPU = &CPUUse{Wall: 1, Busy: 1 + foreign[i], Own: 1, Foreign: foreign[i], Resolution: 0.02}
	}
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

func TestNoiseRuleForeignCPU(t *testing.T) {
	rule := DefaultNoiseRule()
	use := func(foreign, steal float64) *CPUUse {
		return &CPUUse{Wall: 1, Foreign: foreign, Steal: steal, Resolution: 0.02}
	}
	// Measured repeats are judged by foreign CPU alone: the load average
	// of 5 here is the benchmark's own work trailing.
	quiet := figure{name: "a", own: 2, loads: []Load{{5, 5}, {5, 5}}, cpus: []*CPUUse{use(0.01, 0), use(0.12, 0)}}
	if why := rule.why(2, quiet); why != "" {
		t.Errorf("foreign CPU within 0.1 + the resolution 0.02, load 5: %q", why)
	}
	busy := figure{name: "b", own: 2, loads: []Load{{1, 1}, {1, 1}, {1, 1}},
		cpus: []*CPUUse{use(0.3, 0), use(0.5, 0.07), use(0.01, 0)}}
	if why := rule.why(2, quiet, busy); why != "other work used 0.50±0.02 CPU during b repeat 2 of 3, 0.07 of it steal, above 0.1" {
		t.Errorf("the worst repeat of b: %q", why)
	}
	// Unlike the load average, foreign CPU is not relative to the CPU
	// count.
	if why := rule.why(64, busy); !strings.Contains(why, "during b repeat 2 of 3") {
		t.Errorf("on 64 CPUs: %q", why)
	}
	// A repeat without a reading (an old report, no /proc) falls back to
	// the load average; the others keep the foreign CPU rule.
	mixed := figure{name: "m", own: 2, loads: []Load{{3.1, 3.1}, {5, 5}}, cpus: []*CPUUse{nil, use(0.01, 0)}}
	if why := rule.why(2, mixed); why != "load average 3.10 during m, above 2 + 0.5" {
		t.Errorf("an unmeasured repeat at a load of 3.1: %q", why)
	}
	mixed.cpus[1] = use(0.2, 0)
	if why := rule.why(2, mixed); why != "other work used 0.20±0.02 CPU during m repeat 2 of 2, above 0.1; load average 3.10 during m, above 2 + 0.5" {
		t.Errorf("both rules: %q", why)
	}
	short := figure{name: "s", own: 2, loads: []Load{{1, 1}}, cpus: []*CPUUse{{Wall: 0.01, Foreign: 1.5, Resolution: 2}}}
	if why := rule.why(2, short); why != "" {
		t.Errorf("10 ms repeat, whose foreign CPU is within the counters' resolution: %q", why)
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
		// Measured: the load average no longer decides.
		{"quiet, trailing load", withForeign(repeatedRTT(nameShmSpin, 64, 3.8, 120, 125, 130), 0.02, 0.01, 0.03), StatusPass, StatusPass, ""},
		{"other work", withForeign(repeatedRTT(nameShmSpin, 64, 1.0, 120, 125, 130), 0.02, 0.4, 0.03), StatusNoisy, StatusPass,
			"other work used 0.40±0.02 CPU during shm-spin repeat 2 of 3, above 0.1"},
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
	cring := withForeign(repeatedRTT(nameCRing, 64, 1.0, 100, 100, 101), 0.01, -0.02, 0.5)
	cring.Repeats[2].CPU.Steal = 0.25
	r := noiseReport(cring, repeatedRTT(nameShmSpin, 64, 3.0, 140, 150, 160))
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
		"NOISY: other work above 0.1 CPU during a repeat (where not measured: load average above max(2 CPUs, the job's processes) + 0.5), or a spread above 15%",
		"Repeats: min..max of each figure (spread), 1-minute load average before→after each repeat, CPU time other work used during each repeat",
		"max_ns 140ns..160ns (13.3%), load 3.00→3.00 3.00→3.00 3.00→3.00\n",
		"max_ns 100ns..101ns (1.0%), load 1.00→1.00 1.00→1.00 1.00→1.00, other CPU 0.01 -0.02 0.50, steal 0.00 0.00 0.25\n",
		"NOISY  shm spinning rtt p50 within 1.3× of the C ring @64 B: shm-spin is 1.50× cring (target ≤ 1.30×), medians say MISS: " +
			"load average 3.00 during shm-spin, above 2 + 0.5; other work used 0.50±0.02 CPU during cring repeat 3 of 3, 0.25 of it steal, above 0.1",
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
	r := noiseReport(withForeign(repeatedRTT(nameCRing, 64, 1.0, 100, 100, 101), 0.01, 0.02, 0.03), repeatedRTT(nameShmSpin, 64, 3.0, 140, 150, 160))
	r.Memcpy = &MemcpyReference{Size: 1 << 20, Repeats: []MemcpyRun{{GoGBPerS: 10, CGBPerS: 20, Load: Load{1, 1.1}, CPU: &CPUUse{Wall: 0.4, Foreign: 0.01}}, {GoGBPerS: 12, CGBPerS: 22, Load: Load{1.1, 1.2}}}}
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
	for _, key := range []string{`"repeats"`, `"spread"`, `"load"`, `"before"`, `"medians"`, `"noise_rule"`, `"online_cpus"`,
		`"max_foreign_cpu"`, `"cpu"`, `"foreign_cpus"`, `"steal_cpus"`, `"own_cpus"`, `"busy_cpus"`, `"wall_s"`, `"resolution_cpus"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
	if back.Memcpy.GoGBPerS != 11 || back.Memcpy.Best() != 21 {
		t.Errorf("memcpy medians %+v", back.Memcpy)
	}
}

// TestOldReportNoForeignCPU: a report saved before foreign CPU was
// measured has no cpu in its repeats and no max_foreign_cpu in its rule;
// it reads back, judges by the load average and renders as before.
func TestOldReportNoForeignCPU(t *testing.T) {
	const old = `{"machine":{"cpus":2,"online_cpus":2,"date":"2026-12-01T00:00:00Z","load_avg":"3.0 3.0 3.0"},
"config":{"repeat":2,"noise_rule":{"load_slack":0.5,"max_spread_pct":15}},
"results":[
{"transport":"cring","kind":"rtt","size":64,"rtt":{"samples":10,"p50_ns":100},
 "repeats":[{"rtt":{"samples":10,"p50_ns":100},"load":{"before":1,"after":1}},{"rtt":{"samples":10,"p50_ns":100},"load":{"before":1,"after":1}}]},
{"transport":"shm-spin","kind":"rtt","size":64,"rtt":{"samples":10,"p50_ns":140},
 "repeats":[{"rtt":{"samples":10,"p50_ns":140},"load":{"before":2.6,"after":3.2}},{"rtt":{"samples":10,"p50_ns":140},"load":{"before":1,"after":1}}]}],
"verdicts":[]}`
	var r Report
	if err := json.Unmarshal([]byte(old), &r); err != nil {
		t.Fatal(err)
	}
	for i := range r.Results {
		combine(&r.Results[i])
		for _, rep := range r.Results[i].Repeats {
			if rep.CPU != nil {
				t.Fatalf("an old repeat has a CPU use: %+v", rep.CPU)
			}
		}
	}
	if r.Config.Noise.MaxForeignCPU != 0 {
		t.Errorf("old rule %+v", r.Config.Noise)
	}
	r.Verdicts = judge(&r)
	v := verdictFor(t, r.Verdicts, "shm spinning rtt", 64)
	if v.Status != StatusNoisy || v.Note != "load average 3.20 during shm-spin, above 2 + 0.5" {
		t.Errorf("old report judged %+v", v)
	}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "NOISY: load average above max(2 CPUs, the job's processes) + 0.5, or a spread above 15%") ||
		!strings.Contains(out, "(0.0%), load 2.60→3.20 1.00→1.00\n") || strings.Contains(out, "other CPU") || strings.Contains(out, "other work") {
		t.Errorf("old report rendered:\n%s", out)
	}
}
