package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// CPUUse is where the machine's CPU time went while a repeat ran, in CPUs:
// CPU time divided by the repeat's wall time, so that 1 is one CPU busy
// throughout and 0.03 is 3 % of one CPU.
type CPUUse struct {
	// Wall is the wall time the figures are relative to, in seconds.
	Wall float64 `json:"wall_s"`
	// Busy is the whole machine's busy time: the online CPUs times the wall
	// time, less /proc/stat's idle and iowait (see use).
	Busy float64 `json:"busy_cpus"`
	// Own is what the benchmark's own process tree used: this process and
	// every descendant (the peers, the mq broker, nats-server).
	Own float64 `json:"own_cpus"`
	// Foreign is Busy - Own: other work, steal included. The counters'
	// resolution can make it slightly negative on a quiet machine.
	Foreign float64 `json:"foreign_cpus"`
	// Steal is the hypervisor's steal time alone (part of Foreign): time
	// the machine's virtual CPUs wanted to run and the host ran something
	// else.
	Steal float64 `json:"steal_cpus"`
	// Resolution is how far Foreign may be off from the counters' unit
	// alone (cpuResolution over the wall time); the noise rule allows for
	// it.
	Resolution float64 `json:"resolution_cpus"`
}

// cpuResolution is what the CPU time counters' unit, a hundredth of a
// second, can put into one Foreign figure: the idle time and the own
// processes' times are each cut to the unit at both readings. Measured:
// on an idle 2-CPU machine, intervals of 20 ms to 2 s with and without
// both CPUs busy with the benchmark's own processes were off by at most
// about 22 ms beyond the machine's steady 0.01 CPU of kernel threads and
// daemons.
const cpuResolution = 20 * time.Millisecond

// userHZ is the unit of /proc/stat and /proc/<pid>/stat times: the
// kernel's USER_HZ, 100 on every architecture Go supports.
const userHZ = 100

// ticks converts clock ticks to a duration.
func ticks(n uint64) time.Duration {
	return time.Duration(n) * (time.Second / userHZ)
}

// cpuReading is one reading of the machine's and the benchmark's CPU time
// counters; the difference of two is a CPUUse.
type cpuReading struct {
	at      time.Time
	machine machineTimes
	// self is getrusage(RUSAGE_SELF); children getrusage(RUSAGE_CHILDREN):
	// the descendants this process has waited for, and the ones they had
	// waited for.
	self, children time.Duration
	// live is what the live descendants used: their own time and that of
	// the descendants they have waited for (see treeTime).
	live time.Duration
}

// use is the CPU use between r and a later reading end; false if the
// number of online CPUs changed in between.
//
// The machine's busy time is the complement of its idle time rather than
// the sum of /proc/stat's busy fields: with tick-based accounting (the
// common kernel configuration) user and system time are sampled at each
// tick and miss the short bursts of blocking transports, which put a
// benchmark's own processes at up to 0.12 CPU more than the machine's
// busy total, while idle time under NO_HZ is measured at every idle
// entry and exit.
//
// The benchmark's own time counts each descendant once whether it lived
// through the interval, ended in it or started in it:
//   - alive at both readings, it is in live at both, and the difference is
//     what it used in between;
//   - waited for in between (by this process or another descendant), its
//     time before the first reading is in live then, and its whole time is
//     in children, or in its parent's cutime/cstime and so in live, at the
//     second: the difference is again what it used in between;
//   - started in between, all its time is in the interval and in live or
//     children at the second reading only.
func (r cpuReading) use(end cpuReading) (CPUUse, bool) {
	wall := end.at.Sub(r.at)
	if wall <= 0 || end.machine.cpus != r.machine.cpus || r.machine.cpus == 0 {
		return CPUUse{}, false
	}
	own := (end.self - r.self) + (end.children - r.children) + (end.live - r.live)
	busy := time.Duration(r.machine.cpus)*wall - (end.machine.idle - r.machine.idle)
	perCPU := func(d time.Duration) float64 { return d.Seconds() / wall.Seconds() }
	return CPUUse{
		Wall:       wall.Seconds(),
		Busy:       perCPU(busy),
		Own:        perCPU(own),
		Foreign:    perCPU(busy - own),
		Steal:      perCPU(end.machine.steal - r.machine.steal),
		Resolution: perCPU(cpuResolution),
	}, true
}

// cpuMeter reads CPU time counters from a proc file system.
type cpuMeter struct {
	// proc is the mount point, /proc.
	proc string
	// pid is the process whose descendants are the benchmark's own. The
	// rusage figures are always the calling process's, so anything but
	// os.Getpid() is for tests of the /proc side.
	pid int
}

// hostMeter measures this process's tree on the running machine.
func hostMeter() cpuMeter { return cpuMeter{proc: "/proc", pid: os.Getpid()} }

// read takes a reading; it fails when /proc/stat cannot be read.
func (m cpuMeter) read() (cpuReading, error) {
	var r cpuReading
	b, err := os.ReadFile(filepath.Join(m.proc, "stat"))
	if err != nil {
		return r, fmt.Errorf("read CPU times: %w", err)
	}
	r.at = time.Now()
	if r.machine, err = parseProcStat(string(b)); err != nil {
		return r, err
	}
	// A descendant waited for while the process table is scanned could be
	// both in the scan and in RUSAGE_CHILDREN, or in neither: scan again
	// if RUSAGE_CHILDREN moved.
	for range 3 {
		before, err := rusage(unix.RUSAGE_CHILDREN)
		if err != nil {
			return r, err
		}
		r.live = treeTime(m.pid, scanProcs(m.proc))
		if r.children, err = rusage(unix.RUSAGE_CHILDREN); err != nil {
			return r, err
		}
		if r.children == before {
			break
		}
	}
	if r.self, err = rusage(unix.RUSAGE_SELF); err != nil {
		return r, err
	}
	return r, nil
}

// rusage is the user and system time getrusage reports for who.
func rusage(who int) (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// machineTimes is what /proc/stat says of the whole machine.
type machineTimes struct {
	// idle is the aggregate cpu line's idle and iowait, steal its steal.
	idle, steal time.Duration
	// cpus is the number of cpuN lines: the online CPUs.
	cpus int
}

// parseProcStat reads the aggregate cpu line of /proc/stat and counts the
// per-CPU ones.
func parseProcStat(s string) (machineTimes, error) {
	var m machineTimes
	found := false
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || !strings.HasPrefix(f[0], "cpu"):
			continue
		case f[0] != "cpu":
			m.cpus++
			continue
		}
		// cpu user nice system idle iowait irq softirq steal [guest guest_nice]
		if len(f) < 9 {
			return m, fmt.Errorf("/proc/stat: cpu line %q is too short", strings.TrimSpace(line))
		}
		// Only idle, iowait and steal are used (see cpuReading.use); the
		// rest are parsed to reject a line of another format.
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return m, fmt.Errorf("/proc/stat: cpu line: %w", err)
			}
			v[i] = n
		}
		m.idle, m.steal = ticks(v[3]+v[4]), ticks(v[7])
		found = true
	}
	if !found {
		return m, errors.New("/proc/stat has no cpu line")
	}
	return m, nil
}

// procTimes is a process's entry in /proc/<pid>/stat, as far as CPU time
// goes.
type procTimes struct {
	pid, ppid int
	// time is utime + stime + cutime + cstime: what the process used and
	// what its waited-for descendants did.
	time time.Duration
}

// scanProcs reads every process's times under proc; processes that end
// while it reads are left out.
func scanProcs(proc string) []procTimes {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	var out []procTimes
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat"))
		if err != nil {
			continue
		}
		if p, err := parsePIDStat(string(b)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePIDStat reads /proc/<pid>/stat: pid (comm) state ppid ... utime
// stime cutime cstime (fields 1, 4 and 14 to 17). The command name may hold
// spaces and parentheses, so the fields are counted from its last ')'.
func parsePIDStat(s string) (procTimes, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procTimes{}, fmt.Errorf("/proc/<pid>/stat: no command name in %q", s)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return procTimes{}, fmt.Errorf("/proc/<pid>/stat: pid: %w", err)
	}
	// f[0] is field 3, the state.
	f := strings.Fields(s[end+1:])
	if len(f) < 15 {
		return procTimes{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	p := procTimes{pid: pid}
	if p.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procTimes{}, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	var sum uint64
	for _, v := range f[11:15] {
		// cutime and cstime are signed in the kernel's format; they are
		// never negative.
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return procTimes{}, fmt.Errorf("/proc/%d/stat: CPU time: %w", pid, err)
		}
		sum += n
	}
	p.time = ticks(sum)
	return p, nil
}

// treeTime is the time of root's live descendants in procs, found by
// walking their parent chains: children, grandchildren and so on. Each
// counts with its waited-for descendants (cutime, cstime), which are no
// longer in procs; root itself does not count.
func treeTime(root int, procs []procTimes) time.Duration {
	parent := make(map[int]int, len(procs))
	for _, p := range procs {
		parent[p.pid] = p.ppid
	}
	// ours memoizes, per pid, whether root is among its ancestors.
	ours := map[int]bool{root: true}
	var descends func(pid int, depth int) bool
	descends = func(pid int, depth int) bool {
		if v, ok := ours[pid]; ok {
			return v
		}
		ppid, ok := parent[pid]
		// A chain longer than the table is a loop (pids reused while
		// scanning).
		v := ok && ppid != pid && depth < len(procs) && descends(ppid, depth+1)
		ours[pid] = v
		return v
	}
	var sum time.Duration
	for _, p := range procs {
		if p.pid != root && descends(p.pid, 0) {
			sum += p.time
		}
	}
	return sum
}

// cpuWatch measures CPU use over an interval: start it, run the work,
// then call stop.
type cpuWatch struct {
	meter cpuMeter
	start cpuReading
	err   error
}

// watchCPU starts measuring this process tree's and the machine's CPU
// time.
func watchCPU(m cpuMeter) *cpuWatch {
	w := &cpuWatch{meter: m}
	w.start, w.err = m.read()
	return w
}

// stop ends the interval; nil when a reading failed (no /proc).
func (w *cpuWatch) stop() *CPUUse {
	if w.err != nil {
		return nil
	}
	end, err := w.meter.read()
	if err != nil {
		return nil
	}
	u, ok := w.start.use(end)
	if !ok {
		return nil
	}
	return &u
}
