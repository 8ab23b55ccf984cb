package regularfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
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

// OpenPrivate and CheckPrivateDir accept only what no other user can have
// written: owned by the process's user, writable by neither group nor
// others, and (CheckPrivateDir) a directory itself, not a link to one.
func TestPrivate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenPrivate(file, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("OpenPrivate of a private file: %v", err)
	}
	f.Close()
	if err := CheckPrivateDir(dir); err != nil {
		t.Fatalf("CheckPrivateDir of a private directory: %v", err)
	}

	if err := os.Chmod(file, 0o644); err != nil { // readable by others is fine
		t.Fatal(err)
	}
	if f, err := OpenPrivate(file, os.O_RDONLY, 0); err != nil {
		t.Fatalf("OpenPrivate of a 0644 file: %v", err)
	} else {
		f.Close()
	}
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPrivate(file, os.O_RDONLY, 0); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("OpenPrivate of a 0666 file = %v, want ErrNotPrivate", err)
	}
	if err := os.Chmod(file, 0o600); err != nil {
		t.Fatal(err)
	}

	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]error{open: ErrNotPrivate, link: ErrNotRegular, file: ErrNotRegular} {
		if err := CheckPrivateDir(path); !errors.Is(err, want) {
			t.Errorf("CheckPrivateDir(%s) = %v, want %v", filepath.Base(path), err, want)
		}
	}
	if _, err := OpenPrivate(filepath.Join(dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenPrivate of a missing file = %v, want ErrNotExist", err)
	}

	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	if err := os.Chown(file, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPrivate(file, os.O_RDONLY, 0); !errors.Is(err, ErrNotPrivate) || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("OpenPrivate of another user's file = %v, want ErrNotPrivate naming its owner", err)
	}
	theirs := filepath.Join(dir, "theirs")
	if err := os.Mkdir(theirs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivateDir(theirs); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("CheckPrivateDir of another user's directory = %v, want ErrNotPrivate", err)
	}
}
