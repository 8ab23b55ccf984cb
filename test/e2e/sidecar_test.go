//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
)

// examplePod is an injected pod of the example producer and consumer on the
// shared-memory channel frames and the journaled queue jobs (the channels of
// kind-test/manifests/channels.yaml, which select the app namespace's pods
// by their labels). The producer sends for sendFor and then exits.
func (c *cluster) examplePod(name string, sendFor time.Duration) *corev1.Pod {
	pod := c.pausePod(name, true)
	pod.Labels = c.appLabels
	grace := int64(5)
	pod.Spec.TerminationGracePeriodSeconds = &grace
	pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	image := "podipc-examples:" + c.tag
	pod.Spec.Containers = []corev1.Container{
		{
			Name: "producer", Image: image, ImagePullPolicy: corev1.PullNever, SecurityContext: hardened(),
			Command: []string{"/usr/local/bin/producer", "--shm=frames", "--mq=jobs", "--rate=1000", "--mq-rate=100", "--size=256",
				"--duration=" + sendFor.String()},
		},
		{
			Name: "consumer", Image: image, ImagePullPolicy: corev1.PullNever, SecurityContext: hardened(),
			Command: []string{"/usr/local/bin/consumer", "--shm=frames", "--mq=jobs", "--interval=5s"},
		},
	}
	return pod
}

// waitFlowing waits until the pod's sidecar counts more than 50 more of
// metric (summed over the series with labels) than when it started looking.
func (c *cluster) waitFlowing(t *testing.T, ctx context.Context, pod, what, metric string, labels ...string) {
	t.Helper()
	var first float64
	seen := false
	testkit.Eventually(t, time.Minute, what, func() error {
		text, err := c.metrics(ctx, c.appNS, pod)
		if err != nil {
			return err
		}
		v, _ := metricSum(text, metric, labels...)
		if !seen {
			first, seen = v, true
		}
		if v <= first+50 {
			return fmt.Errorf("%s %v went from %v to %v", metric, labels, first, v)
		}
		return nil
	})
}

// The sidecar container SIGKILLed mid-traffic (a crash, an OOM kill): the
// kubelet restarts it, the application containers are not restarted, traffic
// resumes on the channel and the queue, and once the producer is done the
// queue drains with nothing dropped, dead-lettered, expired or rejected.
func TestSidecarCrash(t *testing.T) {
	c, ctx := newCluster(t), testContext(t)
	const name = "crash"
	pods := c.kube.CoreV1().Pods(c.appNS)
	if _, err := pods.Create(ctx, c.examplePod(name, 75*time.Second), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	t.Cleanup(func() { _ = pods.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	c.waitPodReady(t, ctx, c.appNS, name, 2*time.Minute)

	flowing := func(what, metric string, labels ...string) { c.waitFlowing(t, ctx, name, what, metric, labels...) }
	flowing("messages flow over frames", "podipc_shm_received_messages_total", `channel="frames"`)
	flowing("messages flow over jobs", "podipc_mq_acked_messages_total", `queue="jobs"`)

	c.killContainer(t, ctx, c.appNS, name, podcontract.SidecarName)
	testkit.Eventually(t, 2*time.Minute, "the kubelet restarts the sidecar and the pod is Ready again", func() error {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s, ok := containerStatus(pod, podcontract.SidecarName)
		if !ok || s.RestartCount < 1 || !s.Ready || !podReady(pod) {
			return fmt.Errorf("sidecar status %+v, pod ready %v", s, podReady(pod))
		}
		return nil
	})
	flowing("messages flow over frames after the restart", "podipc_shm_received_messages_total", `channel="frames"`)
	flowing("messages flow over jobs after the restart", "podipc_mq_acked_messages_total", `queue="jobs"`)

	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"producer", "consumer"} {
		if s, _ := containerStatus(pod, app); s.RestartCount != 0 {
			t.Errorf("container %s restarted %d times when the sidecar did; it must ride through (last state %+v)", app, s.RestartCount, s.LastTerminationState)
		}
	}

	testkit.Eventually(t, 3*time.Minute, "the producer is done and jobs is drained", func() error {
		if pod, err = pods.Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if s, _ := containerStatus(pod, "producer"); s.State.Terminated == nil {
			return fmt.Errorf("producer still running")
		}
		text, err := c.metrics(ctx, c.appNS, name)
		if err != nil {
			return err
		}
		depth, _ := metricSum(text, "podipc_mq_depth", `queue="jobs"`)
		inFlight, _ := metricSum(text, "podipc_mq_in_flight", `queue="jobs"`)
		if depth != 0 || inFlight != 0 {
			return fmt.Errorf("jobs holds %v waiting and %v in flight", depth, inFlight)
		}
		return nil
	})
	text, err := c.metrics(ctx, c.appNS, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"dropped", "dead_lettered", "expired", "rejected"} {
		if v, _ := metricSum(text, "podipc_mq_"+m+"_messages_total", `queue="jobs"`); v != 0 {
			t.Errorf("podipc_mq_%s_messages_total{queue=\"jobs\"} = %v after the restart, want 0", m, v)
		}
	}
	if s, _ := containerStatus(pod, "producer"); s.State.Terminated != nil && s.State.Terminated.ExitCode != 0 {
		t.Errorf("the producer failed: %+v", s.State.Terminated)
	}
}

// A pod deleted mid-traffic: the kubelet stops the application containers
// first and the native sidecar last; the sidecar shuts down cleanly within
// the grace period and its termination message reports what its queues
// held (the journaled jobs queue keeps its messages on the volume; nothing
// unjournaled is lost, as the example pod has no such queue).
func TestPodTermination(t *testing.T) {
	c, ctx := newCluster(t), testContext(t)
	const name, grace = "terminate", 20
	pods := c.kube.CoreV1().Pods(c.appNS)
	pod := c.examplePod(name, 10*time.Minute)
	pod.Spec.TerminationGracePeriodSeconds = new(int64)
	*pod.Spec.TerminationGracePeriodSeconds = grace
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	t.Cleanup(func() { _ = pods.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	c.waitPodReady(t, ctx, c.appNS, name, 2*time.Minute)
	c.waitFlowing(t, ctx, name, "messages flow over frames", "podipc_shm_received_messages_total", `channel="frames"`)
	c.waitFlowing(t, ctx, name, "messages flow over jobs", "podipc_mq_acked_messages_total", `queue="jobs"`)

	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatalf("watch pod %s: %v", name, err)
	}
	defer w.Stop()
	deleted := time.Now()
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete pod %s: %v", name, err)
	}
	// The last state the kubelet reported before the pod object went away.
	var last *corev1.Pod
	deadline := time.After(time.Duration(grace+40) * time.Second)
watch:
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("the watch of pod %s ended before it was deleted", name)
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod {
				last = p
			}
			if ev.Type == watch.Deleted {
				break watch
			}
		case <-deadline:
			t.Fatalf("pod %s not gone %v after its deletion (grace period %ds); last seen: %+v", name, time.Since(deleted), grace, statusesOf(last))
		}
	}
	took := time.Since(deleted)
	t.Logf("pod deleted in %v; final container states: %+v", took.Round(time.Millisecond), statusesOf(last))
	if took > grace*time.Second+10*time.Second {
		t.Errorf("the pod took %v to terminate, beyond its %ds grace period", took, grace)
	}

	side, ok := containerStatus(last, podcontract.SidecarName)
	if !ok || side.State.Terminated == nil {
		t.Fatalf("the sidecar's final state was not reported: %+v", statusesOf(last))
	}
	st := side.State.Terminated
	if st.ExitCode != 0 {
		t.Errorf("the sidecar exited with %d (%s): %s", st.ExitCode, st.Reason, st.Message)
	}
	for _, want := range []string{"clean shutdown in ", "; 0 unjournaled messages lost", "queue jobs: ", "(journaled)"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("the sidecar's termination message lacks %q:\n%s", want, st.Message)
		}
	}
	for _, app := range []string{"producer", "consumer"} {
		s, _ := containerStatus(last, app)
		if s.State.Terminated == nil {
			t.Errorf("container %s: final state %+v, want terminated", app, s.State)
			continue
		}
		if s.State.Terminated.FinishedAt.After(st.FinishedAt.Time) {
			t.Errorf("container %s finished at %v, after the sidecar (%v): the sidecar must outlive the applications",
				app, s.State.Terminated.FinishedAt, st.FinishedAt)
		}
		if s.State.Terminated.ExitCode != 0 {
			t.Errorf("container %s exited with %d on SIGTERM: %+v", app, s.State.Terminated.ExitCode, s.State.Terminated)
		}
	}
}

// statusesOf summarises a pod's container states for a failure message.
func statusesOf(pod *corev1.Pod) map[string]corev1.ContainerState {
	out := map[string]corev1.ContainerState{}
	if pod == nil {
		return out
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		out[s.Name] = s.State
	}
	return out
}
