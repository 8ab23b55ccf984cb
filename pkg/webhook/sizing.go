package webhook

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/injection"
)

// sizing is how much memory a pod's channels take.
type sizing struct {
	// tmpfsBytes is the emptyDir sizeLimit.
	tmpfsBytes int64
	// budgetBytes is what channels may use of it (tmpfsBytes less headroom).
	budgetBytes int64
	// footprint is what the configured channels need.
	footprint channelconfig.Footprint
	// memoryLimitBytes is the sidecar's memory limit: its own, the tmpfs
	// bytes it allocates, the queues' bound and the broker's fixed bounds.
	memoryLimitBytes int64
}

// ChannelSize is the tmpfs one channel needs (or, in a
// SidecarMemoryTooLargeError, the sidecar memory).
type ChannelSize struct {
	Name       string
	TmpfsBytes int64
}

// SidecarMemoryTooLargeError refuses a pod whose sidecar would need a memory
// limit above the injector's maximum (Settings.MaxSidecarMemoryBytes): its
// queues' bounds, the tmpfs bytes it allocates and the broker's fixed bounds
// (connections' buffers, parked sends) do not fit.
type SidecarMemoryTooLargeError struct {
	// NeedBytes is the memory limit the sidecar would need.
	NeedBytes int64
	// MaxBytes is Settings.MaxSidecarMemoryBytes.
	MaxBytes int64
	// BrokerBytes is the broker's fixed part of NeedBytes.
	BrokerBytes int64
	// Queues are the message queues and the memory each may hold, largest
	// first (in TmpfsBytes).
	Queues []ChannelSize
}

// Error implements error.
func (e *SidecarMemoryTooLargeError) Error() string {
	parts := make([]string, len(e.Queues))
	for i, c := range e.Queues {
		parts[i] = c.Name + " " + injection.FormatBytes(c.TmpfsBytes)
	}
	return fmt.Sprintf("the sidecar would need a memory limit of %s, %s more than the injector's maximum of %s "+
		"(message queues' maxBytes and maxDepth bounds: %s; broker connections and parked sends: %s; plus the tmpfs it allocates): lower the queues' maxBytes or maxDepth",
		injection.FormatBytes(e.NeedBytes), injection.FormatBytes(e.NeedBytes-e.MaxBytes), injection.FormatBytes(e.MaxBytes),
		listOrNone(parts), injection.FormatBytes(e.BrokerBytes))
}

// TmpfsTooLargeError refuses a pod whose channels need more tmpfs than the
// injector allows (Settings.MaxTmpfsBytes).
type TmpfsTooLargeError struct {
	// NeedBytes is what the pod would get: its channels plus headroom, or its
	// podipc.io/tmpfs-size.
	NeedBytes int64
	// MaxBytes is Settings.MaxTmpfsBytes.
	MaxBytes int64
	// Channels are the channels that use the tmpfs, largest first.
	Channels []ChannelSize
	// FromAnnotation is true when NeedBytes came from podipc.io/tmpfs-size.
	FromAnnotation bool
}

// Error implements error.
func (e *TmpfsTooLargeError) Error() string {
	parts := make([]string, len(e.Channels))
	for i, c := range e.Channels {
		parts[i] = c.Name + " " + injection.FormatBytes(c.TmpfsBytes)
	}
	what := "the channels and headroom need"
	if e.FromAnnotation {
		what = "annotation " + podcontract.AnnotationTmpfsSize + " asks for"
	}
	return fmt.Sprintf("%s %s of tmpfs, %s more than the injector's maximum of %s (channels on the tmpfs: %s)",
		what, injection.FormatBytes(e.NeedBytes), injection.FormatBytes(e.NeedBytes-e.MaxBytes), injection.FormatBytes(e.MaxBytes), listOrNone(parts))
}

// TmpfsTooSmallError refuses a pod whose podipc.io/tmpfs-size cannot hold
// its channels.
type TmpfsTooSmallError struct {
	SizeBytes int64
	NeedBytes int64
	Channels  []ChannelSize
}

// Error implements error.
func (e *TmpfsTooSmallError) Error() string {
	parts := make([]string, len(e.Channels))
	for i, c := range e.Channels {
		parts[i] = c.Name + " " + injection.FormatBytes(c.TmpfsBytes)
	}
	return fmt.Sprintf("annotation %s: invalid value %q: allowed: at least %s, what the channels need (%s)",
		podcontract.AnnotationTmpfsSize, injection.FormatBytes(e.SizeBytes), injection.FormatBytes(e.NeedBytes), listOrNone(parts))
}

// planSizing sizes the tmpfs of a pod with the given configuration.
func planSizing(doc *channelconfig.Config, opts injection.Options, s *Settings) (sizing, error) {
	fp := doc.Footprint()
	headroom := s.TmpfsHeadroomBytes
	if opts.DevShm {
		headroom += s.DevShmHeadroomBytes
	}
	size := fp.TmpfsBytes + headroom
	if opts.TmpfsSize != nil {
		size = opts.TmpfsSize.Value()
		if size < fp.TmpfsBytes {
			return sizing{}, &TmpfsTooSmallError{SizeBytes: size, NeedBytes: fp.TmpfsBytes, Channels: channelSizes(doc)}
		}
	}
	if s.MaxTmpfsBytes > 0 && size > s.MaxTmpfsBytes {
		return sizing{}, &TmpfsTooLargeError{NeedBytes: size, MaxBytes: s.MaxTmpfsBytes, Channels: channelSizes(doc), FromAnnotation: opts.TmpfsSize != nil}
	}
	memLimit := s.SidecarMemoryLimit.Value() + fp.TmpfsBytes + fp.SidecarMemoryBytes + channelconfig.BrokerFixedBytes()
	if s.MaxSidecarMemoryBytes > 0 && memLimit > s.MaxSidecarMemoryBytes {
		return sizing{}, &SidecarMemoryTooLargeError{NeedBytes: memLimit, MaxBytes: s.MaxSidecarMemoryBytes,
			BrokerBytes: channelconfig.BrokerFixedBytes(), Queues: sizesBy(doc, func(f channelconfig.Footprint) int64 { return f.SidecarMemoryBytes })}
	}
	return sizing{tmpfsBytes: size, budgetBytes: max(size-headroom, fp.TmpfsBytes), footprint: fp, memoryLimitBytes: memLimit}, nil
}

// channelSizes lists the channels that use the tmpfs, largest first.
func channelSizes(doc *channelconfig.Config) []ChannelSize {
	return sizesBy(doc, func(f channelconfig.Footprint) int64 { return f.TmpfsBytes })
}

// sizesBy lists the channels that need some of what of returns, largest
// first.
func sizesBy(doc *channelconfig.Config, of func(channelconfig.Footprint) int64) []ChannelSize {
	var sizes []ChannelSize
	for i := range doc.Channels {
		if n := of(doc.Channels[i].Footprint()); n > 0 {
			sizes = append(sizes, ChannelSize{Name: doc.Channels[i].Name, TmpfsBytes: n})
		}
	}
	slices.SortStableFunc(sizes, func(a, b ChannelSize) int { return cmp.Compare(b.TmpfsBytes, a.TmpfsBytes) })
	return sizes
}

func listOrNone(parts []string) string {
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
