package v1alpha1_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/channelconfig"
)

// The Go defaulting and validation mirror the generated schema. These tests
// hold the two together: defaults, bounds, enums and the CEL messages.

func loadCRD(t *testing.T) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	data, err := os.ReadFile("../../config/crd/podipc.io_ipcchannels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != v1alpha1.GroupVersion.Version {
		t.Fatalf("versions %+v, want only %s", crd.Spec.Versions, v1alpha1.GroupVersion.Version)
	}
	return crd
}

func loadSchema(t *testing.T) apiextensionsv1.JSONSchemaProps {
	t.Helper()
	return *loadCRD(t).Spec.Versions[0].Schema.OpenAPIV3Schema
}

func property(t *testing.T, s apiextensionsv1.JSONSchemaProps, path string) apiextensionsv1.JSONSchemaProps {
	t.Helper()
	for _, p := range strings.Split(path, ".") {
		next, ok := s.Properties[p]
		if !ok {
			t.Fatalf("schema has no %s", path)
		}
		s = next
	}
	return s
}

// TestSchemaDefaultsMatchGo compares the default of every field of the
// settings blocks with what Default fills in.
func TestSchemaDefaultsMatchGo(t *testing.T) {
	root := loadSchema(t)
	shm := &v1alpha1.SharedMemorySettings{}
	shm.Default()
	mq := &v1alpha1.MessageQueueSettings{}
	mq.Default()
	for block, defaulted := range map[string]any{"sharedMemory": shm, "messageQueue": mq} {
		data, err := json.Marshal(defaulted)
		if err != nil {
			t.Fatal(err)
		}
		var goDefaults map[string]any
		if err := json.Unmarshal(data, &goDefaults); err != nil {
			t.Fatal(err)
		}
		props := property(t, root, "spec."+block).Properties
		for name, p := range props {
			var schemaDefault any
			if p.Default != nil {
				if err := json.Unmarshal(p.Default.Raw, &schemaDefault); err != nil {
					t.Fatal(err)
				}
			}
			goDefault := goDefaults[name]
			if name == "defaultTTL" && goDefault == nil {
				goDefault = "0s" // the zero duration is its own default and is omitted
			}
			if !reflect.DeepEqual(schemaDefault, goDefault) {
				t.Errorf("%s.%s: schema default %v, Go default %v", block, name, schemaDefault, goDefault)
			}
		}
		for name := range goDefaults {
			if _, ok := props[name]; !ok {
				t.Errorf("%s.%s: Go default for a field the schema lacks", block, name)
			}
		}
	}
}

// TestSchemaBoundsMatchGo compares the bounds in the schema with the Go
// constants the Go validation uses.
func TestSchemaBoundsMatchGo(t *testing.T) {
	root := loadSchema(t)
	for path, want := range map[string][2]float64{
		"spec.sharedMemory.slotSize":        {channelconfig.MinSlotSize, channelconfig.MaxSlotSize},
		"spec.sharedMemory.slotCount":       {channelconfig.MinSlotCount, channelconfig.MaxSlotCount},
		"spec.messageQueue.maxDepth":        {channelconfig.MinMaxDepth, channelconfig.MaxMaxDepth},
		"spec.messageQueue.maxBytes":        {channelconfig.MinMaxBytes, channelconfig.MaxMaxBytes},
		"spec.messageQueue.maxMessageSize":  {channelconfig.MinMaxMessageSize, channelconfig.MaxMaxMessageSize},
		"spec.messageQueue.maxRedeliveries": {channelconfig.UnlimitedRedeliveries, channelconfig.MaxMaxRedeliveries},
		"spec.messageQueue.deadLetterQueue": {0, channelconfig.MaxNameLength},
	} {
		p := property(t, root, path)
		var got [2]float64
		switch {
		case p.Minimum != nil && p.Maximum != nil:
			got = [2]float64{*p.Minimum, *p.Maximum}
		case p.MaxLength != nil:
			got = [2]float64{0, float64(*p.MaxLength)}
		}
		if got != want {
			t.Errorf("%s: schema bounds %v, Go %v", path, got, want)
		}
	}
	for path, want := range map[string][]string{
		"spec.type":                     {string(v1alpha1.ChannelTypeSharedMemory), string(v1alpha1.ChannelTypeMessageQueue)},
		"spec.sharedMemory.mode":        {string(v1alpha1.SharedMemoryModeQueue), string(v1alpha1.SharedMemoryModeBroadcast)},
		"spec.sharedMemory.overflow":    {string(v1alpha1.SharedMemoryOverflowBlock), string(v1alpha1.SharedMemoryOverflowFail), string(v1alpha1.SharedMemoryOverflowOverwrite)},
		"spec.messageQueue.delivery":    {string(v1alpha1.DeliveryAtLeastOnce), string(v1alpha1.DeliveryAtMostOnce)},
		"spec.messageQueue.overflow":    {string(v1alpha1.MessageQueueOverflowBlock), string(v1alpha1.MessageQueueOverflowReject), string(v1alpha1.MessageQueueOverflowDropOldest)},
		"spec.messageQueue.persistence": {string(v1alpha1.PersistenceNone), string(v1alpha1.PersistenceVolume)},
	} {
		var got []string
		for _, e := range property(t, root, path).Enum {
			var v string
			if err := json.Unmarshal(e.Raw, &v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: schema enum %v, Go %v", path, got, want)
		}
	}
}

// TestCELMessagesMatchGo checks that the messages of the CRD's CEL rules
// and the Msg constants the Go validation reports are the same set.
func TestCELMessagesMatchGo(t *testing.T) {
	var inSchema []string
	var walk func(s apiextensionsv1.JSONSchemaProps)
	walk = func(s apiextensionsv1.JSONSchemaProps) {
		for _, r := range s.XValidations {
			inSchema = append(inSchema, r.Message)
		}
		for _, p := range s.Properties {
			walk(p)
		}
		if s.Items != nil && s.Items.Schema != nil {
			walk(*s.Items.Schema)
		}
	}
	walk(loadSchema(t))

	inGo := msgConstants(t)
	slices.Sort(inSchema)
	slices.Sort(inGo)
	if !slices.Equal(inSchema, inGo) {
		for _, m := range inSchema {
			if !slices.Contains(inGo, m) {
				t.Errorf("CEL message without a Go constant: %q", m)
			}
		}
		for _, m := range inGo {
			if !slices.Contains(inSchema, m) {
				t.Errorf("Go constant that no CEL rule reports: %q", m)
			}
		}
	}
}

// msgConstants reads the values of the Msg* constants of pkg/channelconfig's
// validation.go, where the Go rules live.
func msgConstants(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../pkg/channelconfig/validation.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || len(spec.Names) != 1 || !strings.HasPrefix(spec.Names[0].Name, "Msg") || len(spec.Values) != 1 {
			return true
		}
		lit, ok := spec.Values[0].(*ast.BasicLit)
		if !ok {
			t.Fatalf("%s is not a string literal", spec.Names[0].Name)
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, s)
		return true
	})
	if len(msgs) < 15 {
		t.Fatalf("found only %d Msg constants", len(msgs))
	}
	return msgs
}

func TestNamesAndPrinterColumns(t *testing.T) {
	crd := loadCRD(t)
	if crd.Spec.Group != v1alpha1.GroupName || crd.Spec.Names.Kind != "IPCChannel" || crd.Spec.Scope != apiextensionsv1.NamespaceScoped ||
		!slices.Equal(crd.Spec.Names.ShortNames, []string{"ipcc"}) {
		t.Errorf("group %s kind %s scope %s short names %v", crd.Spec.Group, crd.Spec.Names.Kind, crd.Spec.Scope, crd.Spec.Names.ShortNames)
	}
	var got []string
	for _, c := range crd.Spec.Versions[0].AdditionalPrinterColumns {
		got = append(got, c.Name+"="+c.JSONPath)
	}
	want := []string{"Type=.spec.type", "Mode=.spec.sharedMemory.mode", "Matched=.status.matchedPods", "Ready=.status.readyPods", "Age=.metadata.creationTimestamp"}
	if !slices.Equal(got, want) {
		t.Errorf("printer columns %v, want %v", got, want)
	}
	if crd.Spec.Versions[0].Subresources == nil || crd.Spec.Versions[0].Subresources.Status == nil {
		t.Error("no status subresource")
	}
}
