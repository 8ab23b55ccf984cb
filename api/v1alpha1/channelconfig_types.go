package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ChannelConfigKind is the kind of the channel configuration document.
const ChannelConfigKind = "ChannelConfig"

// ChannelConfig is the channel configuration file the sidecar serves: the
// channels of one pod, fully resolved. The injector writes it into a pod
// annotation that a downward-API volume projects into the sidecar as a file;
// outside Kubernetes it is written by hand. It is not a Kubernetes resource:
// it has apiVersion and kind so that its format can evolve.
//
// pkg/channelconfig parses, defaults and validates it.
type ChannelConfig struct {
	metav1.TypeMeta `json:",inline"`

	// channels are the channels the sidecar creates and serves. Names are
	// unique.
	Channels []Channel `json:"channels"`
}

// Channel is one channel of a ChannelConfig: the name an IPCChannel has in
// its metadata and its spec without the selector.
type Channel struct {
	// name is the channel's name, a DNS-1123 label: its file name on the tmpfs
	// and the name applications open.
	Name string `json:"name"`

	ChannelSettings `json:",inline"`
}
