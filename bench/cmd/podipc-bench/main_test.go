package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podipc/podipc/bench/internal/harness"
)

// TestMain lets the benchmark re-run this test binary as its peer process.
func TestMain(m *testing.M) {
	if harness.IsPeer() {
		os.Exit(harness.PeerMain())
	}
	os.Exit(m.Run())
}

// TestQuickSmoke runs the tool as CI would smoke it: -quick -json on a
// kernel transport and the C ring. It checks that the report parses and
// every result is a real, non-zero measurement; it asserts no timings.
func TestQuickSmoke(t *testing.T) {
	transports := "pipe,cring"
	if _, err := exec.LookPath("cc"); err != nil {
		t.Logf("no C compiler, measuring the pipe only: %v", err)
		transports = "pipe"
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-json", "-quiet", "-transports", transports, "-sizes", "64,4KiB",
		"-dir", t.TempDir(), "-cache-dir", t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	var rep harness.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, stdout.String())
	}
	wantResults := 2 * 2 // two sizes, both kinds
	if transports != "pipe" {
		wantResults *= 2
	}
	if len(rep.Results) != wantResults {
		t.Fatalf("%d results, want %d: %+v", len(rep.Results), wantResults, rep.Results)
	}
	for _, r := range rep.Results {
		if !r.OK() {
			t.Errorf("%s %s %d: not measured: %s%s", r.Backend, r.Kind, r.Size, r.Error, r.Unavailable)
			continue
		}
		switch r.Kind {
		case harness.KindRTT:
			if s := r.RTT; s.Samples == 0 || s.Min <= 0 || s.P50 < s.Min || s.P99 < s.P50 || s.P999 < s.P99 {
				t.Errorf("%s rtt %d: implausible statistics %+v", r.Backend, r.Size, *s)
			}
		case harness.KindThroughput:
			if s := r.Throughput; s.Messages == 0 || s.MsgsPerS <= 0 || s.GBPerS <= 0 {
				t.Errorf("%s throughput %d: implausible statistics %+v", r.Backend, r.Size, *s)
			}
		}
	}
	if rep.Memcpy == nil || rep.Memcpy.GoGBPerS <= 0 {
		t.Errorf("memcpy reference missing: %+v", rep.Memcpy)
	}
	if len(rep.Verdicts) == 0 {
		t.Error("no verdicts")
	}

	// A saved JSON report renders as the text report.
	saved := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(saved, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if code := run(ctx, []string{"-render", saved}, &text, &stderr); code != 0 {
		t.Fatalf("-render: exit code %d; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"Round trip", "One-way throughput", "pipe ", "Targets"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("rendered report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestFlags(t *testing.T) {
	cfg, _, err := parseFlags([]string{"-quick", "-samples", "123", "-sizes", "64,1MiB", "-cpus", "1,0", "-measure", "rtt"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	quick := harness.DefaultConfig().Quick()
	if cfg.Samples != 123 || cfg.LargeSamples != quick.LargeSamples || cfg.Duration != quick.Duration {
		t.Errorf("explicit flags must override -quick, the rest keep its values: %+v", cfg)
	}
	if len(cfg.Sizes) != 2 || cfg.Sizes[1] != 1<<20 || cfg.CPUs != [2]int{1, 0} || len(cfg.Kinds) != 1 || cfg.Kinds[0] != harness.KindRTT {
		t.Errorf("parsed %+v", cfg)
	}
	for _, bad := range [][]string{{"-sizes", "big"}, {"-cpus", "0"}, {"stray"}} {
		if _, _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}

func TestFlagsRepeatAndCompare(t *testing.T) {
	cfg, opts, err := parseFlags([]string{"-repeat", "5", "-max-foreign-cpu", "0.2", "-load-slack", "1", "-max-spread", "30", "-compare", "old.json", "-cpuprofile", "prof"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Repeat != 5 || cfg.Noise != (harness.NoiseRule{MaxForeignCPU: 0.2, LoadSlack: 1, MaxSpread: 30}) || cfg.ProfileDir != "prof" || len(opts.compare) != 1 {
		t.Errorf("parsed %+v %+v", cfg, opts)
	}
	if cfg, _, _ := parseFlags(nil, io.Discard); cfg.Repeat != 3 || cfg.Noise != harness.DefaultNoiseRule() {
		t.Errorf("defaults: repeat %d, noise %+v", cfg.Repeat, cfg.Noise)
	}
	if cfg, _, _ := parseFlags([]string{"-quick"}, io.Discard); cfg.Repeat != 1 {
		t.Errorf("-quick: repeat %d, want 1", cfg.Repeat)
	}
	if cfg, _, _ := parseFlags([]string{"-quick", "-repeat", "2"}, io.Discard); cfg.Repeat != 2 {
		t.Errorf("-quick -repeat 2: repeat %d", cfg.Repeat)
	}
	for _, bad := range [][]string{{"-compare", "a,b,c"}, {"-compare", "a,b", "-json"}, {"-compare", "a,b", "-save", "c"}} {
		if _, _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
	t.Setenv(harness.MQProfileEnv, "/tmp/p")
	if _, _, err := parseFlags([]string{"-cpuprofile", "prof"}, io.Discard); err == nil {
		t.Errorf("-cpuprofile with %s set succeeded", harness.MQProfileEnv)
	}
}

// TestRepeatProfileCompare runs a tiny job twice with profiles, saves the
// report and compares it with itself, then compares two saved reports
// without running. It asserts no timings.
func TestRepeatProfileCompare(t *testing.T) {
	dir := t.TempDir()
	prof, saved := filepath.Join(dir, "prof"), filepath.Join(dir, "run.json")
	old := filepath.Join(dir, "old.json")
	if err := os.WriteFile(old, []byte(`{"machine":{"cpus":2,"date":"before"},"results":[`+
		`{"transport":"pipe","kind":"rtt","size":64,"rtt":{"samples":10,"min_ns":900,"p50_ns":1000,"p99_ns":2000,"p999_ns":3000,"max_ns":4000}}],"verdicts":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-quiet", "-transports", "pipe", "-sizes", "64", "-measure", "rtt", "-samples", "200", "-repeat", "2",
		"-cpuprofile", prof, "-save", saved, "-compare", old, "-dir", t.TempDir(), "-cache-dir", t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	for _, name := range []string{"pipe-rtt-64B-r1-a.pprof", "pipe-rtt-64B-r1-b.pprof", "pipe-rtt-64B-r2-a.pprof", "pipe-rtt-64B-r2-b.pprof"} {
		if st, err := os.Stat(filepath.Join(prof, name)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
	b, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	var rep harness.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("-save wrote no JSON report: %v", err)
	}
	if len(rep.Results) != 1 || len(rep.Results[0].Repeats) != 2 || rep.Config.Repeat != 2 {
		t.Fatalf("saved report: %+v", rep.Results)
	}
	for _, r := range rep.Results[0].Repeats {
		if r.RTT == nil || r.RTT.Samples == 0 || r.Load.Before < 0 || r.Load.After < 0 {
			t.Errorf("repeat %+v: no measurement or no load", r)
		}
		// The job's processes used CPU time; what else did is the rest.
		if r.CPU == nil || r.CPU.Wall <= 0 || r.CPU.Own <= 0 || math.Abs(r.CPU.Busy-r.CPU.Own-r.CPU.Foreign) > 1e-9 {
			t.Errorf("repeat %+v: CPU use %+v", r, r.CPU)
		}
	}
	out := stdout.String()
	for _, want := range []string{"Repeats: min..max", "other CPU ", "Before/after: before", "pipe       64 B  p50_ns"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	var cmp bytes.Buffer
	if code := run(ctx, []string{"-compare", old + "," + saved}, &cmp, &stderr); code != 0 {
		t.Fatalf("-compare OLD,NEW: exit code %d; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(cmp.String(), "pipe       64 B  p50_ns") || strings.Contains(cmp.String(), "Round trip") {
		t.Errorf("-compare OLD,NEW printed:\n%s", cmp.String())
	}
	if code := run(ctx, []string{"-compare", old + "," + filepath.Join(dir, "missing.json")}, io.Discard, io.Discard); code == 0 {
		t.Error("-compare with a missing report succeeded")
	}
}
