//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
)

// podipc.io/dev-shm: two containers of an injected pod share POSIX shared
// memory through shm_open(3) on the /dev/shm the injector mounts (the C
// example podipc-devshm, examples/c): the reader finds the writer's object,
// checks its content and sees the writer's counter advance.
func TestDevShm(t *testing.T) {
	c, ctx := newCluster(t), testContext(t)
	const name = "devshm"
	pod := c.pausePod(name, true)
	pod.Annotations[podcontract.AnnotationDevShm] = "true"
	pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	image := "podipc-examples:" + c.tag
	pod.Spec.Containers = []corev1.Container{
		{Name: "writer", Image: image, ImagePullPolicy: corev1.PullNever, SecurityContext: hardened(),
			Command: []string{"/usr/local/bin/podipc-devshm", "write", "podipc-e2e"}},
		{Name: "reader", Image: image, ImagePullPolicy: corev1.PullNever, SecurityContext: hardened(),
			Command: []string{"/usr/local/bin/podipc-devshm", "read", "podipc-e2e"}},
	}
	pods := c.kube.CoreV1().Pods(c.appNS)
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	t.Cleanup(func() { _ = pods.Delete(ctx, name, metav1.DeleteOptions{}) })
	for _, ctr := range created.Spec.Containers {
		mounted := false
		for _, m := range ctr.VolumeMounts {
			mounted = mounted || (m.MountPath == podcontract.DevShmPath && m.Name == podcontract.VolumeName)
		}
		if !mounted {
			t.Fatalf("container %s: the injector did not mount the podipc volume at %s: %+v", ctr.Name, podcontract.DevShmPath, ctr.VolumeMounts)
		}
	}

	testkit.Eventually(t, 2*time.Minute, "the reader finds the writer's shared memory and exits 0", func() error {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s, _ := containerStatus(p, "reader")
		if s.State.Terminated == nil && s.LastTerminationState.Terminated == nil {
			return fmt.Errorf("reader: %+v", s.State)
		}
		if s.RestartCount > 0 || (s.State.Terminated != nil && s.State.Terminated.ExitCode != 0) {
			t.Fatalf("the reader failed (restarts %d, state %+v); its log:\n%s", s.RestartCount, s.State, c.logs(t, name, "reader"))
		}
		return nil
	})
	if out := c.logs(t, name, "reader"); !strings.Contains(out, "checksum ok, the writer's counter advanced") {
		t.Fatalf("the reader's log:\n%s", out)
	}
	p, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := containerStatus(p, "writer"); s.State.Running == nil || s.RestartCount != 0 {
		t.Errorf("the writer: restarts %d, state %+v; its log:\n%s", s.RestartCount, s.State, c.logs(t, name, "writer"))
	}
}

// logs returns the log of container ctr of pod name in the app namespace.
func (c *cluster) logs(t *testing.T, name, ctr string) string {
	t.Helper()
	raw, err := c.kube.CoreV1().Pods(c.appNS).GetLogs(name, &corev1.PodLogOptions{Container: ctr}).Do(testContext(t)).Raw()
	if err != nil {
		return fmt.Sprintf("(cannot read the log of %s/%s: %v)", name, ctr, err)
	}
	return string(raw)
}
