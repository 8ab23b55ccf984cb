package channelconfig_test

import (
	"strings"
	"testing"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/mqconn"
	"github.com/podipc/podipc/internal/mqwire"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/mq"
	"github.com/podipc/podipc/pkg/shm"
)

// The API's defaults and enums are those of the data plane: a channel declared
// with no settings behaves as one created with pkg/shm or pkg/mq and zero
// options, and every API enum value names a data-plane value. (The CRD's
// markers are held to the API's constants by crd_test.go.)
func TestDefaultsAreTheDataPlanes(t *testing.T) {
	for _, c := range []struct {
		name     string
		api, got int64
	}{
		{"SharedMemory.slotSize", channelconfig.DefaultSlotSize, shm.DefaultSlotSize},
		{"SharedMemory.slotCount", channelconfig.DefaultSlotCount, shm.DefaultSlotCount},
		{"MessageQueue.maxDepth", channelconfig.DefaultMaxDepth, mqbroker.DefaultMaxDepth},
		{"MessageQueue.maxBytes", channelconfig.DefaultMaxBytes, mqbroker.DefaultMaxBytes},
		{"MessageQueue.maxMessageSize", channelconfig.DefaultMaxMessageSize, mqbroker.DefaultMaxMessageSize},
		{"MessageQueue.ackTimeout", int64(channelconfig.DefaultAckTimeout), int64(mqbroker.DefaultAckTimeout)},
		{"MaxPriority", channelconfig.MaxPriority, mq.MaxPriority},
	} {
		if c.api != c.got {
			t.Errorf("%s: the API's default is %d, the data plane's %d", c.name, c.api, c.got)
		}
	}

	// What an unset queue config defaults to in pkg/mq is what the API's
	// defaulting gives.
	var s channelconfig.MessageQueueSettings
	s.Default()
	q := mqbroker.QueueConfig{Name: "q"}.Defaulted()
	if int64(q.MaxDepth) != int64(s.MaxDepth) || q.MaxBytes != s.MaxBytes || int64(q.MaxMessageSize) != int64(s.MaxMessageSize) ||
		q.AckTimeout != s.AckTimeout.Duration || string(q.Overflow) != string(s.Overflow) {
		t.Errorf("defaulted queue: pkg/mq %+v, API %+v", q, s)
	}
}

// The memory the injector budgets for each broker connection is what a
// connection keeps: its read buffer, its reader's kept scratch buffer and its
// writer's two kept output buffers.
func TestBrokerConnectionBytesAreTheDataPlanes(t *testing.T) {
	kept := int64(mqconn.ReadBufferSize + mqwire.MaxKeptScratch + 2*mqconn.MaxKeptBuffer)
	if channelconfig.BrokerConnectionBytes != kept {
		t.Errorf("BrokerConnectionBytes = %d, a connection keeps up to %d", channelconfig.BrokerConnectionBytes, kept)
	}
	// A frame of the default largest message is read into the kept scratch.
	if need := channelconfig.DefaultMaxMessageSize + mqwire.SendOverhead + mqwire.MaxQueueName; need > mqwire.MaxKeptScratch {
		t.Errorf("a %d-byte message needs a %d-byte frame, more than the kept scratch of %d", channelconfig.DefaultMaxMessageSize, need, mqwire.MaxKeptScratch)
	}
}

func TestEnumsNameDataPlaneValues(t *testing.T) {
	shmOverflow := map[channelconfig.SharedMemoryOverflow]shm.Overflow{
		channelconfig.SharedMemoryOverflowBlock:     shm.OverflowBlock,
		channelconfig.SharedMemoryOverflowFail:      shm.OverflowFail,
		channelconfig.SharedMemoryOverflowOverwrite: shm.OverflowOverwrite,
	}
	for api, dp := range shmOverflow {
		if !strings.EqualFold(string(api), dp.String()) {
			t.Errorf("shared-memory overflow %q names shm %q", api, dp)
		}
	}
	shmMode := map[channelconfig.SharedMemoryMode]shm.Mode{
		channelconfig.SharedMemoryModeQueue:     shm.ModeQueue,
		channelconfig.SharedMemoryModeBroadcast: shm.ModeBroadcast,
	}
	for api, dp := range shmMode {
		if !strings.EqualFold(string(api), dp.String()) {
			t.Errorf("shared-memory mode %q names shm %q", api, dp)
		}
	}
	for _, o := range []channelconfig.MessageQueueOverflow{
		channelconfig.MessageQueueOverflowBlock, channelconfig.MessageQueueOverflowReject, channelconfig.MessageQueueOverflowDropOldest,
	} {
		if err := (mqbroker.QueueConfig{Name: "q", Overflow: mqbroker.Overflow(o)}).Defaulted().Validate(); err != nil {
			t.Errorf("message-queue overflow %q is not a pkg/mq policy: %v", o, err)
		}
	}
}
