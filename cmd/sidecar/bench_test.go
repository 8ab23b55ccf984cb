package main

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
)

// The figures of docs/benchmarks.md ("Sidecar"):
//
//	go test -run '^$' -bench StartToReady -benchtime 20x ./cmd/sidecar
//	go test -run '^$' -bench Idle ./cmd/sidecar
//
// Both benchmarks build the real binary (no race detector, no test
// instrumentation) and run it with the default intervals on a ten-channel
// configuration. The idle one measures two builds: a plain `go build`, and
// the build of the container image (static, stripped: `make image-binaries`).

// tenChannels is a configuration of five shared-memory channels (11 MiB of
// rings) and five message queues.
const tenChannels = `
- {name: frames, type: SharedMemory, sharedMemory: {slotSize: 65536, slotCount: 64}}
- {name: events, type: SharedMemory, sharedMemory: {}}
- {name: telemetry, type: SharedMemory, sharedMemory: {mode: Broadcast, slotSize: 512, slotCount: 4096, overflow: Overwrite}}
- {name: control, type: SharedMemory, sharedMemory: {slotSize: 256, slotCount: 1024}}
- {name: samples, type: SharedMemory, sharedMemory: {slotSize: 1024, slotCount: 256, overflow: Fail}}
- {name: jobs, type: MessageQueue, messageQueue: {}}
- {name: jobs-dead, type: MessageQueue, messageQueue: {maxDepth: 1000}}
- {name: results, type: MessageQueue, messageQueue: {deadLetterQueue: jobs-dead}}
- {name: audit, type: MessageQueue, messageQueue: {persistence: Volume, maxBytes: 1048576}}
- {name: stats, type: MessageQueue, messageQueue: {delivery: AtMostOnce, overflow: DropOldest}}
`

// imageBuild is how the Makefile builds the binary of the image.
var imageBuild = sidecarBuild{
	name:  "image",
	env:   []string{"CGO_ENABLED=0"},
	flags: []string{"-trimpath", "-ldflags=-s -w"},
}

// sidecarBuild is a way of building the command: go build's environment and flags.
type sidecarBuild struct {
	name  string
	env   []string
	flags []string
}

// buildSidecar builds the command into a temporary directory.
func buildSidecar(b *testing.B, how sidecarBuild) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "podipc-sidecar")
	cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, how.flags...), ".")...)
	cmd.Env = append(os.Environ(), how.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// BenchmarkSidecarStartToReady measures from process start to the first 200
// from /readyz: ten channels created (ring files with every block allocated) and
// queues declared.
func BenchmarkSidecarStartToReady(b *testing.B) {
	bin := buildSidecar(b, sidecarBuild{})
	cfg := filepath.Join(b.TempDir(), "channels.yaml")
	writeConfig(b, cfg, tenChannels)
	client := &http.Client{Timeout: time.Second}
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		dir := testkit.TmpfsDir(b)
		start := time.Now()
		s := startSidecarBinary(b, bin, dir, cfg)
		for {
			resp, err := client.Get("http://" + s.addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("not ready after 10s:\n%s", s.logText())
			}
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		if _, err := s.stop(syscall.SIGTERM, 10*time.Second); err != nil {
			b.Fatalf("exit: %v", err)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms-to-ready")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSidecarIdle runs a ready sidecar with ten channels and no traffic
// for ten seconds and reports its CPU use over them (utime+stime from
// /proc/<pid>/stat, and the scheduler's nanosecond count of every thread)
// and its memory after them: VmRSS, split into private memory (RssAnon), the
// binary's mapped pages (RssFile, page cache) and the mapped channel files
// (RssShmem: the tmpfs pages the sidecar maps, only the channels' headers
// and peer tables). It does so for a plain build and for the image's.
func BenchmarkSidecarIdle(b *testing.B) {
	for _, how := range []sidecarBuild{{name: "go-build"}, imageBuild} {
		b.Run(how.name, func(b *testing.B) { measureIdle(b, buildSidecar(b, how)) })
	}
}

// measureIdle is one idle measurement of the binary bin.
func measureIdle(b *testing.B, bin string) {
	cfg := filepath.Join(b.TempDir(), "channels.yaml")
	writeConfig(b, cfg, tenChannels)
	const idle = 10 * time.Second
	// One measurement of a fixed duration, whatever b.N is: the benchmark
	// is a harness for it, not a loop to time.
	s := startSidecarBinary(b, bin, testkit.TmpfsDir(b), cfg)
	s.waitReady()
	// Let the start-up settle (first GC, first resync) before measuring.
	time.Sleep(time.Second)
	pid := s.proc.Pid()
	ticks0, ns0 := cpuTicks(b, pid), schedNanos(b, pid)
	time.Sleep(idle)
	ticks1, ns1 := cpuTicks(b, pid), schedNanos(b, pid)
	mem := procStatus(b, pid)
	if _, err := s.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		b.Fatalf("exit: %v", err)
	}
	const clkTck = 100 // USER_HZ on Linux
	b.ReportMetric(float64(ticks1-ticks0)/clkTck/idle.Seconds()*100, "idle-cpu-%(stat)")
	b.ReportMetric(float64(ns1-ns0)/float64(idle.Nanoseconds())*100, "idle-cpu-%(schedstat)")
	b.ReportMetric(float64(mem["VmRSS"])/1024, "VmRSS-MiB")
	b.ReportMetric(float64(mem["RssAnon"])/1024, "RssAnon-MiB")
	b.ReportMetric(float64(mem["RssFile"])/1024, "RssFile-MiB")
	b.ReportMetric(float64(mem["RssShmem"])/1024, "RssShmem-MiB")
	b.ReportMetric(0, "ns/op")
}

// cpuTicks is utime+stime of pid in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the parenthesised command name; utime and stime
	// are fields 14 and 15 of the whole line.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// schedNanos is the CPU time of every thread of pid, in nanoseconds.
func schedNanos(b *testing.B, pid int) int64 {
	b.Helper()
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no schedstat for %d: %v", pid, err)
	}
	var total int64
	for _, path := range tasks {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // the thread exited
		}
		ns, _ := strconv.ParseInt(strings.Fields(string(data))[0], 10, 64)
		total += ns
	}
	return total
}

// procStatus returns the kB figures of /proc/<pid>/status.
func procStatus(b *testing.B, pid int) map[string]int64 {
	b.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(value)
		if !ok || len(fields) != 2 || fields[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err == nil {
			out[name] = n
		}
	}
	return out
}
