package admission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// MaxRequestBytes bounds an AdmissionReview: two objects of at most 3 MiB
// (etcd's request limit, twice for JSON) and the rest, as controller-runtime
// reasons.
const MaxRequestBytes = 7 << 20

// NewHTTPHandler serves h as an admission.k8s.io/v1 webhook. Unlike
// controller-runtime's webhook.Admission, which answers an undecodable
// review with HTTP 200 and an error inside, it answers anything that is not a
// well-formed AdmissionReview request with HTTP 400 (413 when too large, 405
// for a method other than POST): the caller is not an API server speaking
// the protocol, and a status code says so to any client.
// Handle gets log, with the request's uid, in its context (logf.FromContext).
func NewHTTPHandler(h admission.Handler, log logr.Logger) http.Handler {
	return &reviewHandler{handler: h, log: log}
}

type reviewHandler struct {
	handler admission.Handler
	log     logr.Logger
}

func (s *reviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := s.log
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
		return
	}
	review, status, err := decodeReview(r)
	if err != nil {
		log.V(1).Info("malformed admission review", "remote", r.RemoteAddr, "error", err.Error())
		http.Error(w, err.Error(), status)
		return
	}
	log = log.WithValues("uid", review.Request.UID)
	ctx := logf.IntoContext(r.Context(), log)
	resp := s.handler.Handle(ctx, admission.Request{AdmissionRequest: *review.Request})
	if err := resp.Complete(admission.Request{AdmissionRequest: *review.Request}); err != nil {
		log.Error(err, "cannot complete the admission response")
		resp = admission.Errored(http.StatusInternalServerError, err)
		resp.UID = review.Request.UID
	}
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: &resp.AdmissionResponse}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		log.Error(err, "cannot write the admission response")
	}
}

// decodeReview reads an admission.k8s.io/v1 AdmissionReview request, or
// says why it is not one and with which HTTP status.
func decodeReview(r *http.Request) (*admissionv1.AdmissionReview, int, error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, http.StatusBadRequest, fmt.Errorf("content type %q: want application/json", r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("read the request body: %w", err)
	}
	if len(body) > MaxRequestBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the request body is larger than %d bytes", MaxRequestBytes)
	}
	var review admissionv1.AdmissionReview
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&review); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("decode the AdmissionReview: %w", err)
	}
	if dec.More() {
		return nil, http.StatusBadRequest, errors.New("decode the AdmissionReview: data after the document")
	}
	switch {
	case review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview":
		return nil, http.StatusBadRequest, fmt.Errorf("got apiVersion %q kind %q, want %s AdmissionReview", review.APIVersion, review.Kind, admissionv1.SchemeGroupVersion)
	case review.Request == nil:
		return nil, http.StatusBadRequest, errors.New("the AdmissionReview has no request")
	case review.Request.UID == "":
		return nil, http.StatusBadRequest, errors.New("the AdmissionReview request has no uid")
	case review.Response != nil:
		return nil, http.StatusBadRequest, errors.New("the AdmissionReview carries a response: this is a request endpoint")
	}
	return &review, http.StatusOK, nil
}
