package harness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/pkg/shm"
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

// TestTwoProcessPeerKilled: when side B dies mid-run (SIGKILL), side A
// must give up promptly with an error, whether it waits in the kernel (a
// pipe) or spins on shared memory, instead of waiting for the job timeout.
func TestTwoProcessPeerKilled(t *testing.T) {
	// echoes reports how many messages the peer has echoed so far.
	tests := []struct {
		backend string
		echoes  func(t *testing.T, peer int, dir string) uint64
	}{
		{"pipe", func(t *testing.T, peer int, _ string) uint64 { return writeSyscalls(t, peer) }},
		{nameShmSpin, func(t *testing.T, _ int, dir string) uint64 {
			paths, _ := filepath.Glob(filepath.Join(dir, "*-ba"))
			if len(paths) != 1 {
				return 0
			}
			st, err := shm.ReadStats(paths[0])
			if err != nil {
				return 0
			}
			return st.Sent
		}},
	}
	for _, tt := range tests {
		t.Run(tt.backend, func(t *testing.T) {
			backend, err := Lookup(tt.backend)
			if err != nil {
				t.Fatal(err)
			}
			env := testEnv(t)
			job := DefaultConfig().Quick().job(tt.backend, KindRTT, 64)
			job.Dir = t.TempDir()
			job.Samples, job.Budget = 4<<20, 10*time.Minute // seconds at best: far past the kill
			errc := make(chan error, 1)
			go func() {
				_, err := runTwoProcess(context.Background(), env, backend.Transport, job)
				errc <- err
			}()
			peer := waitForChild(t, 30*time.Second)
			// Kill it in the middle of the ping-pong, not during setup.
			deadline := time.Now().Add(30 * time.Second)
			for tt.echoes(t, peer, job.Dir) < 1000 {
				if time.Now().After(deadline) {
					t.Fatal("the peer echoed fewer than 1000 messages in 30s")
				}
				runtime.Gosched()
			}
			if err := syscall.Kill(peer, syscall.SIGKILL); err != nil {
				t.Fatalf("kill peer %d: %v", peer, err)
			}
			select {
			case err := <-errc:
				if err == nil {
					t.Fatal("runTwoProcess succeeded with its peer killed")
				}
				t.Logf("side A reported: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("side A still running 30s after its peer was killed")
			}
		})
	}
}

// writeSyscalls reads how many write system calls process pid has made.
func writeSyscalls(t *testing.T, pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/io: %v", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no syscw in /proc/%d/io", pid)
	return 0
}

// waitForChild polls /proc until this process has a child, and returns its
// pid.
func waitForChild(t *testing.T, patience time.Duration) int {
	t.Helper()
	self := os.Getpid()
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if err != nil {
				continue // gone already
			}
			// The fields after the parenthesised command: state, ppid, ...
			rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
			if f := strings.Fields(rest); len(f) > 1 && f[1] == strconv.Itoa(self) {
				return pid
			}
		}
		runtime.Gosched()
	}
	t.Fatalf("no child process within %v", patience)
	return 0
}
