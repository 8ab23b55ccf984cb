// Package channelconfig reads and writes the channel configuration file, the
// podipc.io/v1alpha1 ChannelConfig document that tells a sidecar which
// channels to serve:
//
//	apiVersion: podipc.io/v1alpha1
//	kind: ChannelConfig
//	channels:
//	- name: frames
//	  type: SharedMemory
//	  sharedMemory: {mode: Queue, slotSize: 65536, slotCount: 64}
//	- name: jobs
//	  type: MessageQueue
//	  messageQueue: {maxDepth: 10000, delivery: AtLeastOnce}
//
// The package is also the home of the channel model that document holds
// (Config, Channel, ChannelSettings and the settings of each type), with the
// defaults, bounds and validation rules of every field and the memory each
// channel needs (Footprint). It depends on no Kubernetes API machinery, so
// the sidecar that serves the channels does not link it; api/v1alpha1, whose
// IPCChannel carries the same settings for the API server, converts to this
// model (v1alpha1.ConfigFor) and validates through it.
//
// The injector writes the document (Marshal of v1alpha1.ConfigFor) into a pod
// annotation that a downward-API volume projects into the sidecar; outside
// Kubernetes it is written by hand. Parse reads it strictly, YAML or JSON: an
// unknown or duplicated field is an error that names it; omitted fields take
// the same defaults as in an IPCChannel, and the result is held to the same
// rules as the CRD's schema, plus those that span channels (unique names,
// dead-letter queues that exist). See docs/ipcchannel.md.
package channelconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxSize is the largest configuration file Parse and Load accept. It is four
// times a pod's whole annotation budget (256 KiB), so no real file comes near.
const MaxSize = 1 << 20

// ErrInvalid is matched (errors.Is) by every error that says the document
// itself is wrong, as opposed to an error reading it. A sidecar that gets one
// keeps serving its previous configuration.
var ErrInvalid = errors.New("invalid channel configuration")

// InvalidError lists everything wrong with a document. Each entry's field
// path names the channel and the field: channels[jobs].messageQueue.maxDepth.
type InvalidError struct {
	Errs field.ErrorList
}

func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return ErrInvalid.Error() + ": " + strings.Join(msgs, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read channel configuration: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read channel configuration %s: %w", path, err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// FormatVersion is the version of the document's format that this package
// reads and writes (docs/upgrades.md). A document says its version in a
// top-level formatVersion field, absent for version 1: writers put it in
// only when a document needs a newer format, so that the sidecars of an
// older version, which know no such field, read every document they can.
const FormatVersion = 1

// Parse decodes a ChannelConfig from YAML or JSON, applies the defaults and
// validates it. Every error it returns matches ErrInvalid; a *InvalidError
// carries the list of problems when the document decoded. It ignores the
// unknown fields of a document of a newer format version (see ParseDocument).
func Parse(data []byte) (*Config, error) {
	cfg, _, err := ParseDocument(data)
	return cfg, err
}

// ParseDocument is Parse, and also returns what it ignored. A document of
// FormatVersion or older is read strictly: an unknown field is an error
// (most often a typo). One of a newer format, written by a newer injector
// or controller for a pod whose sidecar is older, is read leniently: its
// unknown fields are ignored, and named in the returned list, so that the
// sidecar goes on serving what it knows and says what it left out.
func ParseDocument(data []byte) (*Config, []string, error) {
	if len(data) > MaxSize {
		return nil, nil, fmt.Errorf("%w: the document is larger than %d bytes", ErrInvalid, MaxSize)
	}
	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// Defaults go in where a key is absent or null, before decoding, as the API
	// server does: an explicit zero stays zero and is then rejected, rather than
	// silently becoming the default.
	var doc any
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(jsonData, &doc); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := checkHeader(doc); err != nil {
		return nil, nil, err
	}
	version, err := formatVersion(doc.(map[string]any))
	if err != nil {
		return nil, nil, err
	}
	if errs := prepareDocument(doc.(map[string]any)); len(errs) > 0 {
		return nil, nil, &InvalidError{Errs: errs}
	}
	if jsonData, err = json.Marshal(doc); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var cfg Config
	strictErrs, err := sigsjson.UnmarshalStrict(jsonData, &cfg, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var errs field.ErrorList
	var ignored []string
	for _, e := range strictErrs {
		fe := strictError(&cfg, e)
		if version > FormatVersion && fe.Detail == "unknown field" {
			ignored = append(ignored, fe.Field)
			continue
		}
		errs = append(errs, fe)
	}
	if len(errs) > 0 {
		return nil, nil, &InvalidError{Errs: errs}
	}
	if errs := ValidateConfig(&cfg); len(errs) > 0 {
		return nil, nil, &InvalidError{Errs: errs}
	}
	return &cfg, ignored, nil
}

// checkHeader rejects a document that is not an object with the apiVersion
// and kind of a ChannelConfig, before anything else is said about it.
func checkHeader(doc any) error {
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: the document must be an object with apiVersion %s and kind %s",
			ErrInvalid, APIVersion, Kind)
	}
	var errs field.ErrorList
	if v, _ := obj["apiVersion"].(string); v != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), obj["apiVersion"], []string{APIVersion}))
	}
	if k, _ := obj["kind"].(string); k != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), obj["kind"], []string{Kind}))
	}
	if len(errs) > 0 {
		return &InvalidError{Errs: errs}
	}
	return nil
}

// formatVersion takes the formatVersion field out of doc and returns it (1
// if absent).
func formatVersion(doc map[string]any) (int, error) {
	v, ok := doc["formatVersion"]
	if !ok {
		return 1, nil
	}
	delete(doc, "formatVersion")
	n, ok := v.(int64)
	if !ok || n < 1 || n > 1<<20 {
		return 0, &InvalidError{Errs: field.ErrorList{field.Invalid(field.NewPath("formatVersion"), v, "must be a positive integer")}}
	}
	return int(n), nil
}

// strictError turns an error of strict decoding, `json: unknown field
// "channels[0].sharedMemory.slotsize"` or `json: duplicate field "..."`, into
// a field error whose path names the channel when it can:
// channels[frames].sharedMemory.slotsize.
func strictError(cfg *Config, err error) *field.Error {
	msg := strings.TrimPrefix(err.Error(), "json: ")
	for _, kind := range []string{"unknown field", "duplicate field"} {
		quoted, ok := strings.CutPrefix(msg, kind+" ")
		if !ok {
			continue
		}
		path, perr := strconv.Unquote(quoted)
		if perr != nil {
			break
		}
		if m := channelIndex.FindStringSubmatch(path); m != nil {
			if i, aerr := strconv.Atoi(m[1]); aerr == nil && i < len(cfg.Channels) {
				path = ChannelPath(cfg, i).String() + path[len(m[0]):]
			}
		}
		return field.Forbidden(field.NewPath(path), kind)
	}
	return field.Forbidden(field.NewPath("<document>"), msg)
}

// channelIndex matches the start of a path into the i-th channel.
var channelIndex = regexp.MustCompile(`^channels\[([0-9]+)\]`)

// prepareDocument works on the decoded JSON document before it is decoded
// into the Go types. It fills in the default of every field of a settings
// block that is absent or null, the defaults of the Default methods read
// back through JSON. And it checks the durations, whose decoding errors would
// not say which field they are about.
func prepareDocument(doc map[string]any) field.ErrorList {
	channels, _ := doc["channels"].([]any)
	if len(channels) == 0 {
		return nil
	}
	shm := &SharedMemorySettings{}
	shm.Default()
	mq := &MessageQueueSettings{}
	mq.Default()
	defaults := map[string]map[string]any{"sharedMemory": asJSONObject(shm), "messageQueue": asJSONObject(mq)}

	// Paths name channels as ValidateConfig does, so build the names.
	named := &Config{Channels: make([]Channel, len(channels))}
	for i, ch := range channels {
		ch, _ := ch.(map[string]any)
		named.Channels[i].Name, _ = ch["name"].(string)
	}
	var errs field.ErrorList
	for i, ch := range channels {
		ch, _ := ch.(map[string]any)
		for block, values := range defaults {
			settings, ok := ch[block].(map[string]any)
			if !ok {
				continue
			}
			for k, v := range values {
				if settings[k] == nil {
					settings[k] = v
				}
			}
		}
		settings, _ := ch["messageQueue"].(map[string]any)
		for _, k := range []string{"ackTimeout", "defaultTTL"} {
			if d, ok := settings[k].(string); ok {
				if _, err := time.ParseDuration(d); err != nil {
					path := ChannelPath(named, i).Child("messageQueue", k)
					errs = append(errs, field.Invalid(path, d, "must be a duration such as 500ms, 30s, 1m30s or 2h"))
				}
			}
		}
	}
	return errs
}

// asJSONObject is v as the object encoding/json makes of it.
func asJSONObject(v any) map[string]any {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("channelconfig: encode defaults: %v", err)) // plain structs always encode
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		panic(fmt.Sprintf("channelconfig: decode defaults: %v", err))
	}
	return obj
}

// Marshal encodes cfg as YAML with its apiVersion and kind set, every
// default written out, and the channels in the order given.
func Marshal(cfg *Config) ([]byte, error) {
	out := cfg.DeepCopy()
	out.APIVersion, out.Kind = APIVersion, Kind
	out.Default()
	data, err := yaml.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode channel configuration: %w", err)
	}
	return data, nil
}
