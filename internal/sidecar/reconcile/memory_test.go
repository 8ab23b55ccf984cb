package reconcile_test

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/channelconfig"
)

// mappedBytes is how much of the file at path this process maps, from
// /proc/self/maps (matched by inode).
func mappedBytes(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	var total uint64
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[4] != ino {
			continue
		}
		start, end, _ := strings.Cut(fields[0], "-")
		s, err1 := strconv.ParseUint(start, 16, 64)
		e, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("cannot parse %q", sc.Text())
		}
		total += e - s
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// The sidecar maps the header and peer table of each channel file it owns,
// never the ring, whether it created the file or adopted it: its statistics
// and reaping need nothing else, and a mapped ring would count in its RSS.
func TestMapsOnlyChannelHeaders(t *testing.T) {
	const (
		bigChannel = `
- name: big
  type: SharedMemory
  sharedMemory: {slotSize: 65536, slotCount: 64}
`
		fileBytes      = 12288 + 64*65600
		headerAndPeers = 12288 // the 1 KiB header and 64 peer entries, to a page
	)
	dir := testkit.TmpfsDir(t)
	first := newFixture(t, dir)
	if !first.apply(bigChannel) {
		t.Fatalf("Apply did not converge: %v", first.rec.Snapshot().NotReady())
	}
	path := first.shmPath("big")
	if got := mappedBytes(t, path); got != headerAndPeers {
		t.Errorf("after creating the %d-byte channel, %d bytes of it are mapped, want %d", fileBytes, got, headerAndPeers)
	}
	first.rec.Resync(context.Background())
	if c := first.mustChannel(channelconfig.ChannelTypeSharedMemory, "big"); c.SharedMemory.FileBytes != fileBytes || c.SharedMemory.SlotCount != 64 {
		t.Errorf("status = %+v", c.SharedMemory)
	}
	if got := mappedBytes(t, path); got != headerAndPeers {
		t.Errorf("after a resync and a snapshot, %d bytes mapped, want %d", got, headerAndPeers)
	}
	first.stop()
	if got := mappedBytes(t, path); got != 0 {
		t.Errorf("%d bytes still mapped after Close", got)
	}

	second := newFixture(t, dir)
	second.apply(bigChannel)
	second.expectState(channelconfig.ChannelTypeSharedMemory, "big", status.StateReady)
	if got := mappedBytes(t, path); got != headerAndPeers {
		t.Errorf("after adopting the channel, %d bytes mapped, want %d", got, headerAndPeers)
	}
}
