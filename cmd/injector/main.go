// Command podipc-injector runs podipc's admission webhook, which injects the
// podipc sidecar, tmpfs and channel configuration into annotated pods, and
// the IPCChannel controllers. See docs/injector.md.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/podipc/podipc/internal/injector"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version from the build info is used.
var version = ""

func main() {
	opts := injector.DefaultOptions()
	opts.Version = buildVersion()
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		opts.Namespace = ns
	}
	opts.BindFlags(flag.CommandLine)
	level := new(slog.LevelVar)
	flag.TextVar(level, "log-level", level, "log level: DEBUG, INFO, WARN or ERROR (DEBUG shows each admission)")
	jsonLogs := flag.Bool("log-json", true, "log JSON lines (false: text)")
	flag.Parse()

	handlerOpts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewJSONHandler(os.Stderr, handlerOpts)
	if !*jsonLogs {
		handler = slog.NewTextHandler(os.Stderr, handlerOpts)
	}
	log := logr.FromSlogHandler(handler)
	ctrl.SetLogger(log)
	log.Info("starting podipc-injector", "version", opts.Version)

	cfg, err := ctrl.GetConfig()
	if err != nil {
		fail(log.Error, fmt.Errorf("load the Kubernetes client configuration: %w", err))
	}
	mgr, err := injector.NewManager(cfg, opts, log)
	if err != nil {
		fail(log.Error, err)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fail(log.Error, fmt.Errorf("run the manager: %w", err))
	}
}

func fail(logError func(error, string, ...any), err error) {
	logError(err, "podipc-injector failed")
	os.Exit(1)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "dev"
}
