package reconcile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/pkg/shm"
)

// When the tmpfs fills up while shm.Create faults the channel's pages in (the
// space check passed, then something else took the space), the SIGBUS must
// become an error, not kill the sidecar.
func TestCreateChannelSurvivesFullTmpfs(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)

	// 64 slots of 64 KiB: the slot headers written at creation span 4 MiB.
	_, err := createChannel(filepath.Join(dir, "big"), shm.Options{Mode: shm.ModeQueue, SlotSize: 65536, SlotCount: 64})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("createChannel on a full tmpfs = %v, want ErrNoSpace", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); err == nil {
		t.Error("the channel was published although it could not be created")
	}
	if err := checkSpace(dir, "small", 2<<20); !errors.Is(err, ErrNoSpace) {
		t.Errorf("checkSpace(2 MiB) on a 1 MiB tmpfs = %v", err)
	} else if want := fmt.Sprintf("channel small needs %d bytes, tmpfs has", 2<<20); err.Error()[:len(want)] != want {
		t.Errorf("message %q", err)
	}
}
