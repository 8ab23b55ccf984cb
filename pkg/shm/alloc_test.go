package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mountFS mounts a fresh file system of type fstype (tmpfs, ramfs) with
// data as its options for the test. It needs root; the test is skipped
// without it.
func mountFS(t *testing.T, fstype, data string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount(fstype, dir, fstype, 0, data); err != nil {
		t.Skipf("cannot mount a %s (needs root): %v", fstype, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// bigQueue needs 4 MiB and some: more than a 1 MiB tmpfs has.
var bigQueue = Options{Mode: ModeQueue, SlotSize: 65536, SlotCount: 64}

func fsUsedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

func expectEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("a failed create left %d files behind: %v", len(entries), entries)
	}
}

// A tmpfs without room for the channel: Create and CreateControl return a
// *NoSpaceError naming the sizes, leave no file behind and give back every
// block they took. (Over a sparse file, the stores that initialise the slots
// would raise SIGBUS instead.)
func TestCreateOnFullTmpfsIsNoSpaceError(t *testing.T) {
	dir := mountFS(t, "tmpfs", "size=1m")
	need := int64(computeGeometry(bigQueue.withDefaults()).fileSize)
	create := map[string]func(path string) error{
		"Create": func(path string) error {
			c, err := Create(path, bigQueue)
			if err == nil {
				_ = c.Close()
			}
			return err
		},
		"CreateControl": func(path string) error {
			k, err := CreateControl(path, bigQueue)
			if err == nil {
				_ = k.Close()
			}
			return err
		},
	}
	for name, fn := range create {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "big")
			err := fn(path)
			if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%s on a 1 MiB tmpfs = %v, want ErrNoSpace wrapping ENOSPC", name, err)
			}
			var nse *NoSpaceError
			if !errors.As(err, &nse) {
				t.Fatalf("%T is not a *NoSpaceError", err)
			}
			if nse.Need != need || nse.Path != path || nse.Free < 0 || nse.Free > 1<<20 {
				t.Errorf("NoSpaceError = %+v, want Need %d and Free within the 1 MiB tmpfs", nse, need)
			}
			want := fmt.Sprintf("shm: create %s: the channel file needs %d bytes, its file system has %d available: no space left on device", path, need, nse.Free)
			if err.Error() != want {
				t.Errorf("message\n %q, want\n %q", err, want)
			}
			expectEmptyDir(t, dir)
			if used := fsUsedBytes(t, dir); used != 0 {
				t.Errorf("%d bytes of the tmpfs still used after the failed create", used)
			}
		})
	}
}

// Space that one channel took is reported as gone for the next: the error
// is about the tmpfs as it is, and a channel that fits is still created.
func TestCreateReportsRemainingSpace(t *testing.T) {
	dir := mountFS(t, "tmpfs", "size=1m")
	small := Options{SlotSize: 1024, SlotCount: 256} // 12 KiB + 256 KiB
	c, err := Create(filepath.Join(dir, "small"), small)
	if err != nil {
		t.Fatalf("a channel that fits: %v", err)
	}
	defer c.Close()
	used := fsUsedBytes(t, dir)
	if want := int64(computeGeometry(small.withDefaults()).fileSize); used < want {
		t.Errorf("the tmpfs has %d bytes in use, the channel file alone is %d", used, want)
	}
	_, err = Create(filepath.Join(dir, "big"), bigQueue)
	var nse *NoSpaceError
	if !errors.As(err, &nse) {
		t.Fatalf("Create(big) = %v, want a *NoSpaceError", err)
	}
	if nse.Free != 1<<20-used {
		t.Errorf("Free = %d, want %d (1 MiB less the %d bytes of the first channel)", nse.Free, 1<<20-used, used)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files after the failed create: %v", entries)
	}
}

// Every block of a new channel file is allocated before Create returns, in
// both modes (Broadcast writes nothing to its slots at creation, so only
// the up-front allocation can have taken them).
func TestCreateAllocatesEveryBlock(t *testing.T) {
	for _, opts := range []Options{
		{Mode: ModeQueue, SlotSize: 4000, SlotCount: 64},
		{Mode: ModeBroadcast, SlotSize: 4000, SlotCount: 64, Overflow: OverflowOverwrite},
	} {
		t.Run(opts.Mode.String(), func(t *testing.T) {
			var st unix.Stat_t
			if err := unix.Stat(newTestControl(t, opts).Path(), &st); err != nil {
				t.Fatal(err)
			}
			if allocated := st.Blocks * 512; allocated < st.Size {
				t.Errorf("%d of the file's %d bytes are allocated", allocated, st.Size)
			}
		})
	}
}

// On a file system without fallocate (ramfs) Create allocates by writing
// zeros, and the channel works.
func TestCreateWithoutFallocate(t *testing.T) {
	dir := mountFS(t, "ramfs", "")
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Fallocate(int(probe.Fd()), 0, 0, 4096)
	_ = probe.Close()
	_ = os.Remove(probe.Name())
	if !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("fallocate on ramfs = %v; the test needs a file system without it", err)
	}

	opts := Options{SlotSize: 100, SlotCount: 8}
	c, err := Create(filepath.Join(dir, "ch"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var st unix.Stat_t
	if err := unix.Stat(c.Path(), &st); err != nil {
		t.Fatal(err)
	}
	if want := computeGeometry(opts.withDefaults()).fileSize; uint64(st.Size) != want || st.Blocks*512 < st.Size {
		t.Errorf("file of %d bytes, %d allocated; want %d allocated", st.Size, st.Blocks*512, want)
	}
	p, _ := c.NewProducer()
	q, _ := c.NewConsumer()
	if err := p.TrySend([]byte("over ramfs")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if n, err := q.TryRecv(buf); err != nil || string(buf[:n]) != "over ramfs" {
		t.Fatalf("TryRecv = %q, %v", buf[:n], err)
	}
}

// The zero-writing fallback runs out of space with ENOSPC, which Create
// turns into a *NoSpaceError like fallocate's.
func TestWriteZerosOnFullTmpfs(t *testing.T) {
	dir := mountFS(t, "tmpfs", "size=1m")
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = writeZeros(f, 0, 4<<20)
	if !isNoSpace(err) {
		t.Fatalf("writeZeros(4 MiB) on a 1 MiB tmpfs = %v, want ENOSPC", err)
	}
	if nse := noSpaceError("p", dir, 4<<20, err); !strings.HasSuffix(nse.Error(), ": no space left on device") {
		t.Errorf("message %q does not end with the bare errno", nse)
	}
}
