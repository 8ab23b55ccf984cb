package reconcile

import (
	"strings"
	"testing"
	"time"
)

// Stuck fires for a pass (or a pass waiting for another) that has run
// past the limit, and not once it has ended.
func TestStuck(t *testing.T) {
	var r Reconciler
	if err := r.Stuck(0); err != nil {
		t.Fatalf("idle: %v", err)
	}
	end := r.pass()
	if err := r.Stuck(time.Hour); err != nil {
		t.Fatalf("a pass just started: %v", err)
	}
	r.passStarted.Store(time.Now().Add(-2 * time.Minute).UnixNano()) // as if it started long ago
	if err := r.Stuck(time.Minute); err == nil || !strings.Contains(err.Error(), "running for 2m0s") {
		t.Fatalf("a pass two minutes long: %v", err)
	}
	end() // a pass's end does not clear a pass recorded after its start
	if err := r.Stuck(time.Minute); err == nil {
		t.Fatal("an older pass's end cleared a newer one")
	}
	r.pass()()
	if err := r.Stuck(0); err != nil {
		t.Fatalf("after a pass ended: %v", err)
	}
}
