// Package memlimit sets the Go runtime's soft memory limit from the memory
// limit of the cgroup the process runs in, so that a container's garbage
// collector works harder as the container nears its limit instead of
// letting the heap grow until the kernel's OOM killer ends the process.
//
// A limit the operator set through GOMEMLIMIT is left alone.
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultFraction is the share of the cgroup's limit given to the Go
// runtime: the rest is headroom for memory the runtime does not count
// (thread stacks of cgo-free code are counted; the kernel's page tables and
// socket buffers charged to the cgroup are not) and for the time the
// collector needs to catch up.
const DefaultFraction = 0.9

// Cgroup reads the memory limit of the calling process's cgroup under root
// (normally /sys/fs/cgroup, which a container sees as its own cgroup): the
// cgroup v2 memory.max, or else the cgroup v1 memory.limit_in_bytes. ok is
// false where there is no limit (no file, "max", or v1's near-2^63
// "unlimited").
func Cgroup(root string) (limit int64, ok bool, err error) {
	for _, name := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("cgroup memory limit: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return 0, false, fmt.Errorf("cgroup memory limit: %s holds %q, not a byte count", name, s)
		}
		// cgroup v1 reports "no limit" as the largest page-aligned int64.
		if n >= 1<<62 {
			return 0, false, nil
		}
		return n, true, nil
	}
	return 0, false, nil
}

// Decision is what Apply did.
type Decision struct {
	// Cgroup is the cgroup's limit in bytes, 0 if it has none.
	Cgroup int64
	// Reserved is what Apply left of it to memory the runtime does not count.
	Reserved int64
	// Limit is the runtime's soft memory limit set, 0 if Apply set none.
	Limit int64
	// Reason says why Apply set no limit; empty if it set one.
	Reason string
}

// minLimit is the smallest soft limit Apply sets: below it the collector
// would run without pause.
const minLimit = 16 << 20

// Apply sets the runtime's soft memory limit to fraction of what the
// cgroup's limit, read under root, leaves after reserved bytes that the
// cgroup is charged for but the Go runtime does not count (a tmpfs the
// process writes: its pages are charged to the writer's cgroup). It sets
// none if GOMEMLIMIT (getenv's) is set, the cgroup has no limit, or what is
// left is below 16 MiB.
func Apply(root string, reserved int64, fraction float64, getenv func(string) string) (Decision, error) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		return Decision{Reason: "GOMEMLIMIT=" + v + " is set"}, nil
	}
	if fraction <= 0 || fraction > 1 || reserved < 0 {
		return Decision{}, fmt.Errorf("memory limit fraction %v or reserve %d out of range", fraction, reserved)
	}
	limit, ok, err := Cgroup(root)
	if err != nil {
		return Decision{}, err
	}
	if !ok {
		return Decision{Reason: "the cgroup has no memory limit"}, nil
	}
	d := Decision{Cgroup: limit, Reserved: reserved}
	if soft := int64(float64(limit-reserved) * fraction); soft >= minLimit {
		d.Limit = soft
	} else {
		d.Reason = fmt.Sprintf("the cgroup's limit of %d bytes leaves %d after %d reserved", limit, soft, reserved)
		return d, nil
	}
	debug.SetMemoryLimit(d.Limit)
	return d, nil
}
