package channelconfig_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/podipc/podipc/internal/mqjournal"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/shm"
)

// The footprints are budgets the data plane must stay within; these tests
// hold the real ring files and journal records to them.

func TestRingFileFitsItsBudget(t *testing.T) {
	dir := t.TempDir()
	for i, s := range []channelconfig.SharedMemorySettings{
		{Mode: "Queue", SlotSize: 64, SlotCount: 2},
		{Mode: "Queue", SlotSize: 65, SlotCount: 8},
		{Mode: "Queue", SlotSize: 4096, SlotCount: 1024},
		{Mode: "Broadcast", SlotSize: 1000, SlotCount: 256},
		{Mode: "Queue", SlotSize: 1 << 20, SlotCount: 8},
	} {
		mode := shm.ModeQueue
		if s.Mode == channelconfig.SharedMemoryModeBroadcast {
			mode = shm.ModeBroadcast
		}
		path := filepath.Join(dir, "ring"+string(rune('a'+i)))
		ch, err := shm.Create(path, shm.Options{Mode: mode, SlotSize: int(s.SlotSize), SlotCount: int(s.SlotCount)})
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if budget := s.RingFileBytes(); st.Size() > budget {
			t.Errorf("%+v: ring file is %d bytes, over its budget of %d", s, st.Size(), budget)
		}
	}
}

// TestJournalRecordsFitTheirBudget writes maxDepth messages to a real
// journal and removes them all: the file, never compacted (it stays under the
// compaction threshold), holds every record the budget pays for.
func TestJournalRecordsFitTheirBudget(t *testing.T) {
	const depth, body = 200, 10
	path := filepath.Join(t.TempDir(), "q.journal")
	j, _, _, err := mqjournal.Open(path, mqjournal.Options{MaxRecord: mqjournal.RecordOverhead + body})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for id := uint64(1); id <= depth; id++ {
		j.AppendEnqueue(mqjournal.Message{ID: id, Body: make([]byte, body)})
	}
	for id := uint64(1); id <= depth; id++ {
		j.AppendRemove(id, body)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	perMessage := st.Size() / depth // its file header included
	if perMessage > body+channelconfig.JournalRecordOverheadBytes {
		t.Errorf("the journal takes %d bytes a message of %d, over the budget of %d", perMessage, body, body+channelconfig.JournalRecordOverheadBytes)
	}
	if st.Size() < depth*body {
		t.Fatalf("journal of %d bytes cannot hold %d bodies of %d", st.Size(), depth, body)
	}
}
