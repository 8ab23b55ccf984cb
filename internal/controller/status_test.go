package controller

import (
	"testing"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/injection"
	"github.com/podipc/podipc/pkg/webhook"
)

func channel(name string, selector map[string]string, typ v1alpha1.ChannelType, deadLetter string) v1alpha1.IPCChannel {
	ch := v1alpha1.IPCChannel{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"}}
	ch.Spec.Type = typ
	if typ == v1alpha1.ChannelTypeSharedMemory {
		ch.Spec.SharedMemory = &v1alpha1.SharedMemorySettings{}
	} else {
		ch.Spec.MessageQueue = &v1alpha1.MessageQueueSettings{DeadLetterQueue: deadLetter}
	}
	if selector != nil {
		ch.Spec.Selector = &metav1.LabelSelector{MatchLabels: selector}
	}
	return ch
}

// injected is a pod as the webhook leaves it, its sidecar ready or not.
func injected(t *testing.T, name string, labels map[string]string, channels []v1alpha1.IPCChannel, ready bool) corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", Labels: labels, Annotations: map[string]string{podcontract.AnnotationInject: "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	sel, err := injection.SelectChannels(pod, channels)
	if err != nil {
		t.Fatal(err)
	}
	out, err := webhook.Mutate(pod, sel.Channels, webhook.DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	out.Status.Phase = corev1.PodRunning
	out.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: podcontract.SidecarName, Ready: ready}}
	return *out
}

func TestCountPods(t *testing.T) {
	frames := channel("frames", map[string]string{"app": "demo"}, v1alpha1.ChannelTypeSharedMemory, "")
	all := []v1alpha1.IPCChannel{frames}
	done := injected(t, "done", map[string]string{"app": "demo"}, all, true)
	done.Status.Phase = corev1.PodSucceeded
	pods := []corev1.Pod{
		injected(t, "ready", map[string]string{"app": "demo"}, all, true),
		injected(t, "starting", map[string]string{"app": "demo"}, all, false),
		injected(t, "other", map[string]string{"app": "other"}, all, true),
		done,
	}
	// A pod that selects frames but has not had it pushed yet is matched,
	// not ready.
	pods = append(pods, injected(t, "before", map[string]string{"app": "demo"}, nil, true))
	matched, ready := countPods(&frames, pods)
	if matched != 3 || ready != 1 {
		t.Fatalf("matched %d ready %d, want 3 and 1", matched, ready)
	}
	for _, tc := range []struct {
		matched, ready int32
		status         metav1.ConditionStatus
		reason         string
	}{
		{0, 0, metav1.ConditionFalse, v1alpha1.ReasonNoMatchingPods},
		{3, 1, metav1.ConditionFalse, v1alpha1.ReasonPodsNotReady},
		{3, 3, metav1.ConditionTrue, v1alpha1.ReasonAllPodsReady},
	} {
		if c := readyCondition(tc.matched, tc.ready); c.Status != tc.status || c.Reason != tc.reason {
			t.Errorf("readyCondition(%d, %d) = %s/%s, want %s/%s", tc.matched, tc.ready, c.Status, c.Reason, tc.status, tc.reason)
		}
	}
}

func TestValidCondition(t *testing.T) {
	jobs := channel("jobs", nil, v1alpha1.ChannelTypeMessageQueue, "dlq")
	shmDLQ := channel("dlq", nil, v1alpha1.ChannelTypeSharedMemory, "")
	mqDLQ := channel("dlq", nil, v1alpha1.ChannelTypeMessageQueue, "")
	bad := channel("bad", nil, v1alpha1.ChannelTypeSharedMemory, "")
	bad.Spec.SharedMemory.SlotCount = 1000
	for name, tc := range map[string]struct {
		ch     v1alpha1.IPCChannel
		all    []v1alpha1.IPCChannel
		reason string
	}{
		"no dead-letter queue":          {jobs, []v1alpha1.IPCChannel{jobs}, v1alpha1.ReasonDeadLetterQueueNotFound},
		"dead-letter queue of bad type": {jobs, []v1alpha1.IPCChannel{jobs, shmDLQ}, v1alpha1.ReasonDeadLetterQueueNotFound},
		"dead-letter queue exists":      {jobs, []v1alpha1.IPCChannel{jobs, mqDLQ}, v1alpha1.ReasonValid},
		"stored before a rule":          {bad, []v1alpha1.IPCChannel{bad}, v1alpha1.ReasonInvalidSpec},
	} {
		if c := validCondition(&tc.ch, tc.all); c.Reason != tc.reason || (c.Status == metav1.ConditionTrue) != (tc.reason == v1alpha1.ReasonValid) {
			t.Errorf("%s: %s/%s (%s), want reason %s", name, c.Status, c.Reason, c.Message, tc.reason)
		}
	}
}

func TestPodCountsChanged(t *testing.T) {
	base := injected(t, "p", map[string]string{"app": "demo"}, nil, false)
	same := base.DeepCopy()
	same.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	if podCountsChanged.Update(event.UpdateEvent{ObjectOld: &base, ObjectNew: same}) {
		t.Error("an unrelated status change passed")
	}
	ready := base.DeepCopy()
	ready.Status.InitContainerStatuses[0].Ready = true
	relabeled := base.DeepCopy()
	relabeled.Labels["app"] = "other"
	for name, cur := range map[string]*corev1.Pod{"sidecar ready": ready, "labels": relabeled} {
		if !podCountsChanged.Update(event.UpdateEvent{ObjectOld: &base, ObjectNew: cur}) {
			t.Errorf("%s: the change was filtered out", name)
		}
	}
}
