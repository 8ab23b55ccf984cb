// Package testenv runs a real kube-apiserver and etcd for tests, through
// controller-runtime's envtest, with the binaries hack/envtest/build.sh builds
// from Go module sources (`make envtest-bins`), and installs the project's CRDs.
//
// A test calls Start, which skips the test when the binaries are absent unless
// PODIPC_REQUIRE_ENVTEST is set (as CI does), and stops the control plane when
// the test ends. A TestMain that shares one control plane across a package
// calls Launch and Env.Stop itself.
package testenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// DefaultStartTimeout bounds the start of each control-plane process. It is
// well above envtest's own 20s default because the tests of several packages
// run at once, under the race detector, on small CI machines.
const DefaultStartTimeout = 90 * time.Second

// crdDir holds the project's generated CRD manifests, relative to the module root.
const crdDir = "config/crd"

// Options configures a control plane. The zero value is ready to use.
type Options struct {
	// Scheme is the scheme of Env.Client and the one envtest checks CRD
	// conversions against. Nil means client-go's scheme of the built-in types.
	Scheme *runtime.Scheme
	// CRDPaths are CRD manifest files or directories to install. Nil means
	// the project's manifests (ProjectCRDs); a path that does not exist is an error.
	CRDPaths []string
	// AssetsDir holds kube-apiserver and etcd. Empty means FindAssets.
	AssetsDir string
	// StartTimeout bounds the start of each control-plane process. Zero means
	// KUBEBUILDER_CONTROLPLANE_START_TIMEOUT if set, else DefaultStartTimeout.
	StartTimeout time.Duration
}

// Env is a running control plane.
type Env struct {
	// Config authenticates as a cluster administrator (system:masters).
	Config *rest.Config
	// Client is a controller-runtime client for Config with Options.Scheme.
	Client client.Client
	// CRDs are the custom resource definitions installed, each established.
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// AssetsDir is the directory the binaries were run from.
	AssetsDir string

	environment *envtest.Environment
}

// Start launches a control plane for the test and stops it when the test
// ends. When the binaries are absent it skips the test, or fails it if
// Required reports true; any other failure to start fails the test.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	env, err := Launch(opts)
	if errors.Is(err, ErrNoAssets) && !Required() {
		t.Skipf("skipping: %v; build them with `make envtest-bins` (or point %s at them), "+
			"and set %s=1 to fail instead of skipping", err, AssetsEnv, RequireEnv)
	}
	if err != nil {
		t.Fatalf("start the test control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop the test control plane: %v", err)
		}
	})
	return env
}

// Launch starts kube-apiserver and etcd, installs the CRDs and waits until
// they are established. The caller must call Stop. The error wraps
// ErrNoAssets when the binaries are absent.
func Launch(opts Options) (*Env, error) {
	assets := opts.AssetsDir
	if assets == "" {
		found, err := FindAssets()
		if err != nil {
			return nil, err
		}
		assets = found
	} else if err := checkAssets(assets); err != nil {
		return nil, err
	}

	crdPaths := opts.CRDPaths
	if crdPaths == nil {
		var err error
		if crdPaths, err = ProjectCRDs(); err != nil {
			return nil, err
		}
	}

	startTimeout, err := startTimeout(opts.StartTimeout)
	if err != nil {
		return nil, err
	}

	scheme := opts.Scheme
	if scheme == nil {
		scheme = clientgoscheme.Scheme
	}

	environment := &envtest.Environment{
		// Paths set here win over KUBEBUILDER_ASSETS and TEST_ASSET_*, so the
		// binaries run are the ones checked above.
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{Path: filepath.Join(assets, "kube-apiserver")},
			Etcd:      &envtest.Etcd{Path: filepath.Join(assets, "etcd")},
		},
		Scheme:                   scheme,
		CRDDirectoryPaths:        crdPaths,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: startTimeout,
	}
	cfg, err := environment.Start()
	if err != nil {
		// Start may fail after the processes are up (CRD installation, say).
		if stopErr := environment.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop after failed start: %w", stopErr))
		}
		return nil, fmt.Errorf("start envtest with the binaries in %s: %w", assets, err)
	}

	env := &Env{Config: cfg, CRDs: environment.CRDs, AssetsDir: assets, environment: environment}
	env.Client, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create a client for the test control plane: %w", err), env.Stop())
	}
	return env, nil
}

// Stop stops kube-apiserver and etcd and removes their temporary data.
func (e *Env) Stop() error {
	if err := e.environment.Stop(); err != nil {
		return fmt.Errorf("stop envtest: %w", err)
	}
	return nil
}

// ProjectCRDs lists the CRD manifests (*.yaml, *.yml) anywhere under the
// module's config/crd. It returns an empty list when there are none yet.
func ProjectCRDs() ([]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	return manifestsUnder(filepath.Join(root, crdDir))
}

// manifestsUnder lists the YAML files in the tree rooted at dir, which may be
// absent. envtest itself ignores the documents that are not CRDs.
func manifestsUnder(dir string) ([]string, error) {
	manifests := []string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == dir {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); d.Type().IsRegular() && (ext == ".yaml" || ext == ".yml") {
			manifests = append(manifests, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list CRD manifests under %s: %w", dir, err)
	}
	return manifests, nil
}

// startTimeout resolves Options.StartTimeout.
func startTimeout(configured time.Duration) (time.Duration, error) {
	if configured > 0 {
		return configured, nil
	}
	const env = "KUBEBUILDER_CONTROLPLANE_START_TIMEOUT"
	if v := os.Getenv(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", env, err)
		}
		return d, nil
	}
	return DefaultStartTimeout, nil
}
