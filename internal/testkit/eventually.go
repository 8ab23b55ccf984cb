package testkit

import (
	"errors"
	"testing"
	"time"
)

// Eventually calls check until it returns nil, failing the test with what
// (the condition awaited), within and check's last error if it still fails
// once within has passed.
// It polls often at first and less as time goes on (from 1ms, doubling, to
// at most a hundredth of within, between 1ms and 1s), so a condition that
// takes d to hold is seen within about 2d.
func Eventually(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	pause, longest := time.Millisecond, min(max(within/100, time.Millisecond), time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
			return
		}
		time.Sleep(pause) // a polling interval, not synchronization
		pause = min(2*pause, longest)
	}
}

// EventuallyTrue is Eventually for a condition with no error to report.
func EventuallyTrue(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, within, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// errNotYet is what EventuallyTrue's condition reports until it holds.
var errNotYet = errors.New("the condition is still false")
