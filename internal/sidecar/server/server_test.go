package server_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podipc/podipc/internal/sidecar/server"
	"github.com/podipc/podipc/internal/sidecar/status"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestReadyz(t *testing.T) {
	snap := status.Snapshot{
		Config:   status.Config{Applied: true, Generation: 3},
		Channels: []status.Channel{{Name: "frames", Type: "SharedMemory", Declared: true, State: status.StateReady}},
	}
	var stopping atomic.Bool
	h := server.NewHandler(server.Options{
		Snapshot:     func() status.Snapshot { return snap },
		Gatherer:     prometheus.NewRegistry(),
		ShuttingDown: stopping.Load,
	})
	if code, body := get(t, h, server.ReadyzPath); code != http.StatusOK || body != "ok: config generation 3, 1 channels ready\n" {
		t.Errorf("ready: %d %q", code, body)
	}
	snap.Channels[0].State, snap.Channels[0].Message = status.StateBlocked, "incompatible change: slotSize 1 → 2"
	if code, body := get(t, h, server.ReadyzPath); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "SharedMemory frames: Blocked: incompatible change: slotSize 1 → 2") {
		t.Errorf("blocked: %d %q", code, body)
	}
	snap.Channels[0].State = status.StateReady
	stopping.Store(true)
	if code, body := get(t, h, server.ReadyzPath); code != http.StatusServiceUnavailable || body != "shutting down\n" {
		t.Errorf("shutting down: %d %q", code, body)
	}
	if code, _ := get(t, h, server.HealthzPath); code != http.StatusOK {
		t.Errorf("healthz while shutting down: %d", code)
	}
	code, body := get(t, h, server.ChannelsPath)
	var got status.Snapshot
	if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.Channels[0].Name != "frames" {
		t.Errorf("/debug/channels: %d %q", code, body)
	}
	if code, _ := get(t, h, "/nope"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d", code)
	}
}

// /healthz fails, saying why, while the liveness check does: a sidecar
// whose reconcile loop is stuck is restarted by the kubelet.
func TestHealthzFailsWhenNotLive(t *testing.T) {
	var stuck atomic.Bool
	h := server.NewHandler(server.Options{
		Snapshot: func() status.Snapshot { return status.Snapshot{} },
		Gatherer: prometheus.NewRegistry(),
		Live: func() error {
			if stuck.Load() {
				return errors.New("a reconcile pass has been running for 2m0s (limit 1m0s)")
			}
			return nil
		},
	})
	if code, body := get(t, h, server.HealthzPath); code != http.StatusOK || body != "ok\n" {
		t.Errorf("live: %d %q", code, body)
	}
	stuck.Store(true)
	if code, body := get(t, h, server.HealthzPath); code != http.StatusServiceUnavailable || !strings.Contains(body, "reconcile pass has been running") {
		t.Errorf("stuck: %d %q", code, body)
	}
}

// A queue whose journal was refused at start is served (empty): /readyz
// passes and says which queue's journal was refused and why.
func TestReadyzNamesRefusedJournals(t *testing.T) {
	snap := status.Snapshot{
		Config: status.Config{Applied: true, Generation: 1},
		Channels: []status.Channel{{Name: "jobs", Type: "MessageQueue", Declared: true, State: status.StateReady,
			MessageQueue: &status.MessageQueue{JournalRefused: "the journal was refused and set aside as jobs.journal.refused-1: owned by uid 65534"}}},
	}
	h := server.NewHandler(server.Options{
		Snapshot:     func() status.Snapshot { return snap },
		Gatherer:     prometheus.NewRegistry(),
		ShuttingDown: func() bool { return false },
	})
	code, body := get(t, h, server.ReadyzPath)
	if code != http.StatusOK || !strings.Contains(body, "warning: MessageQueue jobs: the journal was refused") || !strings.Contains(body, "65534") {
		t.Errorf("readyz: %d %q, want ok with a warning naming the queue and why", code, body)
	}
}
