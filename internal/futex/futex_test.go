//go:build linux

package futex

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sharedWord returns a word in a MAP_SHARED anonymous mapping, the kind of
// memory the package is meant for.
func sharedWord(t *testing.T) *uint32 {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	return (*uint32)(unsafeWord(mem))
}

func TestWaitReturnsAtOnceWhenValueDiffers(t *testing.T) {
	w := sharedWord(t)
	atomic.StoreUint32(w, 7)
	if err := Wait(w, 6, time.Hour); err != nil {
		t.Fatalf("Wait on a changed word = %v, want nil", err)
	}
}

func TestWaitTimesOut(t *testing.T) {
	w := sharedWord(t)
	start := time.Now()
	err := Wait(w, 0, 20*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its timeout", d)
	}
}

func TestSignalWakesWaiter(t *testing.T) {
	w := sharedWord(t)
	done := make(chan error, 1)
	go func() {
		for atomic.LoadUint32(w) == 0 {
			if err := Wait(w, 0, 0); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if err := Signal(w); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter was not woken")
	}
}
