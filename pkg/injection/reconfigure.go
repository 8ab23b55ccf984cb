package injection

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/channelconfig"
)

// ErrNotInjected is returned by Reconfigure for a pod the injector did not
// mutate.
var ErrNotInjected = errors.New("the pod was not injected by podipc")

// Reconfiguration is what a running injected pod's annotations should be for
// the IPCChannels of its namespace now.
type Reconfiguration struct {
	// Config and Status are the values of podipc.io/config and podipc.io/status.
	Config string
	Status Status
	// Changed is true when either differs from the pod's.
	Changed bool
}

// Reconfigure is what the controller applies to running pods when
// IPCChannels change: the pod's channel selection (its podipc.io/channels
// annotation or the channels' selectors) is evaluated again and the result
// written into podipc.io/config, which the kubelet projects into the
// sidecar. A running pod's tmpfs and sidecar memory limit cannot grow, so a
// channel the pod does not have yet is added only if it fits the pod's
// channel budget (Status.ChannelBudgetBytes) and, for a message queue, its
// queues' memory budget (Status.QueueMemoryBudgetBytes); one that does not is listed in
// Status.Rejected. The result of a pod that was just injected is unchanged.
func Reconfigure(pod *corev1.Pod, available []v1alpha1.IPCChannel) (Reconfiguration, error) {
	st, ok, err := ReadStatus(pod)
	if err != nil {
		return Reconfiguration{}, err
	}
	if !ok || !hasSidecar(pod) {
		return Reconfiguration{}, ErrNotInjected
	}
	opts, err := ParseOptions(pod)
	if err != nil {
		return Reconfiguration{}, err
	}
	sel := selectChannels(pod, opts, available)

	// Keep what the pod has (its files exist), then admit new channels in
	// name order while they fit.
	current := st.Channels
	var used channelconfig.Footprint
	var keep []v1alpha1.IPCChannel
	var tooBig []RejectedChannel
	for pass := range 2 {
		for i := range sel.Channels {
			ch := &sel.Channels[i]
			_, had := slices.BinarySearch(current, ch.Name)
			if had != (pass == 0) {
				continue
			}
			settings := ch.Spec.ChannelSettings.Model()
			need := settings.Footprint()
			if !had {
				if why := budgetRefusal(need, used, st); why != "" {
					tooBig = append(tooBig, RejectedChannel{Name: ch.Name, Reason: why})
					continue
				}
			}
			used = used.Add(need)
			keep = append(keep, *ch)
		}
	}
	cfg, err := BuildConfig(keep)
	if err != nil {
		return Reconfiguration{}, err
	}
	rejected := slices.Concat(cfg.Rejected, tooBig)
	slices.SortFunc(rejected, func(a, b RejectedChannel) int { return strings.Compare(a.Name, b.Name) })

	next := st
	next.Channels, next.Missing, next.Rejected, next.ConfigHash = cfg.Names(), sel.Missing, rejected, cfg.Hash()
	r := Reconfiguration{Config: string(cfg.JSON), Status: next}
	r.Changed = pod.Annotations[podcontract.AnnotationConfig] != r.Config || pod.Annotations[podcontract.AnnotationStatus] != next.Encode()
	return r, nil
}

// budgetRefusal says why a channel that needs need cannot be added to a
// running pod whose channels use used, or "" if it fits: the pod's tmpfs and
// the sidecar's memory limit are fixed once it runs.
func budgetRefusal(need, used channelconfig.Footprint, st Status) string {
	const recreate = ": recreate the pod to get it"
	if used.TmpfsBytes+need.TmpfsBytes > st.ChannelBudgetBytes {
		return fmt.Sprintf("needs %s of tmpfs, more than is free of the pod's channel budget of %s%s",
			FormatBytes(need.TmpfsBytes), FormatBytes(st.ChannelBudgetBytes), recreate)
	}
	if b := st.QueueMemoryBudgetBytes; b != nil && need.SidecarMemoryBytes > 0 && used.SidecarMemoryBytes+need.SidecarMemoryBytes > *b {
		return fmt.Sprintf("may hold %s of sidecar memory, more than is free of the queues' memory budget of %s (the sidecar's memory limit)%s",
			FormatBytes(need.SidecarMemoryBytes), FormatBytes(*b), recreate)
	}
	return ""
}

// Annotations are the pod annotations of the reconfiguration.
func (r *Reconfiguration) Annotations() map[string]string {
	return map[string]string{podcontract.AnnotationConfig: r.Config, podcontract.AnnotationStatus: r.Status.Encode()}
}
