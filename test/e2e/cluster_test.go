//go:build e2e

// Package e2e holds the end-to-end scenarios that run against the kind
// cluster kind-test/run.sh creates, with podipc's chart installed and the
// example pods running (docs/e2e.md). run.sh runs them with
// `go test -tags e2e ./test/e2e` and passes what they need in E2E_*
// variables; each scenario is a named test that says what a user would
// check, and every wait has a deadline that fails with what was last seen.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
)

// cluster is what run.sh set up.
type cluster struct {
	kube      kubernetes.Interface
	node      string // the kind node's container, for docker exec
	tag       string // the podipc images' tag
	pause     string // the node's pause image
	systemNS  string // where the chart is installed
	release   string // the Helm release
	appNS     string // where the example channels and pods live
	appLabels map[string]string
}

func env(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run the end-to-end tests through kind-test/run.sh (make e2e)", name)
	}
	return v
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", env(t, "KUBECONFIG"))
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return &cluster{
		kube:      kube,
		node:      env(t, "E2E_NODE"),
		tag:       env(t, "E2E_IMAGE_TAG"),
		pause:     env(t, "E2E_PAUSE_IMAGE"),
		systemNS:  env(t, "E2E_SYSTEM_NS"),
		release:   env(t, "E2E_RELEASE"),
		appNS:     env(t, "E2E_APP_NS"),
		appLabels: map[string]string{"app": "podipc-e2e"},
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace with labels for the test and deletes it
// (without waiting) when the test ends.
func (c *cluster) namespace(t *testing.T, ctx context.Context, name string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = c.kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// hardened is a container security context that Pod Security's restricted
// profile admits.
func hardened() *corev1.SecurityContext {
	no, yes := false, true
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// pausePod is a pod of one hardened container running the node's pause
// image; annotated with podipc.io/inject: "true" when inject is set.
func (c *cluster) pausePod(name string, inject bool) *corev1.Pod {
	uid, yes := int64(65532), true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "podipc-e2e-" + name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "pause", Image: c.pause, ImagePullPolicy: corev1.PullNever, SecurityContext: hardened(),
			}},
		},
	}
	if inject {
		pod.Annotations = map[string]string{podcontract.AnnotationInject: "true"}
	}
	return pod
}

// sidecarOf returns the pod's injected sidecar, nil if it has none.
func sidecarOf(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == podcontract.SidecarName {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// containerStatus returns the status of the pod's container (or init
// container) name.
func containerStatus(pod *corev1.Pod, name string) (corev1.ContainerStatus, bool) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, s := range list {
			if s.Name == name {
				return s, true
			}
		}
	}
	return corev1.ContainerStatus{}, false
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitPodReady waits until the pod is Ready and returns it.
func (c *cluster) waitPodReady(t *testing.T, ctx context.Context, ns, name string, within time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	testkit.Eventually(t, within, "pod "+ns+"/"+name+" is Ready", func() error {
		var err error
		if pod, err = c.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if !podReady(pod) {
			return fmt.Errorf("phase %s, conditions %v, containers %v", pod.Status.Phase, pod.Status.Conditions, pod.Status.ContainerStatuses)
		}
		return nil
	})
	return pod
}

// onNode runs a command in the kind node's container.
func (c *cluster) onNode(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", c.node}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// killContainer SIGKILLs the running container name of the pod through the
// node's CRI, as an OOM kill or a crash would end it.
func (c *cluster) killContainer(t *testing.T, ctx context.Context, ns, pod, name string) {
	t.Helper()
	podID, err := c.onNode(ctx, "crictl", "pods", "-q", "--namespace", ns, "--name", "^"+pod+"$", "--state", "Ready")
	if err != nil || podID == "" {
		t.Fatalf("crictl pods for %s/%s: %q, %v", ns, pod, podID, err)
	}
	id, err := c.onNode(ctx, "crictl", "ps", "-q", "--pod", podID, "--name", "^"+name+"$")
	if err != nil || id == "" {
		t.Fatalf("crictl ps for container %s of %s/%s: %q, %v", name, ns, pod, id, err)
	}
	if out, err := c.onNode(ctx, "crictl", "stop", "--timeout", "0", id); err != nil {
		t.Fatalf("crictl stop %s: %s: %v", id, out, err)
	}
}

// metrics scrapes the pod's sidecar through the API server's pod proxy.
func (c *cluster) metrics(ctx context.Context, ns, pod string) (string, error) {
	raw, err := c.kube.CoreV1().RESTClient().Get().
		AbsPath("/api/v1/namespaces", ns, "pods", pod+":"+strconv.Itoa(podcontract.DefaultMetricsPort), "proxy/metrics").
		DoRaw(ctx)
	return string(raw), err
}

// metricSum is the sum of the samples of the metric name whose labels contain
// every one of labels (such as `channel="frames"`), and whether there was one.
func metricSum(text, name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		series := line[:sp]
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}
