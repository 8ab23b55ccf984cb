// Package server is the sidecar's HTTP interface: health and readiness for
// the kubelet's probes, Prometheus metrics, and a JSON dump of the channels
// for `podipc-sidecar inspect`.
package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/podipc/podipc/internal/sidecar/status"
)

// Paths of the endpoints.
const (
	HealthzPath  = "/healthz"
	ReadyzPath   = "/readyz"
	MetricsPath  = "/metrics"
	ChannelsPath = "/debug/channels"
)

// Options configure the handler.
type Options struct {
	// Snapshot returns the sidecar's state now. Required.
	Snapshot func() status.Snapshot
	// Gatherer serves /metrics. Required.
	Gatherer prometheus.Gatherer
	// ShuttingDown, if set, makes /readyz fail once it returns true.
	ShuttingDown func() bool
	// Live, if set, makes /healthz fail with its error: the process serves
	// HTTP but is stuck (it must not take a lock that a stuck worker holds).
	Live func() error
	// Logger receives errors serving metrics; nil discards them.
	Logger *slog.Logger
}

// NewHandler returns the handler of every endpoint.
//
//   - /healthz is 200 while the process serves HTTP and Live passes.
//   - /readyz is 200 only when the latest configuration is applied and every
//     declared channel is Ready; otherwise 503 with one line per problem.
//   - /metrics is the Prometheus exposition.
//   - /debug/channels is the status.Snapshot as JSON.
func NewHandler(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HealthzPath, func(w http.ResponseWriter, _ *http.Request) {
		if opts.Live != nil {
			if err := opts.Live(); err != nil {
				writeText(w, http.StatusServiceUnavailable, "not live: "+err.Error()+"\n")
				return
			}
		}
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET "+ReadyzPath, func(w http.ResponseWriter, _ *http.Request) {
		if opts.ShuttingDown != nil && opts.ShuttingDown() {
			writeText(w, http.StatusServiceUnavailable, "shutting down\n")
			return
		}
		snap := opts.Snapshot()
		if problems := snap.NotReady(); len(problems) > 0 {
			writeText(w, http.StatusServiceUnavailable, "not ready:\n"+strings.Join(problems, "\n")+"\n")
			return
		}
		declared := 0
		for i := range snap.Channels {
			if snap.Channels[i].Declared {
				declared++
			}
		}
		text := fmt.Sprintf("ok: config generation %d, %d channels ready\n", snap.Config.Generation, declared)
		for _, warning := range snap.Warnings() {
			text += "warning: " + warning + "\n"
		}
		writeText(w, http.StatusOK, text)
	})
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slogErrorLog{opts.Logger},
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET "+ChannelsPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(opts.Snapshot()); err != nil {
			opts.Logger.Debug("writing /debug/channels failed", "err", err)
		}
	})
	return mux
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// slogErrorLog adapts a slog.Logger to promhttp's error logger.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) {
	l.log.Error("serving metrics failed", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}
