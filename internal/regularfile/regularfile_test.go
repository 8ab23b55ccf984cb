package regularfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	devLink := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", devLink); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	f, err := Open(regular, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("Open of a regular file: %v", err)
	}
	if fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 {
		t.Error("the file was left non-blocking")
	}
	f.Close()
	// Each of these would block (the FIFO), follow a link, or read forever
	// (/dev/zero) with a plain open.
	for _, path := range []string{fifo, link, devLink, sock, dir, "/dev/zero"} {
		for _, flag := range []int{os.O_RDONLY, os.O_RDWR} {
			if f, err := Open(path, flag, 0); !errors.Is(err, ErrNotRegular) {
				if f != nil {
					f.Close()
				}
				t.Errorf("Open(%s, %#x): %v, want ErrNotRegular", path, flag, err)
			}
		}
	}
	if _, err := ReadFile(devLink); !errors.Is(err, ErrNotRegular) {
		t.Errorf("ReadFile of a link to /dev/zero: %v", err)
	}
	if data, err := ReadFile(regular); err != nil || string(data) != "data" {
		t.Errorf("ReadFile = %q, %v", data, err)
	}
}
