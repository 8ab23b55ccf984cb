package harness

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// pinThread locks the calling goroutine to its OS thread and that thread to
// cpu (unless cpu < 0). The caller must not unlock: when the goroutine ends
// still locked, the runtime discards the thread with its affinity.
func pinThread(cpu int) error {
	runtime.LockOSThread()
	if cpu < 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to CPU %d: %w", cpu, err)
	}
	return nil
}

// withoutGC runs fn with the garbage collector off, after a collection, so
// that no GC cycle lands in a timed loop. The loops do not allocate, so the
// heap does not grow meanwhile.
func withoutGC(fn func() error) error {
	runtime.GC()
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	return fn()
}

// onlineCPUs returns the CPUs this process may run on.
func onlineCPUs() (int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, fmt.Errorf("read CPU affinity: %w", err)
	}
	return set.Count(), nil
}
