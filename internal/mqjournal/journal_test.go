package mqjournal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podipc/podipc/internal/regularfile"
	"golang.org/x/sys/unix"
)

const testMaxRecord = 1 << 16

func msg(id uint64, body string) Message {
	return Message{ID: id, Priority: uint8(id % 10), EnqueuedAt: int64(id) * 1000, ExpiresAt: int64(id) * 7, Body: []byte(body)}
}

func openT(t *testing.T, path string, opts Options) (*Journal, []Message, Recovery) {
	t.Helper()
	if opts.MaxRecord == 0 {
		opts.MaxRecord = testMaxRecord
	}
	j, live, rec, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j, live, rec
}

func ids(ms []Message) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestReplayKeepsLiveMessagesInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.journal")
	j, live, _ := openT(t, path, Options{})
	if len(live) != 0 {
		t.Fatalf("new journal has %d messages", len(live))
	}
	for i := uint64(1); i <= 5; i++ {
		j.AppendEnqueue(msg(i, fmt.Sprint("body-", i)))
	}
	j.AppendRemove(2, len("body-2"))
	seq := j.AppendRemove(4, len("body-4"))
	if err := j.Sync(seq); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// Simulate a crash: no Close, just reopen the file.
	_, live, rec := openT(t, path, Options{})
	if got := fmt.Sprint(ids(live)); got != "[1 3 5]" {
		t.Fatalf("live ids %s", got)
	}
	if rec.Records != 7 || rec.TornBytes != 0 {
		t.Fatalf("recovery %+v", rec)
	}
	for _, m := range live {
		if want := msg(m.ID, fmt.Sprint("body-", m.ID)); !bytes.Equal(m.Body, want.Body) ||
			m.Priority != want.Priority || m.EnqueuedAt != want.EnqueuedAt || m.ExpiresAt != want.ExpiresAt {
			t.Fatalf("message %+v, want %+v", m, want)
		}
	}
}

func TestUnsyncedRecordsAreNotInFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.journal")
	j, _, _ := openT(t, path, Options{})
	j.Sync(j.AppendEnqueue(msg(1, "a")))
	j.AppendEnqueue(msg(2, "b"))
	_, live, _ := openT(t, path, Options{})
	if got := fmt.Sprint(ids(live)); got != "[1]" {
		t.Fatalf("live ids %s, want only the synced one", got)
	}
}

// TestTornTail cuts the file at every byte inside the last record and checks
// that recovery keeps the earlier records, reports the torn bytes, and leaves
// a file that accepts new appends.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.journal")
	j, _, _ := openT(t, path, Options{})
	j.AppendEnqueue(msg(1, "first"))
	j.Sync(j.AppendEnqueue(msg(2, "second message")))
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lastLen := EnqueueSize(len("second message"))
	for cut := len(full) - lastLen; cut < len(full); cut++ {
		p := filepath.Join(dir, fmt.Sprintf("cut-%d", cut))
		if err := os.WriteFile(p, full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		j2, live, rec := openT(t, p, Options{})
		if got := fmt.Sprint(ids(live)); got != "[1]" {
			t.Fatalf("cut at %d: live %s", cut, got)
		}
		if want := int64(cut - (len(full) - lastLen)); rec.TornBytes != want {
			t.Fatalf("cut at %d: torn %d, want %d", cut, rec.TornBytes, want)
		}
		if err := j2.Sync(j2.AppendEnqueue(msg(3, "third"))); err != nil {
			t.Fatal(err)
		}
		_, live, rec = openT(t, p, Options{})
		if got := fmt.Sprint(ids(live)); got != "[1 3]" || rec.TornBytes != 0 {
			t.Fatalf("cut at %d: after append live %s, torn %d", cut, got, rec.TornBytes)
		}
	}
}

func TestCorruptRecordStopsReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.journal")
	j, _, _ := openT(t, path, Options{})
	j.AppendEnqueue(msg(1, "one"))
	j.AppendEnqueue(msg(2, "two"))
	j.Sync(j.AppendEnqueue(msg(3, "three")))
	data, _ := os.ReadFile(path)
	second := headerSize + EnqueueSize(3)
	data[second+recordHeader+enqueueFixed] ^= 0xff // flip a body byte of record 2
	os.WriteFile(path, data, 0o600)
	_, live, rec := openT(t, path, Options{})
	if got := fmt.Sprint(ids(live)); got != "[1]" {
		t.Fatalf("live %s", got)
	}
	if !errors.Is(rec.TailErr, ErrCorrupt) || rec.TornBytes != int64(len(data)-second) {
		t.Fatalf("recovery %+v", rec)
	}
}

func TestForeignFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.journal")
	os.WriteFile(path, []byte("this is not a journal at all"), 0o600)
	if _, _, _, err := Open(path, Options{MaxRecord: testMaxRecord}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open foreign file: %v", err)
	}
}

func TestCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.journal")
	j, _, _ := openT(t, path, Options{CompactMinBytes: 4096})
	body := string(bytes.Repeat([]byte("x"), 100))
	var live []Message
	for i := uint64(1); i <= 100; i++ {
		j.AppendEnqueue(msg(i, body))
		if i%10 == 0 {
			live = append(live, msg(i, body))
		} else {
			j.AppendRemove(i, len(body))
		}
	}
	if !j.ShouldCompact() {
		t.Fatalf("90%% dead journal of %d bytes not due for compaction", j.Size())
	}
	before := j.Size()
	if err := j.Rewrite(live); err != nil {
		t.Fatal(err)
	}
	if j.Size() >= before/5 || j.ShouldCompact() {
		t.Fatalf("size after compaction %d (before %d)", j.Size(), before)
	}
	j.Sync(j.AppendEnqueue(msg(101, "after")))
	_, got, _ := openT(t, path, Options{})
	if s := fmt.Sprint(ids(got)); s != "[10 20 30 40 50 60 70 80 90 100 101]" {
		t.Fatalf("after compaction live %s", s)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestDecodeRecordLimits(t *testing.T) {
	rec := AppendEnqueue(nil, msg(1, "hello"))
	if _, _, err := DecodeRecord(rec, len(rec)-recordHeader-1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("over limit: %v", err)
	}
	if _, _, err := DecodeRecord(rec[:len(rec)-1], testMaxRecord); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short: %v", err)
	}
	bad := append([]byte(nil), rec...)
	bad[recordHeader] = 9
	if _, _, err := DecodeRecord(bad, testMaxRecord); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad type: %v", err)
	}
}

// TestWriteFailure makes the journal's writes fail (its file descriptor is
// closed underneath it): the lost records are reported to every Sync that
// waited for them, the journal says it is broken, and a Rewrite from the
// live messages makes it whole again.
func TestWriteFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.journal")
	j, _, _ := openT(t, path, Options{})
	if err := j.Sync(j.AppendEnqueue(msg(1, "kept"))); err != nil {
		t.Fatal(err)
	}
	j.f.Close()
	a := j.AppendEnqueue(msg(2, "lost"))
	b := j.AppendEnqueue(msg(3, "lost too"))
	if err := j.Sync(b); err == nil {
		t.Fatal("Sync succeeded on a closed file")
	}
	if err := j.Sync(a); err == nil {
		t.Fatal("Sync of an earlier record of the failed batch succeeded")
	}
	if !j.Broken() {
		t.Fatal("journal not broken after a failed write")
	}
	if err := j.Rewrite([]Message{msg(1, "kept"), msg(3, "lost too")}); err != nil {
		t.Fatal(err)
	}
	if j.Broken() {
		t.Fatal("journal still broken after Rewrite")
	}
	if err := j.Sync(j.AppendRemove(1, len("kept"))); err != nil {
		t.Fatal(err)
	}
	_, live, rec := openT(t, path, Options{})
	if got := fmt.Sprint(ids(live)); got != "[3]" || rec.TornBytes != 0 {
		t.Fatalf("after recovery from a write failure: live %s, torn %d", got, rec.TornBytes)
	}
}

// A journal replaced by a link to /dev/zero or by a FIFO (any container
// can write the tmpfs) is refused at once, not read until memory runs out
// or waited on.
func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	for name, plant := range map[string]func(path string) error{
		"link to /dev/zero": func(path string) error { return os.Symlink("/dev/zero", path) },
		"fifo":              func(path string) error { return unix.Mkfifo(path, 0o600) },
	} {
		path := filepath.Join(t.TempDir(), "q.journal")
		if err := plant(path); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := Open(path, Options{MaxRecord: testMaxRecord}); !errors.Is(err, regularfile.ErrNotRegular) || !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s: Open = %v, want ErrUntrusted and ErrNotRegular", name, err)
		}
	}
}

// A valid journal that another user could have written is not replayed: one
// owned by another user (planted by another container), or one its group or
// others can write.
func TestOpenRefusesJournalsOthersCouldWrite(t *testing.T) {
	for name, c := range map[string]struct {
		root   bool
		forge  func(path string) error
		reason string
	}{
		"group-writable": {forge: func(path string) error { return os.Chmod(path, 0o620) }, reason: "writable by group or others"},
		"world-writable": {forge: func(path string) error { return os.Chmod(path, 0o606) }, reason: "writable by group or others"},
		"another user's": {root: true, forge: func(path string) error { return os.Chown(path, 65534, 65534) }, reason: "owned by uid 65534"},
	} {
		t.Run(name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				t.Skip("needs root to give the file to another user")
			}
			path := filepath.Join(t.TempDir(), "q.journal")
			j, _, _ := openT(t, path, Options{})
			j.AppendEnqueue(msg(1, "forged"))
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.forge(path); err != nil {
				t.Fatal(err)
			}
			_, live, _, err := Open(path, Options{MaxRecord: testMaxRecord})
			if !errors.Is(err, ErrUntrusted) || !errors.Is(err, regularfile.ErrNotPrivate) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("Open = %v (%d messages), want ErrUntrusted saying %q", err, len(live), c.reason)
			}
		})
	}
}

// TestDeliveryCountsSurviveReplay holds that DELIVERED records restore each
// message's delivery count, also through a compaction.
func TestDeliveryCountsSurviveReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.journal")
	j, _, _ := openT(t, path, Options{})
	j.AppendEnqueue(msg(1, "poison"))
	j.AppendEnqueue(msg(2, "fresh"))
	j.AppendDelivered(1, 1)
	seq := j.AppendDelivered(1, 2)
	if err := j.Sync(seq); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	counts := func(live []Message) string {
		var out []string
		for _, m := range live {
			out = append(out, fmt.Sprintf("%d:%d", m.ID, m.Deliveries))
		}
		return fmt.Sprint(out)
	}
	j2, live, _ := openT(t, path, Options{})
	if got := counts(live); got != "[1:2 2:0]" {
		t.Fatalf("after replay id:deliveries %s, want [1:2 2:0]", got)
	}
	if err := j2.Rewrite(live); err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	if _, live, _ = openT(t, path, Options{}); counts(live) != "[1:2 2:0]" {
		t.Fatalf("after compaction id:deliveries %s, want [1:2 2:0]", counts(live))
	}
}

// TestVersion1JournalLoads holds that a journal written before DELIVERED
// records existed (format version 1) still loads, and is rewritten in the
// current format.
func TestVersion1JournalLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.journal")
	v1 := appendVersionHeader(nil, fileVersionV1)
	v1 = AppendEnqueue(v1, msg(1, "one"))
	v1 = AppendEnqueue(v1, msg(2, "two"))
	v1 = AppendRemove(v1, 1)
	if err := os.WriteFile(path, v1, 0o600); err != nil {
		t.Fatal(err)
	}
	j, live, _ := openT(t, path, Options{})
	if len(live) != 1 || live[0].ID != 2 || string(live[0].Body) != "two" || live[0].Deliveries != 0 {
		t.Fatalf("live %+v", live)
	}
	if err := j.Sync(j.AppendDelivered(2, 1)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[:headerSize], appendHeader(nil)) {
		t.Fatalf("header %q not rewritten as version %d", data[:headerSize], fileVersion)
	}
	if _, live, _ = openT(t, path, Options{}); len(live) != 1 || live[0].Deliveries != 1 {
		t.Fatalf("after reopen %+v", live)
	}
}
