package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/shm"
)

// shmEntry is a shared-memory channel the reconciler manages: declared, or a
// file found on the tmpfs, or both.
type shmEntry struct {
	name string
	path string

	// ctl is the sidecar's handle on the file at path: it maps the header
	// and peer table only, which is all statistics and reaping need. nil
	// when there is no file or it is unusable.
	ctl *shm.Control
	// unusable says why the file at path could not be opened as a channel.
	unusable error
	// ino identifies the file ctl (or unusable) is about, to notice a file
	// removed or replaced behind the sidecar's back.
	ino       uint64
	fileBytes int64

	declared bool
	want     channelconfig.SharedMemorySettings // defaulted; meaningful when declared

	state   status.State
	message string
}

// adopt opens every channel file already in the shm directory and removes
// the temporary files an interrupted creation left behind.
func (r *Reconciler) adopt() error {
	entries, err := os.ReadDir(r.shmDir)
	if err != nil {
		return fmt.Errorf("read channel directory: %w", err)
	}
	for _, de := range entries {
		name := de.Name()
		path := filepath.Join(r.shmDir, name)
		if strings.HasPrefix(name, ".") {
			// A creation in progress when the previous sidecar died: never
			// published, so nobody can have opened it by name.
			if err := os.RemoveAll(path); err != nil {
				r.log.Warn("cannot remove leftover temporary file", "path", path, "err", err)
			}
			continue
		}
		if !de.Type().IsRegular() {
			r.log.Warn("ignoring non-regular file in the channel directory", "path", path)
			continue
		}
		e := &shmEntry{name: name, path: path, state: status.StatePending, message: "adopted; waiting for a configuration"}
		r.openEntry(e)
		r.shm[name] = e
		if e.ctl != nil {
			st, err := e.ctl.Stats()
			if err != nil {
				r.markUnusable(e, err)
				r.log.Warn("found a damaged channel file", "channel", name, "err", err)
				continue
			}
			r.log.Info("adopted existing channel", "channel", name, "mode", modeName(st.Mode),
				"slotSize", st.SlotSize, "slotCount", st.Capacity, "depth", st.Depth,
				"peers", st.Producers+st.Consumers+st.Subscribers)
		} else {
			r.log.Warn("found an unusable channel file", "channel", name, "err", e.unusable)
		}
	}
	return nil
}

// syncShmLocked reconciles the shared-memory channels toward want (name →
// defaulted settings). It reports whether every declared one is Ready.
//
// Channels no longer declared go first, so that their space on the tmpfs is
// free for the new ones; then the declared ones in name order, so that which
// one a full tmpfs refuses does not depend on map order.
func (r *Reconciler) syncShmLocked(want map[string]channelconfig.SharedMemorySettings) bool {
	for name, e := range r.shm {
		if _, declared := want[name]; !declared {
			e.declared = false
			r.removeShmChannel(e)
		}
	}
	ok := true
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w := want[name]
		e := r.shm[name]
		if e == nil {
			e = &shmEntry{name: name, path: filepath.Join(r.shmDir, name), state: status.StatePending}
			r.shm[name] = e
		}
		e.declared, e.want = true, w
		if !r.syncShmChannel(e) {
			ok = false
		}
	}
	return ok
}

// syncShmChannel brings one declared channel to its declared settings if it
// can, and reports whether it is Ready.
func (r *Reconciler) syncShmChannel(e *shmEntry) bool {
	r.refreshEntry(e)
	want := shmOptions(e.want)
	if e.ctl == nil && e.unusable == nil {
		return r.install(e, want)
	}
	var mismatch string
	if e.ctl != nil {
		mismatch = describeMismatch(e.ctl.Options(), want)
		if mismatch == "" {
			r.setState(e, status.StateReady, "")
			return true
		}
	} else {
		mismatch = fmt.Sprintf("the file is not a usable channel (%v)", e.unusable)
	}
	busy, err := fileInUse(e.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.setState(e, status.StateFailed, fmt.Sprintf("cannot tell whether the channel is in use: %v", err))
		return false
	}
	if busy {
		r.setState(e, status.StateBlocked, mismatch+"; it will be recreated once "+e.attachedPeers()+" detach")
		return false
	}
	r.log.Info("recreating unused channel with its new settings", "channel", e.name, "change", mismatch)
	return r.install(e, want)
}

// refreshEntry notices a channel file that was removed or replaced since the
// sidecar last looked, and opens a file it has no handle on.
func (r *Reconciler) refreshEntry(e *shmEntry) {
	fi, err := os.Lstat(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		if e.ctl != nil || e.unusable != nil {
			r.log.Warn("channel file disappeared; creating it again", "channel", e.name)
			r.closeEntry(e)
		}
		return
	}
	if err == nil && (e.ctl != nil || e.unusable != nil) && inode(fi) == e.ino {
		return
	}
	if e.ctl != nil || e.unusable != nil {
		r.log.Warn("channel file was replaced behind the sidecar; adopting the new file", "channel", e.name)
	}
	r.closeEntry(e)
	r.openEntry(e)
}

// openEntry opens the file at e.path, setting e.ctl or e.unusable.
func (r *Reconciler) openEntry(e *shmEntry) {
	fi, err := os.Lstat(e.path)
	if err != nil {
		e.unusable = err
		return
	}
	e.ino, e.fileBytes = inode(fi), fi.Size()
	ctl, err := shm.OpenControl(e.path, shm.WithLogger(r.log))
	if err != nil {
		e.unusable = err
		return
	}
	e.ctl, e.unusable = ctl, nil
}

// install creates the channel file for e with its declared settings,
// replacing (atomically, by rename) whatever file is at e.path, and reports
// whether it succeeded. shm.CreateControl allocates the whole file, so a
// tmpfs without room for it fails here, with nothing left behind, and the
// pages are charged to the sidecar; the sidecar then maps only the header
// and peer table.
func (r *Reconciler) install(e *shmEntry, opts shm.Options) bool {
	replacing := e.ctl != nil || e.unusable != nil
	target := e.path
	if replacing {
		target = filepath.Join(r.shmDir, "."+e.name+".new")
		if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.setState(e, status.StateFailed, fmt.Sprintf("remove stale %s: %v", target, err))
			return false
		}
	}
	ctl, err := shm.CreateControl(target, opts, shm.WithFileMode(r.opts.FileMode), shm.WithLogger(r.log))
	if err != nil {
		r.setState(e, status.StateFailed, createFailure(e.name, err))
		return false
	}
	if replacing {
		if err := os.Rename(target, e.path); err != nil {
			_ = ctl.Close()
			_ = os.Remove(target)
			r.setState(e, status.StateFailed, fmt.Sprintf("replace the old file: %v", err))
			return false
		}
		r.closeEntry(e)
	}
	e.ctl, e.unusable = ctl, nil
	if fi, err := os.Lstat(e.path); err == nil {
		e.ino, e.fileBytes = inode(fi), fi.Size()
	}
	r.log.Info("channel created", "channel", e.name, "mode", e.want.Mode, "slotSize", e.want.SlotSize,
		"slotCount", e.want.SlotCount, "overflow", e.want.Overflow, "fileBytes", e.fileBytes, "replaced", replacing)
	r.setState(e, status.StateReady, "")
	return true
}

// removeShmChannel removes an undeclared channel's file once nothing is
// attached to it; until then the channel is Removing.
//
// A process that registers on the file between the check and the removal
// keeps using a file nobody else can open any more; the window is a few
// system calls wide, and a channel is only removed after its declaration was.
func (r *Reconciler) removeShmChannel(e *shmEntry) {
	busy, err := fileInUse(e.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.closeEntry(e)
		delete(r.shm, e.name)
		return
	case err != nil:
		r.setState(e, status.StateRemoving, fmt.Sprintf("cannot tell whether the channel is in use: %v", err))
		return
	case busy:
		r.setState(e, status.StateRemoving, "no longer declared; removed once "+e.attachedPeers()+" detach")
		return
	}
	r.closeEntry(e)
	if err := os.Remove(e.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.setState(e, status.StateRemoving, fmt.Sprintf("remove: %v", err))
		return
	}
	delete(r.shm, e.name)
	r.log.Info("channel removed", "channel", e.name)
}

// reapLocked recovers the dead peers of every channel.
func (r *Reconciler) reapLocked() {
	for _, e := range r.shm {
		if e.ctl == nil {
			continue
		}
		n, err := e.ctl.ReapDeadPeers()
		r.counters.ReapedPeers += uint64(n)
		if errors.Is(err, shm.ErrCorrupt) {
			r.log.Warn("channel file damaged under the sidecar", "channel", e.name, "err", err)
			r.markUnusable(e, err)
		} else if err != nil {
			r.log.Warn("reaping dead peers failed", "channel", e.name, "err", err)
		}
	}
}

// markUnusable gives up the handle on a channel file found damaged (for
// example truncated by a container): the file is treated as not a channel,
// so the next sync recreates it once nobody holds it, and reports it
// Blocked until then. Its inode is kept, so the same damaged file is not
// opened again.
func (r *Reconciler) markUnusable(e *shmEntry, err error) {
	ino := e.ino
	r.closeEntry(e)
	e.ino, e.unusable = ino, err
	r.setState(e, status.StateFailed, fmt.Sprintf("the channel file is damaged: %v", err))
}

func (r *Reconciler) closeEntry(e *shmEntry) {
	if err := e.close(); err != nil {
		r.log.Warn("closing channel handle failed", "channel", e.name, "err", err)
	}
}

func (e *shmEntry) close() error {
	ctl := e.ctl
	e.ctl, e.unusable, e.ino, e.fileBytes = nil, nil, 0, 0
	if ctl == nil {
		return nil
	}
	return ctl.Close()
}

// setState records e's state and logs transitions.
func (r *Reconciler) setState(e *shmEntry, s status.State, msg string) {
	if e.state == s && e.message == msg {
		return
	}
	e.state, e.message = s, msg
	logStateChange(r.log, "SharedMemory", e.name, s, msg)
}

func logStateChange(log *slog.Logger, typ, name string, s status.State, msg string) {
	level := slog.LevelInfo
	if s == status.StateBlocked || s == status.StateFailed {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "channel state changed", "type", typ, "channel", name, "state", string(s), "reason", msg)
}

// attachedPeers describes who holds the channel, for messages.
func (e *shmEntry) attachedPeers() string {
	if e.ctl == nil {
		return "the processes holding it"
	}
	st, err := e.ctl.Stats()
	n := st.Producers + st.Consumers + st.Subscribers
	if err != nil || n == 0 {
		return "the processes holding it"
	}
	return fmt.Sprintf("its %d attached peers (%d producers, %d consumers, %d subscribers)",
		n, st.Producers, st.Consumers, st.Subscribers)
}

func (e *shmEntry) status() status.Channel {
	c := status.Channel{
		Name:     e.name,
		Type:     channelconfig.ChannelTypeSharedMemory,
		Declared: e.declared,
		State:    e.state,
		Message:  e.message,
	}
	if e.ctl == nil {
		return c
	}
	st, err := e.ctl.Stats()
	if err != nil {
		c.State, c.Message = status.StateFailed, fmt.Sprintf("the channel file is damaged: %v", err)
		return c
	}
	c.SharedMemory = SharedMemoryStatus(st, e.ctl.Options().MaxPeers, e.fileBytes)
	return c
}

// createFailure says why a channel file could not be created, for the
// channel's status: for a tmpfs without room, in the sizes that decide it.
func createFailure(name string, err error) string {
	var noSpace *shm.NoSpaceError
	if errors.As(err, &noSpace) && noSpace.Free >= 0 {
		return fmt.Sprintf("channel %s needs %d bytes, tmpfs has %d free", name, noSpace.Need, noSpace.Free)
	}
	return fmt.Sprintf("create: %v", err)
}

// SharedMemoryStatus renders the statistics of a channel file.
func SharedMemoryStatus(st shm.Stats, maxPeers int, fileBytes int64) *status.SharedMemory {
	return &status.SharedMemory{
		Mode:        modeName(st.Mode),
		Overflow:    overflowName(st.Overflow),
		SlotSize:    st.SlotSize,
		SlotCount:   st.Capacity,
		MaxPeers:    maxPeers,
		FileBytes:   fileBytes,
		Depth:       st.Depth,
		Sent:        st.Sent,
		Received:    st.Received,
		Lost:        st.Lost,
		Redelivered: st.Redelivered,
		Abandoned:   st.Abandoned,
		Repaired:    st.Repaired,
		ReapedPeers: st.Reaped,
		DeadPeers:   st.DeadPeers,
		Peers: map[string]int{
			shm.RoleProducer.String():   st.Producers,
			shm.RoleConsumer.String():   st.Consumers,
			shm.RoleSubscriber.String(): st.Subscribers,
		},
	}
}

// shmOptions maps declared settings to the options of shm.Create.
func shmOptions(s channelconfig.SharedMemorySettings) shm.Options {
	o := shm.Options{SlotSize: int(s.SlotSize), SlotCount: int(s.SlotCount), Mode: shm.ModeQueue, Overflow: shm.OverflowBlock}
	if s.Mode == channelconfig.SharedMemoryModeBroadcast {
		o.Mode = shm.ModeBroadcast
	}
	switch s.Overflow {
	case channelconfig.SharedMemoryOverflowFail:
		o.Overflow = shm.OverflowFail
	case channelconfig.SharedMemoryOverflowOverwrite:
		o.Overflow = shm.OverflowOverwrite
	}
	return o
}

// describeMismatch lists the settings in which a file (have) differs from
// the declaration (want), or returns "" if it serves the declaration. The
// size of the peer table is not declared and not compared.
func describeMismatch(have, want shm.Options) string {
	var diffs []string
	if have.Mode != want.Mode {
		diffs = append(diffs, fmt.Sprintf("mode %s → %s", modeName(have.Mode), modeName(want.Mode)))
	}
	if have.SlotSize != want.SlotSize {
		diffs = append(diffs, fmt.Sprintf("slotSize %d → %d", have.SlotSize, want.SlotSize))
	}
	if have.SlotCount != want.SlotCount {
		diffs = append(diffs, fmt.Sprintf("slotCount %d → %d", have.SlotCount, want.SlotCount))
	}
	if have.Overflow != want.Overflow {
		diffs = append(diffs, fmt.Sprintf("overflow %s → %s", overflowName(have.Overflow), overflowName(want.Overflow)))
	}
	if len(diffs) == 0 {
		return ""
	}
	return "incompatible change: " + strings.Join(diffs, ", ")
}

// modeName and overflowName spell shm's values as the configuration does.
func modeName(m shm.Mode) string {
	switch m {
	case shm.ModeQueue:
		return string(channelconfig.SharedMemoryModeQueue)
	case shm.ModeBroadcast:
		return string(channelconfig.SharedMemoryModeBroadcast)
	}
	return m.String()
}

func overflowName(o shm.Overflow) string {
	switch o {
	case shm.OverflowBlock:
		return string(channelconfig.SharedMemoryOverflowBlock)
	case shm.OverflowFail:
		return string(channelconfig.SharedMemoryOverflowFail)
	case shm.OverflowOverwrite:
		return string(channelconfig.SharedMemoryOverflowOverwrite)
	}
	return o.String()
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
