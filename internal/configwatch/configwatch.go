// Package configwatch reports the contents of a configuration file every time
// they change, however the file is replaced: written in place, renamed over,
// or swapped atomically through a symlink the way the kubelet updates a
// downward-API or ConfigMap volume (the file is a symlink into "..data", itself
// a symlink to a timestamped directory that the kubelet replaces with a
// rename).
//
// It watches the file's directory with inotify (through fsnotify), so any
// event there, whatever it is, leads to a re-read; events are debounced, and
// the file is also re-read on a fixed interval in case an event was missed
// (an inotify queue overflow, a directory that could not be watched). An
// update is delivered only when the contents, or the error reading them,
// differ from the last one delivered.
package configwatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults of Options.
const (
	DefaultDebounce     = 100 * time.Millisecond
	DefaultPollInterval = 5 * time.Second
	DefaultMaxSize      = 4 << 20
)

// ErrTooLarge is reported when the file is larger than Options.MaxSize.
var ErrTooLarge = errors.New("configuration file too large")

// Options tune a watch. Zero fields take the defaults.
type Options struct {
	// Debounce is how long the directory must stay quiet after an event
	// before the file is re-read, so that a burst of events (a kubelet swap
	// makes several) leads to one read.
	Debounce time.Duration
	// PollInterval is how often the file is re-read without any event.
	PollInterval time.Duration
	// MaxSize bounds how much of the file is read.
	MaxSize int64
	// Logger receives the watch's own problems; nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Update is the result of one read of the file: its contents, or why they
// could not be read.
type Update struct {
	Data []byte
	Err  error
}

// Watch reads the file at path now and then whenever it may have changed, and
// calls onUpdate with the result each time it differs from the previous one
// (the first read is always delivered). onUpdate runs on Watch's goroutine,
// one call at a time; a slow onUpdate delays the next read, it does not lose
// it. Watch returns when ctx ends, with nil, or at once with an error if the
// directory cannot be watched at all (inotify not available); a directory
// that does not exist yet is polled until it does.
func Watch(ctx context.Context, path string, opts Options, onUpdate func(Update)) error {
	opts = opts.withDefaults()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	defer w.Close()
	s := &watchState{path: path, opts: opts, w: w}
	s.refreshWatches()

	var last *Update
	deliver := func() {
		u := read(path, opts.MaxSize)
		if last != nil && sameUpdate(*last, u) {
			return
		}
		last = &u
		onUpdate(u)
		// The file may now resolve through another directory (a symlink
		// that moved); follow it.
		s.refreshWatches()
	}
	deliver()

	poll := time.NewTicker(opts.PollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(0)
	if !debounce.Stop() {
		<-debounce.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			opts.Logger.Debug("config directory event", "event", ev.String())
			debounce.Reset(opts.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflowed queue lost events: read soon instead.
			opts.Logger.Warn("config watch error; re-reading the file", "path", path, "err", err)
			debounce.Reset(opts.Debounce)
		case <-debounce.C:
			deliver()
		case <-poll.C:
			s.refreshWatches()
			deliver()
		}
	}
}

// watchState tracks the directories to watch: the file's own directory and,
// when the file is a symlink, the directory of its final target.
type watchState struct {
	path string
	opts Options
	w    *fsnotify.Watcher
}

// refreshWatches makes the watch list match the directories the file lives in
// now. A directory removed and created again lost its watch with its inode
// (fsnotify drops it from WatchList), so it is added again here.
func (s *watchState) refreshWatches() {
	want := map[string]bool{filepath.Dir(s.path): true}
	if target, err := filepath.EvalSymlinks(s.path); err == nil {
		want[filepath.Dir(target)] = true
	}
	have := map[string]bool{}
	for _, d := range s.w.WatchList() {
		have[d] = true
		if !want[d] {
			// The watch may be gone already with its directory.
			_ = s.w.Remove(d)
		}
	}
	for d := range want {
		if have[d] {
			continue
		}
		if err := s.w.Add(d); err != nil {
			// Not there yet, or out of inotify watches: polling covers it.
			s.opts.Logger.Debug("cannot watch config directory; polling it", "dir", d, "err", err)
		}
	}
}

func read(path string, maxSize int64) Update {
	f, err := os.Open(path)
	if err != nil {
		return Update{Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return Update{Err: fmt.Errorf("read %s: %w", path, err)}
	}
	if int64(len(data)) > maxSize {
		return Update{Err: fmt.Errorf("%s: %w: more than %d bytes", path, ErrTooLarge, maxSize)}
	}
	return Update{Data: data}
}

func sameUpdate(a, b Update) bool {
	if (a.Err == nil) != (b.Err == nil) {
		return false
	}
	if a.Err != nil {
		return a.Err.Error() == b.Err.Error()
	}
	return bytes.Equal(a.Data, b.Data)
}
