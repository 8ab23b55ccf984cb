package mq

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/mqjournal"
	"github.com/podipc/podipc/internal/regularfile"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
)

// roleJournalForger does what a hostile container of the pod can do to the
// journals on the tmpfs (whose root is 0777): it renames the broker's mq
// directory away and plants its own journal directory with a journal of its
// making for queue $MQ_TEST_QUEUE, then prints READY.
func roleJournalForger(context.Context) error {
	journalDir := os.Getenv(envJournal)
	mqDir := filepath.Dir(journalDir)
	if err := os.Rename(mqDir, mqDir+".moved"); err != nil {
		return err
	}
	if err := os.MkdirAll(journalDir, 0o755); err != nil {
		return err
	}
	j, _, _, err := mqjournal.Open(filepath.Join(journalDir, os.Getenv(envQueue)+".journal"), mqjournal.Options{MaxRecord: 1 << 20})
	if err != nil {
		return err
	}
	j.AppendEnqueue(mqjournal.Message{ID: 1, Body: []byte("forged")})
	if err := j.Close(); err != nil {
		return err
	}
	fmt.Println("READY")
	return nil
}

// openJournaled starts a broker over journalDir with one journaled queue,
// as a sidecar start does, and returns it with the queue's stats.
func openJournaled(t *testing.T, journalDir string) (*mqbroker.Broker, mqbroker.QueueStats) {
	t.Helper()
	// The sidecar's layout: the journals in mq/journal under the tmpfs root.
	root := filepath.Dir(filepath.Dir(journalDir))
	b, err := mqbroker.New(mqbroker.Options{JournalDir: journalDir, PrivateRoot: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(context.Background(), []mqbroker.QueueConfig{{Name: "jobs", Persistence: mqbroker.Volume}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Cleanup(func() { shutdown(t, b) })
	return b, b.Stats()[0]
}

func shutdown(t *testing.T, b *mqbroker.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// sendDurable sends body to the journaled queue jobs of a broker served in
// dir, confirmed (so journaled), and shuts the broker down.
func sendDurable(t *testing.T, dir, journalDir, body string) {
	t.Helper()
	b := startBrokerIn(t, dir, mqbroker.Options{JournalDir: journalDir}, mqbroker.QueueConfig{Name: "jobs", Persistence: mqbroker.Volume})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, WithSocketPath(b.socket))
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, c, "jobs", body)
	c.Close()
	shutdown(t, b.Broker)
}

// setAside lists what was renamed aside next to path.
func setAside(t *testing.T, path string) []string {
	t.Helper()
	found, err := filepath.Glob(path + ".refused-*")
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// A journal directory another container planted in place of the broker's
// (it renamed the broker's away) is not replayed: it is set aside, the
// queue starts empty in a new private directory, and its stats say why.
func TestForgedJournalDirectoryIsRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the forger under another UID: needs root")
	}
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o777); err != nil { // as an emptyDir is
		t.Fatal(err)
	}
	journalDir := podcontract.JournalDir(dir)
	sendDurable(t, dir, journalDir, "confirmed")

	// The genuine journal is replayed.
	b, st := openJournaled(t, journalDir)
	if st.Depth != 1 || st.JournalRefused != "" {
		t.Fatalf("genuine journal: depth %d, refused %q; want the confirmed message recovered", st.Depth, st.JournalRefused)
	}
	shutdown(t, b)

	p := testkit.Child(t, "journal-forger", testkit.AsUser(65534),
		testkit.Env(envJournal+"="+journalDir, envQueue+"=jobs"))
	p.ExpectLine(t, 30*time.Second, "READY")
	p.WaitSuccess(t, 30*time.Second)

	_, st = openJournaled(t, journalDir)
	if st.Depth != 0 || st.Recovered != 0 {
		t.Fatalf("forged journal: depth %d, recovered %d; want it not replayed", st.Depth, st.Recovered)
	}
	if !strings.Contains(st.JournalRefused, "journal directory") || !strings.Contains(st.JournalRefused, "65534") {
		t.Errorf("JournalRefused = %q, want it to name the directory and its owner", st.JournalRefused)
	}
	// The forger's mq directory is set aside (the broker could not set
	// aside what it refuses inside another user's directory), and the new
	// journal directory and its parent are the broker's own.
	if aside := setAside(t, filepath.Dir(journalDir)); len(aside) != 1 {
		t.Errorf("set aside: %v, want the planted directory", aside)
	}
	for _, d := range []string{filepath.Dir(journalDir), journalDir} {
		if err := regularfile.CheckPrivateDir(d); err != nil {
			t.Errorf("the new journal directory: %v", err)
		}
	}
}

// A journal that is a symbolic link to /dev/zero, or a file others can
// write, is set aside unread; the queue starts empty and works.
func TestUntrustedJournalFileIsRefused(t *testing.T) {
	for name, plant := range map[string]func(path string) error{
		"symlink to /dev/zero": func(path string) error { return os.Symlink("/dev/zero", path) },
		"world-writable": func(path string) error {
			if err := os.WriteFile(path, []byte("forged"), 0o600); err != nil {
				return err
			}
			return os.Chmod(path, 0o666)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := shortTempDir(t)
			journalDir := podcontract.JournalDir(dir)
			sendDurable(t, dir, journalDir, "confirmed")
			path := filepath.Join(journalDir, "jobs.journal")
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := plant(path); err != nil {
				t.Fatal(err)
			}
			b, st := openJournaled(t, journalDir)
			if st.Depth != 0 || !strings.Contains(st.JournalRefused, "the journal was refused") {
				t.Fatalf("depth %d, refused %q; want an empty queue saying the journal was refused", st.Depth, st.JournalRefused)
			}
			if aside := setAside(t, path); len(aside) != 1 {
				t.Fatalf("set aside: %v, want the planted journal", aside)
			}
			if _, err := regularfile.OpenPrivate(path, os.O_RDONLY, 0); err != nil {
				t.Fatalf("the new journal: %v", err)
			}
			// The queue works with its new journal.
			ln, err := mqbroker.Listen(podcontract.MQSocketPath(dir), 0)
			if err != nil {
				t.Fatal(err)
			}
			go b.Serve(ln)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, WithSocketPath(podcontract.MQSocketPath(dir)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mustSend(t, c, "jobs", "after")
		})
	}
}
