//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
)

// An injected pod is admitted in a namespace that enforces Pod Security's
// restricted profile, and runs: the sidecar and the volumes the injector
// adds satisfy it.
func TestPodSecurityRestricted(t *testing.T) {
	c, ctx := newCluster(t), testContext(t)
	ns := c.namespace(t, ctx, "podipc-e2e-restricted", map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	var pod *corev1.Pod
	// The webhook may refuse for a moment while a new namespace's first pods settle; retry.
	testkit.Eventually(t, time.Minute, "the restricted namespace admits an injected pod", func() error {
		var err error
		pod, err = c.kube.CoreV1().Pods(ns).Create(ctx, c.pausePod("restricted", true), metav1.CreateOptions{})
		return err
	})
	if sidecarOf(pod) == nil {
		t.Fatalf("the pod admitted in %s was not injected: init containers %v", ns, pod.Spec.InitContainers)
	}
	c.waitPodReady(t, ctx, ns, pod.Name, 2*time.Minute)
}

// With the injector down, what the webhook's failurePolicy promises happens:
// with Fail, pods of the namespaces it selects are refused with a message
// that names the webhook, while namespaces and pods excluded from it are
// never affected; with Ignore, annotated pods are admitted uninjected.
func TestWebhookUnavailable(t *testing.T) {
	c, ctx := newCluster(t), testContext(t)
	plainNS := c.namespace(t, ctx, "podipc-e2e-nowebhook", nil)
	disabledNS := c.namespace(t, ctx, "podipc-e2e-disabled", map[string]string{podcontract.LabelInjection: "disabled"})

	deployments := c.kube.AppsV1().Deployments(c.systemNS)
	name := c.release + "-injector"
	scale, err := deployments.GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("injector scale: %v", err)
	}
	replicas := scale.Spec.Replicas
	setReplicas := func(ctx context.Context, n int32) error {
		_, err := deployments.UpdateScale(ctx, name, &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.systemNS},
			Spec:       autoscalingv1.ScaleSpec{Replicas: n},
		}, metav1.UpdateOptions{})
		return err
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := setReplicas(ctx, replicas); err != nil {
			t.Errorf("scale the injector back to %d: %v", replicas, err)
			return
		}
		// The next tests need a serving injector again.
		testkit.Eventually(t, 2*time.Minute, "the injector serves again", func() error {
			_, err := c.kube.CoreV1().Pods(plainNS).Create(ctx, c.pausePod("probe", true), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		})
	})
	if err := setReplicas(ctx, 0); err != nil {
		t.Fatalf("scale the injector to 0: %v", err)
	}

	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var refusal error
	testkit.Eventually(t, 2*time.Minute, "with the injector at 0 replicas, an annotated pod is refused", func() error {
		_, refusal = c.kube.CoreV1().Pods(plainNS).Create(ctx, c.pausePod("annotated", true), dryRun)
		if refusal == nil {
			return errors.New("still admitted")
		}
		return nil
	})
	if msg := refusal.Error(); !strings.Contains(msg, "inject.podipc.io") {
		t.Errorf("the refusal does not name the webhook: %v", msg)
	}

	// Excluded from the webhook: never affected by its failure.
	for _, ex := range []struct {
		what string
		ns   string
		pod  *corev1.Pod
	}{
		{"a pod in a namespace labelled " + podcontract.LabelInjection + "=disabled", disabledNS, c.pausePod("in-disabled-ns", true)},
		{"a pod labelled " + podcontract.LabelInjection + "=disabled", plainNS, withLabel(c.pausePod("disabled-pod", true), podcontract.LabelInjection, "disabled")},
		{"a pod in kube-system", "kube-system", c.pausePod("podipc-e2e-kube-system", false)},
	} {
		pod, err := c.kube.CoreV1().Pods(ex.ns).Create(ctx, ex.pod, dryRun)
		if err != nil {
			t.Errorf("%s was refused while the injector is down: %v", ex.what, err)
		} else if sidecarOf(pod) != nil {
			t.Errorf("%s was injected", ex.what)
		}
	}

	// failurePolicy Ignore: the same annotated pod is admitted, uninjected.
	setPolicy := func(ctx context.Context, p admissionv1.FailurePolicyType) error {
		webhooks := c.kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
		cfg, err := webhooks.Get(ctx, c.release, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range cfg.Webhooks {
			cfg.Webhooks[i].FailurePolicy = &p
		}
		_, err = webhooks.Update(ctx, cfg, metav1.UpdateOptions{})
		return err
	}
	if err := setPolicy(ctx, admissionv1.Ignore); err != nil {
		t.Fatalf("set failurePolicy Ignore: %v", err)
	}
	defer func() {
		if err := setPolicy(context.Background(), admissionv1.Fail); err != nil {
			t.Errorf("restore failurePolicy Fail: %v", err)
		}
	}()
	testkit.Eventually(t, time.Minute, "with failurePolicy Ignore, the annotated pod is admitted uninjected", func() error {
		pod, err := c.kube.CoreV1().Pods(plainNS).Create(ctx, c.pausePod("annotated", true), dryRun)
		if err != nil {
			return err
		}
		if sidecarOf(pod) != nil {
			return fmt.Errorf("admitted with a sidecar although the injector is down")
		}
		return nil
	})
}

func withLabel(pod *corev1.Pod, key, value string) *corev1.Pod {
	pod.Labels[key] = value
	return pod
}
