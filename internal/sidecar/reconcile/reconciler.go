// Package reconcile keeps a pod's channels in the state its channel
// configuration declares: the shared-memory channel files under <dir>/shm and
// the message queues of the sidecar's broker.
//
// The rules, which docs/sidecar.md states for users:
//   - A declared channel that does not exist is created. A shared-memory file
//     is created with every block allocated (charged to the sidecar), so that
//     an undersized tmpfs is an error here, naming the bytes the channel
//     needs and the tmpfs has, rather than a SIGBUS in an application later.
//     The sidecar keeps only the header and peer table of each file mapped:
//     its statistics and dead-peer reaping need nothing else.
//   - Channel files found on the tmpfs are adopted (validated with shm.Open),
//     never wiped: the sidecar restarting, or the application containers
//     restarting, loses no data.
//   - A shared-memory channel whose declared geometry, mode or overflow
//     policy differs from its file is recreated only when no process is
//     attached to it; until then it keeps serving with the old settings and
//     is Blocked (which makes the sidecar unready).
//   - A channel no longer declared is removed once nothing is attached to it
//     (Removing until then): a shared-memory file once no peer holds it, a
//     queue once it has no consumer and no unacknowledged message.
//   - Message-queue settings are applied to live queues by the broker.
//
// Whether a file is in use is the kernel's word: every registered peer holds
// an OFD lock on the file, which the kernel drops when the process dies.
package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/pkg/channelconfig"
)

// Options configure a Reconciler.
type Options struct {
	// Dir is the pod's podipc directory (the shared tmpfs).
	Dir string
	// Broker serves the message queues. Required.
	Broker *mqbroker.Broker
	// ConfigPath is reported in the status; the reconciler does not read it.
	ConfigPath string
	// FileMode is the mode of channel files (default
	// podcontract.DefaultFileMode).
	FileMode os.FileMode
	// Logger receives decisions and problems; nil discards them.
	Logger *slog.Logger
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Reconciler owns the channels of one pod. Its methods are safe for
// concurrent use; reconciliation passes run one at a time.
type Reconciler struct {
	opts   Options
	log    *slog.Logger
	shmDir string

	// passStarted is when the latest reconcile pass (Apply or Resync)
	// started, waiting for mu included, in Unix nanoseconds; 0 once it ended.
	passStarted atomic.Int64

	mu        sync.Mutex
	cfg       *channelconfig.Config // running configuration; nil before the first
	cfgStatus status.Config
	counters  status.Counters
	shm       map[string]*shmEntry
	queues    queueState
}

// New returns a Reconciler for opts.Dir. It creates the shm directory and
// adopts every channel file already in it, but changes nothing else until a
// configuration is applied: without a configuration it cannot know which
// channels are still wanted.
func New(opts Options) (*Reconciler, error) {
	if opts.Broker == nil {
		return nil, errors.New("reconcile: Options.Broker is required")
	}
	if opts.FileMode == 0 {
		opts.FileMode = podcontract.DefaultFileMode
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Reconciler{
		opts:      opts,
		log:       opts.Logger,
		shmDir:    filepath.Join(opts.Dir, podcontract.ShmSubdir),
		cfgStatus: status.Config{Path: opts.ConfigPath, Error: "no configuration read yet"},
		shm:       map[string]*shmEntry{},
	}
	// Applications only open files here: they need to search the directory,
	// never to write it. The mode is set explicitly, whatever the umask.
	if err := os.MkdirAll(r.shmDir, 0o755); err != nil {
		return nil, fmt.Errorf("create channel directory: %w", err)
	}
	if err := os.Chmod(r.shmDir, 0o755); err != nil {
		return nil, fmt.Errorf("set channel directory mode: %w", err)
	}
	if err := r.adopt(); err != nil {
		return nil, err
	}
	return r, nil
}

// Apply makes cfg the running configuration and reconciles toward it. cfg
// must be valid (channelconfig.Parse). It reports whether every channel
// reached its declared state; what did not is in the Snapshot and is retried
// by Resync.
func (r *Reconciler) Apply(ctx context.Context, cfg *channelconfig.Config) bool {
	defer r.pass()()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg = cfg.DeepCopy()
	r.cfgStatus.Applied = true
	r.cfgStatus.Error = ""
	r.cfgStatus.Generation++
	r.cfgStatus.AppliedAt = r.opts.Now()
	r.log.Info("applying channel configuration", "generation", r.cfgStatus.Generation, "channels", len(cfg.Channels))
	return r.syncLocked(ctx)
}

// ConfigError records that the configuration file's latest contents could
// not be read or are invalid. The running configuration stays.
func (r *Reconciler) ConfigError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfgStatus.Applied = false
	r.cfgStatus.Error = err.Error()
	r.counters.ConfigErrors++
	if r.cfg == nil {
		r.log.Error("channel configuration unusable; no channels are served until it is fixed", "err", err)
	} else {
		r.log.Error("channel configuration unusable; keeping the last valid one", "err", err,
			"runningGeneration", r.cfgStatus.Generation)
	}
}

// Resync recovers dead shared-memory peers and, once a configuration is
// running, reconciles again: it retries what could not be done before
// (creations that failed, changes blocked by live peers, removals) and
// repairs channel files removed or replaced behind the sidecar's back. The
// sidecar calls it periodically.
func (r *Reconciler) Resync(ctx context.Context) {
	defer r.pass()()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reapLocked()
	if r.cfg != nil {
		r.syncLocked(ctx)
	}
}

// syncLocked runs one reconciliation pass toward r.cfg.
func (r *Reconciler) syncLocked(ctx context.Context) bool {
	wantShm := map[string]channelconfig.SharedMemorySettings{}
	var wantQueues []channelconfig.Channel
	for _, c := range r.cfg.Channels {
		switch {
		case c.Type == channelconfig.ChannelTypeSharedMemory && c.SharedMemory != nil:
			s := *c.SharedMemory
			s.Default()
			wantShm[c.Name] = s
		case c.Type == channelconfig.ChannelTypeMessageQueue && c.MessageQueue != nil:
			wantQueues = append(wantQueues, c)
		}
	}
	ok := r.syncShmLocked(wantShm)
	ok = r.queues.sync(ctx, r.opts.Broker, r.log, wantQueues) && ok
	if ok {
		r.counters.ReconcileSuccesses++
	} else {
		r.counters.ReconcileFailures++
	}
	return ok
}

// Snapshot returns the state of every channel, with the shared-memory
// counters read from the files' headers and the queue counters from the
// broker, now.
func (r *Reconciler) Snapshot() status.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := status.Snapshot{
		Time:     r.opts.Now(),
		Config:   r.cfgStatus,
		Counters: r.counters,
	}
	for _, e := range r.shm {
		snap.Channels = append(snap.Channels, e.status())
	}
	snap.Channels = append(snap.Channels, r.queues.status(r.opts.Broker)...)
	cs := r.opts.Broker.ConnStats()
	snap.Broker = &status.Broker{
		Connections: cs.Connections, MaxConnections: cs.MaxConnections,
		ConnectionsByUID: cs.ByUID, MaxConnectionsPerUID: cs.MaxConnectionsPerUID,
		BlockedSendBytes: cs.BlockedSendBytes, MaxBlockedSendBytes: cs.MaxBlockedSendBytes,
	}
	slices.SortFunc(snap.Channels, func(a, b status.Channel) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name))
	})
	return snap
}

// Close releases the reconciler's handles on the channel files. The files
// stay: the channels outlive the sidecar process, and the next sidecar adopts
// them.
func (r *Reconciler) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, e := range r.shm {
		errs = append(errs, e.close())
	}
	return errors.Join(errs...)
}

// pass records the start of a reconcile pass and returns what records its end.
func (r *Reconciler) pass() func() {
	start := time.Now().UnixNano()
	r.passStarted.Store(start)
	return func() { r.passStarted.CompareAndSwap(start, 0) }
}

// Stuck fails if a reconcile pass has been running (or waiting for another
// one) for longer than limit: the loop is stuck, and the sidecar's liveness
// probe says so, so that the kubelet restarts it. It takes no lock.
func (r *Reconciler) Stuck(limit time.Duration) error {
	start := r.passStarted.Load()
	if start == 0 {
		return nil
	}
	if d := time.Since(time.Unix(0, start)); d > limit {
		return fmt.Errorf("a reconcile pass has been running for %v (limit %v)", d.Round(time.Second), limit)
	}
	return nil
}
