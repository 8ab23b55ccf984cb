package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func testEnv(t *testing.T) Env {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Env{Self: self, CC: "cc", CacheDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// TestTwoProcess measures a real transport across two processes, the peer
// being this test binary re-executed.
func TestTwoProcess(t *testing.T) {
	cfg := DefaultConfig().Quick()
	cfg.Env = testEnv(t)
	cfg.Dir = t.TempDir()
	for _, kind := range []Kind{KindRTT, KindThroughput} {
		t.Run(string(kind), func(t *testing.T) {
			job := cfg.job("unix-stream", kind, 64)
			job.Budget = 0 // every sample, however slow the machine is today
			res, err := runTwoProcess(context.Background(), cfg.Env, socketTransport{typ: unix.SOCK_STREAM}, job)
			if err != nil {
				t.Fatal(err)
			}
			switch kind {
			case KindRTT:
				if res.RTT == nil || res.RTT.Samples != job.Samples || res.RTT.P50 <= 0 || res.RTT.P999 < res.RTT.P50 {
					t.Fatalf("rtt result %+v", res.RTT)
				}
			case KindThroughput:
				if tp := res.Throughput; tp == nil || tp.Messages < 1 || tp.Seconds <= 0 || tp.GBPerS <= 0 {
					t.Fatalf("throughput result %+v", res.Throughput)
				}
			}
		})
	}
}

// TestTwoProcessPeerFailure: when side B cannot start, the coordinator
// returns the peer's reason instead of waiting for it.
func TestTwoProcessPeerFailure(t *testing.T) {
	env := testEnv(t)
	job := DefaultConfig().Quick().job(nameCRing, KindRTT, 64) // the C ring has no Go side B
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := runTwoProcess(ctx, env, pipeTransport{}, job)
	if err == nil || !strings.Contains(err.Error(), "no Go peer side") {
		t.Fatalf("runTwoProcess = %v, want the peer's error", err)
	}
}

// TestCRing compiles and runs the C baseline in both modes.
func TestCRing(t *testing.T) {
	env := testEnv(t)
	if _, err := buildCRing(context.Background(), env); err != nil {
		t.Skipf("C ring unavailable: %v", err)
	}
	cfg := DefaultConfig().Quick()
	cfg.Dir = t.TempDir()
	for _, kind := range []Kind{KindRTT, KindThroughput} {
		res, err := cRing{}.Measure(context.Background(), env, cfg.job(nameCRing, kind, 4096))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if !res.OK() || (res.RTT != nil && res.RTT.P50 <= 0) || (res.Throughput != nil && res.Throughput.MsgsPerS <= 0) {
			t.Fatalf("%s: result %+v", kind, res)
		}
	}
	gbps, err := cMemcpy(context.Background(), env, 1<<20, -1, 50*time.Millisecond)
	if err != nil || gbps <= 0 {
		t.Fatalf("memcpy reference = %v GB/s, %v", gbps, err)
	}
}
