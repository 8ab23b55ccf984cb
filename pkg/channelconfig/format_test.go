package channelconfig_test

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/channelconfig"
)

const twoChannels = `
channels:
- name: frames
  type: SharedMemory
  sharedMemory: {slotSize: 256, slotCount: 8%s}
- name: jobs
  type: MessageQueue
  messageQueue: {maxDepth: 10%s}
`

// The skew rule of docs/upgrades.md: a document of this format version (or
// without one) is strict, so a typo is an error; a document of a newer
// format, written for an older sidecar by a newer injector or controller, is
// read with its unknown fields ignored and named.
func TestFormatVersions(t *testing.T) {
	withNewFields := header + "formatVersion: 2\n" + strings.Replace(
		strings.Replace(twoChannels, "%s", ", prefault: true", 1), "%s", ", maxInFlightBytes: 1024", 1) +
		"sidecar: {drain: 5s}\n"
	cfg, ignored, err := channelconfig.ParseDocument([]byte(withNewFields))
	if err != nil {
		t.Fatalf("a newer format's document: %v", err)
	}
	want := []string{"channels[frames].sharedMemory.prefault", "channels[jobs].messageQueue.maxInFlightBytes", "sidecar"}
	if slices.Sort(ignored); !slices.Equal(ignored, want) {
		t.Errorf("ignored %q, want %q", ignored, want)
	}
	if len(cfg.Channels) != 2 || cfg.Channels[0].SharedMemory.SlotSize != 256 || cfg.Channels[1].MessageQueue.MaxDepth != 10 {
		t.Errorf("what the sidecar knows was not kept: %+v", cfg.Channels)
	}

	for _, version := range []string{"", "formatVersion: 1\n"} {
		typo := header + version + strings.Replace(strings.Replace(twoChannels, "%s", ", slotcount: 9", 1), "%s", "", 1)
		if _, _, err := channelconfig.ParseDocument([]byte(typo)); !errors.Is(err, channelconfig.ErrInvalid) ||
			!strings.Contains(err.Error(), "channels[frames].sharedMemory.slotcount") {
			t.Errorf("a typo in a document of this format (%q): %v, want an error naming the field", version, err)
		}
	}
	for _, bad := range []string{"0", "-1", "two", "1.5"} {
		doc := header + "formatVersion: " + bad + "\n" + strings.ReplaceAll(twoChannels, "%s", "")
		if _, err := channelconfig.Parse([]byte(doc)); !errors.Is(err, channelconfig.ErrInvalid) || !strings.Contains(err.Error(), "formatVersion") {
			t.Errorf("formatVersion %s: %v", bad, err)
		}
	}
	// Duplicates are errors in every format.
	dup := header + "formatVersion: 2\n" + strings.ReplaceAll(twoChannels, "%s", "") + "channels: []\n"
	if _, err := channelconfig.Parse([]byte(dup)); err == nil {
		t.Error("a duplicated field in a newer format's document was accepted")
	}
}

// TestFormat1Fields holds the document the injector writes for channels
// with every setting at its default to the fields of format version 1,
// which every released sidecar knows (testdata/format1-fields.txt). A field
// added to the API must stay out of such documents (omitempty, or a pointer
// left nil at its default) or the format version must go up: otherwise pods
// running an older sidecar reject the configuration after an upgrade.
func TestFormat1Fields(t *testing.T) {
	var items []v1alpha1.IPCChannel
	for _, settings := range []v1alpha1.ChannelSettings{
		{Type: v1alpha1.ChannelTypeSharedMemory, SharedMemory: &v1alpha1.SharedMemorySettings{}},
		{Type: v1alpha1.ChannelTypeMessageQueue, MessageQueue: &v1alpha1.MessageQueueSettings{}},
	} {
		it := v1alpha1.IPCChannel{Spec: v1alpha1.IPCChannelSpec{ChannelSettings: settings}}
		it.Name = strings.ToLower(string(settings.Type))
		items = append(items, it)
	}
	data, err := json.Marshal(v1alpha1.ConfigFor(items))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	collectFields(doc, "", fields)
	got := slices.Sorted(maps.Keys(fields))
	golden, err := os.ReadFile("testdata/format1-fields.txt")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(golden), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	for _, f := range got {
		if !slices.Contains(want, f) {
			t.Errorf("the injector writes %s, unknown to format version %d sidecars: omit it at its default or raise FormatVersion (docs/upgrades.md)", f, channelconfig.FormatVersion)
		}
	}
	if t.Failed() {
		t.Logf("fields written: %s", strings.Join(got, " "))
	}
}

func collectFields(v any, prefix string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			out[prefix+k] = true
			collectFields(child, prefix+k+".", out)
		}
	case []any:
		for _, child := range v {
			collectFields(child, prefix, out)
		}
	}
}
