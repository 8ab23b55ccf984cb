package injection

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/channelconfig"
)

// Config is a pod's channel configuration, built from the IPCChannels that
// apply to it.
type Config struct {
	// Document is the channel configuration, defaulted, its channels sorted by name.
	Document *channelconfig.Config
	// JSON is Document as the sidecar reads it (channelconfig.Parse): the
	// value of podipc.io/config.
	JSON []byte
	// Rejected are the channels left out because the sidecar would refuse
	// them, sorted by name: a spec that breaks a rule (an object stored before
	// the rule existed) or a deadLetterQueue that names no MessageQueue channel
	// of the pod.
	Rejected []RejectedChannel
}

// RejectedChannel is a channel left out of a pod's configuration, and why.
type RejectedChannel struct {
	// Name is the IPCChannel's.
	Name string `json:"name"`
	// Reason says why it was left out.
	Reason string `json:"reason"`
}

// Hash identifies the configuration: the first 16 hex digits of the
// SHA-256 of its JSON.
func (c *Config) Hash() string {
	sum := sha256.Sum256(c.JSON)
	return hex.EncodeToString(sum[:8])
}

// Names are the names of the configuration's channels, sorted.
func (c *Config) Names() []string {
	names := make([]string, len(c.Document.Channels))
	for i := range c.Document.Channels {
		names[i] = c.Document.Channels[i].Name
	}
	return names
}

// BuildConfig makes the channel configuration of a pod from the IPCChannels
// selected for it. The result always passes the sidecar's validation: a
// channel that would make the whole document invalid is left out and listed
// in Rejected instead, so one bad IPCChannel cannot take down the others.
func BuildConfig(channels []v1alpha1.IPCChannel) (Config, error) {
	doc := v1alpha1.ConfigFor(channels)
	var rejected []RejectedChannel
	reject := func(errs field.ErrorList) {
		bad := map[string][]string{}
		for _, e := range errs {
			for _, ch := range doc.Channels {
				if strings.HasPrefix(e.Field, "channels["+ch.Name+"]") {
					bad[ch.Name] = append(bad[ch.Name], e.Error())
				}
			}
		}
		doc.Channels = slices.DeleteFunc(doc.Channels, func(ch channelconfig.Channel) bool {
			if reasons, ok := bad[ch.Name]; ok {
				rejected = append(rejected, RejectedChannel{Name: ch.Name, Reason: strings.Join(reasons, "; ")})
				return true
			}
			return false
		})
	}
	pathOf := func(i int) *field.Path { return field.NewPath("channels").Key(doc.Channels[i].Name) }

	var invalid field.ErrorList
	for i := range doc.Channels {
		invalid = append(invalid, channelconfig.ValidateChannel(&doc.Channels[i], pathOf(i))...)
	}
	reject(invalid)
	// Dropping a dead-letter queue can strand the channels that named it, so
	// repeat until the set holds together; each round removes at least one.
	for {
		errs := channelconfig.ValidateDeadLetterQueues(doc.Channels, pathOf)
		if len(errs) == 0 {
			break
		}
		before := len(doc.Channels)
		reject(errs)
		if len(doc.Channels) == before {
			return Config{}, fmt.Errorf("build channel configuration: unattributed errors: %v", errs.ToAggregate())
		}
	}
	slices.SortFunc(rejected, func(a, b RejectedChannel) int { return strings.Compare(a.Name, b.Name) })

	if errs := channelconfig.ValidateConfig(doc); len(errs) > 0 {
		return Config{}, fmt.Errorf("build channel configuration: %w", errs.ToAggregate())
	}
	// JSON, which is YAML too and what channelconfig.Parse reads either way:
	// it encodes in a fraction of the time of YAML, on every admission.
	data, err := json.Marshal(doc)
	if err != nil {
		return Config{}, fmt.Errorf("build channel configuration: %w", err)
	}
	return Config{Document: doc, JSON: data, Rejected: rejected}, nil
}

// FormatBytes writes n as a Kubernetes quantity with the largest exact
// binary suffix: 65536 is "64Ki". The injector's messages, in refusals and in
// Status.Rejected, write sizes so.
func FormatBytes(n int64) string { return resource.NewQuantity(n, resource.BinarySI).String() }
