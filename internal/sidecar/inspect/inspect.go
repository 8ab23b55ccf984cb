// Package inspect implements `podipc-sidecar inspect`: it gets the state of a
// pod's channels, from the running sidecar's /debug/channels endpoint or, when
// the sidecar does not answer, straight from the shared-memory headers on the
// tmpfs, and prints it as a table.
package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/internal/sidecar/reconcile"
	"github.com/podipc/podipc/internal/sidecar/server"
	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/shm"
)

// Fetch gets the snapshot of the sidecar serving HTTP at addr (host:port).
func Fetch(ctx context.Context, addr string) (status.Snapshot, error) {
	var snap status.Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+server.ChannelsPath, nil)
	if err != nil {
		return snap, fmt.Errorf("inspect: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return snap, fmt.Errorf("inspect: ask the sidecar: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return snap, fmt.Errorf("inspect: %s%s: %s", addr, server.ChannelsPath, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&snap); err != nil {
		return snap, fmt.Errorf("inspect: decode %s: %w", server.ChannelsPath, err)
	}
	return snap, nil
}

// ReadDir builds a snapshot from the channel files under dir/shm alone, the
// way any process in the pod can: shared-memory counters and peers are read
// from the headers (without registering); states and queues need the
// sidecar and are left out. A file that is not a valid channel is listed as
// Failed with the reason.
func ReadDir(dir string) (status.Snapshot, error) {
	snap := status.Snapshot{Time: time.Now()}
	shmDir := filepath.Join(dir, podcontract.ShmSubdir)
	entries, err := os.ReadDir(shmDir)
	if err != nil {
		return snap, fmt.Errorf("inspect: %w", err)
	}
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), ".") || !de.Type().IsRegular() {
			continue
		}
		path := filepath.Join(shmDir, de.Name())
		c := status.Channel{Name: de.Name(), Type: channelconfig.ChannelTypeSharedMemory}
		st, err := shm.ReadStats(path)
		if err != nil {
			c.State, c.Message = status.StateFailed, err.Error()
			snap.Channels = append(snap.Channels, c)
			continue
		}
		var size int64
		if fi, err := os.Stat(path); err == nil {
			size = fi.Size()
		}
		c.SharedMemory = reconcile.SharedMemoryStatus(st, 0, size)
		snap.Channels = append(snap.Channels, c)
	}
	return snap, nil
}

// Options of Run.
type Options struct {
	// Addr is the sidecar's HTTP address (host:port).
	Addr string
	// Dir is the podipc directory, read directly when the sidecar does not
	// answer (or when Direct is set).
	Dir string
	// Direct skips asking the sidecar.
	Direct bool
	// JSON prints the snapshot as JSON instead of a table.
	JSON bool
	// Timeout bounds the request to the sidecar.
	Timeout time.Duration
}

// Run prints the channels' state to out; notes about where it came from go
// to errOut.
func Run(ctx context.Context, opts Options, out, errOut io.Writer) error {
	var snap status.Snapshot
	fromSidecar := false
	if !opts.Direct {
		fctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		s, err := Fetch(fctx, opts.Addr)
		cancel()
		if err == nil {
			snap, fromSidecar = s, true
		} else {
			fmt.Fprintf(errOut, "%v\nreading the channel files in %s directly (no queues, no states)\n", err, opts.Dir)
		}
	}
	if !fromSidecar {
		s, err := ReadDir(opts.Dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w (is --dir the pod's podipc directory?)", err)
			}
			return err
		}
		snap = s
	}
	if opts.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(snap)
	}
	return Print(out, &snap, fromSidecar)
}

// Print writes snap as a table. withSidecar says whether the snapshot came
// from the sidecar (and so has the configuration, states and queues).
func Print(w io.Writer, snap *status.Snapshot, withSidecar bool) error {
	if withSidecar {
		cfg := snap.Config
		line := fmt.Sprintf("config %s: generation %d", cfg.Path, cfg.Generation)
		if cfg.Applied {
			line += ", applied " + cfg.AppliedAt.Format(time.RFC3339)
		} else {
			line += ", LATEST NOT APPLIED: " + cfg.Error
		}
		fmt.Fprintln(w, line)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tNAME\tSTATE\tMODE\tGEOMETRY\tDEPTH\tPEERS\tSENT\tRECEIVED\tLOST/DROPPED\tREDELIVERED\tACK p50/p99")
	for i := range snap.Channels {
		c := &snap.Channels[i]
		state := string(c.State)
		if state == "" {
			state = "-"
		}
		if !c.Declared && withSidecar && c.State != status.StateRemoving {
			state += " (undeclared)"
		}
		cols := []string{shortType(c.Type), c.Name, state}
		switch {
		case c.SharedMemory != nil:
			s := c.SharedMemory
			cols = append(cols,
				s.Mode+"/"+s.Overflow,
				fmt.Sprintf("%d×%s", s.SlotCount, bytesString(int64(s.SlotSize))),
				fmt.Sprintf("%d/%d", s.Depth, s.SlotCount),
				peersString(s.Peers),
				u64(s.Sent), u64(s.Received), u64(s.Lost), u64(s.Redelivered), "-")
		case c.MessageQueue != nil:
			q := c.MessageQueue
			cols = append(cols,
				"queue",
				fmt.Sprintf("≤%s", bytesString(q.MaxBytes)),
				fmt.Sprintf("%d/%d (+%d unacked)", q.Depth, q.MaxDepth, q.InFlight),
				fmt.Sprintf("consumer=%d", q.Consumers),
				u64(q.Enqueued), u64(q.Acked), u64(q.Dropped+q.DeadLettered+q.Expired), u64(q.Redelivered),
				fmt.Sprintf("%s/%s", durationString(q.AckLatency.Quantile(0.5)), durationString(q.AckLatency.Quantile(0.99))))
		default:
			cols = append(cols, "-", "-", "-", "-", "-", "-", "-", "-", "-")
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i := range snap.Channels {
		if c := &snap.Channels[i]; c.Message != "" {
			fmt.Fprintf(w, "%s %s: %s\n", shortType(c.Type), c.Name, c.Message)
		}
	}
	return nil
}

func shortType(t channelconfig.ChannelType) string {
	switch t {
	case channelconfig.ChannelTypeSharedMemory:
		return "shm"
	case channelconfig.ChannelTypeMessageQueue:
		return "mq"
	}
	return string(t)
}

func peersString(peers map[string]int) string {
	var parts []string
	for _, role := range slices.Sorted(maps.Keys(peers)) {
		if n := peers[role]; n > 0 {
			parts = append(parts, role+"="+strconv.Itoa(n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func bytesString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

func durationString(seconds float64) string {
	if seconds == 0 {
		return "-"
	}
	return time.Duration(seconds * float64(time.Second)).Round(time.Microsecond).String()
}
