package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
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
