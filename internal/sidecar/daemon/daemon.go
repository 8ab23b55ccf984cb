// Package daemon runs the sidecar: the message-queue broker on the pod's
// tmpfs, the reconciler that owns the channels, the watch of the channel
// configuration file, the periodic resync and dead-peer reaping, and the HTTP
// server for probes, metrics and inspection; and it shuts them down in order.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/internal/configwatch"
	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/sidecar/metrics"
	"github.com/podipc/podipc/internal/sidecar/reconcile"
	"github.com/podipc/podipc/internal/sidecar/server"
	"github.com/podipc/podipc/pkg/channelconfig"
)

// Config is the sidecar's configuration (its command-line flags).
type Config struct {
	// ConfigPath is the channel configuration file.
	ConfigPath string
	// Dir is the pod's podipc directory, the shared tmpfs. The sidecar
	// writes nowhere else.
	Dir string
	// HTTPAddr is the listen address of the probes, metrics and inspection
	// endpoints.
	HTTPAddr string
	// ResyncInterval is how often dead peers are reaped and pending changes
	// retried.
	ResyncInterval time.Duration
	// ConfigPollInterval is how often the configuration file is re-read
	// without any file-system event.
	ConfigPollInterval time.Duration
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration
	// FileMode is the mode of the channel files and the broker socket.
	FileMode os.FileMode
	// TerminationLog is the file the kubelet reads the container's
	// termination message from; at exit the sidecar writes there what its
	// queues still held (if the file exists; empty: never).
	TerminationLog string
	// Logger receives the structured logs.
	Logger *slog.Logger
	// OnListening, if set, is called with the HTTP server's address once it
	// listens.
	OnListening func(addr net.Addr)
}

// BrokerOptions are the options of the sidecar's broker: its bounds are the
// ones the injector budgets the sidecar's memory limit for (pkg/channelconfig
// BrokerFixedBytes).
// dir is the pod's podipc directory.
func BrokerOptions(dir string, log *slog.Logger) mqbroker.Options {
	return mqbroker.Options{
		JournalDir:           podcontract.JournalDir(dir),
		PrivateRoot:          dir,
		Logger:               log,
		MaxConnections:       channelconfig.BrokerMaxConnections,
		MaxConnectionsPerUID: channelconfig.BrokerMaxConnectionsPerUID,
		MaxBlockedSendBytes:  channelconfig.BrokerMaxBlockedSendBytes,
		MaxMessageSize:       channelconfig.MaxMaxMessageSize,
	}
}

// Run runs the sidecar until ctx ends, then shuts down gracefully: readiness
// fails at once, the broker stops accepting, finishes the frames it has
// received and flushes its journals, the channel handles are released (the
// files stay for the next sidecar to adopt) and the HTTP server stops. It
// returns nil after a clean shutdown, and an error if it could not start or
// the shutdown overran cfg.ShutdownTimeout.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if err := os.MkdirAll(cfg.Dir, 0o770); err != nil {
		return fmt.Errorf("create %s: %w", cfg.Dir, err)
	}
	broker, err := mqbroker.New(BrokerOptions(cfg.Dir, log.With("component", "broker")))
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	rec, err := reconcile.New(reconcile.Options{
		Dir:        cfg.Dir,
		Broker:     broker,
		ConfigPath: cfg.ConfigPath,
		FileMode:   cfg.FileMode,
		Logger:     log.With("component", "reconciler"),
	})
	if err != nil {
		_ = broker.Close()
		return err
	}

	var shuttingDown atomic.Bool
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		_ = broker.Close()
		_ = rec.Close()
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	httpSrv := &http.Server{
		Handler: server.NewHandler(server.Options{
			Snapshot:     rec.Snapshot,
			Gatherer:     metrics.NewRegistry(rec.Snapshot),
			ShuttingDown: shuttingDown.Load,
			Live:         func() error { return rec.Stuck(ReconcileStuckAfter) },
			Logger:       log,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
	mqLn, err := mqbroker.Listen(podcontract.MQSocketPath(cfg.Dir), cfg.FileMode)
	if err != nil {
		_ = httpLn.Close()
		_ = broker.Close()
		_ = rec.Close()
		return fmt.Errorf("broker socket: %w", err)
	}

	runCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	// servers end when shut down; workers end with runCtx.
	var servers, workers sync.WaitGroup
	errc := make(chan error, 4)
	servers.Go(func() {
		if err := broker.Serve(mqLn); err != nil {
			errc <- fmt.Errorf("broker: %w", err)
		}
	})
	servers.Go(func() {
		if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	})
	log.Info("sidecar started", "dir", cfg.Dir, "config", cfg.ConfigPath, "httpAddr", httpLn.Addr().String(),
		"mqSocket", mqLn.Addr().String())
	if cfg.OnListening != nil {
		cfg.OnListening(httpLn.Addr())
	}
	workers.Go(func() {
		err := configwatch.Watch(runCtx, cfg.ConfigPath, configwatch.Options{
			PollInterval: cfg.ConfigPollInterval,
			MaxSize:      channelconfig.MaxSize,
			Logger:       log.With("component", "configwatch"),
		}, func(u configwatch.Update) { applyUpdate(runCtx, cfg.Logger, rec, cfg.ConfigPath, u) })
		if err != nil {
			errc <- err
		}
	})
	workers.Go(func() {
		t := time.NewTicker(cfg.ResyncInterval)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				rec.Resync(runCtx)
			}
		}
	})

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx), "timeout", cfg.ShutdownTimeout)
	case runErr = <-errc:
		log.Error("sidecar failed; shutting down", "err", runErr)
	}
	shuttingDown.Store(true)
	// No reconciliation may race the broker's shutdown.
	stopWorkers()
	workers.Wait()
	return errors.Join(runErr, shutdown(cfg, &servers, broker, rec, httpSrv))
}

// applyUpdate applies one read of the configuration file, or records why it
// cannot be applied.
func applyUpdate(ctx context.Context, log *slog.Logger, rec *reconcile.Reconciler, path string, u configwatch.Update) {
	if u.Err != nil {
		rec.ConfigError(fmt.Errorf("read %s: %w", path, u.Err))
		return
	}
	cfg, ignored, err := channelconfig.ParseDocument(u.Data)
	if err != nil {
		rec.ConfigError(fmt.Errorf("%s: %w", path, err))
		return
	}
	if len(ignored) > 0 {
		// A newer injector or controller wrote for this older sidecar.
		log.Warn("the configuration is of a newer format; serving what this sidecar knows and ignoring the rest",
			"path", path, "formatVersion", channelconfig.FormatVersion, "ignored", ignored)
	}
	rec.Apply(ctx, cfg)
}

// shutdown stops the servers and releases the channels within
// cfg.ShutdownTimeout, then reports what the queues still held: in the log
// and in the termination message.
func shutdown(cfg Config, servers *sync.WaitGroup, broker *mqbroker.Broker, rec *reconcile.Reconciler, httpSrv *http.Server) error {
	log := cfg.Logger
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()

	var errs []error
	if err := broker.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("broker shutdown: %w", err))
	}
	if err := httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		_ = httpSrv.Close()
	}
	servers.Wait()
	if err := rec.Close(); err != nil {
		errs = append(errs, fmt.Errorf("release channels: %w", err))
	}
	err := errors.Join(errs...)
	report := newDrainReport(broker.Stats(), time.Since(start), err)
	report.log(log)
	if werr := writeTerminationMessage(cfg.TerminationLog, report.message()); werr != nil {
		log.Warn("cannot write the termination message", "err", werr)
	}
	return err
}

// ReconcileStuckAfter is how long one reconcile pass may run before the
// liveness probe (/healthz) fails, so that the kubelet restarts a sidecar
// whose reconcile loop is stuck.
const ReconcileStuckAfter = time.Minute
