package testkit

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// shmRoot is where a Linux system has its tmpfs for shared memory, as a pod
// has its memory-backed emptyDir.
const shmRoot = "/dev/shm"

// TmpfsDir returns a fresh directory on a tmpfs, as the sidecar's channel
// directory is in a pod, removed when the test ends. It is under /dev/shm
// when that is a tmpfs, else on a tmpfs mounted for the test (root only);
// with neither the test fails: a test that asks for a tmpfs does not run
// on a disk instead.
func TmpfsDir(t testing.TB) string {
	t.Helper()
	shmErr := isTmpfs(shmRoot)
	if shmErr == nil {
		dir, err := os.MkdirTemp(shmRoot, "podipc-test-")
		if err != nil {
			t.Fatalf("testkit: a directory on the tmpfs: %v", err)
		}
		t.Cleanup(func() {
			if err := os.RemoveAll(dir); err != nil {
				t.Errorf("testkit: remove %s: %v", dir, err)
			}
		})
		return dir
	}
	dir, mountErr := mountTmpfs(t, "")
	if mountErr != nil {
		t.Fatalf("testkit: no tmpfs for the test: %v, and mounting one failed: %v", shmErr, mountErr)
	}
	return dir
}

// SizedTmpfs mounts a tmpfs of size bytes for the test and returns its
// directory, unmounted when the test ends. Mounting needs CAP_SYS_ADMIN:
// without it the test is skipped, since no other directory has the limit.
func SizedTmpfs(t testing.TB, size int64) string {
	t.Helper()
	dir, err := mountTmpfs(t, fmt.Sprintf("size=%d", size))
	if err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	return dir
}

func isTmpfs(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if st.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("%s is not a tmpfs (file system type %#x)", dir, st.Type)
	}
	return nil
}

// mountTmpfs mounts a tmpfs with the given options on a temporary
// directory, unmounted (before the directory is removed) when the test ends.
func mountTmpfs(t testing.TB, opts string) (string, error) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("testkit: unmount %s: %v", dir, err)
		}
	})
	return dir, nil
}
