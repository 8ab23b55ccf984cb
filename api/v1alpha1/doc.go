// Package v1alpha1 is the podipc.io/v1alpha1 API: the IPCChannel custom
// resource, which declares a shared-memory channel or a message queue for the
// pods it selects.
//
// The types carry kubebuilder markers from which controller-gen generates the
// CRD in config/crd and zz_generated.deepcopy.go. The OpenAPI schema and its
// CEL rules are the validation the API server applies. The same defaults and
// rules in Go are pkg/channelconfig's, written on its channel model, which
// the sidecar serves without linking this package: the settings convert to
// it (ChannelSettings.Model, ConfigFor) and Default, ValidateIPCChannel and
// ValidateIPCChannelUpdate go through it, so that a channel configuration
// written by hand, outside Kubernetes, is held to the same standard.
// docs/ipcchannel.md is the reference for every field.
//
// +kubebuilder:object:generate=true
// +groupName=podipc.io
package v1alpha1
