package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/shm"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	testkit.Main(m, testkit.Roles{
		"borrow-and-hang": func([]string) error { return borrowAndHang(os.Getenv("CHANNEL_PATH")) },
	})
}

// borrowAndHang is a consumer that takes a message and never releases it.
func borrowAndHang(path string) error {
	ch, err := shm.Open(path)
	if err != nil {
		return err
	}
	c, err := ch.NewConsumer()
	if err != nil {
		return err
	}
	m, err := c.Borrow(context.Background())
	if err != nil {
		return err
	}
	fmt.Printf("borrowed %s\n", m.Bytes())
	select {}
}

// A consumer killed while holding a message: the periodic resync recovers
// it, so the message is delivered again although nobody was blocked.
func TestResyncReapsDeadPeers(t *testing.T) {
	f := newFixture(t, testkit.TmpfsDir(t))
	f.apply(framesQueue)
	ch := f.open("frames")
	p, err := ch.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Send(context.Background(), []byte("precious")); err != nil {
		t.Fatal(err)
	}

	child := testkit.Child(t, "borrow-and-hang", testkit.Env("CHANNEL_PATH="+f.shmPath("frames")))
	child.ExpectLine(t, 30*time.Second, "borrowed precious")
	if c := f.mustChannel(channelconfig.ChannelTypeSharedMemory, "frames"); c.SharedMemory.Peers["consumer"] != 1 {
		t.Fatalf("peers with the child alive = %v", c.SharedMemory.Peers)
	}
	if err := child.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Err()

	// Registering a new consumer would recover the dead one on its own; the
	// reaper must do it with nobody registering or blocked.
	before := f.mustChannel(channelconfig.ChannelTypeSharedMemory, "frames").SharedMemory
	if before.DeadPeers != 1 || before.Peers["consumer"] != 0 {
		t.Fatalf("after the kill, before the reap: %+v", before)
	}
	f.rec.Resync(context.Background())
	snap := f.rec.Snapshot()
	if snap.Counters.ReapedPeers != 1 {
		t.Errorf("ReapedPeers = %d, want 1", snap.Counters.ReapedPeers)
	}
	after := f.mustChannel(channelconfig.ChannelTypeSharedMemory, "frames").SharedMemory
	if after.DeadPeers != 0 || after.ReapedPeers != 1 {
		t.Errorf("after the reap: %+v", after)
	}
	cons, err := ch.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	buf := make([]byte, 256)
	n, err := cons.TryRecv(buf)
	if err != nil || string(buf[:n]) != "precious" {
		t.Fatalf("after the reap, TryRecv = %q, %v", buf[:n], err)
	}
	if c := f.mustChannel(channelconfig.ChannelTypeSharedMemory, "frames"); c.SharedMemory.Redelivered != 1 {
		t.Errorf("Redelivered = %d, want 1", c.SharedMemory.Redelivered)
	}
}

// With a tmpfs too small for a channel, the channel fails with a clear error
// and the sidecar stays up; the other channels are created.
func TestChannelLargerThanTmpfs(t *testing.T) {
	dir := testkit.SizedTmpfs(t, 1<<20)
	f := newFixture(t, dir)
	if f.apply(framesQueue + `
- name: huge
  type: SharedMemory
  sharedMemory: {slotSize: 65536, slotCount: 64}
`) {
		t.Fatal("Apply converged although huge cannot fit")
	}
	c := f.expectState(channelconfig.ChannelTypeSharedMemory, "huge", status.StateFailed)
	frames := f.expectState(channelconfig.ChannelTypeSharedMemory, "frames", status.StateReady)
	// huge's file: 12 KiB of header and peer table, 64 slots of 16+65536
	// bytes rounded up to 64. What is free is the tmpfs less frames' file.
	var free int64 = 1<<20 - alignPage(frames.SharedMemory.FileBytes)
	if want := fmt.Sprintf("channel huge needs %d bytes, tmpfs has %d free", 12288+64*65600, free); c.Message != want {
		t.Errorf("message = %q, want %q", c.Message, want)
	}
	entries, err := os.ReadDir(filepath.Dir(f.shmPath("huge")))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "frames" {
		t.Errorf("files in the channel directory: %v, want frames alone", entries)
	}
}

func alignPage(n int64) int64 { return (n + 4095) &^ 4095 }
