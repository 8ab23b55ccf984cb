package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MQProfileEnv, when set, makes the mq broker and both mq sides profile
// their whole processes (see docs/benchmarks.md); it and Config.ProfileDir
// would start the same profiler, so a run takes one or the other.
const MQProfileEnv = brokerProfileEnv

// LargeSize is the message size from which rtt jobs take Config.LargeSamples
// instead of Config.Samples.
const LargeSize = 256 << 10

// memcpySize is the message size of the memcpy reference.
const memcpySize = 1 << 20

// Config is one benchmark run.
type Config struct {
	Transports []string
	Sizes      []int
	Kinds      []Kind
	// Samples is the number of timed round trips below LargeSize, and
	// LargeSamples from there on. Warm-up adds a tenth.
	Samples      int
	LargeSamples int
	// Budget stops an rtt job early once it has run this long.
	Budget time.Duration
	// Duration is how long each throughput job streams.
	Duration time.Duration
	// VerifyEvery is how often receivers checksum a whole payload.
	VerifyEvery int
	// CPUs are the CPUs of side A and side B.
	CPUs [2]int
	// Dir holds file-backed channels; a tmpfs.
	Dir string
	// Repeat is how many times each job runs; the report gives the
	// medians and spreads of the repeats.
	Repeat int
	// Noise decides when a verdict is NOISY instead of PASS or MISS.
	Noise NoiseRule
	// ProfileDir, when set, receives a CPU profile of each side of each
	// Go job's timed loop (see Job.Profile).
	ProfileDir string
	Env        Env
}

// DefaultConfig is the full run of `make bench`.
func DefaultConfig() Config {
	return Config{
		Transports:   BackendNames(),
		Sizes:        []int{64, 4 << 10, 1 << 20},
		Kinds:        []Kind{KindRTT, KindThroughput},
		Samples:      100_000,
		LargeSamples: 10_000,
		Budget:       10 * time.Second,
		Duration:     2 * time.Second,
		VerifyEvery:  1024,
		CPUs:         [2]int{0, 1},
		Dir:          "/dev/shm",
		Repeat:       3,
		Noise:        DefaultNoiseRule(),
		Env:          Env{CC: "cc"},
	}
}

// Quick shrinks c to a smoke run of a few seconds: the numbers are noisy,
// but every path is exercised.
func (c Config) Quick() Config {
	c.Samples, c.LargeSamples = 2_000, 200
	c.Budget = time.Second
	c.Duration = 200 * time.Millisecond
	c.VerifyEvery = 64
	c.Repeat = 1
	return c
}

func (c Config) validate() error {
	var errs []error
	for _, name := range c.Transports {
		if _, err := Lookup(name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range c.Sizes {
		if s < MinSize || s > 1<<30 {
			errs = append(errs, fmt.Errorf("message size %d out of range [%d, 1 GiB]", s, MinSize))
		}
	}
	for _, k := range c.Kinds {
		if k != KindRTT && k != KindThroughput {
			errs = append(errs, fmt.Errorf("unknown measurement %q", k))
		}
	}
	if c.Repeat < 1 {
		errs = append(errs, fmt.Errorf("repeat %d: each job must run at least once", c.Repeat))
	}
	if c.Noise.LoadSlack < 0 || c.Noise.MaxSpread <= 0 || c.Noise.MaxForeignCPU <= 0 {
		errs = append(errs, fmt.Errorf("noise rule %+v: the load slack must not be negative, the spread and foreign CPU limits must be positive", c.Noise))
	}
	if c.Samples < 1 || c.LargeSamples < 1 || c.Duration <= 0 {
		errs = append(errs, errors.New("samples and duration must be positive"))
	}
	if c.Env.Self == "" || c.Env.CacheDir == "" {
		errs = append(errs, errors.New("Env.Self and Env.CacheDir are required"))
	}
	return errors.Join(errs...)
}

// job returns the job for one backend, kind and size.
func (c Config) job(backend string, kind Kind, size int) Job {
	j := Job{
		Backend:     backend,
		Kind:        kind,
		Size:        size,
		Slots:       slotsFor(size),
		VerifyEvery: c.VerifyEvery,
		CPUs:        c.CPUs,
		Dir:         c.Dir,
	}
	switch kind {
	case KindRTT:
		j.Samples = c.Samples
		if size >= LargeSize {
			j.Samples = c.LargeSamples
		}
		j.Warmup = max(j.Samples/10, 10)
		j.Budget = c.Budget
	case KindThroughput:
		// Enough to fill every queue and reach a steady state.
		j.Warmup = min(max((64<<20)/size, 4*j.Slots), 10_000)
		j.Duration = c.Duration
	}
	return j
}

// slotsFor is the ring depth for size-byte messages: the largest power of
// two that keeps the ring within 16 MiB, between 8 and 1024 slots.
func slotsFor(size int) int {
	n := 8
	for n < 1024 && 2*n*size <= 16<<20 {
		n *= 2
	}
	return n
}

// Run measures every configured transport, kind and size, and the memcpy
// reference. Failures of single jobs are recorded in their results; Run
// fails only when it cannot run at all.
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	log := c.Env.Log
	rep := &Report{Machine: describeMachine()}
	if n, err := onlineCPUs(); err != nil || n < 2 {
		msg := fmt.Sprintf("only %d CPU available: the two sides share it, so spinning transports measure scheduling, not IPC", n)
		if err != nil {
			msg = fmt.Sprintf("cannot read the CPU affinity (%v): sides are not pinned", err)
		}
		rep.Warnings = append(rep.Warnings, msg)
		log.Warn(msg)
		c.CPUs = [2]int{-1, -1}
	}
	rep.Config = c.summary()
	if c.ProfileDir != "" {
		if err := os.MkdirAll(c.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("profile directory: %w", err)
		}
		rep.Warnings = append(rep.Warnings, "CPU profiles were taken (-cpuprofile): the profiler's overhead is in the figures")
	}
	if slices.Contains(c.Kinds, KindThroughput) {
		rep.Memcpy = measureMemcpy(ctx, c)
	}
	for _, kind := range c.Kinds {
		for _, size := range c.Sizes {
			results, err := runRounds(ctx, c, kind, size)
			rep.Results = append(rep.Results, results...)
			if err != nil {
				rep.Verdicts = judge(rep)
				return rep, err
			}
		}
	}
	rep.Verdicts = judge(rep)
	return rep, nil
}

// runRounds measures every transport at one kind and size, c.Repeat times.
// The repeats are rounds: each round runs every transport once, back to
// back, so that all transports of a size are compared under the same
// machine conditions and a busy spell hits them alike, and repeat k of
// one transport ran next to repeat k of the others. A transport that is
// unavailable or fails is not run again.
func runRounds(ctx context.Context, c Config, kind Kind, size int) ([]Result, error) {
	results := make([]Result, len(c.Transports))
	for i, name := range c.Transports {
		results[i] = Result{Backend: name, Kind: kind, Size: size}
	}
	var err error
rounds:
	for round := 1; round <= c.Repeat; round++ {
		for i, name := range c.Transports {
			if err = ctx.Err(); err != nil {
				break rounds
			}
			res := &results[i]
			if res.Error != "" || res.Unavailable != "" {
				continue
			}
			job := c.job(name, kind, size)
			if c.ProfileDir != "" {
				job.Profile = filepath.Join(c.ProfileDir, profileName(job, round))
			}
			before := readLoad()
			watch := watchCPU(hostMeter())
			one := runJob(ctx, c, job, round)
			cpu := watch.stop()
			after := readLoad()
			switch {
			case one.Unavailable != "":
				res.Unavailable = one.Unavailable
			case one.Error != "":
				res.Error = one.Error
				if c.Repeat > 1 {
					res.Error = fmt.Sprintf("repeat %d of %d: %s", round, c.Repeat, one.Error)
				}
			default:
				res.Repeats = append(res.Repeats, Repeat{RTT: one.RTT, Throughput: one.Throughput, Load: Load{before, after}, CPU: cpu})
			}
		}
	}
	for i := range results {
		if res := &results[i]; len(res.Repeats) > 0 && res.Error == "" && res.Unavailable == "" {
			combine(res)
		}
	}
	return results, err
}

// profileName is the base name of a job's CPU profiles, without the side:
// transport, kind, size and repeat, such as "shm-spin-rtt-64B-r1".
func profileName(job Job, round int) string {
	return fmt.Sprintf("%s-%s-%s-r%d", job.Backend, job.Kind, strings.ReplaceAll(FormatSize(job.Size), " ", ""), round)
}

// readLoad returns the 1-minute load average, or -1 when /proc/loadavg
// cannot be read.
func readLoad() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	return parseLoad(string(b))
}

// parseLoad reads the first field of /proc/loadavg; -1 if it is not a
// number.
func parseLoad(s string) float64 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// runJob measures one repeat of a job and records any failure in the
// result.
func runJob(ctx context.Context, c Config, job Job, round int) Result {
	log := c.Env.Log.With("transport", job.Backend, "kind", job.Kind, "size", FormatSize(job.Size), "repeat", round)
	log.Info("measuring")
	backend, err := Lookup(job.Backend)
	if err != nil {
		return Result{Backend: job.Backend, Kind: job.Kind, Size: job.Size, Error: err.Error()}
	}
	if job.Profile != "" && backend.Transport == nil {
		log.Info("no CPU profile: the transport is not measured by Go code")
	}
	start := time.Now()
	res, err := backend.measure(ctx, c.Env, job)
	res.Backend, res.Kind, res.Size = job.Backend, job.Kind, job.Size
	switch {
	case errors.Is(err, ErrUnavailable):
		res.Unavailable = strings.Replace(err.Error(), ErrUnavailable.Error()+": ", "", 1)
		log.Warn("not applicable", "reason", res.Unavailable)
	case err != nil:
		res.Error = err.Error()
		log.Error("failed", "err", err)
	default:
		log.Info("measured", "took", time.Since(start).Round(time.Millisecond))
	}
	return res
}

// measureMemcpy measures the memcpy reference c.Repeat times with Go's
// copy and, when a C compiler is there, the C library's memcpy, on side
// A's CPU.
func measureMemcpy(ctx context.Context, c Config) *MemcpyReference {
	d := min(c.Duration, time.Second)
	ref := &MemcpyReference{Size: memcpySize}
	for range c.Repeat {
		if ctx.Err() != nil {
			break
		}
		var run MemcpyRun
		run.Load.Before = readLoad()
		watch := watchCPU(hostMeter())
		_ = runPinned(c.CPUs[0], func() error {
			run.GoGBPerS = goMemcpy(memcpySize, d)
			return nil
		})
		gbps, err := cMemcpy(ctx, c.Env, memcpySize, c.CPUs[0], d)
		run.CPU = watch.stop()
		run.Load.After = readLoad()
		run.CGBPerS = gbps
		ref.Repeats = append(ref.Repeats, run)
		if err != nil {
			ref.CNote = err.Error()
			c.Env.Log.Warn("C memcpy reference not measured", "err", err)
			break
		}
	}
	ref.combine()
	return ref
}

// describeMachine reads what the report needs to say where it ran.
func describeMachine() Machine {
	m := Machine{
		CPUs:      runtime.NumCPU(),
		GoVersion: runtime.Version(),
		Date:      time.Now().UTC().Format(time.RFC3339),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			switch k = strings.TrimSpace(k); {
			case !ok:
			case k == "processor":
				m.OnlineCPUs++
			case k == "model name" && m.CPUModel == "":
				m.CPUModel = strings.TrimSpace(v)
			}
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}
