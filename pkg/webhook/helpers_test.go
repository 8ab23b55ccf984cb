package webhook_test

import (
	"testing"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"

	"github.com/podipc/podipc/pkg/injection"
)

func sidecarOf(t *testing.T, pod *corev1.Pod) *corev1.Container {
	t.Helper()
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		if i := injection.ContainerIndex(list, podcontract.SidecarName); i >= 0 {
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

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}
