package channelconfig_test

import (
	"testing"

	"github.com/podipc/podipc/pkg/channelconfig"
)

func TestFootprint(t *testing.T) {
	const granule = 64 << 10
	for _, tc := range []struct {
		name string
		s    channelconfig.ChannelSettings
		want channelconfig.Footprint
	}{{
		name: "shared memory defaults: 1024 slots of 4096+64 bytes padded to 4224, plus the header",
		s:    channelconfig.ChannelSettings{Type: "SharedMemory", SharedMemory: &channelconfig.SharedMemorySettings{}},
		want: channelconfig.Footprint{TmpfsBytes: 64<<10 + 1024*4224}, // 4390912 = 67 granules exactly
	}, {
		name: "smallest ring rounds up to one granule past the header",
		s:    channelconfig.ChannelSettings{Type: "SharedMemory", SharedMemory: &channelconfig.SharedMemorySettings{SlotSize: 64, SlotCount: 2}},
		want: channelconfig.Footprint{TmpfsBytes: 2 * granule},
	}, {
		name: "largest ring",
		s:    channelconfig.ChannelSettings{Type: "SharedMemory", SharedMemory: &channelconfig.SharedMemorySettings{SlotSize: 1 << 20, SlotCount: 1024}},
		want: channelconfig.Footprint{TmpfsBytes: 64<<10 + 1024*(1<<20+128)},
	}, {
		name: "in-memory queue needs no tmpfs",
		s:    channelconfig.ChannelSettings{Type: "MessageQueue", MessageQueue: &channelconfig.MessageQueueSettings{}},
		want: channelconfig.Footprint{SidecarMemoryBytes: 2*16<<20 + 1<<20 + 2*10000*256}, // waiting, in flight, one more
	}, {
		name: "journaled queue: twice its live content (waiting, in flight, one more message, their records), plus the compaction threshold, rounded",
		s: channelconfig.ChannelSettings{Type: "MessageQueue", MessageQueue: &channelconfig.MessageQueueSettings{
			MaxDepth: 100, MaxBytes: 1 << 20, Persistence: channelconfig.PersistenceVolume}},
		want: channelconfig.Footprint{
			TmpfsBytes:         (2*(2<<20+1<<20+200*channelconfig.JournalRecordOverheadBytes) + 1<<20 + granule - 1) / granule * granule,
			SidecarMemoryBytes: 2<<20 + 1<<20 + 200*256,
		},
	}, {
		name: "no settings block",
		s:    channelconfig.ChannelSettings{Type: "SharedMemory"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.s.Footprint()
			if got != tc.want {
				t.Errorf("Footprint() = %+v, want %+v", got, tc.want)
			}
			if got.TmpfsBytes%granule != 0 {
				t.Errorf("tmpfs bytes %d not a whole number of granules", got.TmpfsBytes)
			}
		})
	}
}

func TestChannelConfigFootprintAddsUp(t *testing.T) {
	shm := channelconfig.Channel{Name: "a", ChannelSettings: channelconfig.ChannelSettings{Type: "SharedMemory", SharedMemory: &channelconfig.SharedMemorySettings{}}}
	mq := channelconfig.Channel{Name: "b", ChannelSettings: channelconfig.ChannelSettings{Type: "MessageQueue",
		MessageQueue: &channelconfig.MessageQueueSettings{Persistence: channelconfig.PersistenceVolume}}}
	cfg := channelconfig.Config{Channels: []channelconfig.Channel{shm, mq}}
	want := shm.Footprint().Add(mq.Footprint())
	if got := cfg.Footprint(); got != want || got.TmpfsBytes <= shm.Footprint().TmpfsBytes {
		t.Errorf("config footprint %+v, want %+v", got, want)
	}
}
