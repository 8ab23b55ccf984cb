// Command podipc-bench measures cross-process IPC on two pinned CPUs:
// ping-pong round trips and one-way throughput of podipc's shared-memory
// channels and message queues against pipes, Unix sockets, POSIX message
// queues, a NATS server and a C busy-poll ring (the machine's limit), and
// checks podipc's performance targets as ratios within the run. See
// docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/podipc/podipc/bench/internal/harness"
)

func main() {
	if harness.IsPeer() {
		os.Exit(harness.PeerMain())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "podipc-bench:", err)
		return 2
	}
	if opts.render != "" {
		rep, err := loadReport(opts.render)
		if err == nil {
			err = rep.WriteText(stdout)
		}
		return exitCode(stderr, err)
	}
	if len(opts.compare) == 2 {
		return exitCode(stderr, compareFiles(opts.compare[0], opts.compare[1], stdout))
	}
	var before *harness.Report
	if len(opts.compare) == 1 {
		// Read the old report first: a typo should not cost a whole run.
		if before, err = loadReport(opts.compare[0]); err != nil {
			return exitCode(stderr, err)
		}
	}
	if opts.list {
		for _, b := range harness.Backends() {
			fmt.Fprintf(stdout, "%-16s %s\n", b.Name, b.About)
		}
		return 0
	}
	level := slog.LevelInfo
	if opts.quiet {
		level = slog.LevelWarn
	}
	cfg.Env.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	rep, err := harness.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "podipc-bench:", err)
		if rep == nil {
			return 1
		}
	}
	if opts.save != "" {
		err = errors.Join(err, saveReport(opts.save, rep))
	}
	// With -json, stdout carries the JSON report alone and the comparison
	// goes to stderr.
	cmpOut := stdout
	if opts.json {
		err = errors.Join(err, encodeReport(stdout, rep))
		cmpOut = stderr
	} else {
		err = errors.Join(err, rep.WriteText(stdout))
	}
	if before != nil {
		if _, werr := fmt.Fprintln(cmpOut); werr != nil {
			err = errors.Join(err, werr)
		}
		err = errors.Join(err, harness.WriteComparison(cmpOut, before, rep))
	}
	return exitCode(stderr, err)
}

type options struct {
	json, list, quiet bool
	// render is a JSON report to print as text instead of running.
	render string
	// save is where to write the JSON report besides printing the report.
	save string
	// compare holds one saved report (compared with this run) or two
	// (compared with each other, without running).
	compare []string
}

// exitCode reports err, if any, and returns the exit code.
func exitCode(stderr io.Writer, err error) int {
	if err != nil {
		fmt.Fprintln(stderr, "podipc-bench:", err)
		return 1
	}
	return 0
}

// loadReport reads a saved -json report.
func loadReport(path string) (*harness.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var rep harness.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("report %s: %w", path, err)
	}
	return &rep, nil
}

// encodeReport writes rep as indented JSON.
func encodeReport(w io.Writer, rep *harness.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

// saveReport writes rep as JSON to path.
func saveReport(path string, rep *harness.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("save report: %w", err)
	}
	err = encodeReport(f, rep)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("save report: %w", cerr)
	}
	return err
}

// compareFiles prints the before/after tables of two saved reports.
func compareFiles(beforePath, afterPath string, stdout io.Writer) error {
	before, err := loadReport(beforePath)
	if err != nil {
		return err
	}
	after, err := loadReport(afterPath)
	if err != nil {
		return err
	}
	return harness.WriteComparison(stdout, before, after)
}

// parseFlags builds the configuration: the defaults, shrunk by -quick,
// then every flag given explicitly.
func parseFlags(args []string, stderr io.Writer) (harness.Config, options, error) {
	var opts options
	fs := flag.NewFlagSet("podipc-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: podipc-bench [flags]\n\nMeasures cross-process IPC; see docs/benchmarks.md.\n\n")
		fs.PrintDefaults()
	}
	def := harness.DefaultConfig()
	quick := fs.Bool("quick", false, "smoke run of a few seconds: few samples, short streams, one repeat (explicit flags still apply)")
	fs.BoolVar(&opts.json, "json", false, "print the report as JSON")
	fs.BoolVar(&opts.list, "list", false, "list the transports and exit")
	fs.BoolVar(&opts.quiet, "quiet", false, "log only warnings and errors")
	fs.StringVar(&opts.render, "render", "", "print the text report of a saved -json report and exit")
	fs.StringVar(&opts.save, "save", "", "also write the JSON report to this file")
	compare := fs.String("compare", "", "OLD.json: after the run, print a before/after table of OLD and this run; OLD.json,NEW.json: compare two saved reports without running")
	repeat := fs.Int("repeat", def.Repeat, "run every job this many times; the report gives medians and spreads")
	maxForeign := fs.Float64("max-foreign-cpu", def.Noise.MaxForeignCPU, "a verdict is NOISY when work other than the benchmark's processes used more than this fraction of one CPU during a repeat of a compared job (/proc/stat's busy time less the benchmark's own)")
	loadSlack := fs.Float64("load-slack", def.Noise.LoadSlack, "where a repeat has no foreign CPU reading (old reports, no /proc), a verdict is NOISY when the 1-minute load average around it exceeded max(CPU count, the job's processes) plus this")
	maxSpread := fs.Float64("max-spread", def.Noise.MaxSpread, "a verdict is NOISY when a compared figure's repeats spread over more than this percent of their median")
	cpuProfile := fs.String("cpuprofile", "", "write CPU profiles of each Go job's timed loop to DIR/<transport>-<kind>-<size>-r<repeat>-<a|b>.pprof")
	transports := fs.String("transports", strings.Join(def.Transports, ","), "comma-separated transports to measure (see -list)")
	sizes := fs.String("sizes", "64,4KiB,1MiB", "comma-separated message sizes (B, KiB, MiB)")
	kinds := fs.String("measure", "rtt,throughput", "what to measure: rtt, throughput or both")
	samples := fs.Int("samples", def.Samples, "timed round trips per rtt job below 256 KiB")
	largeSamples := fs.Int("large-samples", def.LargeSamples, "timed round trips per rtt job from 256 KiB")
	budget := fs.Duration("budget", def.Budget, "stop an rtt job early, with fewer samples, after this long")
	duration := fs.Duration("duration", def.Duration, "how long each throughput job streams")
	verifyEvery := fs.Int("verify-every", def.VerifyEvery, "checksum one whole payload in this many (stamps are checked on all)")
	cpus := fs.String("cpus", "0,1", "CPUs of side A and side B")
	dir := fs.String("dir", def.Dir, "directory for channel files (a tmpfs)")
	cc := fs.String("cc", envOr("CC", "cc"), "C compiler for the C ring")
	cacheDir := fs.String("cache-dir", defaultCacheDir(), "where the compiled C ring is kept")
	if err := fs.Parse(args); err != nil {
		return harness.Config{}, opts, err
	}
	if fs.NArg() > 0 {
		return harness.Config{}, opts, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	cfg := def
	if *quick {
		cfg = cfg.Quick()
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "samples":
			cfg.Samples = *samples
		case "large-samples":
			cfg.LargeSamples = *largeSamples
		case "budget":
			cfg.Budget = *budget
		case "duration":
			cfg.Duration = *duration
		case "verify-every":
			cfg.VerifyEvery = *verifyEvery
		case "repeat":
			cfg.Repeat = *repeat
		}
	})
	var errs []error
	switch opts.compare = splitList(*compare); {
	case len(opts.compare) > 2:
		errs = append(errs, fmt.Errorf("-compare takes one or two reports, got %q", *compare))
	case len(opts.compare) == 2 && (opts.save != "" || opts.json):
		errs = append(errs, errors.New("-compare OLD,NEW does not run: -save and -json do not apply"))
	}
	cfg.Noise = harness.NoiseRule{MaxForeignCPU: *maxForeign, LoadSlack: *loadSlack, MaxSpread: *maxSpread}
	cfg.ProfileDir = *cpuProfile
	if cfg.ProfileDir != "" && os.Getenv(harness.MQProfileEnv) != "" {
		// Both would start the CPU profiler of the same processes.
		errs = append(errs, fmt.Errorf("-cpuprofile and %s exclude each other", harness.MQProfileEnv))
	}
	cfg.Transports = splitList(*transports)
	cfg.Kinds = nil
	for _, k := range splitList(*kinds) {
		cfg.Kinds = append(cfg.Kinds, harness.Kind(k))
	}
	cfg.Sizes = nil
	for _, s := range splitList(*sizes) {
		n, err := harness.ParseSize(s)
		errs = append(errs, err)
		cfg.Sizes = append(cfg.Sizes, n)
	}
	c := splitList(*cpus)
	if len(c) != 2 {
		errs = append(errs, fmt.Errorf("-cpus wants two CPUs, got %q", *cpus))
	} else {
		for i := range 2 {
			n, err := strconv.Atoi(c[i])
			if err != nil {
				errs = append(errs, fmt.Errorf("-cpus: %w", err))
			}
			cfg.CPUs[i] = n
		}
	}
	cfg.Dir = *dir
	self, err := os.Executable()
	errs = append(errs, err)
	cfg.Env.Self, cfg.Env.CC, cfg.Env.CacheDir = self, *cc, *cacheDir
	return cfg, opts, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// defaultCacheDir is podipc's cache (the Makefile's $(CACHE)) under the
// user cache directory.
func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "podipc", "bench")
}
