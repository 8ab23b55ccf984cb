// Package webhook is podipc's pod injector: the mutation that turns a pod
// annotated podipc.io/inject: "true" into one with a shared tmpfs, the podipc
// sidecar and the channel configuration, and the admission handler that
// applies it.
//
// The mutation is a pure function, Mutate(pod, channels, settings), so that
// every rule is table-tested without a server; SelectChannels decides which
// IPCChannels a pod gets; PodMutator wraps both as a controller-runtime
// admission.Handler that answers with JSON patches; NewHTTPHandler puts a
// strict decoder in front of it so a malformed AdmissionReview gets HTTP 400.
//
// Every podipc.io annotation is described in docs/annotations.md.
package webhook
