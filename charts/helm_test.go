package charts_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/podipc/podipc/internal/testenv"
)

// helmEnv names the helm binary the tests run; `make` sets it to the one it
// builds from helm's Go module.
const helmEnv = "HELM"

// kubeVersion is the Kubernetes version charts are rendered for: the one the
// envtest control plane and the kind node image run.
const kubeVersion = "v1.34.4"

// helm runs the helm CLI with a private home, so no user configuration or
// repository list leaks into the tests.
type helm struct {
	bin  string
	home string
}

// findHelm returns the helm CLI from $HELM, else the newest helm the Makefile
// built into the cache. Without one the test is skipped, or fails when the
// envtest tier is required (as `make test` requires it).
func findHelm(t *testing.T) *helm {
	t.Helper()
	bin := os.Getenv(helmEnv)
	if bin == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache := filepath.Join(home, ".cache", "podipc")
		if dir := os.Getenv(testenv.CacheEnv); dir != "" {
			cache = dir
		}
		matches, _ := filepath.Glob(filepath.Join(cache, "bin", "helm-v*"))
		if len(matches) > 0 {
			bin = matches[len(matches)-1]
		}
	}
	if bin == "" {
		if testenv.Required() {
			t.Fatalf("no helm CLI: build it with `make helm` or set %s", helmEnv)
		}
		t.Skipf("skipping: no helm CLI; build it with `make helm` or set %s (and %s=1 to fail instead)",
			helmEnv, testenv.RequireEnv)
	}
	dir := t.TempDir()
	return &helm{bin: bin, home: dir}
}

// run runs helm with args and returns its standard output; the error carries
// its standard error.
func (h *helm) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(h.home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(h.home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(h.home, "data"),
		"KUBECONFIG="+filepath.Join(h.home, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// lint runs `helm lint --strict` with a values file.
func (h *helm) lint(ctx context.Context, chart, values string) error {
	_, err := h.run(ctx, "lint", chart, "--strict", "--kube-version", kubeVersion, "--values", values)
	return err
}

// release names what `helm template` renders: the release's name and namespace.
type release struct {
	name, namespace string
}

// template renders chart as rel with the values file (empty for none) and
// extra arguments (--set ...), and decodes every rendered object.
func (h *helm) template(ctx context.Context, chart string, rel release, values string, extra ...string) ([]*unstructured.Unstructured, error) {
	args := []string{"template", rel.name, chart, "--namespace", rel.namespace, "--kube-version", kubeVersion}
	if values != "" {
		args = append(args, "--values", values)
	}
	out, err := h.run(ctx, append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	return decodeManifests(out)
}

// decodeManifests splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split manifests: %w", err)
		}
		var content map[string]any
		if err := yaml.Unmarshal(doc, &content); err != nil {
			return nil, fmt.Errorf("decode manifest: %w\n%s", err, doc)
		}
		if len(content) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: content})
	}
}

// readManifests decodes every object of the YAML files matching pattern.
func readManifests(pattern string) ([]*unstructured.Unstructured, error) {
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		decoded, err := decodeManifests(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		objs = append(objs, decoded...)
	}
	return objs, nil
}
