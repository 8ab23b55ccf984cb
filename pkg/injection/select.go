package injection

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podipc/podipc/api/v1alpha1"
)

// Selection is the IPCChannels that apply to a pod.
type Selection struct {
	// Channels are the IPCChannels the pod gets, sorted by name.
	Channels []v1alpha1.IPCChannel
	// Missing are the names the pod's podipc.io/channels annotation lists that
	// no IPCChannel of the namespace has (yet), sorted.
	Missing []string
}

// SelectChannels picks, among the IPCChannels of a pod's namespace, those the
// pod gets: the ones its podipc.io/channels annotation names or, without the
// annotation, every one whose selector matches the pod's labels (an omitted
// or empty selector matches every pod). Channels being deleted are skipped. A
// channel with an unparsable selector matches nothing. The pod must want
// injection (else the selection is empty); an invalid annotation is an error.
func SelectChannels(pod *corev1.Pod, available []v1alpha1.IPCChannel) (Selection, error) {
	if inject, err := WantsInjection(pod); err != nil || !inject {
		return Selection{}, err
	}
	opts, err := ParseOptions(pod)
	if err != nil {
		return Selection{}, err
	}
	return selectChannels(pod, opts, available), nil
}

func selectChannels(pod *corev1.Pod, opts Options, available []v1alpha1.IPCChannel) Selection {
	var sel Selection
	for i := range available {
		ch := &available[i]
		if ch.DeletionTimestamp != nil {
			continue
		}
		if opts.Channels != nil {
			if _, found := slices.BinarySearch(opts.Channels, ch.Name); found {
				sel.Channels = append(sel.Channels, *ch)
			}
			continue
		}
		if selectorMatches(ch.Spec.Selector, pod.Labels) {
			sel.Channels = append(sel.Channels, *ch)
		}
	}
	slices.SortFunc(sel.Channels, func(a, b v1alpha1.IPCChannel) int { return strings.Compare(a.Name, b.Name) })
	sel.Missing = opts.Missing(sel.Channels)
	return sel
}

// Missing are the names Channels lists that no channel of have has, sorted;
// nil when every one is there or the pod has no podipc.io/channels.
func (o *Options) Missing(have []v1alpha1.IPCChannel) []string {
	var missing []string
	for _, name := range o.Channels {
		if !slices.ContainsFunc(have, func(c v1alpha1.IPCChannel) bool { return c.Name == name }) {
			missing = append(missing, name)
		}
	}
	return missing
}

func selectorMatches(s *metav1.LabelSelector, podLabels map[string]string) bool {
	if s == nil {
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(podLabels))
}

// ChannelApplies reports whether the IPCChannel applies to the injected pod,
// by the same rule as SelectChannels, at the cost of one channel rather than
// all of the namespace's. A pod with an invalid annotation gets no channel.
func ChannelApplies(pod *corev1.Pod, ch *v1alpha1.IPCChannel) bool {
	if ch.DeletionTimestamp != nil {
		return false
	}
	opts, err := ParseOptions(pod)
	if err != nil {
		return false
	}
	if opts.Channels != nil {
		_, found := slices.BinarySearch(opts.Channels, ch.Name)
		return found
	}
	return selectorMatches(ch.Spec.Selector, pod.Labels)
}
