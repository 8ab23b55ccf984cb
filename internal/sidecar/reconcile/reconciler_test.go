package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/sidecar/reconcile"
	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/mq"
	"github.com/podipc/podipc/pkg/shm"
)

// fixture is a reconciler with a real broker over a directory.
type fixture struct {
	t      *testing.T
	dir    string
	broker *mqbroker.Broker
	rec    *reconcile.Reconciler
}

func newFixture(t *testing.T, dir string) *fixture {
	t.Helper()
	b, err := mqbroker.New(mqbroker.Options{JournalDir: filepath.Join(dir, "mq", "journal")})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := reconcile.New(reconcile.Options{Dir: dir, Broker: b, ConfigPath: "test.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, broker: b, rec: rec}
	t.Cleanup(f.stop)
	return f
}

func (f *fixture) stop() {
	if f.rec == nil {
		return
	}
	if err := f.rec.Close(); err != nil {
		f.t.Errorf("reconciler Close: %v", err)
	}
	if err := f.broker.Close(); err != nil {
		f.t.Errorf("broker Close: %v", err)
	}
	f.rec = nil
}

// apply parses doc as the configuration file would be and applies it.
func (f *fixture) apply(doc string) bool {
	f.t.Helper()
	return f.rec.Apply(context.Background(), parse(f.t, doc))
}

func parse(t *testing.T, doc string) *channelconfig.Config {
	t.Helper()
	cfg, err := channelconfig.Parse([]byte("apiVersion: podipc.io/v1alpha1\nkind: ChannelConfig\nchannels:\n" + doc))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return cfg
}

func (f *fixture) channel(typ channelconfig.ChannelType, name string) (status.Channel, bool) {
	snap := f.rec.Snapshot()
	for _, c := range snap.Channels {
		if c.Type == typ && c.Name == name {
			return c, true
		}
	}
	return status.Channel{}, false
}

func (f *fixture) mustChannel(typ channelconfig.ChannelType, name string) status.Channel {
	f.t.Helper()
	c, ok := f.channel(typ, name)
	if !ok {
		f.t.Fatalf("%s %s not in the snapshot %+v", typ, name, f.rec.Snapshot().Channels)
	}
	return c
}

func (f *fixture) expectState(typ channelconfig.ChannelType, name string, want status.State) status.Channel {
	f.t.Helper()
	c := f.mustChannel(typ, name)
	if c.State != want {
		f.t.Fatalf("%s %s state = %s (%s), want %s", typ, name, c.State, c.Message, want)
	}
	return c
}

func (f *fixture) shmPath(name string) string {
	return filepath.Join(f.dir, podcontract.ShmSubdir, name)
}

func (f *fixture) inode(name string) uint64 {
	f.t.Helper()
	fi, err := os.Stat(f.shmPath(name))
	if err != nil {
		f.t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func (f *fixture) open(name string) *shm.Channel {
	f.t.Helper()
	ch, err := shm.Open(f.shmPath(name))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { ch.Close() })
	return ch
}

const (
	framesQueue = `
- name: frames
  type: SharedMemory
  sharedMemory: {mode: Queue, slotSize: 256, slotCount: 16}
`
	framesBigger = `
- name: frames
  type: SharedMemory
  sharedMemory: {mode: Queue, slotSize: 512, slotCount: 16}
`
	jobsQueue = `
- name: jobs
  type: MessageQueue
  messageQueue: {maxDepth: 100}
`
	jobsDeeper = `
- name: jobs
  type: MessageQueue
  messageQueue: {maxDepth: 200, maxRedeliveries: 3}
`
)

func TestCreatesDeclaredChannels(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	if !f.apply(framesQueue + jobsQueue + `
- name: telemetry
  type: SharedMemory
  sharedMemory: {mode: Broadcast, slotSize: 128, slotCount: 8, overflow: Overwrite}
`) {
		t.Fatalf("Apply did not converge: %v", f.rec.Snapshot().NotReady())
	}
	frames := f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateReady)
	if s := frames.SharedMemory; s == nil || s.Mode != "Queue" || s.SlotSize != 256 || s.SlotCount != 16 || s.Overflow != "Block" {
		t.Errorf("frames = %+v", frames.SharedMemory)
	}
	tel := f.expectState(channelconfig.ChannelTypeSharedMemory, "telemetry", status.StateReady)
	if s := tel.SharedMemory; s == nil || s.Mode != "Broadcast" || s.Overflow != "Overwrite" {
		t.Errorf("telemetry = %+v", tel.SharedMemory)
	}
	// The file is a channel any process can open, with the declared geometry.
	if o := f.open("frames").Options(); o.SlotSize != 256 || o.SlotCount != 16 || o.Mode != shm.ModeQueue {
		t.Errorf("frames file options = %+v", o)
	}
	// Allocated up front: every page of the file is on the tmpfs.
	fi, err := os.Stat(f.shmPath("frames"))
	if err != nil {
		t.Fatal(err)
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks * 512; blocks < fi.Size() {
		t.Errorf("frames has %d of its %d bytes allocated", blocks, fi.Size())
	}
	jobs := f.expectState(channelconfig.ChannelTypeMessageQueue, "jobs", status.StateReady)
	if jobs.MessageQueue == nil || jobs.MessageQueue.MaxDepth != 100 {
		t.Errorf("jobs = %+v", jobs.MessageQueue)
	}
	if problems := f.rec.Snapshot().NotReady(); len(problems) != 0 {
		t.Errorf("NotReady = %q", problems)
	}
}

// A sidecar restart adopts the channel files it finds: same file, messages
// still there.
func TestAdoptsExistingChannelsOnRestart(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	first := newFixture(t, dir)
	first.apply(framesQueue)
	ino := first.inode("frames")
	ch := first.open("frames")
	p, err := ch.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := p.Send(context.Background(), fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	first.stop()

	// A leftover of a creation interrupted by the crash of the first sidecar.
	leftover := filepath.Join(dir, podcontract.ShmSubdir, ".frames.creating-123")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	second := newFixture(t, dir)
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover temporary file still there: %v", err)
	}
	c := second.mustChannel(channelconfig.ChannelTypeSharedMemory, "frames")
	if c.SharedMemory == nil || c.SharedMemory.Depth != 3 || c.SharedMemory.Peers["producer"] != 1 {
		t.Fatalf("adopted frames before any config = %+v", c.SharedMemory)
	}
	// Without a configuration nothing is removed, even if undeclared.
	second.rec.Resync(context.Background())
	if second.inode("frames") != ino {
		t.Fatal("frames replaced before a configuration was applied")
	}
	second.apply(framesQueue)
	second.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateReady)
	if second.inode("frames") != ino {
		t.Fatal("adopting frames replaced its file")
	}
	if err := p.Send(context.Background(), []byte("m3")); err != nil {
		t.Fatal(err)
	}
	cons, err := second.open("frames").NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	buf := make([]byte, 256)
	for i := range 4 {
		n, err := cons.TryRecv(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d = %q, %v", i, buf[:n], err)
		}
	}
	p.Close()
}

// An incompatible change waits for the channel's peers to leave, keeping the
// old file serving, and is applied at the next resync after they have.
func TestIncompatibleChangeWaitsForPeers(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(framesQueue)
	ino := f.inode("frames")
	cons, err := f.open("frames").NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	if f.apply(framesBigger) {
		t.Fatal("Apply converged although frames has a live consumer")
	}
	c := f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateBlocked)
	for _, want := range []string{"slotSize 256 → 512", "1 attached peers"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("blocked message %q lacks %q", c.Message, want)
		}
	}
	if c.SharedMemory == nil || c.SharedMemory.SlotSize != 256 {
		t.Errorf("blocked channel reports %+v, want the old file's geometry", c.SharedMemory)
	}
	if problems := f.rec.Snapshot().NotReady(); len(problems) != 1 || !strings.Contains(problems[0], "frames: Blocked") {
		t.Errorf("NotReady = %q", problems)
	}
	f.rec.Resync(context.Background())
	if f.inode("frames") != ino {
		t.Fatal("frames replaced while its consumer was attached")
	}

	if err := cons.Close(); err != nil {
		t.Fatal(err)
	}
	f.rec.Resync(context.Background())
	c = f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateReady)
	if c.SharedMemory.SlotSize != 512 || f.inode("frames") == ino {
		t.Fatalf("after the consumer left: slotSize %d, same inode %v", c.SharedMemory.SlotSize, f.inode("frames") == ino)
	}
	if o := f.open("frames").Options(); o.SlotSize != 512 {
		t.Errorf("new file slot size %d", o.SlotSize)
	}
	// Replacing leaves no temporary file behind.
	entries, _ := os.ReadDir(filepath.Join(f.dir, podcontract.ShmSubdir))
	if len(entries) != 1 {
		t.Errorf("shm directory holds %d entries, want 1", len(entries))
	}
}

// An unused channel is recreated at once.
func TestIncompatibleChangeOfUnusedChannel(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(framesQueue)
	if !f.apply(framesBigger) {
		t.Fatalf("Apply did not converge: %v", f.rec.Snapshot().NotReady())
	}
	if o := f.open("frames").Options(); o.SlotSize != 512 {
		t.Errorf("slot size %d, want 512", o.SlotSize)
	}
}

func TestRemovesUndeclaredChannelsOnceUnused(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(framesQueue + jobsQueue)
	prod, err := f.open("frames").NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	client, err := mq.Dial(context.Background(), mq.WithSocketPath(f.serve()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := client.Consume(context.Background(), "jobs")
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 10*time.Second, "the broker to count the consumer", func() bool {
		return f.mustChannel(channelconfig.ChannelTypeMessageQueue, "jobs").MessageQueue.Consumers == 1
	})

	if !f.apply(``) {
		t.Fatal("removals pending must not fail reconciliation")
	}
	f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateRemoving)
	f.expectState(channelconfig.ChannelTypeMessageQueue, "jobs", status.StateRemoving)
	if _, err := os.Stat(f.shmPath("frames")); err != nil {
		t.Fatalf("frames removed while in use: %v", err)
	}
	if problems := f.rec.Snapshot().NotReady(); len(problems) != 0 {
		t.Errorf("pending removals made the sidecar unready: %q", problems)
	}

	prod.Close()
	consumer.Close()
	testkit.EventuallyTrue(t, 10*time.Second, "both channels to be removed", func() bool {
		f.rec.Resync(context.Background())
		_, shmLeft := f.channel(channelconfig.ChannelTypeSharedMemory, "frames")
		_, mqLeft := f.channel(channelconfig.ChannelTypeMessageQueue, "jobs")
		return !shmLeft && !mqLeft
	})
	if _, err := os.Stat(f.shmPath("frames")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("frames file after removal: %v", err)
	}
}

// serve runs the broker on a socket in the fixture's directory.
func (f *fixture) serve() string {
	f.t.Helper()
	path := podcontract.MQSocketPath(f.dir)
	ln, err := mqbroker.Listen(path, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	go f.broker.Serve(ln)
	return path
}

func TestQueueChangesAreAppliedLive(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(jobsQueue)
	client, err := mq.Dial(context.Background(), mq.WithSocketPath(f.serve()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Send(context.Background(), "jobs", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if !f.apply(jobsDeeper) {
		t.Fatal("queue change did not converge")
	}
	stats := f.broker.Stats()
	if len(stats) != 1 || stats[0].Config.MaxDepth != 200 || stats[0].Config.MaxRedeliveries != 3 || stats[0].Depth != 1 {
		t.Fatalf("broker stats after the change = %+v", stats)
	}
}

// maxRedeliveries reaches the broker as declared: 0 is no redelivery (the
// reconciler used to turn it into 1), -1 no limit.
func TestMaxRedeliveriesReachBrokerUnchanged(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(`
- name: once
  type: MessageQueue
  messageQueue: {maxRedeliveries: 0}
- name: forever
  type: MessageQueue
  messageQueue: {maxRedeliveries: -1}
`)
	for _, name := range []string{"once", "forever"} {
		if c := f.expectState(channelconfig.ChannelTypeMessageQueue, name, status.StateReady); c.Message != "" {
			t.Errorf("%s: unexpected message %q", name, c.Message)
		}
	}
	got := map[string]int{}
	for _, s := range f.broker.Stats() {
		got[s.Name] = s.Config.MaxRedeliveries
	}
	if got["once"] != 0 || got["forever"] != mqbroker.UnlimitedRedeliveries {
		t.Errorf("broker MaxRedeliveries = %v, want once 0 and forever %d", got, mqbroker.UnlimitedRedeliveries)
	}
}

// A file that is not a valid channel is replaced when nobody holds it.
func TestReplacesUnusableFile(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	if err := os.MkdirAll(filepath.Join(dir, podcontract.ShmSubdir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, podcontract.ShmSubdir, "frames"), []byte("not a channel"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, dir)
	if !f.apply(framesQueue) {
		t.Fatalf("did not converge: %v", f.rec.Snapshot().NotReady())
	}
	f.open("frames")
}

// A channel file truncated behind the sidecar's back (by a container that
// can write it) does not kill the sidecar with SIGBUS: its resync finds the
// file damaged and, as nobody holds it, creates it again.
func TestRecreatesTruncatedFile(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(framesQueue)
	before := f.inode("frames")
	if err := os.Truncate(f.shmPath("frames"), 0); err != nil {
		t.Fatal(err)
	}
	f.rec.Resync(context.Background())
	f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateReady)
	if f.inode("frames") == before {
		t.Fatal("the truncated file was kept")
	}
	f.open("frames")
}

// A FIFO or a symbolic link put where a channel file was (by a container
// that can write the directory) neither blocks the sidecar in open() nor
// is followed: the channel is created again in its place.
func TestReplacesFIFOAndSymlink(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(framesQueue)
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("not for the sidecar"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, plant := range map[string]func(path string) error{
		"fifo":    func(path string) error { return unix.Mkfifo(path, 0o666) },
		"symlink": func(path string) error { return os.Symlink(outside, path) },
	} {
		path := f.shmPath("frames")
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := plant(path); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.rec.Resync(context.Background())
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the resync is stuck", name)
		}
		f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateReady)
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: after the resync the channel path holds %v, %v", name, fi, err)
		}
		f.open("frames")
	}
	if data, err := os.ReadFile(outside); err != nil || string(data) != "not for the sidecar" {
		t.Fatalf("the link's target was touched: %q, %v", data, err)
	}
}

// A channel file removed behind the sidecar's back is created again.
func TestRecreatesDeletedFile(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(framesQueue)
	if err := os.Remove(f.shmPath("frames")); err != nil {
		t.Fatal(err)
	}
	f.rec.Resync(context.Background())
	f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateReady)
	f.open("frames")
}

func TestConfigErrorKeepsRunningConfiguration(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	if problems := f.rec.Snapshot().NotReady(); len(problems) != 1 || !strings.Contains(problems[0], "config") {
		t.Errorf("before any configuration, NotReady = %q", problems)
	}
	f.apply(framesQueue)
	f.rec.ConfigError(errors.New("channels[0].name: Invalid value"))
	snap := f.rec.Snapshot()
	if snap.Config.Applied || snap.Config.Generation != 1 || snap.Counters.ConfigErrors != 1 {
		t.Errorf("config status = %+v, counters %+v", snap.Config, snap.Counters)
	}
	if problems := snap.NotReady(); len(problems) != 1 || !strings.Contains(problems[0], "Invalid value") {
		t.Errorf("NotReady = %q", problems)
	}
	f.rec.Resync(context.Background())
	f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateReady)
}
