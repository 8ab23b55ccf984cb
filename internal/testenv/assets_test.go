package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// writeFile creates path (and its parents) with the given mode.
func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func TestFindAssetsFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]os.FileMode
		missing string // a word the error must name; empty when the directory is complete
	}{
		{name: "empty directory", missing: "kube-apiserver"},
		{name: "no etcd", files: map[string]os.FileMode{"kube-apiserver": 0o755}, missing: "etcd"},
		{
			name:    "etcd not executable",
			files:   map[string]os.FileMode{"kube-apiserver": 0o755, "etcd": 0o644},
			missing: "not an executable",
		},
		{name: "complete", files: map[string]os.FileMode{"kube-apiserver": 0o755, "etcd": 0o755, "kubectl": 0o755}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, mode := range tt.files {
				writeFile(t, filepath.Join(dir, name), "#!/bin/true\n", mode)
			}
			t.Setenv(AssetsEnv, dir)

			got, err := FindAssets()
			if got != dir {
				t.Errorf("FindAssets() dir = %q, want %q", got, dir)
			}
			if tt.missing == "" {
				if err != nil {
					t.Fatalf("FindAssets() error = %v, want none", err)
				}
				return
			}
			if !errors.Is(err, ErrNoAssets) || !strings.Contains(err.Error(), tt.missing) {
				t.Fatalf("FindAssets() error = %v, want ErrNoAssets naming %q", err, tt.missing)
			}
		})
	}
}

func TestFindAssetsFromCache(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	version, err := pinnedKubernetesVersion(filepath.Join(root, pinFile))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+$`).MatchString(version) {
		t.Fatalf("pinned Kubernetes version %q is not a release version", version)
	}

	cache := t.TempDir()
	t.Setenv(AssetsEnv, "")
	t.Setenv(CacheEnv, cache)
	want := filepath.Join(cache, "envtest", version)

	if _, err := FindAssets(); !errors.Is(err, ErrNoAssets) {
		t.Fatalf("FindAssets() on an empty cache: error = %v, want ErrNoAssets", err)
	}
	for _, name := range requiredBinaries {
		writeFile(t, filepath.Join(want, name), "#!/bin/true\n", 0o755)
	}
	got, err := FindAssets()
	if err != nil || got != want {
		t.Fatalf("FindAssets() = %q, %v; want %q", got, err, want)
	}
}

func TestPinnedKubernetesVersion(t *testing.T) {
	tests := []struct {
		name, gomod, want string
	}{
		{
			name:  "require block",
			gomod: "module m\n\ngo 1.24.0\n\nrequire (\n\tk8s.io/api v0.0.0 // indirect\n\tk8s.io/kubernetes v1.34.4 // indirect\n)\n",
			want:  "v1.34.4",
		},
		{name: "single require", gomod: "module m\n\nrequire k8s.io/kubernetes v1.36.3\n", want: "v1.36.3"},
		{name: "replace only", gomod: "module m\n\nreplace k8s.io/kubernetes => ../k8s\n"},
		{name: "absent", gomod: "module m\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "go.mod")
			writeFile(t, path, tt.gomod, 0o644)
			got, err := pinnedKubernetesVersion(path)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("pinnedKubernetesVersion() = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("pinnedKubernetesVersion() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestRequired(t *testing.T) {
	tests := []struct {
		name, value string
		set, want   bool
	}{
		{name: "unset", set: false, want: false},
		{name: "empty", value: "", set: true, want: false},
		{name: "0", value: "0", set: true, want: false},
		{name: "false", value: "false", set: true, want: false},
		{name: "1", value: "1", set: true, want: true},
		{name: "true", value: "true", set: true, want: true},
		{name: "unparsable", value: "yes", set: true, want: true}, // fail rather than silently skip
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(RequireEnv, tt.value)
			if !tt.set {
				if err := os.Unsetenv(RequireEnv); err != nil {
					t.Fatal(err)
				}
			}
			if got := Required(); got != tt.want {
				t.Errorf("Required() with %s=%q (set %v) = %v, want %v", RequireEnv, tt.value, tt.set, got, tt.want)
			}
		})
	}
}

func TestManifestsUnder(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"bases/podipc.io_ipcchannels.yaml", "extra/nested/other.yml", "kustomization.yaml", "README.md", "schema.json"} {
		writeFile(t, filepath.Join(dir, name), "{}\n", 0o644)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}

	got, err := manifestsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(dir, "bases/podipc.io_ipcchannels.yaml"),
		filepath.Join(dir, "extra/nested/other.yml"),
		filepath.Join(dir, "kustomization.yaml"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("manifestsUnder() = %q, want %q", got, want)
	}

	got, err = manifestsUnder(filepath.Join(dir, "absent"))
	if err != nil || len(got) != 0 {
		t.Errorf("manifestsUnder(absent) = %q, %v; want an empty list", got, err)
	}
}
