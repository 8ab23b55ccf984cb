package testenv_test

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podipc/podipc/internal/testenv"
)

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime's logger; route it to stderr.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil)))
	os.Exit(m.Run())
}

var widgetGVK = schema.GroupVersionKind{Group: "testenv.podipc.io", Version: "v1", Kind: "Widget"}

// TestControlPlane starts the real kube-apiserver and etcd once and proves the
// wiring: the pinned build answers, objects round-trip through etcd, and the
// project's CRDs plus a test CRD are installed and enforce their schemas.
func TestControlPlane(t *testing.T) {
	projectCRDs, err := testenv.ProjectCRDs()
	if err != nil {
		t.Fatal(err)
	}
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, testenv.Options{
		Scheme:   scheme,
		CRDPaths: append(projectCRDs, filepath.Join("testdata", "crds")),
	})
	c := env.Client

	t.Run("serves the version the build script stamped", func(t *testing.T) {
		dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
		if err != nil {
			t.Fatal(err)
		}
		info, err := dc.ServerVersion()
		if err != nil {
			t.Fatalf("GET /version: %v", err)
		}
		if !strings.HasPrefix(info.GitVersion, "v1.") {
			t.Fatalf("server version %q is not a Kubernetes release", info.GitVersion)
		}
		want, ok := stampedVersion(t, env.AssetsDir)
		if !ok {
			t.Skipf("%s was not built by hack/envtest/build.sh (no stamp); server reports %s", env.AssetsDir, info.GitVersion)
		}
		if info.GitVersion != want {
			t.Errorf("server version = %s, want %s as stamped by the build", info.GitVersion, want)
		}
	})

	t.Run("stores, updates and deletes a ConfigMap", func(t *testing.T) {
		ctx := t.Context()
		created := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "smoke-", Namespace: metav1.NamespaceDefault},
			Data:       map[string]string{"channel": "frames"},
		}
		if err := c.Create(ctx, created); err != nil {
			t.Fatalf("create: %v", err)
		}
		key := client.ObjectKeyFromObject(created)

		var got corev1.ConfigMap
		if err := c.Get(ctx, key, &got); err != nil {
			t.Fatalf("get: %v", err)
		}
		if got.UID == "" || got.UID != created.UID || got.Data["channel"] != "frames" {
			t.Fatalf("get returned uid %q data %v, want uid %q data channel=frames", got.UID, got.Data, created.UID)
		}

		got.Data["channel"] = "events"
		if err := c.Update(ctx, &got); err != nil {
			t.Fatalf("update: %v", err)
		}
		var updated corev1.ConfigMap
		if err := c.Get(ctx, key, &updated); err != nil {
			t.Fatalf("get after update: %v", err)
		}
		if updated.Data["channel"] != "events" || updated.ResourceVersion == created.ResourceVersion {
			t.Fatalf("after update: data %v resourceVersion %s (was %s)", updated.Data, updated.ResourceVersion, created.ResourceVersion)
		}

		if err := c.Delete(ctx, &updated); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if err := c.Get(ctx, key, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
			t.Fatalf("get after delete: error = %v, want NotFound", err)
		}
	})

	t.Run("installs the CRDs established", func(t *testing.T) {
		want := envtest.CRDInstallOptions{Paths: append(projectCRDs, filepath.Join("testdata", "crds"))}
		if err := envtest.ReadCRDFiles(&want); err != nil {
			t.Fatal(err)
		}
		installed := map[string]bool{}
		for _, crd := range env.CRDs {
			installed[crd.Name] = true
		}
		if len(want.CRDs) == 0 || len(env.CRDs) != len(want.CRDs) {
			t.Errorf("installed %d CRDs, want the %d in the manifests", len(env.CRDs), len(want.CRDs))
		}
		for _, crd := range want.CRDs {
			if !installed[crd.Name] {
				t.Errorf("CRD %s from the manifests was not installed", crd.Name)
				continue
			}
			var served apiextensionsv1.CustomResourceDefinition
			if err := c.Get(t.Context(), client.ObjectKey{Name: crd.Name}, &served); err != nil {
				t.Fatalf("get CRD %s: %v", crd.Name, err)
			}
			if !established(&served) {
				t.Errorf("CRD %s is not established: %+v", crd.Name, served.Status.Conditions)
			}
		}
	})

	t.Run("serves a custom resource and enforces its schema", func(t *testing.T) {
		ctx := t.Context()
		widget := newWidget("valid", "64Mi")
		if err := c.Create(ctx, widget); err != nil {
			t.Fatalf("create Widget: %v", err)
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(widgetGVK)
		if err := c.Get(ctx, client.ObjectKeyFromObject(widget), got); err != nil {
			t.Fatalf("get Widget: %v", err)
		}
		if size, _, _ := unstructured.NestedString(got.Object, "spec", "size"); size != "64Mi" {
			t.Errorf("Widget spec.size = %q, want 64Mi", size)
		}

		err := c.Create(ctx, newWidget("invalid", "lots"))
		if !apierrors.IsInvalid(err) {
			t.Fatalf("create Widget violating the schema: error = %v, want Invalid", err)
		}
	})
}

// TestStartWithoutBinaries checks the policy for an absent control plane: skip
// by default, fail when PODIPC_REQUIRE_ENVTEST is set.
func TestStartWithoutBinaries(t *testing.T) {
	tests := []struct {
		require  string
		wantSkip bool
	}{
		{require: "", wantSkip: true},
		{require: "1", wantSkip: false},
	}
	for _, tt := range tests {
		t.Run(testenv.RequireEnv+"="+tt.require, func(t *testing.T) {
			t.Setenv(testenv.RequireEnv, tt.require)
			tb := &recordingTB{TB: t}
			opts := testenv.Options{AssetsDir: t.TempDir(), CRDPaths: []string{}}
			done := make(chan struct{})
			go func() {
				defer close(done)
				testenv.Start(tb, opts)
				tb.returned = true
			}()
			<-done

			switch {
			case tb.returned:
				t.Fatal("Start returned without binaries")
			case tt.wantSkip && (tb.skipped == "" || tb.failed != ""):
				t.Fatalf("want a skip, got skip %q, failure %q", tb.skipped, tb.failed)
			case !tt.wantSkip && (tb.failed == "" || tb.skipped != ""):
				t.Fatalf("want a failure, got skip %q, failure %q", tb.skipped, tb.failed)
			}
			msg := tb.skipped + tb.failed
			if !strings.Contains(msg, testenv.ErrNoAssets.Error()) {
				t.Errorf("message %q does not say the binaries are missing", msg)
			}
			if tt.wantSkip && !strings.Contains(msg, "make envtest-bins") {
				t.Errorf("skip message %q does not say how to build the binaries", msg)
			}
		})
	}
}

// recordingTB records Skipf and Fatalf, and ends the goroutine as the real
// ones do, without marking the enclosing test.
type recordingTB struct {
	testing.TB
	skipped, failed string
	returned        bool
}

func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func newWidget(name, size string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"size": size}}}
	u.SetGroupVersionKind(widgetGVK)
	u.SetNamespace(metav1.NamespaceDefault)
	u.SetName(name)
	return u
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established {
			return cond.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

// stampedVersion reads the Kubernetes version from the stamp file
// hack/envtest/build.sh leaves beside the binaries.
func stampedVersion(t *testing.T, dir string) (string, bool) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, ".stamp"))
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if version, ok := strings.CutPrefix(scanner.Text(), "kube-apiserver "); ok {
			return version, true
		}
	}
	t.Fatalf("stamp in %s names no kube-apiserver version (err %v)", dir, scanner.Err())
	return "", false
}
