package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/podipc/podipc/pkg/podcontract"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/injection"
	"github.com/podipc/podipc/pkg/webhook"
)

// Path is where the injector serves the pod mutation.
const Path = "/mutate-v1-pod"

// ChannelLister lists the IPCChannels of a namespace.
type ChannelLister interface {
	ListChannels(ctx context.Context, namespace string) ([]v1alpha1.IPCChannel, error)
}

// ReaderChannelLister lists IPCChannels through a controller-runtime reader,
// in the injector the manager's informer cache, so admission costs no API
// call.
type ReaderChannelLister struct {
	Reader client.Reader
}

// ListChannels implements ChannelLister.
func (l ReaderChannelLister) ListChannels(ctx context.Context, namespace string) ([]v1alpha1.IPCChannel, error) {
	var list v1alpha1.IPCChannelList
	if err := l.Reader.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list IPCChannels in namespace %s: %w", namespace, err)
	}
	return list.Items, nil
}

// PodMutator is the admission.Handler of the injector: for the creation of a
// pod that asks for injection it answers with the JSON patch from the pod to
// webhook.Mutate's result, and with a warning for each channel it could not
// give the pod. Any other request is allowed unchanged.
type PodMutator struct {
	// Channels lists the IPCChannels of the pod's namespace.
	Channels ChannelLister
	// Settings are the injector's, passed to webhook.Mutate.
	Settings webhook.Settings
}

var _ admission.Handler = (*PodMutator)(nil)

// Handle implements admission.Handler.
func (m *PodMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Create {
		return admission.Allowed("podipc injects pods at creation only")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode the pod: %w", err))
	}
	inject, err := injection.WantsInjection(&pod)
	if err != nil {
		return admission.Denied(err.Error())
	}
	if !inject || injection.IsInjected(&pod) {
		return admission.Allowed("")
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = pod.Namespace
	}
	if namespace == "" {
		// Pods are namespaced: an API server always names the namespace. Without
		// one, listing IPCChannels would read every namespace's.
		return admission.Errored(http.StatusBadRequest, errors.New("the admission request names no namespace for the pod"))
	}
	log := logf.FromContext(ctx).WithValues("namespace", namespace, "pod", podName(&pod))

	available, err := m.Channels.ListChannels(ctx, namespace)
	if err != nil {
		log.Error(err, "cannot list IPCChannels")
		return admission.Errored(http.StatusInternalServerError, err)
	}
	sel, err := injection.SelectChannels(&pod, available)
	if err != nil {
		return admission.Denied(err.Error())
	}
	mutated, err := webhook.Mutate(&pod, sel.Channels, m.Settings)
	if err != nil {
		if refused(err) {
			log.V(1).Info("refused", "reason", err.Error())
			return admission.Denied(err.Error())
		}
		log.Error(err, "cannot inject")
		return admission.Errored(http.StatusInternalServerError, err)
	}
	raw, err := json.Marshal(mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode the mutated pod: %w", err))
	}
	resp := admission.PatchResponseFromRaw(req.Object.Raw, raw)
	st, _, _ := injection.ReadStatus(mutated)
	resp.Warnings = warnings(st)
	log.V(1).Info("injected", "channels", st.Channels, "missing", st.Missing, "tmpfsBytes", st.TmpfsBytes)
	return resp
}

// refused reports whether err is the pod's fault, to be answered with a
// denial rather than an internal error.
func refused(err error) bool {
	var ae *injection.AnnotationError
	var large *webhook.TmpfsTooLargeError
	var small *webhook.TmpfsTooSmallError
	var memory *webhook.SidecarMemoryTooLargeError
	return errors.As(err, &ae) || errors.As(err, &large) || errors.As(err, &small) || errors.As(err, &memory) || errors.Is(err, webhook.ErrConflict)
}

func warnings(st injection.Status) []string {
	var w []string
	if len(st.Missing) > 0 {
		w = append(w, fmt.Sprintf("podipc: IPCChannel(s) %s named in %s do not exist yet; the pod starts without them and gets them when they are created",
			strings.Join(st.Missing, ", "), podcontract.AnnotationChannels))
	}
	for _, r := range st.Rejected {
		w = append(w, fmt.Sprintf("podipc: IPCChannel %s left out: %s", r.Name, r.Reason))
	}
	return w
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "<generated>"
}
