//go:build linux

package ofdlock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func openTwice(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lockfile")
	a, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

func TestDescriptionsInOneProcessConflict(t *testing.T) {
	a, b := openTwice(t)
	if err := TryLock(a, 10); err != nil {
		t.Fatalf("first lock: %v", err)
	}
	if err := TryLock(b, 10); !errors.Is(err, ErrLocked) {
		t.Fatalf("second description lock = %v, want ErrLocked", err)
	}
	if err := TryLock(b, 11); err != nil {
		t.Fatalf("neighbouring byte: %v", err)
	}
	held, err := Held(b, 10)
	if err != nil || !held {
		t.Fatalf("Held(b, 10) = %v, %v; want true", held, err)
	}
	if err := Unlock(a, 10); err != nil {
		t.Fatal(err)
	}
	held, err = Held(b, 10)
	if err != nil || held {
		t.Fatalf("after unlock Held = %v, %v; want false", held, err)
	}
}

func TestCloseReleasesLock(t *testing.T) {
	a, b := openTwice(t)
	if err := TryLock(a, 3); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := TryLock(b, 3); err != nil {
		t.Fatalf("lock after holder closed: %v", err)
	}
}
