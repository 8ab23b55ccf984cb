package mq

import (
	"errors"
	"testing"
	"time"
)

func TestSendOptions(t *testing.T) {
	so, err := newSendOptions([]SendOption{WithPriority(MaxPriority), WithTTL(1500 * time.Millisecond)})
	if err != nil || so.priority != MaxPriority || so.ttl != 1500*time.Millisecond {
		t.Errorf("got %+v, %v; want priority %d, ttl 1.5s", so, err, MaxPriority)
	}
	if so, err := newSendOptions(nil); err != nil || so != (sendOptions{}) {
		t.Errorf("no options: got %+v, %v; want the zero options", so, err)
	}
	for _, bad := range []SendOption{WithPriority(MaxPriority + 1), WithTTL(-time.Second), WithTTL(50 * 24 * time.Hour)} {
		if _, err := newSendOptions([]SendOption{bad}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("got %v, want ErrInvalidArgument", err)
		}
	}
}

// Options are functions, as everywhere in pkg/shm and pkg/mq; a send's must
// still cost no allocation on the hot path.
func TestSendOptionsDoNotAllocate(t *testing.T) {
	priority, ttl := uint8(3), time.Second
	var sink sendOptions
	without := testing.AllocsPerRun(1000, func() { sink, _ = newSendOptions(nil) })
	with := testing.AllocsPerRun(1000, func() { sink, _ = sendWith(WithPriority(priority), WithTTL(ttl)) })
	if with > without {
		t.Errorf("a send's options allocate: %v allocations with them, %v without", with, without)
	}
	_ = sink
}

// sendWith passes its options on as SendAsync does.
//
//go:noinline
func sendWith(opts ...SendOption) (sendOptions, error) { return newSendOptions(opts) }
