// Package injectortest holds the fixtures that the tests of the injector's
// packages (pkg/webhook, pkg/injection and internal/admission) share: pods,
// IPCChannels, settings, and checks of what the mutation returns. Only tests
// import it.
package injectortest

import (
	"encoding/json"
	"testing"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/injection"
	"github.com/podipc/podipc/pkg/webhook"
)

// Namespace is the namespace of the fixtures' pods and IPCChannels.
const Namespace = "apps"

// NewPod is an injectable pod with app containers of the given names.
func NewPod(annotations map[string]string, containers ...string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: Namespace, Labels: map[string]string{"app": "demo"}, Annotations: annotations},
	}
	for _, name := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: name, Image: name + ":1"})
	}
	return pod
}

// InjectPod is NewPod annotated podipc.io/inject: "true" and with the extra
// annotations.
func InjectPod(extra map[string]string, containers ...string) *corev1.Pod {
	a := map[string]string{podcontract.AnnotationInject: "true"}
	for k, v := range extra {
		a[k] = v
	}
	return NewPod(a, containers...)
}

// ShmChannel is a shared-memory IPCChannel; a zero slot size or count is
// the default.
func ShmChannel(name string, slotSize, slotCount int32, selector *metav1.LabelSelector) v1alpha1.IPCChannel {
	return v1alpha1.IPCChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace},
		Spec: v1alpha1.IPCChannelSpec{Selector: selector, ChannelSettings: v1alpha1.ChannelSettings{
			Type:         v1alpha1.ChannelTypeSharedMemory,
			SharedMemory: &v1alpha1.SharedMemorySettings{SlotSize: slotSize, SlotCount: slotCount},
		}},
	}
}

// MQChannel is a message-queue IPCChannel, journaled on a volume when
// persistent, with the named dead-letter queue (none when empty).
func MQChannel(name string, persistent bool, deadLetter string) v1alpha1.IPCChannel {
	mq := &v1alpha1.MessageQueueSettings{DeadLetterQueue: deadLetter}
	if persistent {
		mq.Persistence = v1alpha1.PersistenceVolume
	}
	return v1alpha1.IPCChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace},
		Spec:       v1alpha1.IPCChannelSpec{ChannelSettings: v1alpha1.ChannelSettings{Type: v1alpha1.ChannelTypeMessageQueue, MessageQueue: mq}},
	}
}

// SelectApp is a selector of the pods labelled app: app.
func SelectApp(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

// Settings are the injector's default settings with a test version and
// sidecar image.
func Settings() webhook.Settings {
	s := webhook.DefaultSettings()
	s.InjectorVersion = "v0.0.0-test"
	s.SidecarImage = "podipc-sidecar:test"
	return s
}

// MustMutate is webhook.Mutate's pod; an error fails the test.
func MustMutate(t *testing.T, pod *corev1.Pod, channels []v1alpha1.IPCChannel, s webhook.Settings) *corev1.Pod {
	t.Helper()
	out, err := webhook.Mutate(pod, channels, s)
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	return out
}

// MustStatus is the pod's podipc.io/status; a missing or unreadable one
// fails the test.
func MustStatus(t *testing.T, pod *corev1.Pod) injection.Status {
	t.Helper()
	st, ok, err := injection.ReadStatus(pod)
	if err != nil || !ok {
		t.Fatalf("ReadStatus: ok=%v err=%v", ok, err)
	}
	return st
}

// AssertSamePod fails the test, showing both, unless the pods are
// semantically equal.
func AssertSamePod(t *testing.T, got, want *corev1.Pod) {
	t.Helper()
	if !equality.Semantic.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("pods differ\n got: %s\nwant: %s", g, w)
	}
}

// ConfigNames are the names of the configuration's channels, in order.
func ConfigNames(cfg *channelconfig.Config) []string {
	var names []string
	for _, c := range cfg.Channels {
		names = append(names, c.Name)
	}
	return names
}
