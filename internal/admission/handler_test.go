package admission

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/podipc/podipc/pkg/podcontract"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/internal/injectortest"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/injection"
)

// channelSet is an in-memory ChannelLister over a fixed set of IPCChannels.
type channelSet struct {
	items []v1alpha1.IPCChannel
	err   error
}

func (s channelSet) ListChannels(_ context.Context, namespace string) ([]v1alpha1.IPCChannel, error) {
	var out []v1alpha1.IPCChannel
	for _, c := range s.items {
		if c.Namespace == namespace {
			out = append(out, c)
		}
	}
	return out, s.err
}

func testHandler(lister ChannelLister) http.Handler {
	return NewHTTPHandler(&PodMutator{Channels: lister, Settings: injectortest.Settings()}, logr.Discard())
}

func defaultChannels() channelSet {
	return channelSet{items: []v1alpha1.IPCChannel{injectortest.ShmChannel("frames", 0, 0, nil), injectortest.MQChannel("jobs", false, "")}}
}

// reviewOf is the AdmissionReview an API server sends for creating pod.
func reviewOf(t testing.TB, pod *corev1.Pod, op admissionv1.Operation) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("7f0d6a0e-1"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: injectortest.Namespace,
			Operation: op,
		},
	}
	review.Request.Object.Raw = raw
	data, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// post sends body to h and returns the HTTP status and, for a 200, the
// decoded response.
func post(t testing.TB, h http.Handler, contentType string, body []byte) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return rec.Code, nil
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
		t.Fatalf("200 with an undecodable body %q: %v", rec.Body.String(), err)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || review.Response == nil {
		t.Fatalf("200 with a response that is not an AdmissionReview: %s", rec.Body.String())
	}
	return rec.Code, review.Response
}

// applyPatch applies the response's JSON patch to the original pod.
func applyPatch(t testing.TB, original *corev1.Pod, resp *admissionv1.AdmissionResponse) *corev1.Pod {
	t.Helper()
	raw, _ := json.Marshal(original)
	if len(resp.Patch) == 0 {
		return original
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type = %v, want JSONPatch", resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch: %v", err)
	}
	var out corev1.Pod
	if err := json.Unmarshal(patched, &out); err != nil {
		t.Fatalf("patched pod: %v", err)
	}
	return &out
}

func TestHandlerInjectsAnnotatedPod(t *testing.T) {
	pod := injectortest.InjectPod(nil, "app")
	code, resp := post(t, testHandler(defaultChannels()), "application/json", reviewOf(t, pod, admissionv1.Create))
	if code != http.StatusOK || !resp.Allowed || resp.UID != "7f0d6a0e-1" {
		t.Fatalf("code %d response %+v", code, resp)
	}
	want := injectortest.MustMutate(t, pod, defaultChannels().items, injectortest.Settings())
	injectortest.AssertSamePod(t, applyPatch(t, pod, resp), want)
	if len(resp.Warnings) != 0 {
		t.Fatalf("warnings %q for a pod with every channel", resp.Warnings)
	}
}

func TestHandlerAllowsUntouched(t *testing.T) {
	h := testHandler(defaultChannels())
	injected := injectortest.MustMutate(t, injectortest.InjectPod(nil, "app"), defaultChannels().items, injectortest.Settings())
	for name, tc := range map[string]struct {
		pod *corev1.Pod
		op  admissionv1.Operation
	}{
		"no annotation": {injectortest.NewPod(nil, "app"), admissionv1.Create},
		"inject false":  {injectortest.NewPod(map[string]string{podcontract.AnnotationInject: "false"}, "app"), admissionv1.Create},
		"update":        {injectortest.InjectPod(nil, "app"), admissionv1.Update},
		"injected":      {injected, admissionv1.Create},
	} {
		t.Run(name, func(t *testing.T) {
			code, resp := post(t, h, "application/json", reviewOf(t, tc.pod, tc.op))
			if code != http.StatusOK || !resp.Allowed || len(resp.Patch) != 0 || resp.PatchType != nil {
				t.Fatalf("code %d response %+v, want allowed without a patch", code, resp)
			}
		})
	}
}

func TestHandlerDeniesAndWarns(t *testing.T) {
	h := testHandler(defaultChannels())
	code, resp := post(t, h, "application/json", reviewOf(t, injectortest.InjectPod(map[string]string{podcontract.AnnotationDevShm: "yes"}, "app"), admissionv1.Create))
	if code != http.StatusOK || resp.Allowed || resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, podcontract.AnnotationDevShm) {
		t.Fatalf("invalid annotation: code %d response %+v, want a denial naming %s", code, resp, podcontract.AnnotationDevShm)
	}

	pod := injectortest.InjectPod(map[string]string{podcontract.AnnotationChannels: "frames,later"}, "app")
	_, resp = post(t, h, "application/json", reviewOf(t, pod, admissionv1.Create))
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "later") {
		t.Fatalf("missing channel: response %+v, want allowed with a warning naming it", resp)
	}
	if st := injectortest.MustStatus(t, applyPatch(t, pod, resp)); st.Missing[0] != "later" {
		t.Fatalf("status %+v", st)
	}

	// A review without a namespace (no API server sends one) lists no channels.
	noNS := channelSet{err: errors.New("listed channels for a review without a namespace")}
	var review admissionv1.AdmissionReview
	nsless := injectortest.InjectPod(nil, "app")
	nsless.Namespace = ""
	if err := json.Unmarshal(reviewOf(t, nsless, admissionv1.Create), &review); err != nil {
		t.Fatal(err)
	}
	review.Request.Namespace = ""
	body, _ := json.Marshal(review)
	if _, resp = post(t, testHandler(noNS), "application/json", body); resp.Allowed || resp.Result.Code != http.StatusBadRequest ||
		!strings.Contains(resp.Result.Message, "no namespace") {
		t.Fatalf("review without a namespace: response %+v, want a 400 saying so", resp)
	}

	_, resp = post(t, testHandler(channelSet{err: errors.New("cache not synced")}), "application/json", reviewOf(t, injectortest.InjectPod(nil, "app"), admissionv1.Create))
	if resp.Allowed || resp.Result.Code != http.StatusInternalServerError {
		t.Fatalf("lister failure: response %+v, want a 500", resp)
	}
}

// A pod whose queues cannot fit the sidecar's largest memory limit is refused
// at admission, saying which queues take it.
func TestHandlerDeniesQueuesBeyondTheSidecarsMemory(t *testing.T) {
	huge := injectortest.MQChannel("huge", false, "")
	huge.Spec.MessageQueue.MaxBytes = channelconfig.MaxMaxBytes // held twice: waiting and in flight
	h := testHandler(channelSet{items: []v1alpha1.IPCChannel{huge, injectortest.MQChannel("jobs", false, "")}})
	code, resp := post(t, h, "application/json", reviewOf(t, injectortest.InjectPod(nil, "app"), admissionv1.Create))
	if code != http.StatusOK || resp.Allowed || resp.Result.Code != http.StatusForbidden ||
		!strings.Contains(resp.Result.Message, "memory limit") || !strings.Contains(resp.Result.Message, "huge") {
		t.Fatalf("code %d response %+v, want a denial naming the sidecar's memory limit and the queue", code, resp)
	}
	code, resp = post(t, h, "application/json", reviewOf(t, injectortest.InjectPod(map[string]string{podcontract.AnnotationChannels: "jobs"}, "app"), admissionv1.Create))
	if code != http.StatusOK || !resp.Allowed {
		t.Fatalf("the queue that fits: code %d response %+v, want allowed", code, resp)
	}
}

func TestHandlerRejectsMalformedReviews(t *testing.T) {
	h := testHandler(defaultChannels())
	valid := string(reviewOf(t, injectortest.InjectPod(nil, "app"), admissionv1.Create))
	for name, tc := range map[string]struct {
		contentType, body string
		want              int
	}{
		"empty":          {"application/json", "", http.StatusBadRequest},
		"not json":       {"application/json", "{]", http.StatusBadRequest},
		"wrong type":     {"text/plain", valid, http.StatusBadRequest},
		"array":          {"application/json", "[1]", http.StatusBadRequest},
		"no request":     {"application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest},
		"no uid":         {"application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}`, http.StatusBadRequest},
		"v1beta1":        {"application/json", strings.Replace(valid, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), http.StatusBadRequest},
		"trailing data":  {"application/json", valid + "{}", http.StatusBadRequest},
		"with response":  {"application/json", strings.TrimSuffix(valid, "}") + `,"response":{"uid":"x","allowed":true}}`, http.StatusBadRequest},
		"too large":      {"application/json", `{"x":"` + strings.Repeat("a", MaxRequestBytes) + `"}`, http.StatusRequestEntityTooLarge},
		"valid, charset": {"application/json; charset=utf-8", valid, http.StatusOK},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _ := post(t, h, tc.contentType, []byte(tc.body)); code != tc.want {
				t.Fatalf("HTTP %d, want %d", code, tc.want)
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: HTTP %d, want 405", rec.Code)
	}
}

// FuzzReviewHandler feeds arbitrary bodies to the HTTP handler: it must never
// panic, must answer 200 or a 4xx, and every 200 must carry the request's uid
// and, when it allows with a patch, a patch that applies to the request's
// object and yields an injected pod.
func FuzzReviewHandler(f *testing.F) {
	f.Add(reviewOf(f, injectortest.InjectPod(nil, "app"), admissionv1.Create))
	f.Add(reviewOf(f, injectortest.InjectPod(map[string]string{podcontract.AnnotationChannels: "frames,x", podcontract.AnnotationContainers: "app", podcontract.AnnotationDevShm: "true"}, "app", "b"), admissionv1.Create))
	f.Add(reviewOf(f, injectortest.NewPod(nil, "app"), admissionv1.Create))
	f.Add(reviewOf(f, injectortest.InjectPod(map[string]string{podcontract.AnnotationTmpfsSize: "1Ki"}, "app"), admissionv1.Create))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"podipc.io/inject":"true"}},"spec":{"containers":null}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":7}}`))
	f.Add([]byte(`{}`))
	h := testHandler(defaultChannels())
	f.Fuzz(func(t *testing.T, body []byte) {
		code, resp := post(t, h, "application/json", body)
		if code != http.StatusOK {
			if code < 400 || code > 499 {
				t.Fatalf("HTTP %d", code)
			}
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			t.Fatalf("200 for a body that is not a review: %q", body)
		}
		if resp.UID != review.Request.UID {
			t.Fatalf("response uid %q, request uid %q", resp.UID, review.Request.UID)
		}
		if !resp.Allowed || len(resp.Patch) == 0 {
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
			t.Fatalf("a patch for an undecodable pod: %v", err)
		}
		if out := applyPatch(t, &pod, resp); !injection.IsInjected(out) {
			t.Fatalf("patched pod is not injected")
		}
	})
}
