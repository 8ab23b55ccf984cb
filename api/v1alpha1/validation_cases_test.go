package v1alpha1_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/podipc/podipc/api/v1alpha1"
)

// validationCase is one entry of testdata/validation-cases.yaml, which
// hack/tools/crdcheck also runs against the API server's validation of the
// generated CRD.
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

func loadValidationCases(t *testing.T) []validationCase {
	t.Helper()
	data, err := os.ReadFile("testdata/validation-cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases []validationCase
	if err := yaml.UnmarshalStrict(data, &cases); err != nil {
		t.Fatalf("testdata/validation-cases.yaml: %v", err)
	}
	if len(cases) < 40 {
		t.Fatalf("only %d validation cases decoded", len(cases))
	}
	return cases
}

// decodeChannel builds the defaulted IPCChannel of a case, as the API server
// would store it.
func decodeChannel(name string, spec json.RawMessage) (*v1alpha1.IPCChannel, error) {
	c := &v1alpha1.IPCChannel{}
	c.Name, c.Namespace = name, "default"
	strict, err := sigsjson.UnmarshalStrict(spec, &c.Spec, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, strict[0]
	}
	c.Default()
	return c, nil
}

func TestValidationCases(t *testing.T) {
	for _, tc := range loadValidationCases(t) {
		t.Run(tc.Name, func(t *testing.T) {
			c, err := decodeChannel(tc.Channel.Name, tc.Channel.Spec)
			if tc.GoDecodeError {
				if err == nil {
					t.Fatal("decoded a value the Go types cannot hold")
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			var errs field.ErrorList
			if tc.Old != nil {
				old, err := decodeChannel(tc.Channel.Name, tc.Old.Spec)
				if err != nil {
					t.Fatalf("decode old: %v", err)
				}
				if errs := v1alpha1.ValidateIPCChannel(old); len(errs) > 0 {
					t.Fatalf("old object invalid: %v", errs)
				}
				errs = v1alpha1.ValidateIPCChannelUpdate(c, old)
			} else {
				errs = v1alpha1.ValidateIPCChannel(c)
			}
			var got, want []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			for _, e := range tc.Errors {
				want = append(want, e.Field)
				if e.Message != "" && !hasDetail(errs, e.Field, e.Message) {
					t.Errorf("no error at %s says %q; got %v", e.Field, e.Message, errs)
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

func hasDetail(errs field.ErrorList, path, msg string) bool {
	return slices.ContainsFunc(errs, func(e *field.Error) bool {
		return e.Field == path && strings.Contains(e.Detail, msg)
	})
}
