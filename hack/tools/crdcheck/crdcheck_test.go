package crdcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apiextensions-apiserver/pkg/registry/customresource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

const (
	repoRoot  = "../../.."
	namespace = "default"
)

// loadCRDs decodes every CRD in config/crd, with the defaults the API server
// applies to a CRD it is given.
func loadCRDs(t *testing.T) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "config/crd/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRD in config/crd: %v", err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(crd)
		crds = append(crds, crd)
	}
	return crds
}

func toInternal(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) *apiextensions.CustomResourceDefinition {
	t.Helper()
	internal := &apiextensions.CustomResourceDefinition{}
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(crd, internal, nil); err != nil {
		t.Fatalf("convert %s: %v", crd.Name, err)
	}
	return internal
}

// TestCRDsAreValid runs the validation a kube-apiserver applies when the CRD
// is created: structural schema, defaults that pass their own schema, CEL
// rules that compile within the cost limits, printer columns.
func TestCRDsAreValid(t *testing.T) {
	for _, crd := range loadCRDs(t) {
		if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), toInternal(t, crd)); len(errs) > 0 {
			for _, e := range errs {
				t.Errorf("%s: %v", crd.Name, e)
			}
		}
	}
}

// ipcChannelServer validates IPCChannel objects as the API server does.
type ipcChannelServer struct {
	structural *structuralschema.Structural
	validate   func(ctx context.Context, obj runtime.Object) field.ErrorList
	update     func(ctx context.Context, obj, old runtime.Object) field.ErrorList
}

func newIPCChannelServer(t *testing.T) *ipcChannelServer {
	t.Helper()
	var crd *apiextensionsv1.CustomResourceDefinition
	for _, c := range loadCRDs(t) {
		if c.Name == "ipcchannels.podipc.io" {
			crd = c
		}
	}
	if crd == nil {
		t.Fatal("no CRD ipcchannels.podipc.io in config/crd")
	}
	// As the API server's CR handler: the version's schema and subresources,
	// converted to the internal types its validation code takes.
	version := crd.Spec.Versions[0]
	if version.Name != "v1alpha1" {
		t.Fatalf("first version is %s, want v1alpha1", version.Name)
	}
	validation := &apiextensions.CustomResourceValidation{}
	if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(version.Schema, validation, nil); err != nil {
		t.Fatal(err)
	}
	subresources := &apiextensions.CustomResourceSubresources{}
	if err := apiextensionsv1.Convert_v1_CustomResourceSubresources_To_apiextensions_CustomResourceSubresources(version.Subresources, subresources, nil); err != nil {
		t.Fatal(err)
	}
	props := validation.OpenAPIV3Schema
	structural, err := structuralschema.NewStructural(props)
	if err != nil {
		t.Fatal(err)
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(props)
	if err != nil {
		t.Fatal(err)
	}
	status := props.Properties["status"]
	statusValidator, _, err := apiservervalidation.NewSchemaValidator(&status)
	if err != nil {
		t.Fatal(err)
	}
	gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: version.Name, Kind: crd.Spec.Names.Kind}
	strategy := customresource.NewStrategy(runtime.NewScheme(), true, gvk, validator, statusValidator, structural,
		subresources.Status, subresources.Scale, nil)
	return &ipcChannelServer{structural: structural, validate: strategy.Validate, update: strategy.ValidateUpdate}
}

// admit prunes (reporting unknown fields as kubectl's strict field
// validation does), defaults and validates obj, an update of old if old is
// not nil. It returns the errors the API server would answer with.
func (s *ipcChannelServer) admit(obj, old map[string]any) field.ErrorList {
	prepare := func(obj map[string]any) (*unstructured.Unstructured, field.ErrorList) {
		var errs field.ErrorList
		opts := structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}
		for _, p := range structuralpruning.PruneWithOptions(obj, s.structural, true, opts) {
			errs = append(errs, field.Forbidden(field.NewPath(p), "unknown field"))
		}
		structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, s.structural)
		structuraldefaulting.Default(obj, s.structural)
		return &unstructured.Unstructured{Object: obj}, errs
	}
	u, errs := prepare(obj)
	ctx := context.Background()
	if old == nil {
		return append(errs, s.validate(ctx, u)...)
	}
	uOld, _ := prepare(old)
	uOld.SetResourceVersion("1")
	u.SetResourceVersion("1")
	return append(errs, s.update(ctx, u, uOld)...)
}

func ipcChannel(name string, spec json.RawMessage) (map[string]any, error) {
	var specObj map[string]any
	// As the API server decodes: integers stay int64.
	if err := utiljson.Unmarshal(spec, &specObj); err != nil {
		return nil, err
	}
	return map[string]any{
		"apiVersion": "podipc.io/v1alpha1",
		"kind":       "IPCChannel",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec":       specObj,
	}, nil
}

// validationCase is an entry of api/v1alpha1/testdata/validation-cases.yaml;
// see the file's header.
type validationCase struct {
	Name    string `json:"name"`
	Channel struct {
		Name string          `json:"name"`
		Spec json.RawMessage `json:"spec"`
	} `json:"channel"`
	Old *struct {
		Spec json.RawMessage `json:"spec"`
	} `json:"old,omitempty"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message,omitempty"`
	} `json:"errors,omitempty"`
	GoDecodeError bool `json:"goDecodeError,omitempty"`
	GoOnly        bool `json:"goOnly,omitempty"`
}

// notChecked is the API server's note that it skipped the CEL rules because
// of an earlier, blocking error.
const notChecked = "some validation rules were not checked"

// noField is the field of an error about the whole object.
var noField = (*field.Path)(nil).String()

// rootRuleMessage matches the rules on the object's root: the API server
// gives no field for them, but their message names metadata.name.
var rootRuleMessage = regexp.MustCompile(`^metadata\.name must`)

func TestValidationCases(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "api/v1alpha1/testdata/validation-cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []validationCase
	if err := yaml.UnmarshalStrict(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 40 {
		t.Fatalf("only %d validation cases decoded", len(cases))
	}
	server := newIPCChannelServer(t)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			obj, err := ipcChannel(tc.Channel.Name, tc.Channel.Spec)
			if err != nil {
				t.Fatal(err)
			}
			var old map[string]any
			if tc.Old != nil {
				if old, err = ipcChannel(tc.Channel.Name, tc.Old.Spec); err != nil {
					t.Fatal(err)
				}
				if errs := server.admit(deepCopy(old), nil); len(errs) > 0 {
					t.Fatalf("old object invalid: %v", errs)
				}
			}
			errs := server.admit(obj, old)
			var got []string
			for _, e := range errs {
				switch {
				case e.Field == noField && strings.Contains(e.Detail, notChecked):
					continue
				case e.Field == noField && rootRuleMessage.MatchString(e.Detail):
					e.Field = "metadata.name"
				}
				got = append(got, e.Field)
			}
			var want []string
			if !tc.GoOnly {
				for _, e := range tc.Errors {
					want = append(want, e.Field)
					if e.Message != "" && !slices.ContainsFunc(errs, func(g *field.Error) bool {
						return (g.Field == e.Field || g.Field == noField && e.Field == "metadata.name") && strings.Contains(g.Detail, e.Message)
					}) {
						t.Errorf("no error at %s says %q; got %v", e.Field, e.Message, errs)
					}
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(slices.Compact(got), slices.Compact(want)) {
				t.Errorf("errors at %v, want at %v; errors: %v", got, want, errs)
			}
		})
	}
}

// TestExamples admits every example IPCChannel: no unknown field, no error.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples/ipcchannels/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example in examples/ipcchannels: %v", err)
	}
	server := newIPCChannelServer(t)
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			jsonDoc, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			var obj map[string]any
			if err := utiljson.Unmarshal(jsonDoc, &obj); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			if obj == nil || obj["kind"] != "IPCChannel" {
				continue
			}
			md, _ := obj["metadata"].(map[string]any)
			if md != nil && md["namespace"] == nil {
				md["namespace"] = namespace
			}
			if errs := server.admit(obj, nil); len(errs) > 0 {
				t.Errorf("%s #%d: %v", f, i, errs)
			}
			n++
		}
	}
	if n < 4 {
		t.Errorf("only %d example IPCChannels", n)
	}
}

func deepCopy(obj map[string]any) map[string]any {
	return runtime.DeepCopyJSON(obj)
}
