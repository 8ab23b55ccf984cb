package injection_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/internal/injectortest"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/injection"
)

func TestSelectChannels(t *testing.T) {
	deleting := injectortest.ShmChannel("old", 0, 0, nil)
	deleting.DeletionTimestamp = &metav1.Time{}
	channels := []v1alpha1.IPCChannel{
		injectortest.ShmChannel("all", 0, 0, nil),
		injectortest.ShmChannel("empty-selector", 0, 0, &metav1.LabelSelector{}),
		injectortest.ShmChannel("demo", 0, 0, injectortest.SelectApp("demo")),
		injectortest.ShmChannel("expr", 0, 0, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"gpu"}}}}),
		injectortest.ShmChannel("bad-selector", 0, 0, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Nope"}}}),
		deleting,
	}
	for name, tc := range map[string]struct {
		pod  *corev1.Pod
		want []string
	}{
		"selectors":     {injectortest.InjectPod(nil, "a"), []string{"all", "demo", "empty-selector"}},
		"expression":    {func() *corev1.Pod { p := injectortest.InjectPod(nil, "a"); p.Labels["tier"] = "gpu"; return p }(), []string{"all", "demo", "empty-selector", "expr"}},
		"explicit list": {injectortest.InjectPod(map[string]string{podcontract.AnnotationChannels: "expr,old"}, "a"), []string{"expr"}},
		"not injected":  {injectortest.NewPod(nil, "a"), nil},
	} {
		t.Run(name, func(t *testing.T) {
			sel, err := injection.SelectChannels(tc.pod, channels)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range sel.Channels {
				got = append(got, c.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("selected %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReconfigure(t *testing.T) {
	frames := injectortest.ShmChannel("frames", 0, 0, nil)
	pod := injectortest.InjectPod(map[string]string{podcontract.AnnotationTmpfsSize: "16Mi"}, "app")
	injected := injectortest.MustMutate(t, pod, []v1alpha1.IPCChannel{frames}, injectortest.Settings())

	r, err := injection.Reconfigure(injected, []v1alpha1.IPCChannel{frames})
	if err != nil || r.Changed {
		t.Fatalf("right after injection: changed=%v err=%v, want no change", r.Changed, err)
	}

	// A new channel that fits the budget is pushed; one that does not is
	// rejected with the reason; frames, which the pod has, stays.
	fits := injectortest.ShmChannel("more", 0, 0, nil)
	huge := injectortest.ShmChannel("huge", 1<<20, 64, nil)
	r, err = injection.Reconfigure(injected, []v1alpha1.IPCChannel{frames, fits, huge})
	if err != nil || !r.Changed {
		t.Fatalf("changed=%v err=%v, want a change", r.Changed, err)
	}
	if !slices.Equal(r.Status.Channels, []string{"frames", "more"}) {
		t.Fatalf("channels = %v, want [frames more]", r.Status.Channels)
	}
	if len(r.Status.Rejected) != 1 || r.Status.Rejected[0].Name != "huge" || !strings.Contains(r.Status.Rejected[0].Reason, "recreate the pod") {
		t.Fatalf("rejected = %+v, want huge", r.Status.Rejected)
	}
	cfg, err := channelconfig.Parse([]byte(r.Config))
	if err != nil || !slices.Equal(injectortest.ConfigNames(cfg), []string{"frames", "more"}) {
		t.Fatalf("config %v err %v", cfg, err)
	}

	// Applying it is stable.
	applied := injected.DeepCopy()
	for k, v := range r.Annotations() {
		applied.Annotations[k] = v
	}
	if again, err := injection.Reconfigure(applied, []v1alpha1.IPCChannel{frames, fits, huge}); err != nil || again.Changed {
		t.Fatalf("after applying: changed=%v err=%v\n%+v\n%+v", again.Changed, err, again.Status, r.Status)
	}
	// A deleted channel leaves the configuration.
	if r, err := injection.Reconfigure(applied, nil); err != nil || !r.Changed || len(r.Status.Channels) != 0 {
		t.Fatalf("all channels deleted: %+v err=%v", r.Status, err)
	}
	if _, err := injection.Reconfigure(pod, nil); !errors.Is(err, injection.ErrNotInjected) {
		t.Fatalf("uninjected pod: err = %v, want ErrNotInjected", err)
	}
}

// A queue added to a running pod must fit the memory limit its sidecar got
// at admission, like a channel must fit its tmpfs.
func TestReconfigureKeepsQueuesInTheSidecarsMemory(t *testing.T) {
	jobs := injectortest.MQChannel("jobs", false, "")
	pod := injectortest.InjectPod(map[string]string{podcontract.AnnotationTmpfsSize: "16Mi"}, "app")
	injected := injectortest.MustMutate(t, pod, []v1alpha1.IPCChannel{jobs}, injectortest.Settings())
	st := injectortest.MustStatus(t, injected)
	settings := jobs.Spec.ChannelSettings.Model()
	if want := settings.Footprint().SidecarMemoryBytes; st.QueueMemoryBudgetBytes == nil || *st.QueueMemoryBudgetBytes != want || want == 0 {
		t.Fatalf("queue memory budget %v, want the queue's bound %d", st.QueueMemoryBudgetBytes, want)
	}

	// A second queue (no tmpfs: not persistent) does not fit the memory left.
	more := injectortest.MQChannel("more", false, "")
	r, err := injection.Reconfigure(injected, []v1alpha1.IPCChannel{jobs, more})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Status.Channels, []string{"jobs"}) || len(r.Status.Rejected) != 1 || r.Status.Rejected[0].Name != "more" ||
		!strings.Contains(r.Status.Rejected[0].Reason, "sidecar memory") || !strings.Contains(r.Status.Rejected[0].Reason, "recreate the pod") {
		t.Fatalf("status %+v, want more rejected for the sidecar's memory", r.Status)
	}
	// In place of the first, it fits.
	r, err = injection.Reconfigure(injected, []v1alpha1.IPCChannel{more})
	if err != nil || !slices.Equal(r.Status.Channels, []string{"more"}) || len(r.Status.Rejected) != 0 {
		t.Fatalf("status %+v err %v, want more in place of jobs", r.Status, err)
	}

	// A pod injected by an older injector has no queue memory budget in its
	// status: its queues are held to its tmpfs only, as that injector did.
	legacy := st
	legacy.QueueMemoryBudgetBytes = nil
	injected.Annotations[podcontract.AnnotationStatus] = legacy.Encode()
	if strings.Contains(injected.Annotations[podcontract.AnnotationStatus], "queueMemoryBudgetBytes") {
		t.Fatalf("a status without a budget still names it: %s", injected.Annotations[podcontract.AnnotationStatus])
	}
	r, err = injection.Reconfigure(injected, []v1alpha1.IPCChannel{jobs, more})
	if err != nil || !slices.Equal(r.Status.Channels, []string{"jobs", "more"}) || len(r.Status.Rejected) != 0 {
		t.Fatalf("older pod: status %+v err %v, want both queues (no memory budget to hold them to)", r.Status, err)
	}
}

func TestChannelAppliesAgreesWithSelectChannels(t *testing.T) {
	channels := []v1alpha1.IPCChannel{injectortest.ShmChannel("all", 0, 0, nil), injectortest.ShmChannel("demo", 0, 0, injectortest.SelectApp("demo")), injectortest.ShmChannel("other", 0, 0, injectortest.SelectApp("other"))}
	for _, pod := range []*corev1.Pod{
		injectortest.InjectPod(nil, "a"),
		injectortest.InjectPod(map[string]string{podcontract.AnnotationChannels: "other"}, "a"),
		injectortest.InjectPod(map[string]string{podcontract.AnnotationChannels: "Bad_Name"}, "a"),
	} {
		sel, _ := injection.SelectChannels(pod, channels)
		for i := range channels {
			want := slices.ContainsFunc(sel.Channels, func(c v1alpha1.IPCChannel) bool { return c.Name == channels[i].Name })
			if got := injection.ChannelApplies(pod, &channels[i]); got != want {
				t.Errorf("pod %v, channel %s: ChannelApplies %v, SelectChannels %v", pod.Annotations, channels[i].Name, got, want)
			}
		}
	}
}
