// Command podipc-sidecar is the per-pod daemon that owns a pod's podipc
// channels: it creates and adopts the shared-memory channel files on the
// pod's tmpfs, runs the message-queue broker, reconciles both whenever the
// channel configuration file changes, and serves health, readiness and
// Prometheus metrics. See docs/sidecar.md.
//
//	podipc-sidecar --config channels.yaml --dir /dev/shm/podipc
//	podipc-sidecar inspect [--dir D] [--addr host:port]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/memlimit"
	"github.com/podipc/podipc/internal/sidecar/daemon"
	"github.com/podipc/podipc/internal/sidecar/inspect"
	"github.com/podipc/podipc/pkg/podcontract"
)

// Defaults of the flags.
const (
	defaultConfigPath = podcontract.ConfigPath
	defaultDir        = podcontract.DefaultMountPath
)

// defaultHTTPAddr is the sidecar's HTTP listen address: every interface, the
// contract's port.
func defaultHTTPAddr() string { return ":" + strconv.Itoa(podcontract.DefaultMetricsPort) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command with its arguments; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "inspect" {
		return runInspect(args[1:], stdout, stderr)
	}
	return runDaemon(args, stderr)
}

func defaultDirectory() string {
	if d := os.Getenv(podcontract.EnvDir); d != "" {
		return d
	}
	return defaultDir
}

func runDaemon(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("podipc-sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: podipc-sidecar [flags]\n       podipc-sidecar inspect [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	cfg := daemon.Config{}
	fs.StringVar(&cfg.ConfigPath, "config", defaultConfigPath, "channel configuration file (a ChannelConfig document), watched for changes")
	fs.StringVar(&cfg.Dir, "dir", defaultDirectory(), "the pod's podipc directory on a tmpfs (default $"+podcontract.EnvDir+" or "+defaultDir+")")
	fs.StringVar(&cfg.HTTPAddr, "metrics-addr", defaultHTTPAddr(), "listen address of /healthz, /readyz, /metrics and /debug/channels")
	fs.DurationVar(&cfg.ResyncInterval, "resync-interval", time.Second, "how often dead peers are reaped and pending changes retried")
	fs.DurationVar(&cfg.ConfigPollInterval, "config-poll-interval", 5*time.Second, "how often the configuration file is re-read without a file-system event")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "bound of the graceful shutdown on SIGTERM or SIGINT")
	mode := fs.String("file-mode", fmt.Sprintf("%#o", podcontract.DefaultFileMode), "mode of the channel files and the broker socket (octal); the app containers write them under their own UIDs")
	fs.StringVar(&cfg.TerminationLog, "termination-log", "/dev/termination-log", "where the kubelet reads the termination message (what the queues held at exit); written only if it exists; empty: never")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "podipc-sidecar: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "podipc-sidecar: %v\n", err)
		return 2
	}
	perm, err := strconv.ParseUint(*mode, 8, 32)
	if err != nil || perm > 0o777 {
		fmt.Fprintf(stderr, "podipc-sidecar: --file-mode %q is not an octal permission\n", *mode)
		return 2
	}
	cfg.FileMode = os.FileMode(perm)
	if cfg.ResyncInterval <= 0 || cfg.ConfigPollInterval <= 0 || cfg.ShutdownTimeout <= 0 {
		fmt.Fprintln(stderr, "podipc-sidecar: intervals and timeouts must be positive")
		return 2
	}
	cfg.Logger = logger
	applyMemoryLimit(logger, cfg.Dir)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		// A second signal kills the process at once.
		<-ctx.Done()
		stop()
	}()
	if err := daemon.Run(ctx, cfg); err != nil {
		logger.Error("podipc-sidecar exiting", "err", err)
		return 1
	}
	return 0
}

// applyMemoryLimit gives the Go runtime a soft memory limit below what the
// container's leaves after the tmpfs at dir (whose pages the sidecar's
// cgroup is charged for), so that the garbage collector works harder near
// it rather than the kernel OOM-killing the sidecar and with it every queue
// without a journal.
func applyMemoryLimit(logger *slog.Logger, dir string) {
	var reserved int64
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		reserved = int64(st.Blocks) * st.Bsize
	}
	d, err := memlimit.Apply("/sys/fs/cgroup", reserved, memlimit.DefaultFraction, os.Getenv)
	switch {
	case err != nil:
		logger.Warn("Go memory limit not set", "err", err)
	case d.Limit > 0:
		logger.Info("Go memory limit set below the container's", "containerLimitBytes", d.Cgroup, "tmpfsBytes", d.Reserved, "goMemoryLimitBytes", d.Limit)
	default:
		logger.Info("Go memory limit not set", "reason", d.Reason)
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

func runInspect(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("podipc-sidecar inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: podipc-sidecar inspect [flags]\n\n"+
			"Prints the pod's channels: asks the sidecar at --addr, or reads the channel files in --dir when it does not answer.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	opts := inspect.Options{}
	fs.StringVar(&opts.Addr, "addr", "127.0.0.1"+defaultHTTPAddr(), "the sidecar's HTTP address")
	fs.StringVar(&opts.Dir, "dir", defaultDirectory(), "the pod's podipc directory (default $"+podcontract.EnvDir+" or "+defaultDir+")")
	fs.BoolVar(&opts.Direct, "direct", false, "read the channel files only; do not ask the sidecar")
	fs.BoolVar(&opts.JSON, "json", false, "print JSON instead of a table")
	fs.DurationVar(&opts.Timeout, "timeout", 2*time.Second, "how long to wait for the sidecar")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := inspect.Run(context.Background(), opts, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "podipc-sidecar inspect: %v\n", err)
		return 1
	}
	return 0
}
