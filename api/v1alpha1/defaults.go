package v1alpha1

// The defaults and bounds of every field are pkg/channelconfig's constants;
// the kubebuilder markers on the types repeat them, and crd_test.go holds
// the generated CRD to them. Defaulting is channelconfig's, through the
// conversion to its model, so that an IPCChannel and a hand-written channel
// configuration default alike.

// Default fills the unset fields of the channel's settings block with their
// defaults, as the API server does. It does not create a missing settings
// block: a channel without the block of its type is invalid.
func (s *ChannelSettings) Default() {
	m := s.Model()
	m.Default()
	*s = FromModel(m)
}

// Default fills the unset fields with their defaults.
func (s *SharedMemorySettings) Default() {
	m := s.model()
	m.Default()
	*s = sharedMemoryFromModel(&m)
}

// Default fills the unset fields with their defaults. A zero defaultTTL is
// its default (never expires).
func (s *MessageQueueSettings) Default() {
	m := s.model()
	m.Default()
	*s = messageQueueFromModel(&m)
}

// Default fills the unset fields of the spec with their defaults.
func (c *IPCChannel) Default() { c.Spec.Default() }
