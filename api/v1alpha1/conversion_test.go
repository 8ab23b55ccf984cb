package v1alpha1_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/channelconfig"
)

// The API's settings types and the channel model are twins: the same
// fields under the same JSON names, and a conversion that loses nothing.

func TestSettingsHaveTheModelsFields(t *testing.T) {
	for _, pair := range [][2]any{
		{v1alpha1.ChannelSettings{}, channelconfig.ChannelSettings{}},
		{v1alpha1.SharedMemorySettings{}, channelconfig.SharedMemorySettings{}},
		{v1alpha1.MessageQueueSettings{}, channelconfig.MessageQueueSettings{}},
	} {
		api, model := jsonFields(reflect.TypeOf(pair[0])), jsonFields(reflect.TypeOf(pair[1]))
		if !slices.Equal(api, model) {
			t.Errorf("%T has fields %v, its model %T has %v: add the field to both and to conversion.go", pair[0], api, pair[1], model)
		}
	}
}

// jsonFields are the JSON names of t's fields with their options, in order.
func jsonFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		names = append(names, t.Field(i).Name+" "+t.Field(i).Tag.Get("json"))
	}
	return names
}

func TestConversionRoundTrips(t *testing.T) {
	for _, s := range []v1alpha1.ChannelSettings{
		{Type: v1alpha1.ChannelTypeSharedMemory, SharedMemory: &v1alpha1.SharedMemorySettings{
			Mode: "Broadcast", SlotSize: 128, SlotCount: 8, Overflow: "Overwrite"}},
		{Type: v1alpha1.ChannelTypeMessageQueue, MessageQueue: &v1alpha1.MessageQueueSettings{
			MaxDepth: 3, MaxBytes: 8192, MaxMessageSize: 10, Delivery: "AtLeastOnce",
			AckTimeout: metav1.Duration{Duration: time.Second}, MaxRedeliveries: ptr.To[int32](0),
			DeadLetterQueue: "dlq", Overflow: "Reject", Persistence: "Volume", DefaultTTL: metav1.Duration{Duration: time.Hour}}},
		{Type: "Bogus"},
	} {
		// Every field of the block is set, so a field the conversion drops
		// shows as a difference.
		for _, block := range []any{s.SharedMemory, s.MessageQueue} {
			if v := reflect.ValueOf(block); !v.IsNil() {
				for i := range v.Elem().NumField() {
					if v.Elem().Field(i).IsZero() && v.Elem().Type().Field(i).Name != "MaxRedeliveries" {
						t.Fatalf("%T.%s is not set in the test case", block, v.Elem().Type().Field(i).Name)
					}
				}
			}
		}
		m := s.Model()
		back := v1alpha1.FromModel(m)
		if !reflect.DeepEqual(back, s) {
			t.Errorf("round trip changed the settings:\n got %+v\nwant %+v", back, s)
		}
		if s.MessageQueue != nil && m.MessageQueue.MaxRedeliveries == s.MessageQueue.MaxRedeliveries {
			t.Error("the model shares the API object's MaxRedeliveries")
		}
	}
}

func TestConfigFor(t *testing.T) {
	items := []v1alpha1.IPCChannel{
		ipcChannel("jobs", v1alpha1.ChannelSettings{Type: "MessageQueue", MessageQueue: &v1alpha1.MessageQueueSettings{MaxDepth: 7}}),
		ipcChannel("frames", v1alpha1.ChannelSettings{Type: "SharedMemory", SharedMemory: &v1alpha1.SharedMemorySettings{SlotCount: 8}}),
	}
	cfg := v1alpha1.ConfigFor(items)
	if cfg.Channels[0].Name != "frames" || cfg.Channels[1].Name != "jobs" {
		t.Fatalf("not sorted by name: %+v", cfg.Channels)
	}
	if cfg.Channels[0].SharedMemory.SlotSize != channelconfig.DefaultSlotSize || cfg.Channels[1].MessageQueue.MaxDepth != 7 {
		t.Errorf("not defaulted, or settings lost: %+v", cfg.Channels)
	}
	if items[0].Spec.MessageQueue.Delivery != "" {
		t.Error("ConfigFor defaulted its input")
	}
	first, err := channelconfig.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reversed := v1alpha1.ConfigFor([]v1alpha1.IPCChannel{items[1], items[0]})
	second, err := channelconfig.Marshal(reversed)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Errorf("the order of the IPCChannels changed the document:\n%s\n%s", first, second)
	}
	if _, err := channelconfig.Parse(first); err != nil {
		t.Errorf("the document does not parse: %v\n%s", err, first)
	}
	if !strings.HasPrefix(string(first), "apiVersion: podipc.io/v1alpha1\n") {
		t.Errorf("the document does not start with its apiVersion:\n%s", first)
	}
}

func ipcChannel(name string, s v1alpha1.ChannelSettings) v1alpha1.IPCChannel {
	c := v1alpha1.IPCChannel{Spec: v1alpha1.IPCChannelSpec{ChannelSettings: s}}
	c.Name = name
	return c
}
