package channelconfig_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/podipc/podipc/pkg/channelconfig"
)

const header = "apiVersion: podipc.io/v1alpha1\nkind: ChannelConfig\n"

func TestParseExample(t *testing.T) {
	cfg, err := channelconfig.Load("../../examples/channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(cfg.Channels))
	for i, c := range cfg.Channels {
		names[i] = c.Name
	}
	want := []string{"frames", "telemetry", "events", "detections", "detections-dead", "stats"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("channels %v, want %v", names, want)
	}
	events := cfg.Channels[2].SharedMemory
	if *events != (channelconfig.SharedMemorySettings{Mode: "Queue", SlotSize: 4096, SlotCount: 1024, Overflow: "Block"}) {
		t.Errorf("events not defaulted: %+v", *events)
	}
	stats := cfg.Channels[5].MessageQueue
	if stats.AckTimeout.Duration != 30*time.Second || *stats.MaxRedeliveries != 5 || stats.Persistence != "None" || stats.DefaultTTL.Duration != time.Minute {
		t.Errorf("stats defaulted wrong: %+v", *stats)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want *channelconfig.Config // checked when not nil
	}{{
		name: "the brief's example, YAML",
		doc: header + `channels:
- name: frames
  type: SharedMemory
  sharedMemory: {mode: Queue, slotSize: 65536, slotCount: 64}
- name: jobs
  type: MessageQueue
  messageQueue: {maxDepth: 10000, delivery: AtLeastOnce}
`,
		want: config(
			channelconfig.Channel{Name: "frames", ChannelSettings: channelconfig.ChannelSettings{Type: "SharedMemory",
				SharedMemory: &channelconfig.SharedMemorySettings{Mode: "Queue", SlotSize: 65536, SlotCount: 64, Overflow: "Block"}}},
			channelconfig.Channel{Name: "jobs", ChannelSettings: channelconfig.ChannelSettings{Type: "MessageQueue",
				MessageQueue: defaultQueue()}},
		),
	}, {
		name: "JSON",
		doc:  `{"apiVersion":"podipc.io/v1alpha1","kind":"ChannelConfig","channels":[{"name":"jobs","type":"MessageQueue","messageQueue":{}}]}`,
		want: config(channelconfig.Channel{Name: "jobs", ChannelSettings: channelconfig.ChannelSettings{Type: "MessageQueue", MessageQueue: defaultQueue()}}),
	}, {
		name: "no channels",
		doc:  header + "channels: []\n",
		want: &channelconfig.Config{APIVersion: "podipc.io/v1alpha1", Kind: "ChannelConfig", Channels: []channelconfig.Channel{}},
	}, {
		name: "null fields take their default, explicit zero redeliveries stays",
		doc: header + `channels:
- {name: q, type: MessageQueue, messageQueue: {maxDepth: null, maxRedeliveries: 0, ackTimeout: 2s}}
`,
		want: config(channelconfig.Channel{Name: "q", ChannelSettings: channelconfig.ChannelSettings{Type: "MessageQueue",
			MessageQueue: func() *channelconfig.MessageQueueSettings {
				q := defaultQueue()
				q.MaxRedeliveries = ptr.To[int32](0)
				q.AckTimeout = channelconfig.Duration{Duration: 2 * time.Second}
				return q
			}()}}),
	}, {
		name: "dead-letter chain without a loop",
		doc: header + `channels:
- {name: a, type: MessageQueue, messageQueue: {deadLetterQueue: b}}
- {name: b, type: MessageQueue, messageQueue: {deadLetterQueue: c}}
- {name: c, type: MessageQueue, messageQueue: {}}
`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := channelconfig.Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !reflect.DeepEqual(cfg, tc.want) {
				t.Errorf("got  %+v\nwant %+v", cfg, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		// want are substrings of the error; the first names the channel
		// and the field.
		want []string
		// structured: the error is a *InvalidError (the document decoded).
		structured bool
	}{{
		name:       "unknown field, named with its channel",
		doc:        header + "channels:\n- {name: frames, type: SharedMemory, sharedMemory: {slotsize: 64}}\n",
		want:       []string{"channels[frames].sharedMemory.slotsize", "unknown field"},
		structured: true,
	}, {
		name:       "unknown top-level field",
		doc:        header + "channel: []\n",
		want:       []string{"channel: Forbidden: unknown field"},
		structured: true,
	}, {
		name: "field given twice in JSON",
		doc:  `{"apiVersion":"podipc.io/v1alpha1","kind":"ChannelConfig","channels":[{"name":"a","name":"b","type":"SharedMemory","sharedMemory":{}}]}`,
		want: []string{`line 1: key "name" already set`},
	}, {
		name: "key given twice in YAML",
		doc:  header + "channels:\n- name: a\n  name: b\n",
		want: []string{`"name" already set`},
	}, {
		name: "not YAML",
		doc:  "channels: [",
		want: []string{"yaml"},
	}, {
		name: "not an object",
		doc:  "- a\n- b\n",
		want: []string{"must be an object with apiVersion podipc.io/v1alpha1 and kind ChannelConfig"},
	}, {
		name:       "wrong apiVersion and no kind",
		doc:        "apiVersion: podipc.io/v2\nchannels: []\n",
		want:       []string{`apiVersion: Unsupported value: "podipc.io/v2"`, "kind: Unsupported value"},
		structured: true,
	}, {
		name:       "explicit zero is not replaced by the default",
		doc:        header + "channels:\n- {name: frames, type: SharedMemory, sharedMemory: {slotSize: 0}}\n",
		want:       []string{"channels[frames].sharedMemory.slotSize: Invalid value: 0: must be between 64 and 16777216"},
		structured: true,
	}, {
		name:       "slot count not a power of two",
		doc:        header + "channels:\n- {name: frames, type: SharedMemory, sharedMemory: {slotCount: 100}}\n",
		want:       []string{"channels[frames].sharedMemory.slotCount", channelconfig.MsgSlotCountPowerOfTwo},
		structured: true,
	}, {
		name:       "settings block of the other type",
		doc:        header + "channels:\n- {name: jobs, type: MessageQueue, sharedMemory: {}}\n",
		want:       []string{"channels[jobs].messageQueue: Required value: " + channelconfig.MsgMessageQueueRequired, "channels[jobs].sharedMemory: Forbidden"},
		structured: true,
	}, {
		name:       "name that is no DNS label",
		doc:        header + "channels:\n- {name: My_Frames, type: SharedMemory, sharedMemory: {}}\n",
		want:       []string{`channels[0].name: Invalid value: "My_Frames"`},
		structured: true,
	}, {
		name:       "missing name",
		doc:        header + "channels:\n- {type: SharedMemory, sharedMemory: {}}\n",
		want:       []string{"channels[0].name: Required value"},
		structured: true,
	}, {
		name:       "duplicate names",
		doc:        header + "channels:\n- {name: a, type: SharedMemory, sharedMemory: {}}\n- {name: a, type: MessageQueue, messageQueue: {}}\n",
		want:       []string{`channels[1].name: Duplicate value: "a"`},
		structured: true,
	}, {
		name:       "duration that is no duration",
		doc:        header + "channels:\n- {name: jobs, type: MessageQueue, messageQueue: {ackTimeout: 5 minutes}}\n",
		want:       []string{`channels[jobs].messageQueue.ackTimeout: Invalid value: "5 minutes"`},
		structured: true,
	}, {
		name:       "dead-letter queue that is not in the document",
		doc:        header + "channels:\n- {name: jobs, type: MessageQueue, messageQueue: {deadLetterQueue: nowhere}}\n",
		want:       []string{`channels[jobs].messageQueue.deadLetterQueue: Not found: "nowhere"`},
		structured: true,
	}, {
		name: "dead-letter queue that is a shared-memory channel",
		doc: header + `channels:
- {name: jobs, type: MessageQueue, messageQueue: {deadLetterQueue: frames}}
- {name: frames, type: SharedMemory, sharedMemory: {}}
`,
		want:       []string{"channels[jobs].messageQueue.deadLetterQueue", `"frames" is a SharedMemory channel`},
		structured: true,
	}, {
		name: "dead-letter loop, reported once",
		doc: header + `channels:
- {name: x, type: MessageQueue, messageQueue: {}}
- {name: a, type: MessageQueue, messageQueue: {deadLetterQueue: b}}
- {name: b, type: MessageQueue, messageQueue: {deadLetterQueue: c}}
- {name: c, type: MessageQueue, messageQueue: {deadLetterQueue: a}}
`,
		want:       []string{"channels[a].messageQueue.deadLetterQueue", "must not loop: a → b → c → a"},
		structured: true,
	}, {
		name:       "dead-letter queue into itself",
		doc:        header + "channels:\n- {name: jobs, type: MessageQueue, messageQueue: {deadLetterQueue: jobs}}\n",
		want:       []string{"channels[jobs].messageQueue.deadLetterQueue", channelconfig.MsgDeadLetterQueueSelf},
		structured: true,
	}, {
		name: "document above the size limit",
		doc:  header + "# " + strings.Repeat("x", channelconfig.MaxSize),
		want: []string{"larger than"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := channelconfig.Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			if !errors.Is(err, channelconfig.ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			var invalid *channelconfig.InvalidError
			if got := errors.As(err, &invalid); got != tc.structured {
				t.Errorf("errors.As(*InvalidError) = %v, want %v", got, tc.structured)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.name == "dead-letter loop, reported once" && strings.Count(err.Error(), "must not loop") != 1 {
				t.Errorf("loop reported %d times: %v", strings.Count(err.Error(), "must not loop"), err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := channelconfig.Load(filepath.Join(dir, "missing.yaml")); err == nil || errors.Is(err, channelconfig.ErrInvalid) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want a not-exist error that is not ErrInvalid", err)
	}
	path := filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(path, []byte(header+"channels:\n- {name: a, type: Pipe}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := channelconfig.Load(path); !errors.Is(err, channelconfig.ErrInvalid) || !strings.Contains(err.Error(), path) {
		t.Errorf("invalid file: %v, want ErrInvalid naming the file", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	cfg, err := channelconfig.Load("../../examples/channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := channelconfig.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := channelconfig.Parse(data)
	if err != nil {
		t.Fatalf("parse of Marshal output: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("round trip changed the config:\n%s", data)
	}
}

func config(channels ...channelconfig.Channel) *channelconfig.Config {
	return &channelconfig.Config{APIVersion: "podipc.io/v1alpha1", Kind: "ChannelConfig", Channels: channels}
}

func defaultQueue() *channelconfig.MessageQueueSettings {
	q := &channelconfig.MessageQueueSettings{}
	q.Default()
	return q
}
