package admission

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/podipc/podipc/internal/injectortest"
)

// BenchmarkHandler is the injector's CPU per admission, without the network:
// decoding the review, selecting three channels, mutating and computing the
// JSON patch.
func BenchmarkHandler(b *testing.B) {
	for name, pod := range map[string][]byte{
		"inject":      reviewOf(b, injectortest.InjectPod(nil, "app", "worker"), admissionv1.Create),
		"passthrough": reviewOf(b, injectortest.NewPod(nil, "app", "worker"), admissionv1.Create),
	} {
		b.Run(name, func(b *testing.B) {
			h := testHandler(channelSet{items: append(defaultChannels().items, injectortest.ShmChannel("events", 0, 0, nil))})
			body := string(pod)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("HTTP %d", rec.Code)
				}
			}
		})
	}
}
