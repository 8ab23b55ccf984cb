package charts_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podipc/podipc/internal/testenv"
)

const chartDir = "podipc"

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime's logger; route it to stderr.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}

// rendered is a chart rendered with one value set.
type rendered struct {
	rel  release
	objs []*unstructured.Unstructured
}

// all returns the rendered objects of kind.
func (r *rendered) all(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one decodes the only rendered object of kind into into, failing the test
// unless there is exactly one.
func (r *rendered) one(t *testing.T, kind string, into any) {
	t.Helper()
	objs := r.all(kind)
	if len(objs) != 1 {
		t.Fatalf("rendered %d objects of kind %s, want 1", len(objs), kind)
	}
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, into); err != nil {
		t.Fatalf("decode the %s: %v", kind, err)
	}
}

// named returns the rendered object of kind and name, or nil.
func (r *rendered) named(kind, name string) *unstructured.Unstructured {
	for _, o := range r.all(kind) {
		if o.GetName() == name {
			return o
		}
	}
	return nil
}

// injector is the rendered injector Deployment and its container.
type injector struct {
	deploy    appsv1.Deployment
	container corev1.Container
}

func (r *rendered) injector(t *testing.T) injector {
	t.Helper()
	var in injector
	r.one(t, "Deployment", &in.deploy)
	containers := in.deploy.Spec.Template.Spec.Containers
	if len(containers) != 1 {
		t.Fatalf("injector pod has %d containers, want 1", len(containers))
	}
	in.container = containers[0]
	return in
}

// flag returns the value of --name=value in the container's arguments.
func (in injector) flag(t *testing.T, name string) string {
	t.Helper()
	prefix := "--" + name + "="
	for _, arg := range in.container.Args {
		if value, ok := strings.CutPrefix(arg, prefix); ok {
			return value
		}
	}
	t.Fatalf("injector has no %s flag; args: %q", prefix, in.container.Args)
	return ""
}

// mountedVolume is a volume and where the injector container mounts it.
type mountedVolume struct {
	mount  corev1.VolumeMount
	volume corev1.Volume
}

// volumeAt returns the volume the injector container mounts at path.
func (in injector) volumeAt(t *testing.T, path string) mountedVolume {
	t.Helper()
	i := slices.IndexFunc(in.container.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == path })
	if i < 0 {
		t.Fatalf("the injector mounts nothing at %s", path)
	}
	m := in.container.VolumeMounts[i]
	j := slices.IndexFunc(in.deploy.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
	if j < 0 {
		t.Fatalf("the injector mounts volume %s, which the pod does not declare", m.Name)
	}
	return mountedVolume{mount: m, volume: in.deploy.Spec.Template.Spec.Volumes[j]}
}

func (r *rendered) webhook(t *testing.T) (admissionregistrationv1.MutatingWebhookConfiguration, admissionregistrationv1.MutatingWebhook) {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	r.one(t, "MutatingWebhookConfiguration", &mwc)
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("MutatingWebhookConfiguration has %d webhooks, want 1", len(mwc.Webhooks))
	}
	return mwc, mwc.Webhooks[0]
}

// notInValues returns the values of the namespace selector's NotIn expression on key.
func notInValues(sel *metav1.LabelSelector, key string) []string {
	if sel == nil {
		return nil
	}
	for _, e := range sel.MatchExpressions {
		if e.Key == key && e.Operator == metav1.LabelSelectorOpNotIn {
			return e.Values
		}
	}
	return nil
}

// valueSets lists the chart's ci/*-values.yaml files by set name.
func valueSets(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no value sets in %s/ci (err %v)", chartDir, err)
	}
	sets := map[string]string{}
	for _, p := range paths {
		sets[strings.TrimSuffix(filepath.Base(p), "-values.yaml")] = p
	}
	return sets
}

// setChecks are the promises of each value set in ci/, beyond the invariants
// every rendering keeps. Every value set must have an entry.
var setChecks = map[string]func(t *testing.T, r *rendered){
	"default": func(t *testing.T, r *rendered) {
		in := r.injector(t)
		if got := *in.deploy.Spec.Replicas; got != 2 {
			t.Errorf("replicas = %d, want 2", got)
		}
		if got := in.flag(t, "leader-elect"); got != "true" {
			t.Errorf("--leader-elect = %s, want true", got)
		}
		var pdb struct {
			Spec struct {
				MinAvailable int `json:"minAvailable"`
			} `json:"spec"`
		}
		r.one(t, "PodDisruptionBudget", &pdb)
		if pdb.Spec.MinAvailable != 1 {
			t.Errorf("PDB minAvailable = %d, want 1", pdb.Spec.MinAvailable)
		}
		aff := in.deploy.Spec.Template.Spec.Affinity
		if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Errorf("affinity = %+v, want one preferred pod anti-affinity term", aff)
		}
		_, wh := r.webhook(t)
		if *wh.FailurePolicy != admissionregistrationv1.Fail || *wh.TimeoutSeconds != 10 ||
			*wh.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			t.Errorf("webhook failurePolicy %s timeout %d reinvocation %s; want Fail, 10, IfNeeded",
				*wh.FailurePolicy, *wh.TimeoutSeconds, *wh.ReinvocationPolicy)
		}
		if sel := wh.ObjectSelector; len(sel.MatchLabels) != 0 || len(sel.MatchExpressions) != 1 {
			t.Errorf("objectSelector %v, want only the opt-out expression", sel)
		}
		if len(r.all("CustomResourceDefinition")) != 1 || len(r.all("Secret")) != 1 {
			t.Errorf("want the CRD and the empty webhook Secret rendered")
		}
		for _, kind := range []string{"Certificate", "Issuer", "ServiceMonitor", "PodMonitor"} {
			if n := len(r.all(kind)); n != 0 {
				t.Errorf("rendered %d %s by default, want none", n, kind)
			}
		}
	},
	"cert-manager": func(t *testing.T, r *rendered) {
		if n := len(r.all("Issuer")); n != 2 {
			t.Errorf("rendered %d Issuers, want 2 (self-signed root and CA)", n)
		}
		prefix := r.rel.name + "-podipc"
		ca := r.named("Certificate", prefix+"-ca")
		if ca == nil {
			t.Fatalf("no CA Certificate %s-ca", prefix)
		}
		if isCA, _, _ := unstructured.NestedBool(ca.Object, "spec", "isCA"); !isCA {
			t.Errorf("CA Certificate has isCA false")
		}
		serving := r.named("Certificate", prefix+"-webhook")
		if serving == nil {
			t.Fatalf("no serving Certificate %s-webhook", prefix)
		}
		issuer, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "name")
		if issuer != prefix+"-ca" || r.named("Issuer", issuer) == nil {
			t.Errorf("serving certificate's issuer %q is not the rendered CA Issuer", issuer)
		}
	},
	"cert-manager-issuer": func(t *testing.T, r *rendered) {
		if n := len(r.all("Issuer")); n != 0 {
			t.Errorf("rendered %d Issuers with an existing issuerRef, want 0", n)
		}
		certs := r.all("Certificate")
		if len(certs) != 1 {
			t.Fatalf("rendered %d Certificates, want 1", len(certs))
		}
		ref, _, _ := unstructured.NestedStringMap(certs[0].Object, "spec", "issuerRef")
		want := map[string]string{"name": "corporate-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
		if !equality.Semantic.DeepEqual(ref, want) {
			t.Errorf("issuerRef = %v, want %v", ref, want)
		}
		in := r.injector(t)
		if got := in.flag(t, "cert-secret-name"); got != "podipc-serving-cert" {
			t.Errorf("--cert-secret-name = %s, want podipc-serving-cert", got)
		}
		duration, _, _ := unstructured.NestedString(certs[0].Object, "spec", "duration")
		if duration != "720h" {
			t.Errorf("duration = %s, want 720h", duration)
		}
	},
	"failure-policy-ignore": func(t *testing.T, r *rendered) {
		_, wh := r.webhook(t)
		if *wh.FailurePolicy != admissionregistrationv1.Ignore || *wh.TimeoutSeconds != 5 ||
			*wh.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy {
			t.Errorf("webhook failurePolicy %s timeout %d reinvocation %s; want Ignore, 5, Never",
				*wh.FailurePolicy, *wh.TimeoutSeconds, *wh.ReinvocationPolicy)
		}
	},
	"object-selector": func(t *testing.T, r *rendered) {
		_, wh := r.webhook(t)
		want := map[string]string{"podipc.io/enabled": "true"}
		if !equality.Semantic.DeepEqual(wh.ObjectSelector.MatchLabels, want) {
			t.Errorf("objectSelector = %v, want matchLabels %v", wh.ObjectSelector, want)
		}
		excluded := notInValues(wh.NamespaceSelector, corev1.LabelMetadataName)
		for _, ns := range []string{"monitoring", "cert-manager"} {
			if !slices.Contains(excluded, ns) {
				t.Errorf("namespace %s not excluded: %v", ns, excluded)
			}
		}
		if !slices.ContainsFunc(wh.NamespaceSelector.MatchExpressions, func(e metav1.LabelSelectorRequirement) bool {
			return e.Key == "environment" && e.Operator == metav1.LabelSelectorOpIn
		}) {
			t.Errorf("namespaceSelector lost the user's expression: %v", wh.NamespaceSelector)
		}
	},
	"no-ha": func(t *testing.T, r *rendered) {
		in := r.injector(t)
		if got := *in.deploy.Spec.Replicas; got != 1 {
			t.Errorf("replicas = %d, want 1", got)
		}
		if got := in.flag(t, "leader-elect"); got != "false" {
			t.Errorf("--leader-elect = %s, want false", got)
		}
		if n := len(r.all("PodDisruptionBudget")); n != 0 {
			t.Errorf("rendered %d PodDisruptionBudgets with one replica, want 0", n)
		}
		if aff := in.deploy.Spec.Template.Spec.Affinity; aff != nil {
			t.Errorf("affinity = %+v, want none", aff)
		}
	},
	"monitoring": func(t *testing.T, r *rendered) {
		if n := len(r.all("CustomResourceDefinition")); n != 0 {
			t.Errorf("rendered %d CRDs with crds.install false, want 0", n)
		}
		in := r.injector(t)
		if want := "registry.example.com/podipc/podipc-injector@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; in.container.Image != want {
			t.Errorf("image = %s, want %s", in.container.Image, want)
		}
		sms := r.all("ServiceMonitor")
		pms := r.all("PodMonitor")
		if len(sms) != 1 || len(pms) != 1 {
			t.Fatalf("rendered %d ServiceMonitors and %d PodMonitors, want 1 and 1", len(sms), len(pms))
		}
		for _, m := range []*unstructured.Unstructured{sms[0], pms[0]} {
			if m.GetLabels()["release"] != "prometheus" {
				t.Errorf("%s %s lacks the label release=prometheus", m.GetKind(), m.GetName())
			}
		}
		sel, _, _ := unstructured.NestedStringMap(pms[0].Object, "spec", "selector", "matchLabels")
		if sel["podipc.io/injected"] != "true" {
			t.Errorf("PodMonitor selects %v, want the injected pods", sel)
		}
		anyNS, _, _ := unstructured.NestedBool(pms[0].Object, "spec", "namespaceSelector", "any")
		if !anyNS {
			t.Errorf("PodMonitor does not look in every namespace")
		}
		// The ServiceMonitor must select the Service that exposes the injector's metrics port.
		smSel, _, _ := unstructured.NestedStringMap(sms[0].Object, "spec", "selector", "matchLabels")
		var svc corev1.Service
		r.one(t, "Service", &svc)
		for k, v := range smSel {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, v, svc.Labels[k])
			}
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "metrics" }) {
			t.Errorf("the Service has no port named metrics for the ServiceMonitor")
		}
	},
}

// TestChart lints and renders the chart with every value set, checks what the
// set promises and what every rendering keeps, and applies every rendered
// object with a server-side dry run to a real API server.
func TestChart(t *testing.T) {
	h := findHelm(t)
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	projectCRDs, err := testenv.ProjectCRDs()
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, testenv.Options{
		Scheme:   scheme,
		CRDPaths: append(projectCRDs, filepath.Join("testdata", "crds")),
	})
	// A release name other than the chart's, so that names are composed (team-a-podipc-...).
	rel := release{name: "team-a", namespace: "podipc-system"}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rel.namespace}}
	if err := env.Client.Create(t.Context(), ns); err != nil {
		t.Fatalf("create the release namespace: %v", err)
	}

	// The end-to-end test's manifests are validated here too (the IPCChannels by the CRD's CEL rules),
	// so that a mistake in them fails in minutes, not at the end of a kind run.
	t.Run("kind-test manifests", func(t *testing.T) {
		objs, err := readManifests(filepath.Join("..", "kind-test", "manifests", "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) < 4 {
			t.Fatalf("read %d objects from kind-test/manifests, want the channels and pods", len(objs))
		}
		appNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "podipc-e2e"}}
		if err := env.Client.Create(t.Context(), appNS); err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			o.SetNamespace(appNS.Name)
		}
		dryRunApply(t, env.Client, objs)
	})

	for name, values := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			check, ok := setChecks[name]
			if !ok {
				t.Fatalf("value set %s has no entry in setChecks: say what it promises", values)
			}
			if err := h.lint(t.Context(), chartDir, values); err != nil {
				t.Fatal(err)
			}
			objs, err := h.template(t.Context(), chartDir, rel, values)
			if err != nil {
				t.Fatal(err)
			}
			r := &rendered{rel: rel, objs: objs}
			checkInvariants(t, r)
			check(t, r)
			dryRunApply(t, env.Client, objs)
		})
	}
}

// dryRunApply applies every object with a server-side, dry-run apply: the API
// server defaults, validates (strictly: unknown fields are errors) and admits
// each one as it would on install, and stores nothing.
func dryRunApply(t *testing.T, c client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, obj := range objs {
		err := c.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(obj),
			client.FieldOwner("podipc-chart-test"), client.ForceOwnership, client.DryRunAll)
		if err != nil {
			t.Errorf("server-side dry-run apply of %s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
}

// clusterScoped are the kinds the chart renders without a namespace.
var clusterScoped = []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}

// checkInvariants checks what every rendering of the chart keeps, whatever
// the values: labels, namespaces, a hardened injector, and the names that tie
// the webhook, its Service, its certificate and the injector's flags together.
func checkInvariants(t *testing.T, r *rendered) {
	t.Helper()
	for _, o := range r.objs {
		labels := o.GetLabels()
		for k, want := range map[string]string{
			"app.kubernetes.io/instance": r.rel.name, "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "podipc",
		} {
			if labels[k] != want {
				t.Errorf("%s %s: label %s = %q, want %q", o.GetKind(), o.GetName(), k, labels[k], want)
			}
		}
		wantNS := r.rel.namespace
		if slices.Contains(clusterScoped, o.GetKind()) {
			wantNS = ""
		}
		if o.GetNamespace() != wantNS {
			t.Errorf("%s %s: namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), wantNS)
		}
	}
	in := r.injector(t)
	checkHardened(t, in)
	checkWebhookWiring(t, r, in)
	checkCertificateWiring(t, r, in)
	checkRBACWiring(t, r, in)
	if crds := r.all("CustomResourceDefinition"); len(crds) > 0 {
		checkCRDs(t, crds)
	}
}

func checkHardened(t *testing.T, in injector) {
	t.Helper()
	pod := in.deploy.Spec.Template.Spec
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and seccomp RuntimeDefault", psc)
	}
	c := in.container
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatalf("injector container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("injector root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("injector may escalate privileges")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0:
		t.Errorf("injector may run as root: %+v", sc)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("injector capabilities %+v, want drop ALL and add none", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("injector seccomp %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.StartupProbe == nil {
		t.Errorf("injector lacks a probe: liveness %v readiness %v startup %v", c.LivenessProbe, c.ReadinessProbe, c.StartupProbe)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("injector resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
}

// checkWebhookWiring follows the API server's path: webhook → Service → port →
// injector container port, and the injector's flags naming them.
func checkWebhookWiring(t *testing.T, r *rendered, in injector) {
	t.Helper()
	mwc, wh := r.webhook(t)
	if !slices.Equal(wh.AdmissionReviewVersions, []string{"v1"}) || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		*wh.MatchPolicy != admissionregistrationv1.Equivalent {
		t.Errorf("webhook admissionReviewVersions %v sideEffects %s matchPolicy %s; want [v1], None, Equivalent",
			wh.AdmissionReviewVersions, *wh.SideEffects, *wh.MatchPolicy)
	}
	wantRule := admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
	}
	if len(wh.Rules) != 1 || !equality.Semantic.DeepEqual(wh.Rules[0].Operations, wantRule.Operations) ||
		!equality.Semantic.DeepEqual(wh.Rules[0].Resources, wantRule.Resources) || !equality.Semantic.DeepEqual(wh.Rules[0].APIGroups, wantRule.APIGroups) {
		t.Errorf("webhook rules %+v, want only pod CREATE", wh.Rules)
	}
	excluded := notInValues(wh.NamespaceSelector, corev1.LabelMetadataName)
	for _, ns := range []string{"kube-system", r.rel.namespace} {
		if !slices.Contains(excluded, ns) {
			t.Errorf("namespaceSelector does not exclude %s: %v", ns, wh.NamespaceSelector)
		}
	}
	for what, sel := range map[string]*metav1.LabelSelector{"namespaceSelector": wh.NamespaceSelector, "objectSelector": wh.ObjectSelector} {
		if !slices.Equal(notInValues(sel, "podipc.io/injection"), []string{"disabled"}) {
			t.Errorf("%s %v lacks the opt-out podipc.io/injection NotIn [disabled]", what, sel)
		}
	}
	if got := in.flag(t, "webhook-config-name"); got != mwc.Name {
		t.Errorf("--webhook-config-name = %s, want %s", got, mwc.Name)
	}
	ref := wh.ClientConfig.Service
	if ref == nil || ref.Namespace != r.rel.namespace || ref.Path == nil || *ref.Path != "/mutate-v1-pod" {
		t.Fatalf("webhook clientConfig.service %+v, want a Service in %s at /mutate-v1-pod", ref, r.rel.namespace)
	}
	if got := in.flag(t, "service-name"); got != ref.Name {
		t.Errorf("--service-name = %s, want %s", got, ref.Name)
	}
	svcObj := r.named("Service", ref.Name)
	if svcObj == nil {
		t.Fatalf("the webhook calls Service %s, which is not rendered", ref.Name)
	}
	var svc corev1.Service
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(svcObj.Object, &svc); err != nil {
		t.Fatal(err)
	}
	podLabels := in.deploy.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("Service selects %s=%s; the injector pods have %q", k, v, podLabels[k])
		}
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == *ref.Port })
	if i < 0 {
		t.Fatalf("Service %s has no port %d for the webhook", svc.Name, *ref.Port)
	}
	target := svc.Spec.Ports[i].TargetPort.String()
	j := slices.IndexFunc(in.container.Ports, func(p corev1.ContainerPort) bool { return p.Name == target })
	if j < 0 {
		t.Fatalf("Service port %d targets %q, which the injector container does not declare", *ref.Port, target)
	}
	if got, want := in.flag(t, "webhook-port"), fmt.Sprint(in.container.Ports[j].ContainerPort); got != want {
		t.Errorf("--webhook-port = %s, but the container port %s is %s", got, target, want)
	}
}

// checkCertificateWiring checks that the Secret the injector serves from is
// the one that is filled: by the injector (self) or by cert-manager for the
// Service's DNS name, whose CA cainjector puts into the webhook.
func checkCertificateWiring(t *testing.T, r *rendered, in injector) {
	t.Helper()
	secretName := in.flag(t, "cert-secret-name")
	certDir := in.volumeAt(t, in.flag(t, "cert-dir"))
	mwc, wh := r.webhook(t)
	certs := r.all("Certificate")
	switch mode := in.flag(t, "cert-mode"); mode {
	case "self":
		// The injector writes the serving certificate from the Secret into --cert-dir itself.
		if certDir.volume.EmptyDir == nil || certDir.mount.ReadOnly {
			t.Errorf("self mode: --cert-dir is %+v, want a writable emptyDir", certDir)
		}
		if r.named("Secret", secretName) == nil || len(certs) != 0 {
			t.Errorf("self mode: want the Secret %s rendered and no Certificate", secretName)
		}
		if _, ok := mwc.Annotations["cert-manager.io/inject-ca-from"]; ok {
			t.Errorf("self mode: the webhook asks cert-manager's cainjector for its CA")
		}
	case "cert-manager":
		if certDir.volume.Secret == nil || certDir.volume.Secret.SecretName != secretName {
			t.Errorf("cert-manager mode: --cert-dir holds %+v, want the Secret %s", certDir.volume, secretName)
		}
		if len(r.all("Secret")) != 0 {
			t.Errorf("cert-manager mode: the chart renders a Secret that cert-manager owns")
		}
		i := slices.IndexFunc(certs, func(c *unstructured.Unstructured) bool {
			name, _, _ := unstructured.NestedString(c.Object, "spec", "secretName")
			return name == secretName
		})
		if i < 0 {
			t.Fatalf("no Certificate writes the Secret %s", secretName)
		}
		if got, want := mwc.Annotations["cert-manager.io/inject-ca-from"], r.rel.namespace+"/"+certs[i].GetName(); got != want {
			t.Errorf("inject-ca-from = %q, want %q", got, want)
		}
		dnsNames, _, _ := unstructured.NestedStringSlice(certs[i].Object, "spec", "dnsNames")
		want := wh.ClientConfig.Service.Name + "." + r.rel.namespace + ".svc"
		if !slices.Contains(dnsNames, want) {
			t.Errorf("serving certificate names %v, not %s that the API server calls", dnsNames, want)
		}
	default:
		t.Errorf("--cert-mode = %q", mode)
	}
}

// checkRBACWiring checks that the bindings grant the injector's service
// account, and that the Role's resource names are the Secret and Lease the
// injector's flags name.
func checkRBACWiring(t *testing.T, r *rendered, in injector) {
	t.Helper()
	sa := in.deploy.Spec.Template.Spec.ServiceAccountName
	if r.named("ServiceAccount", sa) == nil {
		t.Errorf("the injector runs as ServiceAccount %q, which is not rendered", sa)
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		var b rbacv1.RoleBinding // ClusterRoleBinding has the same shape
		r.one(t, kind, &b)
		if len(b.Subjects) != 1 || b.Subjects[0].Name != sa || b.Subjects[0].Namespace != r.rel.namespace {
			t.Errorf("%s subjects %+v, want only %s/%s", kind, b.Subjects, r.rel.namespace, sa)
		}
		roleKind := strings.TrimSuffix(kind, "Binding")
		if b.RoleRef.Kind != roleKind || r.named(roleKind, b.RoleRef.Name) == nil {
			t.Errorf("%s refers to %s %s, which is not rendered", kind, b.RoleRef.Kind, b.RoleRef.Name)
		}
	}
	var role rbacv1.Role
	r.one(t, "Role", &role)
	var cr rbacv1.ClusterRole
	r.one(t, "ClusterRole", &cr)
	grants := func(rules []rbacv1.PolicyRule, resource, name, verb string) bool {
		return slices.ContainsFunc(rules, func(rule rbacv1.PolicyRule) bool {
			return slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) &&
				(len(rule.ResourceNames) == 0 || slices.Contains(rule.ResourceNames, name))
		})
	}
	lease := in.flag(t, "leader-election-id")
	if !grants(role.Rules, "leases", lease, "update") {
		t.Errorf("the Role does not let the injector renew its Lease %s", lease)
	}
	// Only in self mode does the injector write the Secret and the caBundle; with cert-manager it
	// must not be able to.
	self := in.flag(t, "cert-mode") == "self"
	secret := in.flag(t, "cert-secret-name")
	if got := grants(role.Rules, "secrets", secret, "update"); got != self {
		t.Errorf("the Role grants updating the Secret %s: %t, want %t (self mode)", secret, got, self)
	}
	mwc := in.flag(t, "webhook-config-name")
	if got := grants(cr.Rules, "mutatingwebhookconfigurations", mwc, "update"); got != self {
		t.Errorf("the ClusterRole grants updating the webhook configuration %s: %t, want %t (self mode)", mwc, got, self)
	}
	for _, rule := range append(slices.Clone(role.Rules), cr.Rules...) {
		if slices.Contains(rule.Verbs, "*") || slices.Contains(rule.Resources, "*") || slices.Contains(rule.APIGroups, "*") {
			t.Errorf("wildcard rule %+v", rule)
		}
	}
	if self {
		checkRBACMirrorsConfig(t, cr.Rules, role.Rules)
	}
}

// checkRBACMirrorsConfig holds the chart's rules to config/rbac's, which the
// injector's envtest suite proves sufficient. Resource names differ (the
// chart's follow the release), so they compare as their count.
func checkRBACMirrorsConfig(t *testing.T, clusterRules, roleRules []rbacv1.PolicyRule) {
	t.Helper()
	objs, err := readManifests(filepath.Join("..", "config", "rbac", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]rbacv1.PolicyRule{}
	for _, o := range objs {
		if kind := o.GetKind(); kind == "ClusterRole" || kind == "Role" {
			var role rbacv1.Role
			if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
				t.Fatal(err)
			}
			want[kind] = append(want[kind], role.Rules...)
		}
	}
	if len(want) != 2 {
		t.Fatalf("config/rbac has roles of kinds %v, want a ClusterRole and a Role", slices.Collect(maps.Keys(want)))
	}
	for kind, got := range map[string][]rbacv1.PolicyRule{"ClusterRole": clusterRules, "Role": roleRules} {
		if g, w := normalizeRules(got), normalizeRules(want[kind]); !slices.Equal(g, w) {
			t.Errorf("the chart's %s differs from config/rbac's:\nchart:       %q\nconfig/rbac: %q", kind, g, w)
		}
	}
}

// normalizeRules writes each rule as one sorted line, with its resource names
// replaced by their count.
func normalizeRules(rules []rbacv1.PolicyRule) []string {
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		sorted := func(s []string) string {
			s = slices.Clone(s)
			slices.Sort(s)
			return strings.Join(s, ",")
		}
		out = append(out, fmt.Sprintf("groups=%s resources=%s names=%d verbs=%s",
			sorted(r.APIGroups), sorted(r.Resources), len(r.ResourceNames), sorted(r.Verbs)))
	}
	slices.Sort(out)
	return out
}

// checkCRDs checks that the rendered CRDs are config/crd's, with the release's
// labels and, when crds.keep, the keep policy.
func checkCRDs(t *testing.T, crds []*unstructured.Unstructured) {
	t.Helper()
	want, err := readManifests(filepath.Join("..", "config", "crd", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(crds) != len(want) {
		t.Fatalf("rendered %d CRDs, config/crd has %d", len(crds), len(want))
	}
	for _, w := range want {
		i := slices.IndexFunc(crds, func(c *unstructured.Unstructured) bool { return c.GetName() == w.GetName() })
		if i < 0 {
			t.Errorf("CRD %s of config/crd is not rendered", w.GetName())
			continue
		}
		if !equality.Semantic.DeepEqual(crds[i].Object["spec"], w.Object["spec"]) {
			t.Errorf("the rendered CRD %s's spec differs from config/crd's", w.GetName())
		}
	}
}

// TestChartCRDsAreConfigCRDs holds the chart's copy of the CRDs (files/crds,
// written by `make chart-crds`) to config/crd, their one source of truth.
func TestChartCRDsAreConfigCRDs(t *testing.T) {
	source, err := filepath.Glob(filepath.Join("..", "config", "crd", "*.yaml"))
	if err != nil || len(source) == 0 {
		t.Fatalf("no CRDs in config/crd (err %v)", err)
	}
	copies, err := filepath.Glob(filepath.Join(chartDir, "files", "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base := func(paths []string) []string {
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i] = filepath.Base(p)
		}
		return out
	}
	if !slices.Equal(base(source), base(copies)) {
		t.Fatalf("chart CRDs %v, config/crd %v: run `make chart-crds`", base(copies), base(source))
	}
	for _, p := range source {
		a, errA := os.ReadFile(p)
		b, errB := os.ReadFile(filepath.Join(chartDir, "files", "crds", filepath.Base(p)))
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s/files/crds/%s differs from config/crd: run `make chart-crds`", chartDir, filepath.Base(p))
		}
	}
}

// TestChartRejectsInvalidValues checks that values.schema.json and the
// templates' own checks refuse what would render a broken release.
func TestChartRejectsInvalidValues(t *testing.T) {
	h := findHelm(t)
	rel := release{name: "podipc", namespace: "podipc-system"}
	tests := []struct {
		name string
		set  []string
		want string // in helm's error
	}{
		{"unknown top-level key", []string{"--set", "replicaCount=3"}, "replicaCount"},
		{"unknown nested key (typo)", []string{"--set", "injector.replica=3"}, "replica"},
		{"failurePolicy outside the enum", []string{"--set", "webhook.failurePolicy=Retry"}, "failurePolicy"},
		{"timeout above the API server's maximum", []string{"--set", "webhook.timeoutSeconds=31"}, "timeoutSeconds"},
		{"unknown certificate mode", []string{"--set", "certificates.mode=vault"}, "mode"},
		{"zero replicas", []string{"--set", "injector.replicas=0"}, "replicas"},
		{"memory that is not a quantity", []string{"--set", "sidecar.resources.limits.memory=lots"}, "memory"},
		{"issuerRef without a name", []string{"--set", "certificates.mode=certManager", "--set", "certificates.certManager.issuerRef.kind=ClusterIssuer"}, "issuerRef"},
		{"namespace that is not a DNS label", []string{"--set", "webhook.excludeNamespaces[0]=Not_A_Namespace"}, "excludeNamespaces"},
		{"replicas without leader election", []string{"--set", "injector.leaderElection.enabled=false"}, "leaderElection"},
		{"a digest that is not sha256", []string{"--set", "sidecar.image.digest=md5:abc"}, "digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := h.template(t.Context(), chartDir, rel, "", tt.set...)
			if err == nil {
				t.Fatalf("helm template %v rendered %d objects, want an error", tt.set, len(objs))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v does not mention %q", err, tt.want)
			}
		})
	}
}
