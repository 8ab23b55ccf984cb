package injector_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podipc/podipc/internal/injector"
	"github.com/podipc/podipc/internal/testenv"
)

// controlPlane is the kube-apiserver and etcd every envtest test of the
// package shares (starting one takes seconds); nil when the binaries are
// absent and not required.
var controlPlane *testenv.Env

// noControlPlane says why controlPlane is nil.
var noControlPlane error

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	// Libraries that log through controller-runtime's global logger
	// (cert-controller) stay quiet; each injector logs to its test.
	logf.SetLogger(logr.Discard())
	scheme, err := injector.NewScheme()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err := testenv.Launch(testenv.Options{Scheme: scheme})
	switch {
	case errors.Is(err, testenv.ErrNoAssets) && !testenv.Required():
		noControlPlane = err
		return m.Run()
	case err != nil:
		fmt.Fprintln(os.Stderr, "start the test control plane:", err)
		return 1
	}
	controlPlane = env
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop the test control plane:", err)
		return 1
	}
	return code
}

// requireControlPlane skips the test without a control plane.
func requireControlPlane(t *testing.T) *testenv.Env {
	t.Helper()
	if controlPlane == nil {
		t.Skipf("skipping: %v; build it with `make envtest-bins`, and set %s=1 to fail instead", noControlPlane, testenv.RequireEnv)
	}
	return controlPlane
}
