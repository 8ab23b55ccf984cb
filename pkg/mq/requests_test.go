package mq

import "testing"

// TestRequestTable: ids are unique among waiting requests, skip 0 and the
// slots of requests still waiting, and survive growth and wrap-around.
func TestRequestTable(t *testing.T) {
	var tbl requestTable
	tbl.last = 1<<32 - 100 // wrap around early
	live := map[uint32]*Confirmation{}
	held := &Confirmation{}
	heldID := tbl.add(held) // a send held by a full queue: never answered here
	live[heldID] = held
	for round := range 20_000 {
		cf := &Confirmation{}
		id := tbl.add(cf)
		if id == 0 || live[id] != nil {
			t.Fatalf("round %d: id %d is 0 or in use", round, id)
		}
		live[id] = cf
		// Answer most requests, in a scrambled order, and keep some
		// waiting so that the table grows.
		if round%3 != 0 {
			for id, want := range live {
				if want == held {
					continue
				}
				if got := tbl.take(id); got != want {
					t.Fatalf("take(%d) = %p, want %p", id, got, want)
				}
				delete(live, id)
				break
			}
		}
		if len(live) > 500 {
			for id, cf := range live {
				if cf != held {
					tbl.remove(cf)
					delete(live, id)
				}
			}
		}
		if tbl.n != len(live) {
			t.Fatalf("round %d: table holds %d, want %d", round, tbl.n, len(live))
		}
	}
	if tbl.take(heldID) != held {
		t.Fatal("the long-held request was lost")
	}
	if tbl.take(heldID) != nil {
		t.Fatal("a request was answered twice")
	}
	if got := len(tbl.drain()); got != len(live)-1 || tbl.n != 0 {
		t.Fatalf("drain returned %d, want %d", got, len(live)-1)
	}
}
