package harness

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/pkg/shm"
)

// nativeBackends are the backends of the native clients.
var nativeBackends = []string{nameCSpin, nameCBlock, namePyCopy, namePyZC}

// tinyJob is a job of backend with minimal counts: it exercises every path
// of the peers (warm-up, timing, the last message, the payload check) in a
// fraction of a second.
func tinyJob(t *testing.T, backend string, kind Kind, size int) Job {
	job := DefaultConfig().job(backend, kind, size)
	job.Dir = t.TempDir()
	job.CPUs = [2]int{-1, -1} // a test must not depend on the CPUs it may use
	job.Samples, job.Warmup, job.Budget = 50, 5, 0
	job.Duration, job.VerifyEvery = 20*time.Millisecond, 3
	if kind == KindThroughput {
		job.Warmup = 20
	}
	return job
}

// TestNativeClients runs each native-client transport for real, both sides
// peers in C or Python on real channels: every round trip timed, every
// streamed message received and checked.
func TestNativeClients(t *testing.T) {
	env := testEnv(t) // one cache: libpodipc is built once for all
	for _, name := range nativeBackends {
		backend, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		sizes := []int{64}
		if name == namePyZC || name == nameCSpin {
			sizes = append(sizes, 1<<20) // the Python target's size
		}
		for _, kind := range []Kind{KindRTT, KindThroughput} {
			for _, size := range sizes {
				t.Run(name+"/"+string(kind)+"/"+FormatSize(size), func(t *testing.T) {
					measureTiny(t, env, backend, tinyJob(t, name, kind, size))
				})
			}
		}
	}
}

// measureTiny runs job on a standalone backend and checks that it measured
// something real: every round trip, or messages streamed in a positive time.
func measureTiny(t *testing.T, env Env, backend Backend, job Job) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := backend.Standalone.Measure(ctx, env, job)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("unavailable here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	switch job.Kind {
	case KindRTT:
		if rt := res.RTT; rt == nil || rt.Samples != job.Samples || rt.Min <= 0 || rt.P999 < rt.P50 {
			t.Fatalf("rtt result %+v, want %d samples", res.RTT, job.Samples)
		}
	case KindThroughput:
		if tp := res.Throughput; tp == nil || tp.Messages < 1 || tp.Seconds <= 0 || tp.MsgsPerS <= 0 {
			t.Fatalf("throughput result %+v", res.Throughput)
		}
	}
	return res
}

// TestNativeMissingTools: without a C compiler or a Python interpreter the
// transports say which tool is missing, as a job that cannot run here.
func TestNativeMissingTools(t *testing.T) {
	for _, tt := range []struct {
		backend, cc, python, want string
	}{
		{nameCSpin, "/nonexistent/gcc", "", `no "/nonexistent/gcc" for libpodipc (a C compiler`},
		{namePyZC, "/nonexistent/gcc", "", `no "/nonexistent/gcc" for libpodipc`},
		{namePyCopy, "cc", "/nonexistent/python3", `no "/nonexistent/python3" for the Python client peers`},
	} {
		t.Run(tt.backend, func(t *testing.T) {
			t.Setenv(pythonEnv, tt.python)
			env := testEnv(t)
			env.CC = tt.cc
			backend, err := Lookup(tt.backend)
			if err != nil {
				t.Fatal(err)
			}
			_, err = backend.Standalone.Measure(context.Background(), env, tinyJob(t, tt.backend, KindRTT, 64))
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Measure = %v, want ErrUnavailable saying %q", err, tt.want)
			}
		})
	}
}

// TestNativePeerKilled: when a peer dies mid-run (SIGKILL), the job ends
// promptly with an error instead of spinning until its timeout.
func TestNativePeerKilled(t *testing.T) {
	env := testEnv(t)
	backend, err := Lookup(nameCSpin)
	if err != nil {
		t.Fatal(err)
	}
	job := tinyJob(t, nameCSpin, KindRTT, 64)
	job.Samples, job.Budget = 4<<20, 10*time.Minute // seconds at best: far past the kill
	errc := make(chan error, 1)
	go func() {
		_, err := backend.Standalone.Measure(context.Background(), env, job)
		errc <- err
	}()
	// Kill side B once it has echoed 1000 messages, in the middle of the
	// ping-pong, not during setup.
	deadline := time.Now().Add(time.Minute)
	for {
		paths, _ := filepath.Glob(filepath.Join(job.Dir, "*-ba"))
		if len(paths) == 1 {
			if st, err := shm.ReadStats(paths[0]); err == nil && st.Sent >= 1000 {
				break
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("the job ended before the kill: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the peer echoed fewer than 1000 messages in a minute")
		}
		runtime.Gosched()
	}
	peer := childWithArg(t, "role=b")
	if err := syscall.Kill(peer, syscall.SIGKILL); err != nil {
		t.Fatalf("kill peer %d: %v", peer, err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "side B") {
			t.Fatalf("Measure = %v, want side B's failure first", err)
		}
		t.Logf("the job reported: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the job still running 30s after a peer was killed")
	}
}

// TestNativeTargets: the native clients' promises are judged as ratios of
// the same run, at their own sizes only.
func TestNativeTargets(t *testing.T) {
	r := &Report{Results: []Result{
		rtt(nameCRing, 64, 200), rtt(nameCSpin, 64, 230),
		tput(nameCRing, 64, 10e6), tput(nameCSpin, 64, 7e6),
		tput(nameCSpin, 1<<20, 4000), tput(namePyZC, 1<<20, 2500),
		rtt(nameCRing, 4096, 1000), rtt(nameCSpin, 4096, 5000),
	}}
	vs := judge(r)
	for _, tc := range []struct {
		target string
		size   int
		status Status
		ratio  float64
	}{
		{"C client spinning rtt", 64, StatusPass, 1.15},
		{"C client 64 B throughput", 64, StatusMiss, 0.7},
		{"Python zero-copy 1 MiB throughput", 1 << 20, StatusPass, 0.625},
	} {
		v := verdictFor(t, vs, tc.target, tc.size)
		if v.Status != tc.status || v.Ratio < tc.ratio-0.01 || v.Ratio > tc.ratio+0.01 {
			t.Errorf("%s @%d: %s ratio %.3f, want %s %.3f", tc.target, tc.size, v.Status, v.Ratio, tc.status, tc.ratio)
		}
	}
	for _, v := range vs {
		if v.Size == 4096 && strings.HasPrefix(v.Target, "C client") {
			t.Errorf("verdict %q at 4 KiB, a size the target does not cover", v.Target)
		}
	}
}

// childWithArg returns the pid of the child process of this one that has
// arg among its arguments.
func childWithArg(t *testing.T, arg string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err1 := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		cmdline, err2 := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err1 != nil || err2 != nil {
			continue // gone already
		}
		// The fields after the parenthesised command: state, ppid, ...
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		if f := strings.Fields(rest); len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		if slices.Contains(strings.Split(string(cmdline), "\x00"), arg) {
			return pid
		}
	}
	t.Fatalf("no child process with argument %q", arg)
	return 0
}
