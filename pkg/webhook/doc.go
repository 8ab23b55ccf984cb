// Package webhook is podipc's pod mutation: what turns a pod annotated
// podipc.io/inject: "true" into one with a shared tmpfs, the podipc sidecar
// and the channel configuration.
//
// The mutation is a pure function, Mutate(pod, channels, settings), so that
// every rule is table-tested without a server. Which IPCChannels a pod gets,
// how its annotations are read and what is recorded in them is the contract
// the mutation shares with the controller, in pkg/injection; serving the
// mutation as an admission webhook is internal/admission's job.
//
// Every podipc.io annotation is described in docs/annotations.md.
package webhook
