//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podipc/podipc/internal/testkit"
)

// A non-Go container: the C example (podipc-example-c, examples/c, a
// static binary in the FROM scratch examples image) beside the Go example
// apps in one injected pod, on the shared-memory channel frames and the
// queue jobs. Go and C producers both send to both; a Go and a C consumer
// both take from both (frames is a Queue channel, jobs a queue: each
// message goes to one of them), so each consumer reads the other
// language's messages; every consumer reports a non-zero rate on both and
// the sidecar counts the acknowledgements.
func TestPolyglotPod(t *testing.T) {
	c, ctx := newCluster(t), testContext(t)
	const name = "polyglot"
	pod := c.examplePod(name, 10*time.Minute)
	image := "podipc-examples:" + c.tag
	cExample := func(ctrName string, args ...string) corev1.Container {
		return corev1.Container{Name: ctrName, Image: image, ImagePullPolicy: corev1.PullNever, SecurityContext: hardened(),
			Command: append([]string{"/usr/local/bin/podipc-example-c"}, args...)}
	}
	pod.Spec.Containers = append(pod.Spec.Containers,
		cExample("c-producer", "produce", "--shm", "frames", "--mq", "jobs", "--rate", "1000", "--mq-rate", "100", "--size", "256"),
		cExample("c-consumer", "consume", "--shm", "frames", "--mq", "jobs", "--interval", "2"))
	pods := c.kube.CoreV1().Pods(c.appNS)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	t.Cleanup(func() { _ = pods.Delete(ctx, name, metav1.DeleteOptions{}) })
	c.waitPodReady(t, ctx, c.appNS, name, 2*time.Minute)

	rates := map[string][]*regexp.Regexp{
		"consumer":   {regexp.MustCompile(`shm frames +Queue +[1-9][0-9]* msg/s`), regexp.MustCompile(`mq  jobs +[1-9][0-9]* msg/s`)},
		"c-consumer": {regexp.MustCompile(`shm frames +[1-9][0-9]* msg/s`), regexp.MustCompile(`mq  jobs +[1-9][0-9]* msg/s`)},
	}
	for ctr, want := range rates {
		testkit.Eventually(t, time.Minute, ctr+" reports messages from both the channel and the queue", func() error {
			out := c.logs(t, name, ctr)
			for _, re := range want {
				if !re.MatchString(out) {
					return fmt.Errorf("no line matching %q in its log:\n%s", re, out)
				}
			}
			return nil
		})
	}
	c.waitFlowing(t, ctx, name, "the sidecar counts acknowledgements on jobs", "podipc_mq_acked_messages_total", `queue="jobs"`)
	p, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.RestartCount != 0 || s.State.Running == nil {
			t.Errorf("container %s: restarts %d, state %+v; its log:\n%s", s.Name, s.RestartCount, s.State, c.logs(t, name, s.Name))
		}
	}
}
