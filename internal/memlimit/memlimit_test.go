package memlimit

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func write(t *testing.T, root, name, content string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCgroup(t *testing.T) {
	for name, c := range map[string]struct {
		files   map[string]string
		limit   int64
		ok, err bool
	}{
		"v2 limit":       {files: map[string]string{"memory.max": "134217728\n"}, limit: 128 << 20, ok: true},
		"v2 unlimited":   {files: map[string]string{"memory.max": "max\n"}},
		"v1 limit":       {files: map[string]string{"memory/memory.limit_in_bytes": "67108864\n"}, limit: 64 << 20, ok: true},
		"v1 unlimited":   {files: map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}},
		"v2 wins":        {files: map[string]string{"memory.max": "1048576", "memory/memory.limit_in_bytes": "2097152"}, limit: 1 << 20, ok: true},
		"no cgroup":      {},
		"garbage":        {files: map[string]string{"memory.max": "lots"}, err: true},
		"zero":           {files: map[string]string{"memory.max": "0"}, err: true},
		"negative":       {files: map[string]string{"memory.max": "-5"}, err: true},
		"trailing words": {files: map[string]string{"memory.max": "1024 bytes"}, err: true},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			for f, content := range c.files {
				write(t, root, f, content)
			}
			limit, ok, err := Cgroup(root)
			if (err != nil) != c.err || ok != c.ok || limit != c.limit {
				t.Errorf("Cgroup = %d, %v, %v; want %d, %v, error %v", limit, ok, err, c.limit, c.ok, c.err)
			}
		})
	}
}

func TestApply(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	noEnv := func(string) string { return "" }

	root := t.TempDir()
	write(t, root, "memory.max", "100000000")
	d, err := Apply(root, 0, 0.9, noEnv)
	if err != nil || d.Cgroup != 100000000 || d.Limit != 90000000 || d.Reason != "" {
		t.Fatalf("Apply = %+v, %v; want the cgroup's 100000000 and a limit of 90000000", d, err)
	}
	if got := debug.SetMemoryLimit(-1); got != 90000000 {
		t.Errorf("the runtime's memory limit is %d, want 90000000", got)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	d, err = Apply(root, 0, 0.9, func(k string) string {
		if k == "GOMEMLIMIT" {
			return "1GiB"
		}
		return ""
	})
	if err != nil || d.Limit != 0 || d.Reason == "" {
		t.Errorf("with GOMEMLIMIT set, Apply = %+v, %v; want no limit and a reason", d, err)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set, Apply changed the runtime's limit to %d", got)
	}

	d, err = Apply(t.TempDir(), 0, 0.9, noEnv)
	if err != nil || d.Limit != 0 || d.Reason == "" {
		t.Errorf("without a cgroup limit, Apply = %+v, %v; want no limit and a reason", d, err)
	}
	if _, err := Apply(root, 0, 1.5, noEnv); err == nil {
		t.Error("Apply accepted a fraction of 1.5")
	}

	// A reserve (the tmpfs the cgroup is charged for) comes off first.
	d, err = Apply(root, 40000000, 0.5, noEnv)
	if err != nil || d.Limit != 30000000 || d.Reserved != 40000000 {
		t.Errorf("with 40000000 reserved, Apply = %+v, %v; want a limit of (100000000-40000000)*0.5", d, err)
	}
	if got := debug.SetMemoryLimit(-1); got != 30000000 {
		t.Errorf("the runtime's memory limit is %d, want 30000000", got)
	}
	// What is left too small for a heap: no limit rather than a collector
	// that never stops.
	debug.SetMemoryLimit(math.MaxInt64)
	d, err = Apply(root, 99000000, 0.9, noEnv)
	if err != nil || d.Limit != 0 || d.Reason == "" {
		t.Errorf("with 99000000 of 100000000 reserved, Apply = %+v, %v; want no limit and a reason", d, err)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("Apply set a limit of %d from 1 MB", got)
	}
}
