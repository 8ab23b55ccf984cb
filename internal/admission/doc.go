// Package admission serves podipc's pod mutation as an admission.k8s.io/v1
// webhook: PodMutator is the controller-runtime admission.Handler that
// selects a pod's IPCChannels (pkg/injection), mutates it (pkg/webhook) and
// answers with a JSON patch and warnings; NewHTTPHandler puts a strict
// decoder in front of it, so a malformed AdmissionReview gets HTTP 400.
package admission
