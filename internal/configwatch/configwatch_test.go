package configwatch_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/configwatch"
	"github.com/podipc/podipc/internal/configwatch/projectedvolume"
)

// watcher runs Watch in the background and hands its updates to the test.
type watcher struct {
	t       *testing.T
	updates chan configwatch.Update
	done    chan error
}

func startWatch(t *testing.T, path string, opts configwatch.Options) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, updates: make(chan configwatch.Update, 16), done: make(chan error, 1)}
	go func() {
		w.done <- configwatch.Watch(ctx, path, opts, func(u configwatch.Update) { w.updates <- u })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.done:
			if err != nil {
				t.Errorf("Watch returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after its context ended")
		}
	})
	return w
}

// next waits for the next update; the deadline is far above the debounce so
// that only a lost update fails the test.
func (w *watcher) next() configwatch.Update {
	w.t.Helper()
	select {
	case u := <-w.updates:
		return u
	case <-time.After(10 * time.Second):
		w.t.Fatal("no update within 10s")
		return configwatch.Update{}
	}
}

func (w *watcher) expectData(want string) {
	w.t.Helper()
	u := w.next()
	if u.Err != nil || string(u.Data) != want {
		w.t.Fatalf("update = (%q, %v), want (%q, nil)", u.Data, u.Err, want)
	}
}

// expectNone checks that nothing is delivered within d.
func (w *watcher) expectNone(d time.Duration) {
	w.t.Helper()
	select {
	case u := <-w.updates:
		w.t.Fatalf("unexpected update (%q, %v)", u.Data, u.Err)
	case <-time.After(d):
	}
}

// eventsOnly makes polling too slow to matter, so a test passes only if
// inotify delivered the change.
var eventsOnly = configwatch.Options{Debounce: 20 * time.Millisecond, PollInterval: time.Hour}

func TestWriteInPlaceAndRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "channels.yaml")
	writeFile(t, path, "one")
	w := startWatch(t, path, eventsOnly)
	w.expectData("one")

	writeFile(t, path, "two")
	w.expectData("two")

	writeFileAtomic(t, path, "three")
	w.expectData("three")
}

func TestProjectedVolumeSwap(t *testing.T) {
	dir := t.TempDir()
	publish := func(s string) {
		t.Helper()
		if err := projectedvolume.Write(dir, map[string][]byte{"channels.yaml": []byte(s)}); err != nil {
			t.Fatal(err)
		}
	}
	publish("v1")
	w := startWatch(t, filepath.Join(dir, "channels.yaml"), eventsOnly)
	w.expectData("v1")
	for _, v := range []string{"v2", "v3", "v4"} {
		publish(v)
		w.expectData(v)
	}
}

func TestUnchangedContentsAreNotRedelivered(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "channels.yaml")
	writeFile(t, path, "same")
	w := startWatch(t, path, configwatch.Options{Debounce: 10 * time.Millisecond, PollInterval: 10 * time.Millisecond})
	w.expectData("same")
	// Writes replace the file atomically: polling this often would otherwise
	// catch a write in place between its truncation and its data.
	writeFileAtomic(t, path, "same")
	// Many polls and the write's events happen in this window.
	w.expectNone(300 * time.Millisecond)
	writeFileAtomic(t, path, "different")
	w.expectData("different")
}

func TestMissingFileThenCreated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "channels.yaml")
	w := startWatch(t, path, eventsOnly)
	if u := w.next(); !errors.Is(u.Err, fs.ErrNotExist) {
		t.Fatalf("first update error = %v, want not-exist", u.Err)
	}
	writeFile(t, path, "here")
	w.expectData("here")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if u := w.next(); !errors.Is(u.Err, fs.ErrNotExist) {
		t.Fatalf("update after removal error = %v, want not-exist", u.Err)
	}
}

// A directory that does not exist when the watch starts cannot be watched;
// polling must find the file once it appears, and events must work from then on.
func TestDirectoryCreatedLaterIsPolled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "channels.yaml")
	w := startWatch(t, path, configwatch.Options{Debounce: 10 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	if u := w.next(); !errors.Is(u.Err, fs.ErrNotExist) {
		t.Fatalf("first update error = %v, want not-exist", u.Err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "polled")
	w.expectData("polled")
}

func TestTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "channels.yaml")
	writeFile(t, path, "0123456789")
	w := startWatch(t, path, configwatch.Options{MaxSize: 4, PollInterval: time.Hour})
	if u := w.next(); !errors.Is(u.Err, configwatch.ErrTooLarge) {
		t.Fatalf("error = %v, want ErrTooLarge", u.Err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFileAtomic(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, s)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
