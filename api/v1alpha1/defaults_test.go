package v1alpha1_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podipc/podipc/api/v1alpha1"
)

func TestDefaultKeepsWhatIsSet(t *testing.T) {
	shm := v1alpha1.SharedMemorySettings{Mode: "Broadcast", SlotSize: 128, SlotCount: 8, Overflow: "Overwrite"}
	got := shm
	got.Default()
	if got != shm {
		t.Errorf("Default changed set fields: %+v -> %+v", shm, got)
	}

	mq := v1alpha1.MessageQueueSettings{
		MaxDepth: 3, MaxBytes: 8192, MaxMessageSize: 10, Delivery: "AtMostOnce",
		AckTimeout: metav1.Duration{Duration: time.Second}, MaxRedeliveries: ptr.To[int32](0),
		DeadLetterQueue: "dlq", Overflow: "Reject", Persistence: "Volume", DefaultTTL: metav1.Duration{Duration: time.Hour},
	}
	gotMQ := *mq.DeepCopy()
	gotMQ.Default()
	if *gotMQ.MaxRedeliveries != 0 || gotMQ.MaxDepth != 3 || gotMQ.AckTimeout.Duration != time.Second || gotMQ.Persistence != "Volume" {
		t.Errorf("Default changed set fields: %+v", gotMQ)
	}
}

func TestDefaultLeavesMissingBlocksMissing(t *testing.T) {
	s := v1alpha1.ChannelSettings{Type: v1alpha1.ChannelTypeSharedMemory}
	s.Default()
	if s.SharedMemory != nil || s.MessageQueue != nil {
		t.Errorf("Default created a settings block: %+v", s)
	}
}
