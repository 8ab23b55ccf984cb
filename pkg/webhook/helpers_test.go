package webhook

import (
	"encoding/json"
	"testing"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podipc/podipc/api/v1alpha1"
)

const testNamespace = "apps"

// newPod is an injectable pod with app containers of the given names.
func newPod(annotations map[string]string, containers ...string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: testNamespace, Labels: map[string]string{"app": "demo"}, Annotations: annotations},
	}
	for _, name := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: name, Image: name + ":1"})
	}
	return pod
}

func injectPod(extra map[string]string, containers ...string) *corev1.Pod {
	a := map[string]string{podcontract.AnnotationInject: "true"}
	for k, v := range extra {
		a[k] = v
	}
	return newPod(a, containers...)
}

func shmChannel(name string, slotSize, slotCount int32, selector *metav1.LabelSelector) v1alpha1.IPCChannel {
	return v1alpha1.IPCChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace},
		Spec: v1alpha1.IPCChannelSpec{Selector: selector, ChannelSettings: v1alpha1.ChannelSettings{
			Type:         v1alpha1.ChannelTypeSharedMemory,
			SharedMemory: &v1alpha1.SharedMemorySettings{SlotSize: slotSize, SlotCount: slotCount},
		}},
	}
}

func mqChannel(name string, persistent bool, deadLetter string) v1alpha1.IPCChannel {
	mq := &v1alpha1.MessageQueueSettings{DeadLetterQueue: deadLetter}
	if persistent {
		mq.Persistence = v1alpha1.PersistenceVolume
	}
	return v1alpha1.IPCChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace},
		Spec:       v1alpha1.IPCChannelSpec{ChannelSettings: v1alpha1.ChannelSettings{Type: v1alpha1.ChannelTypeMessageQueue, MessageQueue: mq}},
	}
}

func selectApp(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func testSettings() Settings {
	s := DefaultSettings()
	s.InjectorVersion = "v0.0.0-test"
	s.SidecarImage = "podipc-sidecar:test"
	return s
}

func mustMutate(t *testing.T, pod *corev1.Pod, channels []v1alpha1.IPCChannel, s Settings) *corev1.Pod {
	t.Helper()
	out, err := Mutate(pod, channels, s)
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	return out
}

func mustStatus(t *testing.T, pod *corev1.Pod) Status {
	t.Helper()
	st, ok, err := ReadStatus(pod)
	if err != nil || !ok {
		t.Fatalf("ReadStatus: ok=%v err=%v", ok, err)
	}
	return st
}

func sidecarOf(t *testing.T, pod *corev1.Pod) *corev1.Container {
	t.Helper()
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		if i := containerIndex(list, podcontract.SidecarName); i >= 0 {
			return &list[i]
		}
	}
	t.Fatalf("pod has no %s container", podcontract.SidecarName)
	return nil
}

func volumeOf(t *testing.T, pod *corev1.Pod, name string) *corev1.Volume {
	t.Helper()
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	t.Fatalf("pod has no volume %q", name)
	return nil
}

func assertSamePod(t *testing.T, got, want *corev1.Pod) {
	t.Helper()
	if !equality.Semantic.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("pods differ\n got: %s\nwant: %s", g, w)
	}
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}
