package channelconfig_test

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/podipc/podipc/pkg/channelconfig"
)

// FuzzParse: Parse never panics, and whatever it accepts re-encodes, through
// Marshal (YAML) and through plain JSON, into a document that parses to the
// same value. Run longer with: go test -fuzz FuzzParse ./pkg/channelconfig
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../../examples/channels.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, seed := range []string{
		header + "channels: []\n",
		header + "channels:\n- {name: frames, type: SharedMemory, sharedMemory: {mode: Broadcast, slotSize: 64, slotCount: 2, overflow: Overwrite}}\n",
		header + "channels:\n- {name: q, type: MessageQueue, messageQueue: {maxDepth: null, maxRedeliveries: 0, ackTimeout: 1.5s, defaultTTL: 1h2m}}\n",
		header + "channels:\n- {name: a, type: MessageQueue, messageQueue: {deadLetterQueue: b}}\n- {name: b, type: MessageQueue, messageQueue: {}}\n",
		`{"apiVersion":"podipc.io/v1alpha1","kind":"ChannelConfig","channels":[{"name":"x","type":"SharedMemory","sharedMemory":{"slotSize":1e3,"slotCount":1024}}]}`,
		header + "channels:\n- {name: frames, type: SharedMemory, sharedMemory: {slotsize: 64}}\n",
		header + "channels:\n- &a {name: x, type: SharedMemory, sharedMemory: {}}\n- *a\n",
		"apiVersion: podipc.io/v1alpha1\nkind: ChannelConfig\nchannels: !!map {}\n",
		"",
		"null",
		"[]",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := channelconfig.Parse(data)
		if err != nil {
			return
		}
		viaYAML, err := channelconfig.Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal of an accepted config: %v", err)
		}
		viaJSON, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("json.Marshal of an accepted config: %v", err)
		}
		for name, doc := range map[string][]byte{"Marshal": viaYAML, "json.Marshal": viaJSON} {
			again, err := channelconfig.Parse(doc)
			if err != nil {
				t.Fatalf("%s output does not parse: %v\ninput: %q\noutput:\n%s", name, err, data, doc)
			}
			if !reflect.DeepEqual(cfg, again) {
				t.Fatalf("%s round trip changed the value:\n%+v\n%+v\noutput:\n%s", name, cfg, again, doc)
			}
		}
	})
}
