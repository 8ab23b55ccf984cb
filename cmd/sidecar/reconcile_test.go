package main

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podipc/podipc/internal/configwatch/projectedvolume"
	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/internal/testkit"
)

const (
	cfgFrames = `
- name: frames
  type: SharedMemory
  sharedMemory: {mode: Queue, slotSize: 1024, slotCount: 32}
`
	cfgFramesResized = `
- name: frames
  type: SharedMemory
  sharedMemory: {mode: Queue, slotSize: 2048, slotCount: 32}
`
	cfgJobs = `
- name: jobs
  type: MessageQueue
  messageQueue: {maxDepth: 100}
`
	cfgJobsDeeper = `
- name: jobs
  type: MessageQueue
  messageQueue: {maxDepth: 500}
`
	cfgEvents = `
- name: events
  type: SharedMemory
  sharedMemory: {mode: Broadcast, slotSize: 128, slotCount: 8, overflow: Overwrite}
`
)

// The whole reconcile story through a downward-API style volume (every
// update a kubelet symlink swap), with a live peer in another process.
func TestReconcileThroughProjectedVolume(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	volume := t.TempDir()
	publish := func(channels string) {
		t.Helper()
		if err := projectedvolume.Write(volume, map[string][]byte{"channels.yaml": configDoc(channels)}); err != nil {
			t.Fatal(err)
		}
	}
	publish(cfgFrames + cfgJobs)
	s := startSidecar(t, dir, filepath.Join(volume, "channels.yaml"))
	s.waitReady()
	framesPath := filepath.Join(channelsDir(dir), "frames")
	consumer := startPeer(t, framesPath)

	// Add a channel.
	publish(cfgFrames + cfgJobs + cfgEvents)
	s.eventually("events to be created", func() bool {
		c, ok := s.channel("events")
		return ok && c.State == status.StateReady
	})
	if o := shmGeometry(t, filepath.Join(channelsDir(dir), "events")); o.SlotSize != 128 || o.SlotCount != 8 {
		t.Fatalf("events geometry %+v", o)
	}
	subscriber := startPeer(t, filepath.Join(channelsDir(dir), "events"))

	// A compatible change: the queue's depth, applied live.
	publish(cfgFrames + cfgJobsDeeper + cfgEvents)
	s.eventually("jobs to get maxDepth 500", func() bool {
		c, ok := s.channel("jobs")
		return ok && c.MessageQueue != nil && c.MessageQueue.MaxDepth == 500
	})
	s.waitReady()

	// An incompatible change while frames has a live consumer: refused,
	// reported in readiness and metrics, the old file left alone.
	publish(cfgFramesResized + cfgJobsDeeper + cfgEvents)
	s.eventually("frames to be blocked", func() bool {
		c, _ := s.channel("frames")
		return c.State == status.StateBlocked
	})
	code, body := s.get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "frames: Blocked: incompatible change: slotSize 1024 → 2048") {
		t.Errorf("/readyz while blocked = %d %q", code, body)
	}
	if v := metricValue(t, s, "podipc_channel_state", map[string]string{"channel": "frames", "state": "Blocked"}); v != 1 {
		t.Errorf("podipc_channel_state{frames,Blocked} = %v", v)
	}
	if o := shmGeometry(t, framesPath); o.SlotSize != 1024 {
		t.Fatalf("frames changed under its consumer: %+v", o)
	}
	// Once the consumer leaves, the change is applied.
	consumer.leave(t)
	s.eventually("frames to be recreated", func() bool {
		c, _ := s.channel("frames")
		return c.State == status.StateReady && c.SharedMemory != nil && c.SharedMemory.SlotSize == 2048
	})
	s.waitReady()

	// Remove a channel that still has a subscriber: kept until it leaves.
	publish(cfgFramesResized + cfgJobsDeeper)
	s.eventually("events to be Removing", func() bool {
		c, _ := s.channel("events")
		return c.State == status.StateRemoving
	})
	s.waitReady()
	subscriber.leave(t)
	s.eventually("events to be removed", func() bool {
		_, ok := s.channel("events")
		return !ok
	})
	if _, err := os.Stat(filepath.Join(channelsDir(dir), "events")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("events file after removal: %v", err)
	}

	// An invalid configuration keeps the last good one running.
	if err := projectedvolume.Write(volume, map[string][]byte{"channels.yaml": []byte("apiVersion: podipc.io/v1alpha1\nkind: ChannelConfig\nchannels:\n- name: Frames!\n  type: SharedMemory\n")}); err != nil {
		t.Fatal(err)
	}
	s.eventually("the invalid configuration to be reported", func() bool {
		code, body := s.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "config: not applied") && strings.Contains(body, "invalid channel configuration")
	})
	if v := metricValue(t, s, "podipc_config_applied", nil); v != 0 {
		t.Errorf("podipc_config_applied = %v", v)
	}
	if v := metricValue(t, s, "podipc_config_errors_total", nil); v < 1 {
		t.Errorf("podipc_config_errors_total = %v", v)
	}
	for _, name := range []string{"frames", "jobs"} {
		if c, ok := s.channel(name); !ok || c.State != status.StateReady {
			t.Errorf("%s after the invalid config: %+v", name, c)
		}
	}
	publish(cfgFramesResized + cfgJobsDeeper)
	s.waitReady()
	if snap := s.snapshot(); !snap.Config.Applied || snap.Config.Generation < 5 {
		t.Errorf("config status after the fix = %+v", snap.Config)
	}
}

// A configuration of a newer format (written by a newer injector or
// controller for a pod that still runs this sidecar) is served as far as
// this sidecar knows it, with the rest named in a warning, instead of being
// refused while the old configuration is kept (docs/upgrades.md).
func TestNewerFormatConfiguration(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	cfgPath := filepath.Join(t.TempDir(), "channels.yaml")
	doc := strings.Replace(string(configDoc(cfgFrames+cfgJobs)), "channels:", "formatVersion: 2\nchannels:", 1)
	doc = strings.Replace(doc, "slotCount: 32}", "slotCount: 32, hugePages: true}", 1)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startSidecar(t, dir, cfgPath)
	s.waitReady()
	for _, name := range []string{"frames", "jobs"} {
		if c, ok := s.channel(name); !ok || c.State != status.StateReady {
			t.Fatalf("channel %s: %+v", name, c)
		}
	}
	s.eventually("the warning naming the ignored field", func() bool {
		return strings.Contains(s.logText(), `"ignored":["channels[frames].sharedMemory.hugePages"]`)
	})
}
