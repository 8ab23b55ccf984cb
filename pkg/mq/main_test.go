package mq

import (
	"context"
	"os/signal"
	"syscall"
	"testing"

	"github.com/podipc/podipc/internal/testkit"
)

// TestMain runs the child roles of the multi-process tests (see
// multiprocess_test.go) in re-executed test binaries; each runs until it is
// done or gets SIGTERM.
func TestMain(m *testing.M) {
	kit := testkit.Roles{}
	for name, run := range roles {
		kit[name] = func([]string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
			defer stop()
			return run(ctx)
		}
	}
	testkit.Main(m, kit)
}
