package harness

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
)

func TestParseProcStat(t *testing.T) {
	const stat = "cpu  1000 20 300 5000 40 6 7 8 9 0\n" +
		"cpu0 500 10 150 2500 20 3 3 4 0 0\n" +
		"cpu1 500 10 150 2500 20 3 4 4 9 0\n" +
		"intr 12345 0 0\nctxt 999\n"
	m, err := parseProcStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := (machineTimes{idle: ticks(5040), steal: ticks(8), cpus: 2}); m != want {
		t.Errorf("parsed %+v, want %+v", m, want)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 3\n", "cpu 1 2 3 x 5 6 7 8\n"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

func TestParsePIDStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	const stat = "4242 (a) b (c)) S 17 4242 4242 0 -1 4194304 100 0 0 0 250 50 30 20 20 0 1 0 100 1000 10\n"
	p, err := parsePIDStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := (procTimes{pid: 4242, ppid: 17, time: ticks(250 + 50 + 30 + 20)}); p != want {
		t.Errorf("parsed %+v, want %+v", p, want)
	}
	for _, bad := range []string{"", "4242 no name", "x (a) S 1 1 1 0 -1 0 0 0 0 0 1 1 1 1 20 0 1 0", "4242 (a) S 1 1 1"} {
		if _, err := parsePIDStat(bad); err == nil {
			t.Errorf("parsePIDStat(%q) succeeded", bad)
		}
	}
}

func TestTreeTime(t *testing.T) {
	procs := []procTimes{
		{pid: 1, ppid: 0, time: time.Hour},
		{pid: 100, ppid: 1, time: time.Minute}, // the root: not counted
		{pid: 101, ppid: 100, time: 1 * time.Second},
		{pid: 102, ppid: 101, time: 2 * time.Second},
		{pid: 103, ppid: 102, time: 4 * time.Second},
		{pid: 200, ppid: 1, time: 8 * time.Second},
		{pid: 201, ppid: 200, time: 16 * time.Second},
		// A parent loop (pids reused during a scan) ends the walk.
		{pid: 300, ppid: 301, time: 32 * time.Second},
		{pid: 301, ppid: 300, time: 64 * time.Second},
		// A parent that has gone.
		{pid: 400, ppid: 399, time: 128 * time.Second},
	}
	if got := treeTime(100, procs); got != 7*time.Second {
		t.Errorf("tree of 100: %v, want 7s (its child, grandchild and great-grandchild)", got)
	}
	if got := treeTime(102, procs); got != 4*time.Second {
		t.Errorf("tree of 102: %v, want 4s", got)
	}
	if got := treeTime(500, procs); got != 0 {
		t.Errorf("tree of a process with no children: %v", got)
	}
}

// readingAt is a reading of a two-CPU machine at second at, idle for idle
// seconds in all, of a process with the given rusage (self, children, in
// seconds) and process table (root pid 100).
func readingAt(at, idle, self, children float64, procs ...procTimes) cpuReading {
	secs := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	return cpuReading{
		at:       time.Unix(1000, 0).Add(secs(at)),
		machine:  machineTimes{idle: secs(idle), cpus: 2},
		self:     secs(self),
		children: secs(children),
		live:     treeTime(100, procs),
	}
}

// proc is a process table entry with time t seconds.
func proc(pid, ppid int, t float64) procTimes {
	return procTimes{pid: pid, ppid: ppid, time: time.Duration(t * float64(time.Second))}
}

// TestCPUUseAccounting: from synthetic readings one second apart, each kind
// of descendant counts once, for what it used in the interval, and what is
// not in the process tree is foreign.
func TestCPUUseAccounting(t *testing.T) {
	root, stranger := proc(100, 1, 50), proc(200, 1, 10)
	// Every case: the process itself used 0.1 s (self 1 → 1.1), the
	// stranger 0.25 s (10 → 10.25), and the descendants own - 0.1.
	for _, tc := range []struct {
		name string
		// children is RUSAGE_CHILDREN at both readings.
		children   [2]float64
		start, end []procTimes
		own        float64
	}{
		{"none", [2]float64{2, 2}, nil, nil, 0.1},
		{"alive throughout", [2]float64{2, 2},
			[]procTimes{proc(101, 100, 3)}, []procTimes{proc(101, 100, 3.2)}, 0.3},
		{"waited for during", [2]float64{2, 2 + 4.3},
			[]procTimes{proc(102, 100, 4)}, nil, 0.4},
		{"started during, still alive", [2]float64{2, 2},
			nil, []procTimes{proc(104, 100, 0.15)}, 0.25},
		{"started and waited for during", [2]float64{2, 2.07},
			nil, nil, 0.17},
		// A grandchild its parent waited for moves into the parent's
		// cutime and cstime.
		{"grandchild waited for by a live child", [2]float64{2, 2},
			[]procTimes{proc(101, 100, 3), proc(103, 101, 0.5)}, []procTimes{proc(101, 100, 3.2+0.55)}, 0.35},
		{"grandchild started during, still alive", [2]float64{2, 2},
			[]procTimes{proc(101, 100, 3)}, []procTimes{proc(101, 100, 3.2), proc(106, 101, 0.02)}, 0.32},
		{"all at once", [2]float64{2, 2 + 4.3 + 0.07},
			[]procTimes{proc(101, 100, 3), proc(102, 100, 4), proc(103, 101, 0.5)},
			[]procTimes{proc(101, 100, 3.75), proc(104, 100, 0.15), proc(106, 104, 0.02)},
			0.1 + 0.2 + 0.3 + 0.05 + 0.15 + 0.07 + 0.02},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const wall, foreign = 1.0, 0.25
			idle := 2*wall - tc.own - foreign
			start := readingAt(0, 100, 1, tc.children[0], append([]procTimes{root, stranger}, tc.start...)...)
			endStranger := proc(200, 1, 10+foreign)
			end := readingAt(wall, 100+idle, 1.1, tc.children[1], append([]procTimes{root, endStranger}, tc.end...)...)
			u, ok := start.use(end)
			if !ok {
				t.Fatal("no CPU use")
			}
			near := func(got, want float64) bool { return math.Abs(got-want) < 1e-6 }
			if !near(u.Wall, wall) || !near(u.Own, tc.own) || !near(u.Foreign, foreign) || !near(u.Busy, tc.own+foreign) ||
				!near(u.Resolution, cpuResolution.Seconds()/wall) {
				t.Errorf("use %+v, want own %.2f, foreign %.2f", u, tc.own, foreign)
			}
		})
	}
}

func TestCPUUseUnusable(t *testing.T) {
	start := readingAt(0, 0, 0, 0)
	if _, ok := start.use(start); ok {
		t.Error("an interval of no time has a CPU use")
	}
	end := readingAt(1, 1, 0, 0)
	end.machine.cpus = 3
	if _, ok := start.use(end); ok {
		t.Error("a CPU going online in between went unnoticed")
	}
}

// TestCPUMeterFakeProc reads a proc file system written by the test: the
// machine's times from its stat, the tree's from the pid directories.
func TestCPUMeterFakeProc(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pidStat := func(pid, ppid, utime int) string {
		return fmt.Sprintf("%d (x) S %d 1 1 0 -1 0 0 0 0 0 %d 0 0 0 20 0 1 0 100 1000 10\n", pid, ppid, utime)
	}
	write("stat", "cpu 1 2 3 400 5 6 7 8 0 0\ncpu0 1 2 3 400 5 6 7 8 0 0\n")
	write("100/stat", pidStat(100, 1, 1000))
	write("101/stat", pidStat(101, 100, 30))
	write("102/stat", pidStat(102, 101, 12))
	write("200/stat", pidStat(200, 1, 500))
	write("self", "not a pid")
	write("103/stat", "garbage")
	r, err := cpuMeter{proc: dir, pid: 100}.read()
	if err != nil {
		t.Fatal(err)
	}
	if r.live != ticks(42) || r.machine != (machineTimes{idle: ticks(405), steal: ticks(8), cpus: 1}) {
		t.Errorf("reading %+v: want 0.42 s of descendants and 4.05 s idle on 1 CPU", r)
	}
	if r.at.IsZero() || r.self <= 0 {
		t.Errorf("reading %+v: no time or no own rusage", r)
	}

	// Without /proc/stat there is no reading, and the repeat has no CPU
	// use (the load rule applies to it).
	if err := os.Remove(filepath.Join(dir, "stat")); err != nil {
		t.Fatal(err)
	}
	if _, err := (cpuMeter{proc: dir, pid: 100}).read(); err == nil {
		t.Error("read without a stat file succeeded")
	}
	if u := watchCPU(cpuMeter{proc: dir, pid: 100}).stop(); u != nil {
		t.Errorf("CPU use %+v without a stat file", u)
	}
}

// needProcStat skips a test on a machine without /proc/stat.
func needProcStat(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skipf("no /proc/stat: %v", err)
	}
}

// burn starts `sh -c 'while :; do :; done'`; detached, it is started in a
// session of its own by a shell that exits at once, so that it is no
// descendant of this process. It returns the burner's pid; the test kills
// it at the end.
func burn(t *testing.T, detached bool) int {
	t.Helper()
	loop := "while :; do :; done"
	if !detached {
		cmd := exec.Command("sh", "-c", loop)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return cmd.Process.Pid
	}
	cmd := exec.Command("sh", "-c", loop+" </dev/null >/dev/null 2>&1 & echo $!")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("burner pid %q: %v", out, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// readProc is pid's /proc/<pid>/stat, parsed.
func readProc(t *testing.T, pid int) procTimes {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parsePIDStat(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// procTime is pid's CPU time from /proc (see procTimes.time).
func procTime(t *testing.T, pid int) time.Duration { return readProc(t, pid).time }

// burnFor waits until pid has used d of CPU time since it was at from.
func burnFor(t *testing.T, pid int, from, d time.Duration) {
	t.Helper()
	testkit.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("the burner using %v of CPU", d), func() bool {
		return procTime(t, pid)-from >= d
	})
}

// TestForeignCPUReal measures real intervals: a CPU burner that is not the
// benchmark's is foreign; the same burner started as a child, and a
// goroutine spinning in this process, are its own.
func TestForeignCPUReal(t *testing.T) {
	needProcStat(t)
	const burnt = 300 * time.Millisecond
	t.Run("detached burner", func(t *testing.T) {
		pid := burn(t, true)
		if ppid := parentOf(t, pid); ppid == os.Getpid() {
			t.Fatalf("the detached burner is a child of the test")
		}
		from := procTime(t, pid)
		w := watchCPU(hostMeter())
		burnFor(t, pid, from, burnt)
		u := w.stop()
		if u == nil {
			t.Fatal("no CPU use")
		}
		t.Logf("%+v", *u)
		// Whatever else runs on the machine is foreign too: the burner's
		// share is a lower bound.
		if u.Foreign < 0.5 {
			t.Errorf("foreign %.2f CPU with a burner outside the tree running, want > 0.5: %+v", u.Foreign, *u)
		}
		if u.Own > 0.2+u.Resolution {
			t.Errorf("the test waiting counted as %.2f CPU of its own: %+v", u.Own, *u)
		}
	})
	// The burner as a child, alive throughout, waited for during the
	// interval, or started and waited for during it, with a goroutine of
	// the test spinning: all of it is the test's own, counted once.
	for _, kind := range []string{"alive throughout", "waited for during", "started during"} {
		t.Run("own child "+kind, func(t *testing.T) {
			var cmd *exec.Cmd
			startChild := func() {
				cmd = exec.Command("sh", "-c", "while :; do :; done")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if cmd.ProcessState == nil {
						_ = cmd.Process.Kill()
						_ = cmd.Wait()
					}
				})
			}
			// childTime is the child's time so far: from /proc while it
			// runs, its rusage once waited for.
			childTime := func() time.Duration {
				if cmd.ProcessState != nil {
					return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				return procTime(t, cmd.Process.Pid)
			}
			var before time.Duration
			if kind != "started during" {
				startChild()
				before = childTime()
			}
			// The goroutine spins, on purpose, until stop is set.
			var stop atomic.Bool
			spun := make(chan struct{})
			go func() {
				defer close(spun)
				for !stop.Load() {
				}
			}()
			selfBefore, err := rusage(syscall.RUSAGE_SELF)
			if err != nil {
				t.Fatal(err)
			}
			w := watchCPU(hostMeter())
			if kind == "started during" {
				startChild()
			}
			burnFor(t, cmd.Process.Pid, before, burnt)
			if kind != "alive throughout" {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			child := childTime() - before
			u := w.stop()
			stop.Store(true)
			<-spun
			selfAfter, err := rusage(syscall.RUSAGE_SELF)
			if err != nil {
				t.Fatal(err)
			}
			if u == nil {
				t.Fatal("no CPU use")
			}
			t.Logf("%+v", *u)
			// Own is the child's time and the test's (the spinning
			// goroutine's, the readings'), to the resolution of /proc's
			// counters at both ends: missing or doubling the child's
			// 300 ms would show.
			own := time.Duration(u.Own * u.Wall * float64(time.Second))
			want := child + selfAfter - selfBefore
			if d := own - want; d < -2*cpuResolution || d > 2*cpuResolution {
				t.Errorf("own %v, want the child's %v and the test's %v: %+v", own, child, selfAfter-selfBefore, *u)
			}
		})
	}
}

// parentOf is pid's parent.
func parentOf(t *testing.T, pid int) int { return readProc(t, pid).ppid }
