package v1alpha1_test

import (
	"testing"

	"github.com/podipc/podipc/api/v1alpha1"
)

func TestFootprint(t *testing.T) {
	const granule = 64 << 10
	for _, tc := range []struct {
		name string
		s    v1alpha1.ChannelSettings
		want v1alpha1.Footprint
	}{{
		name: "shared memory defaults: 1024 slots of 4096+64 bytes padded to 4224, plus the header",
		s:    v1alpha1.ChannelSettings{Type: "SharedMemory", SharedMemory: &v1alpha1.SharedMemorySettings{}},
		want: v1alpha1.Footprint{TmpfsBytes: 64<<10 + 1024*4224}, // 4390912 = 67 granules exactly
	}, {
		name: "smallest ring rounds up to one granule past the header",
		s:    v1alpha1.ChannelSettings{Type: "SharedMemory", SharedMemory: &v1alpha1.SharedMemorySettings{SlotSize: 64, SlotCount: 2}},
		want: v1alpha1.Footprint{TmpfsBytes: 2 * granule},
	}, {
		name: "largest ring",
		s:    v1alpha1.ChannelSettings{Type: "SharedMemory", SharedMemory: &v1alpha1.SharedMemorySettings{SlotSize: 1 << 20, SlotCount: 1024}},
		want: v1alpha1.Footprint{TmpfsBytes: 64<<10 + 1024*(1<<20+128)},
	}, {
		name: "in-memory queue needs no tmpfs",
		s:    v1alpha1.ChannelSettings{Type: "MessageQueue", MessageQueue: &v1alpha1.MessageQueueSettings{}},
		want: v1alpha1.Footprint{SidecarMemoryBytes: 2*16<<20 + 1<<20 + 2*10000*256}, // waiting, in flight, one more
	}, {
		name: "journaled queue: twice its live content (waiting, in flight, one more message, their records), plus the compaction threshold, rounded",
		s: v1alpha1.ChannelSettings{Type: "MessageQueue", MessageQueue: &v1alpha1.MessageQueueSettings{
			MaxDepth: 100, MaxBytes: 1 << 20, Persistence: v1alpha1.PersistenceVolume}},
		want: v1alpha1.Footprint{
			TmpfsBytes:         (2*(2<<20+1<<20+200*v1alpha1.JournalRecordOverheadBytes) + 1<<20 + granule - 1) / granule * granule,
			SidecarMemoryBytes: 2<<20 + 1<<20 + 200*256,
		},
	}, {
		name: "no settings block",
		s:    v1alpha1.ChannelSettings{Type: "SharedMemory"},
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
	shm := v1alpha1.Channel{Name: "a", ChannelSettings: v1alpha1.ChannelSettings{Type: "SharedMemory", SharedMemory: &v1alpha1.SharedMemorySettings{}}}
	mq := v1alpha1.Channel{Name: "b", ChannelSettings: v1alpha1.ChannelSettings{Type: "MessageQueue",
		MessageQueue: &v1alpha1.MessageQueueSettings{Persistence: v1alpha1.PersistenceVolume}}}
	cfg := v1alpha1.ChannelConfig{Channels: []v1alpha1.Channel{shm, mq}}
	want := shm.Footprint().Add(mq.Footprint())
	if got := cfg.Footprint(); got != want || got.TmpfsBytes <= shm.Footprint().TmpfsBytes {
		t.Errorf("config footprint %+v, want %+v", got, want)
	}
}
