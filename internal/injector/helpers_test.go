package injector_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podipc/podipc/internal/injector"
)

// moduleFile is path relative to the module root.
func moduleFile(t *testing.T, path string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", path)
}

// readManifests decodes the YAML documents of the files under the module's
// dir.
func readManifests(t *testing.T, files ...string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(moduleFile(t, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var u unstructured.Unstructured
			err := dec.Decode(&u.Object)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("decode %s: %v", f, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, &u)
			}
		}
	}
	return objs
}

// create creates obj and deletes it when the test ends.
func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() {
		if err := c.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %T %s: %v", obj, obj.GetName(), err)
		}
	})
}

func createNamespace(t *testing.T, c client.Client, name string, labels map[string]string) {
	t.Helper()
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

// freePort is a TCP port on the loopback nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startInjector runs the injector's manager until the test ends.
func startInjector(t *testing.T, cfg *rest.Config, opts injector.Options) {
	t.Helper()
	mgr, err := injector.NewManager(cfg, opts, testLogger(t))
	if err != nil {
		t.Fatalf("create the injector: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("injector stopped with: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("injector did not stop within a minute")
		}
	})
}

// testLogger sends the injector's logs to the test log while the test runs.
func testLogger(t *testing.T) logr.Logger {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return logr.New(&testSink{log: func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Log(s)
		}
	}})
}

type testSink struct {
	log    func(string)
	name   string
	values []any
}

func (s *testSink) Init(logr.RuntimeInfo)  {}
func (s *testSink) Enabled(level int) bool { return level <= 0 }
func (s *testSink) Info(_ int, msg string, kv ...any) {
	s.log(s.name + ": " + msg + " " + fmtKV(append(s.values[:len(s.values):len(s.values)], kv...)))
}
func (s *testSink) Error(err error, msg string, kv ...any) {
	s.log(s.name + ": ERROR " + msg + ": " + err.Error() + " " + fmtKV(append(s.values[:len(s.values):len(s.values)], kv...)))
}
func (s *testSink) WithValues(kv ...any) logr.LogSink {
	return &testSink{log: s.log, name: s.name, values: append(s.values[:len(s.values):len(s.values)], kv...)}
}
func (s *testSink) WithName(name string) logr.LogSink {
	n := name
	if s.name != "" {
		n = s.name + "." + name
	}
	return &testSink{log: s.log, name: n, values: s.values}
}

func fmtKV(kv []any) string {
	var b bytes.Buffer
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(" ")
		b.WriteString(toString(kv[i]))
		b.WriteString("=")
		b.WriteString(toString(kv[i+1]))
	}
	return b.String()
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case error:
		return strconv.Quote(v.Error())
	}
	return strconv.Quote(fmtAny(v))
}

func fmtAny(v any) string { return fmt.Sprint(v) }
