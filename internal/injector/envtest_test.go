package injector_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/internal/admission"
	"github.com/podipc/podipc/internal/injector"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/injection"
)

const (
	injectorNamespace = "podipc-system"
	injectorUser      = "system:serviceaccount:podipc-system:podipc-injector"
	webhookConfigName = "podipc-injector"
	secretName        = "podipc-injector-tls"
)

func TestCRDRejectsInvalidChannels(t *testing.T) {
	env := requireControlPlane(t)
	createNamespace(t, env.Client, "crd-checks", nil)
	shm := func(name string, s v1alpha1.SharedMemorySettings) *v1alpha1.IPCChannel {
		return &v1alpha1.IPCChannel{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "crd-checks"},
			Spec:       v1alpha1.IPCChannelSpec{ChannelSettings: v1alpha1.ChannelSettings{Type: v1alpha1.ChannelTypeSharedMemory, SharedMemory: &s}},
		}
	}
	mq := func(name string, s v1alpha1.MessageQueueSettings) *v1alpha1.IPCChannel {
		return &v1alpha1.IPCChannel{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "crd-checks"},
			Spec:       v1alpha1.IPCChannelSpec{ChannelSettings: v1alpha1.ChannelSettings{Type: v1alpha1.ChannelTypeMessageQueue, MessageQueue: &s}},
		}
	}
	missingBlock := shm("no-block", v1alpha1.SharedMemorySettings{})
	missingBlock.Spec.SharedMemory = nil
	for name, tc := range map[string]struct {
		obj  *v1alpha1.IPCChannel
		want string
	}{
		"slot count not a power of two": {shm("odd", v1alpha1.SharedMemorySettings{SlotCount: 1000}), channelconfig.MsgSlotCountPowerOfTwo},
		"overwrite in queue mode":       {shm("ow", v1alpha1.SharedMemorySettings{Mode: v1alpha1.SharedMemoryModeQueue, Overflow: v1alpha1.SharedMemoryOverflowOverwrite}), channelconfig.MsgOverwriteNeedsBroadcast},
		"ring above 1 GiB":              {shm("huge", v1alpha1.SharedMemorySettings{SlotSize: 16 << 20, SlotCount: 128}), channelconfig.MsgRingTooLarge},
		"settings block missing":        {missingBlock, channelconfig.MsgSharedMemoryRequired},
		"name not a DNS label":          {shm("a.b", v1alpha1.SharedMemorySettings{}), channelconfig.MsgNameNotDNSLabel},
		"dead-letter queue is itself":   {mq("loop", v1alpha1.MessageQueueSettings{DeadLetterQueue: "loop"}), channelconfig.MsgDeadLetterQueueSelf},
		"max message above max bytes":   {mq("big", v1alpha1.MessageQueueSettings{MaxBytes: 4096, MaxMessageSize: 8192}), channelconfig.MsgMaxMessageSizeAboveMaxBytes},
		"ack timeout out of range":      {mq("ack", v1alpha1.MessageQueueSettings{AckTimeout: metav1.Duration{Duration: time.Millisecond}}), channelconfig.MsgAckTimeoutRange},
	} {
		t.Run(name, func(t *testing.T) {
			err := env.Client.Create(context.Background(), tc.obj)
			if err == nil {
				t.Fatalf("the API server accepted %s", tc.obj.Name)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not carry the message %q", err, tc.want)
			}
		})
	}
	// And a valid one is accepted and defaulted by the schema.
	ok := shm("fine", v1alpha1.SharedMemorySettings{})
	create(t, env.Client, ok)
	if ok.Spec.SharedMemory.SlotCount != channelconfig.DefaultSlotCount || ok.Spec.SharedMemory.Mode != v1alpha1.SharedMemoryModeQueue {
		t.Fatalf("stored channel not defaulted: %+v", ok.Spec.SharedMemory)
	}
}

// installInjector applies the shipped RBAC and webhook manifests, with the
// webhook configuration pointed at url instead of the Service (there is no
// cluster network in envtest) and without a caBundle.
func installInjector(t *testing.T, c client.Client, url string) {
	t.Helper()
	createNamespace(t, c, injectorNamespace, nil)
	for _, u := range readManifests(t, "config/rbac/role.yaml", "config/rbac/role_binding.yaml", "config/webhook/manifests.yaml") {
		if u.GetKind() == "MutatingWebhookConfiguration" {
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mwc); err != nil {
				t.Fatal(err)
			}
			for i := range mwc.Webhooks {
				mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url)}
			}
			create(t, c, &mwc)
			continue
		}
		create(t, c, u)
	}
}

// impersonate is cfg acting as a ServiceAccount, with the groups the API
// server gives its tokens.
func impersonate(cfg *rest.Config, user string) *rest.Config {
	out := rest.CopyConfig(cfg)
	ns := strings.Split(user, ":")[2]
	out.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	return out
}

// warningRecorder collects the API server's warnings.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.warnings)
}

func testPod(name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
}

var injectMe = map[string]string{podcontract.AnnotationInject: "true"}

func shmChannel(ns, name string, selector map[string]string) *v1alpha1.IPCChannel {
	ch := &v1alpha1.IPCChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.IPCChannelSpec{ChannelSettings: v1alpha1.ChannelSettings{
			Type: v1alpha1.ChannelTypeSharedMemory, SharedMemory: &v1alpha1.SharedMemorySettings{},
		}},
	}
	if selector != nil {
		ch.Spec.Selector = &metav1.LabelSelector{MatchLabels: selector}
	}
	return ch
}

func mqChannel(ns, name string, selector map[string]string, deadLetter string) *v1alpha1.IPCChannel {
	ch := shmChannel(ns, name, selector)
	ch.Spec.Type, ch.Spec.SharedMemory = v1alpha1.ChannelTypeMessageQueue, nil
	ch.Spec.MessageQueue = &v1alpha1.MessageQueueSettings{DeadLetterQueue: deadLetter}
	return ch
}

// TestInjectorSelfManaged runs the injector as its ServiceAccount, bound to
// exactly the shipped roles, with self-managed TLS, and checks the whole
// path: the caBundle, admission through the API server, the controllers'
// status and pushes, certificate rotation and what the roles do not allow.
func TestInjectorSelfManaged(t *testing.T) {
	env := requireControlPlane(t)
	admin := env.Client
	port := freePort(t)
	url := fmt.Sprintf("https://localhost:%d%s", port, admission.Path)
	installInjector(t, admin, url)

	healthPort := freePort(t)
	opts := injector.DefaultOptions()
	opts.Version = "v0.0.0-envtest"
	opts.WebhookHost, opts.WebhookPort = "127.0.0.1", port
	opts.HealthAddr = "127.0.0.1:" + strconv.Itoa(healthPort)
	opts.MetricsAddr = "0"
	opts.CertDir = t.TempDir()
	opts.CertExtraDNSNames = []string{"localhost"}
	// Serving certificates valid for an hour and renewed when they expire
	// within an hour less 5 s: each is renewed some seconds after it is
	// issued, which exercises rotation all along the test.
	opts.CertServerValidity, opts.CertLookahead, opts.CertCheckInterval = time.Hour, time.Hour-5*time.Second, 2*time.Second
	opts.SkipNameValidation = true
	startInjector(t, impersonate(env.Config, injectorUser), opts)

	ctx := context.Background()
	var secret corev1.Secret
	testkit.Eventually(t, 60*time.Second, "the CA is in the webhook configuration's caBundle", func() error {
		if err := admin.Get(ctx, client.ObjectKey{Namespace: injectorNamespace, Name: secretName}, &secret); err != nil {
			return err
		}
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := admin.Get(ctx, client.ObjectKey{Name: webhookConfigName}, &mwc); err != nil {
			return err
		}
		ca := secret.Data["ca.crt"]
		if len(ca) == 0 || !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, ca) {
			return fmt.Errorf("caBundle %d bytes, secret ca.crt %d bytes", len(mwc.Webhooks[0].ClientConfig.CABundle), len(ca))
		}
		return nil
	})
	testkit.Eventually(t, 30*time.Second, "/readyz passes", func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})

	createNamespace(t, admin, "apps", nil)
	createNamespace(t, admin, "quiet", map[string]string{podcontract.LabelInjection: "disabled"})
	create(t, admin, shmChannel("apps", "frames", map[string]string{"app": "demo"}))
	create(t, admin, mqChannel("apps", "jobs", nil, ""))
	create(t, admin, shmChannel("apps", "later-only", map[string]string{"app": "nobody"}))

	// The first pod waits for the API server to pick up the caBundle.
	injected := testPod("injected", map[string]string{"app": "demo"}, injectMe)
	testkit.Eventually(t, 30*time.Second, "an annotated pod is admitted", func() error { return admin.Create(ctx, injected) })
	t.Cleanup(func() { _ = admin.Delete(ctx, injected) })
	t.Run("stored pod is injected", func(t *testing.T) {
		var got corev1.Pod
		if err := admin.Get(ctx, client.ObjectKeyFromObject(injected), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != podcontract.SidecarName ||
			got.Spec.InitContainers[0].RestartPolicy == nil || *got.Spec.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("init containers %+v, want the native sidecar (the API server is 1.34)", got.Spec.InitContainers)
		}
		if got.Labels[podcontract.LabelInjected] != "true" {
			t.Fatalf("labels %v", got.Labels)
		}
		st, ok, err := injection.ReadStatus(&got)
		if !ok || err != nil || !slices.Equal(st.Channels, []string{"frames", "jobs"}) || st.Version != "v0.0.0-envtest" {
			t.Fatalf("status %+v ok=%v err=%v", st, ok, err)
		}
		// The sidecar gets its configuration as a file and nothing else: no
		// credentials, no API server address.
		side := got.Spec.InitContainers[0]
		for _, m := range side.VolumeMounts {
			if m.Name != podcontract.VolumeName && m.Name != podcontract.ConfigVolumeName && m.Name != podcontract.NoTokenVolumeName {
				t.Errorf("sidecar mounts %s at %s", m.Name, m.MountPath)
			}
		}
		if len(side.Env) != 0 || len(side.EnvFrom) != 0 {
			t.Errorf("sidecar has environment %v %v", side.Env, side.EnvFrom)
		}
	})

	t.Run("pods without injection are left alone", func(t *testing.T) {
		for _, p := range []*corev1.Pod{
			testPod("plain", map[string]string{"app": "demo"}, nil),
			testPod("opted-out", map[string]string{podcontract.LabelInjection: "disabled"}, injectMe),
			func() *corev1.Pod { p := testPod("quiet-ns", nil, injectMe); p.Namespace = "quiet"; return p }(),
		} {
			want := p.DeepCopy()
			create(t, admin, p)
			if len(p.Spec.InitContainers)+len(p.Spec.Containers) != 1 || p.Labels[podcontract.LabelInjected] != "" || len(p.Spec.Volumes) != len(want.Spec.Volumes) {
				t.Errorf("pod %s/%s was changed: %+v", p.Namespace, p.Name, p.Spec)
			}
		}
	})

	t.Run("invalid pods are refused with the reason", func(t *testing.T) {
		for name, tc := range map[string]struct {
			annotations map[string]string
			want        []string
		}{
			"bad value": {map[string]string{podcontract.AnnotationInject: "true", podcontract.AnnotationDevShm: "yes"}, []string{podcontract.AnnotationDevShm, `"true" or "false"`}},
			"too large": {map[string]string{podcontract.AnnotationInject: "true", podcontract.AnnotationTmpfsSize: "100Gi"}, []string{podcontract.AnnotationTmpfsSize, "more than the injector's maximum of 4Gi"}},
			"typo":      {map[string]string{podcontract.AnnotationInject: "yes"}, []string{podcontract.AnnotationInject}},
		} {
			err := admin.Create(ctx, testPod("refused-"+strings.ReplaceAll(name, " ", "-"), nil, tc.annotations))
			if err == nil {
				t.Errorf("%s: pod admitted", name)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not say %q", name, err, w)
				}
			}
		}
	})

	parent := t
	t.Run("a missing channel warns, then is pushed when created", func(t *testing.T) {
		warnings := &warningRecorder{}
		cfg := rest.CopyConfig(env.Config)
		cfg.WarningHandlerWithContext = warnings
		c, err := client.New(cfg, client.Options{Scheme: admin.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		// The pod reserves tmpfs for the channel it waits for.
		p := testPod("waits", map[string]string{"app": "demo"}, map[string]string{
			podcontract.AnnotationInject: "true", podcontract.AnnotationChannels: "frames,later", podcontract.AnnotationTmpfsSize: "16Mi"})
		create(parent, c, p)
		if w := warnings.all(); !slices.ContainsFunc(w, func(s string) bool {
			return strings.Contains(s, "later") && strings.Contains(s, podcontract.AnnotationChannels)
		}) {
			t.Fatalf("warnings %q, want one naming the missing channel", w)
		}
		if st, _, _ := injection.ReadStatus(p); !slices.Equal(st.Missing, []string{"later"}) {
			t.Fatalf("status %+v, want later missing", st)
		}
		create(t, admin, shmChannel("apps", "later", map[string]string{"app": "nobody"}))
		testkit.Eventually(t, 30*time.Second, "the controller pushes the new channel", func() error {
			var got corev1.Pod
			if err := admin.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
				return err
			}
			st, _, _ := injection.ReadStatus(&got)
			cfg, err := channelconfig.Parse([]byte(got.Annotations[podcontract.AnnotationConfig]))
			if err != nil {
				return err
			}
			if !slices.Equal(st.Channels, []string{"frames", "later"}) || len(st.Missing) != 0 || len(cfg.Channels) != 2 || cfg.Channels[1].Name != "later" {
				return fmt.Errorf("status %+v, config %+v", st, cfg.Channels)
			}
			return nil
		})
	})

	t.Run("channel status counts matched and ready pods", func(t *testing.T) {
		// frames applies to "injected" (by selector) and "waits" (by name).
		waitStatus := func(matched, ready int32, readyCond metav1.ConditionStatus) {
			t.Helper()
			testkit.Eventually(t, 30*time.Second, fmt.Sprintf("frames has %d matched, %d ready", matched, ready), func() error {
				var ch v1alpha1.IPCChannel
				if err := admin.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "frames"}, &ch); err != nil {
					return err
				}
				c := meta.FindStatusCondition(ch.Status.Conditions, v1alpha1.ConditionReady)
				if ch.Status.MatchedPods != matched || ch.Status.ReadyPods != ready || c == nil || c.Status != readyCond || ch.Status.ObservedGeneration != ch.Generation {
					return fmt.Errorf("status %+v", ch.Status)
				}
				return nil
			})
		}
		waitStatus(2, 0, metav1.ConditionFalse)
		for i, name := range []string{"injected", "waits"} {
			markSidecarReady(t, admin, name)
			waitStatus(2, int32(i+1), map[bool]metav1.ConditionStatus{false: metav1.ConditionFalse, true: metav1.ConditionTrue}[i == 1])
		}
	})

	t.Run("valid condition follows the dead-letter queue", func(t *testing.T) {
		create(t, admin, mqChannel("apps", "orders", map[string]string{"app": "nobody"}, "orders-dlq"))
		waitValid := func(want metav1.ConditionStatus, reason string) {
			t.Helper()
			testkit.Eventually(t, 30*time.Second, "orders is "+reason, func() error {
				var ch v1alpha1.IPCChannel
				if err := admin.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "orders"}, &ch); err != nil {
					return err
				}
				if c := meta.FindStatusCondition(ch.Status.Conditions, v1alpha1.ConditionValid); c == nil || c.Status != want || c.Reason != reason {
					return fmt.Errorf("conditions %+v", ch.Status.Conditions)
				}
				return nil
			})
		}
		waitValid(metav1.ConditionFalse, v1alpha1.ReasonDeadLetterQueueNotFound)
		create(t, admin, mqChannel("apps", "orders-dlq", map[string]string{"app": "nobody"}, ""))
		waitValid(metav1.ConditionTrue, v1alpha1.ReasonValid)
	})

	t.Run("serving certificate rotates and admission goes on", func(t *testing.T) {
		var before corev1.Secret
		if err := admin.Get(ctx, client.ObjectKey{Namespace: injectorNamespace, Name: secretName}, &before); err != nil {
			t.Fatal(err)
		}
		var after corev1.Secret
		testkit.Eventually(t, 30*time.Second, "a new serving certificate", func() error {
			if err := admin.Get(ctx, client.ObjectKeyFromObject(&before), &after); err != nil {
				return err
			}
			if bytes.Equal(after.Data["tls.crt"], before.Data["tls.crt"]) {
				return fmt.Errorf("tls.crt unchanged")
			}
			return nil
		})
		if !bytes.Equal(after.Data["ca.crt"], before.Data["ca.crt"]) {
			t.Fatalf("the CA changed with the serving certificate")
		}
		// The webhook serves a certificate issued after the first one, and the
		// API server still accepts it.
		// (cert-controller gives every serving certificate serial number 1, so
		// they are told apart by their bytes.)
		first := leafOf(t, before.Data["tls.crt"])
		testkit.Eventually(t, 30*time.Second, "the webhook serves a renewed certificate", func() error {
			served, err := servedCertificate(port, after.Data["ca.crt"])
			if err != nil {
				return err
			}
			if bytes.Equal(served.Raw, first.Raw) {
				return fmt.Errorf("still the first certificate")
			}
			return nil
		})
		create(t, admin, testPod("after-rotation", nil, injectMe))
	})

	t.Run("least privilege", func(t *testing.T) {
		// Everything above ran as the injector's ServiceAccount; here is what
		// its roles do not allow, and what an app's ServiceAccount (the
		// sidecar's identity) can do: nothing.
		for _, tc := range []struct {
			user  string
			attrs authorizationv1.ResourceAttributes
		}{
			{injectorUser, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "apps", Name: "x"}},
			{injectorUser, authorizationv1.ResourceAttributes{Verb: "update", Resource: "secrets", Namespace: injectorNamespace, Name: "other"}},
			{injectorUser, authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: "someone-elses"}},
			{injectorUser, authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "apps"}},
			{injectorUser, authorizationv1.ResourceAttributes{Verb: "delete", Resource: "pods", Namespace: "apps"}},
			{injectorUser, authorizationv1.ResourceAttributes{Verb: "update", Group: "podipc.io", Resource: "ipcchannels", Namespace: "apps"}},
			{injectorUser, authorizationv1.ResourceAttributes{Verb: "get", Resource: "configmaps", Namespace: "apps"}},
			{"system:serviceaccount:apps:default", authorizationv1.ResourceAttributes{Verb: "get", Resource: "pods", Namespace: "apps"}},
			{"system:serviceaccount:apps:default", authorizationv1.ResourceAttributes{Verb: "list", Group: "podipc.io", Resource: "ipcchannels", Namespace: "apps"}},
		} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: tc.user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: &tc.attrs,
			}}
			if err := admin.Create(ctx, sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed {
				t.Errorf("%s may %s %s/%s %s: it should not", tc.user, tc.attrs.Verb, tc.attrs.Group, tc.attrs.Resource, tc.attrs.Name)
			}
		}
	})
}

// markSidecarReady reports the pod's sidecar ready, as the kubelet would.
func markSidecarReady(t *testing.T, c client.Client, name string) {
	t.Helper()
	var pod corev1.Pod
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "apps", Name: name}, &pod); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{
		Name: podcontract.SidecarName, Image: pod.Spec.InitContainers[0].Image, Ready: true, Started: ptr.To(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
	}}
	if err := c.Status().Update(context.Background(), &pod); err != nil {
		t.Fatalf("update status of %s: %v", name, err)
	}
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// servedCertificate is the certificate the webhook presents, verified
// against caPEM for the name localhost, as the API server verifies it.
func servedCertificate(port int, caPEM []byte) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// TestInjectorCertManagerMode serves certificates it did not make (envtest's
// WebhookInstallOptions stand in for cert-manager: a CA in the caBundle and a
// key pair in a directory) and injects a plain sidecar.
func TestInjectorCertManagerMode(t *testing.T) {
	env := requireControlPlane(t)
	admin := env.Client
	ctx := context.Background()
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	for _, u := range readManifests(t, "config/webhook/manifests.yaml") {
		if u.GetKind() == "MutatingWebhookConfiguration" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, mwc); err != nil {
				t.Fatal(err)
			}
		}
	}
	mwc.Name = "podipc-injector-cert-manager"
	install := envtest.WebhookInstallOptions{MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{mwc}, LocalServingHost: "127.0.0.1"}
	if err := install.PrepWithoutInstalling(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = install.Cleanup() })
	url := fmt.Sprintf("https://127.0.0.1:%d%s", install.LocalServingPort, admission.Path)
	mwc.Webhooks[0].ClientConfig.URL = &url
	create(t, admin, mwc)

	opts := injector.DefaultOptions()
	opts.CertMode = injector.CertModeCertManager
	opts.CertDir = install.LocalServingCertDir
	opts.WebhookHost, opts.WebhookPort = "127.0.0.1", install.LocalServingPort
	opts.MetricsAddr, opts.HealthAddr = "0", "0"
	opts.LeaderElect = false
	opts.NativeSidecar = injector.NativeSidecarNever
	opts.SkipNameValidation = true
	startInjector(t, env.Config, opts)

	createNamespace(t, admin, "cm-apps", nil)
	pod := testPod("plain-sidecar", nil, injectMe)
	pod.Namespace = "cm-apps"
	testkit.Eventually(t, 30*time.Second, "an annotated pod is admitted", func() error { return admin.Create(ctx, pod) })
	t.Cleanup(func() { _ = admin.Delete(ctx, pod) })
	if len(pod.Spec.InitContainers) != 0 || len(pod.Spec.Containers) != 2 || pod.Spec.Containers[1].Name != podcontract.SidecarName {
		t.Fatalf("containers %+v, want the app and a plain sidecar", pod.Spec.Containers)
	}
}
