package harness

import (
	"strings"
	"testing"
)

// TestPyMQ runs the py-mq transport for real: two Python peers through a
// broker process, every round trip timed, every streamed message received,
// checked and acknowledged.
func TestPyMQ(t *testing.T) {
	env := testEnv(t)
	backend, err := Lookup(namePyMQ)
	if err != nil {
		t.Fatal(err)
	}
	if own := ownProcesses(namePyMQ); own != 3 {
		t.Errorf("ownProcesses(%s) = %d, want 3 (the sides and the broker)", namePyMQ, own)
	}
	for _, kind := range []Kind{KindRTT, KindThroughput} {
		t.Run(string(kind), func(t *testing.T) {
			res := measureTiny(t, env, backend, tinyJob(t, namePyMQ, kind, 64))
			if kind == KindThroughput {
				t.Logf("%d messages in %.3fs", res.Throughput.Messages, res.Throughput.Seconds)
			}
		})
	}
}

// TestPyMQTarget: the Python mq promise is an absolute floor, judged at
// 64 B only, with the broker counted among the job's processes.
func TestPyMQTarget(t *testing.T) {
	const target = "Python mq with acks"
	for _, tc := range []struct {
		name    string
		results []Result
		status  Status
		ratio   float64
		line    string
	}{
		{"pass", []Result{tput(namePyMQ, 64, 60_000)}, StatusPass, 1.2,
			"py-mq is 60000 msgs/s, 1.20× the floor (target ≥ 50000 msgs/s)"},
		{"miss", []Result{tput(namePyMQ, 64, 40_000)}, StatusMiss, 0.8, "py-mq is 40000 msgs/s"},
		{"not measured", []Result{tput(nameCRing, 64, 1e6)}, StatusNA, 0, "py-mq not measured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{Results: append(tc.results, tput(namePyMQ, 4096, 1000))}
			vs := judge(r)
			v := verdictFor(t, vs, target, 64)
			if v.Status != tc.status || (tc.ratio != 0 && (v.Ratio < tc.ratio-0.01 || v.Ratio > tc.ratio+0.01)) {
				t.Errorf("%s ratio %.3f, want %s %.3f", v.Status, v.Ratio, tc.status, tc.ratio)
			}
			if s := v.String(); !strings.Contains(s, tc.line) {
				t.Errorf("verdict %q, want it to say %q", s, tc.line)
			}
			for _, v := range vs {
				if strings.HasPrefix(v.Target, target) && v.Size != 64 {
					t.Errorf("verdict %q at %d B, a size the target does not cover", v.Target, v.Size)
				}
			}
		})
	}

	// Three processes on two CPUs: a load of 3.4 is the job's own, 4 is not.
	for _, tc := range []struct {
		load   float64
		status Status
	}{{3.4, StatusPass}, {4, StatusNoisy}} {
		res := Result{Backend: namePyMQ, Kind: KindThroughput, Size: 64}
		for range 3 {
			res.Repeats = append(res.Repeats, Repeat{Throughput: newThroughput(60_000, 1, 64), Load: Load{tc.load, tc.load}})
		}
		combine(&res)
		v := verdictFor(t, noiseReport(res).Verdicts, target, 64)
		if v.Status != tc.status || v.Medians != StatusPass {
			t.Errorf("load %.1f: %s (medians %s), want %s (medians PASS): %s", tc.load, v.Status, v.Medians, tc.status, v.Note)
		}
	}
}
