package mqjournal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeRecord checks that arbitrary bytes never panic the record decoder,
// that failures are typed, and that a decoded record re-encodes identically.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(AppendEnqueue(nil, Message{ID: 1, Priority: 2, EnqueuedAt: 3, ExpiresAt: 4, Body: []byte("body")}))
	f.Add(AppendRemove(nil, 7))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, n, err := DecodeRecord(data, 4096)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		var re []byte
		if r.Type == RecordEnqueue {
			re = AppendEnqueue(nil, r.Message)
		} else {
			re = AppendRemove(nil, r.Message.ID)
		}
		if !bytes.Equal(re, data[:n]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// FuzzReplay opens journals made of a valid header and arbitrary bytes: Open
// must succeed, and the file it leaves must replay to the same messages.
func FuzzReplay(f *testing.F) {
	f.Add(AppendRemove(AppendEnqueue(nil, Message{ID: 1, Body: []byte("a")}), 1))
	f.Add(AppendEnqueue(nil, Message{ID: 2, Body: []byte("b")})[:10])
	f.Fuzz(func(t *testing.T, tail []byte) {
		path := filepath.Join(t.TempDir(), "q.journal")
		if err := os.WriteFile(path, append(appendHeader(nil), tail...), 0o600); err != nil {
			t.Fatal(err)
		}
		j, live, _, err := Open(path, Options{MaxRecord: 4096})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		j.Close()
		j, again, rec, err := Open(path, Options{MaxRecord: 4096})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		j.Close()
		if rec.TornBytes != 0 || len(again) != len(live) {
			t.Fatalf("reopen found torn %d, %d messages, want %d", rec.TornBytes, len(again), len(live))
		}
		for i := range live {
			if live[i].ID != again[i].ID || !bytes.Equal(live[i].Body, again[i].Body) {
				t.Fatalf("message %d differs after reopen", i)
			}
		}
	})
}
