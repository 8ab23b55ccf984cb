package harness

import (
	"bytes"
	"strings"
	"testing"
)

func rtt(backend string, size int, p50 int64) Result {
	return Result{Backend: backend, Kind: KindRTT, Size: size, RTT: &RTTStats{Samples: 10, P50: p50, P99: p50, P999: p50}}
}

func tput(backend string, size int, msgsPerS float64) Result {
	return Result{Backend: backend, Kind: KindThroughput, Size: size, Throughput: newThroughput(int64(msgsPerS), 1, size)}
}

func verdictFor(t *testing.T, vs []Verdict, target string, size int) Verdict {
	t.Helper()
	for _, v := range vs {
		if strings.HasPrefix(v.Target, target) && v.Size == size {
			return v
		}
	}
	t.Fatalf("no verdict for %q at %d in %+v", target, size, vs)
	return Verdict{}
}

func TestJudge(t *testing.T) {
	r := &Report{
		Memcpy: &MemcpyReference{Size: 1 << 20, GoGBPerS: 8, CGBPerS: 10},
		Results: []Result{
			rtt(nameCRing, 64, 200), rtt(nameShmSpin, 64, 250), rtt(nameShmBlock, 64, 6000), rtt(nameUnixStream, 64, 10000),
			rtt(nameCRing, 4096, 1000), rtt(nameShmSpin, 4096, 1600),
			{Backend: nameUnixStream, Kind: KindRTT, Size: 4096, Error: "boom"},
			tput(nameCRing, 64, 10e6), tput(nameShmSpin, 64, 6e6),
			tput(nameShmSpin, 1<<20, 7500), // 7.86 GB/s of a 10 GB/s memcpy
		},
	}
	vs := judge(r)
	for _, tc := range []struct {
		target string
		size   int
		status Status
		ratio  float64
	}{
		{"shm spinning rtt", 64, StatusPass, 1.25},
		{"shm spinning rtt", 4096, StatusMiss, 1.6},
		{"shm blocking rtt", 64, StatusMiss, 0.6},
		{"shm blocking rtt", 4096, StatusNA, 0}, // the baseline failed
		{"shm copy throughput", 64, StatusPass, 0.6},
		{"shm 1 MiB copy", 1 << 20, StatusPass, 0.786},
	} {
		v := verdictFor(t, vs, tc.target, tc.size)
		if v.Status != tc.status || (tc.ratio != 0 && (v.Ratio < tc.ratio-0.01 || v.Ratio > tc.ratio+0.01)) {
			t.Errorf("%s @%d: %s ratio %.3f, want %s %.3f", tc.target, tc.size, v.Status, v.Ratio, tc.status, tc.ratio)
		}
	}
	for _, v := range vs {
		if v.Size == 1<<20 && strings.Contains(v.Target, "rtt") {
			t.Errorf("rtt verdict %q at a size with no rtt results", v.Target)
		}
	}
}

func TestWriteText(t *testing.T) {
	r := &Report{
		Machine: Machine{CPUModel: "Test CPU", CPUs: 2},
		Results: []Result{
			rtt(nameCRing, 64, 200), rtt(nameUnixStream, 64, 10000),
			{Backend: "mqueue", Kind: KindRTT, Size: 1 << 20, Unavailable: "too big"},
			tput(nameCRing, 64, 10e6),
		},
	}
	r.Verdicts = judge(r)
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"Test CPU",
		"Round trip",
		"One-way throughput",
		"unix-stream  64 B",
		"50.00", // unix-stream p50 relative to the C ring
		"n/a: too big",
		"10.00M",
		"n/a    shm spinning rtt p50 within 1.3× of the C ring @64 B: shm-spin not measured",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
