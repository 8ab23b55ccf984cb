// Command admission-bench measures what the podipc injector adds to pod
// creation through a real kube-apiserver (envtest, `make envtest-bins`): it
// creates pods at a steady rate without any webhook, then through the
// webhook without and with injection, and reports the latency percentiles of
// each phase and the injector's resident memory. The injector runs as its
// own process, built from cmd/injector, so its RSS is its own.
//
//	go run ./hack/admission-bench -rate 100 -duration 10s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/internal/admission"
	"github.com/podipc/podipc/internal/injector"
	"github.com/podipc/podipc/internal/testenv"
	"github.com/podipc/podipc/pkg/webhook"
)

func main() {
	rate := flag.Int("rate", 100, "pod creations per second")
	duration := flag.Duration("duration", 10*time.Second, "length of each phase")
	profile := flag.String("cpuprofile", "", "write the injector's CPU profile of the injection phase to this file")
	flag.Parse()
	if err := run(*rate, *duration, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "admission-bench:", err)
		os.Exit(1)
	}
}

func run(rate int, duration time.Duration, profile string) (err error) {
	scheme, err := injector.NewScheme()
	if err != nil {
		return err
	}
	env, err := testenv.Launch(testenv.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, env.Stop()) }()
	ctx := context.Background()
	c := env.Client

	work, err := os.MkdirTemp("", "admission-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "podipc-injector")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/injector").CombinedOutput(); err != nil {
		return fmt.Errorf("build the injector: %w: %s", err, out)
	}
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := writeKubeconfig(env.Config, kubeconfig); err != nil {
		return err
	}

	// cert-manager mode with envtest's certificates: the TLS path the API
	// server takes is the same as with self-managed certificates.
	mwc := webhookConfiguration()
	certs := envtest.WebhookInstallOptions{MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{mwc}, LocalServingHost: "127.0.0.1"}
	if err := certs.PrepWithoutInstalling(); err != nil {
		return fmt.Errorf("prepare webhook certificates: %w", err)
	}
	defer certs.Cleanup()
	url := fmt.Sprintf("https://127.0.0.1:%d%s", certs.LocalServingPort, admission.Path)
	mwc.Webhooks[0].ClientConfig.URL = &url

	healthPort, err := freePort()
	if err != nil {
		return err
	}
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	pprofPort, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "--cert-mode=cert-manager", "--cert-dir="+certs.LocalServingCertDir,
		"--webhook-host=127.0.0.1", "--webhook-port="+strconv.Itoa(certs.LocalServingPort), "--leader-elect=false",
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(healthPort), "--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort),
		"--pprof-bind-address=127.0.0.1:"+strconv.Itoa(pprofPort), "--log-level=WARN")
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the injector: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort), 60*time.Second); err != nil {
		return err
	}
	rssIdle, _ := rss(cmd.Process.Pid)

	for _, ns := range []string{"bench-baseline", "bench-large", "bench-passthrough", "bench-inject"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	chs := channels("bench-inject")
	for _, ch := range chs {
		if err := c.Create(ctx, ch); err != nil {
			return err
		}
	}
	plain := func(ns string, annotations map[string]string) func(int) *corev1.Pod {
		return func(i int) *corev1.Pod {
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%05d", i), Namespace: ns, Annotations: annotations, Labels: map[string]string{"app": "bench"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}, {Name: "worker", Image: "worker:1"}}},
			}
		}
	}
	// Pods injected by the pure function before they are sent: what the API
	// server stores is as large as an injected pod, without a webhook call.
	settings := webhook.DefaultSettings()
	var resolved []v1alpha1.IPCChannel
	for _, ch := range chs {
		resolved = append(resolved, *ch)
	}
	preInjected := func(i int) *corev1.Pod {
		p := plain("bench-large", map[string]string{podcontract.AnnotationInject: "true"})(i)
		out, err := webhook.Mutate(p, resolved, settings)
		if err != nil {
			panic(err) // the inputs are fixed
		}
		return out
	}

	fmt.Printf("pod creations at %d/s for %v per phase; kube-apiserver %s (envtest), injector in its own process\n\n", rate, duration, filepath.Base(env.AssetsDir))
	fmt.Println("| phase | pods | p50 | p90 | p99 | max | errors |")
	fmt.Println("|---|---|---|---|---|---|---|")
	baseline, err := phase(ctx, c, "no webhook", plain("bench-baseline", nil), false, rate, duration)
	if err != nil {
		return err
	}
	large, err := phase(ctx, c, "no webhook, pod sent already injected", preInjected, true, rate, duration)
	if err != nil {
		return err
	}
	if err := c.Create(ctx, mwc); err != nil {
		return err
	}
	// Wait until the API server calls the webhook: an injected pod comes back.
	if err := waitInjected(ctx, c); err != nil {
		return err
	}
	passthrough, err := phase(ctx, c, "webhook, pod not annotated", plain("bench-passthrough", nil), false, rate, duration)
	if err != nil {
		return err
	}
	profiled := make(chan error, 1)
	if profile != "" {
		go func() {
			profiled <- fetch(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", pprofPort, int(duration.Seconds())), profile)
		}()
	} else {
		profiled <- nil
	}
	inject, err := phase(ctx, c, "webhook, pod injected (3 channels)", plain("bench-inject", map[string]string{podcontract.AnnotationInject: "true"}), true, rate, duration)
	if err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		return err
	}
	var events corev1.EventList
	if err := c.List(ctx, &events, client.InNamespace("bench-inject")); err == nil {
		reasons := map[string]int{}
		for _, e := range events.Items {
			reasons[e.Reason]++
		}
		fmt.Printf("\nevents in the injection namespace: %v\n", reasons)
	}
	rssNow, hwm := rss(cmd.Process.Pid)
	added := func(with, without latencies) string {
		return fmt.Sprintf("p50 %v, p99 %v", (with.p(50) - without.p(50)).Round(10*time.Microsecond), (with.p(99) - without.p(99)).Round(10*time.Microsecond))
	}
	fmt.Printf("\nadded by the webhook call: %s (pod not annotated, vs no webhook); %s (injected, vs the same pod sent injected)\n",
		added(passthrough, baseline), added(inject, large))
	fmt.Printf("added by injection as a whole: %s (vs the plain pod without webhook)\n", added(inject, baseline))
	fmt.Printf("injector RSS: %s idle, %s after the run (peak %s)\n", rssIdle, rssNow, hwm)
	if mean, err := webhookMean(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)); err == nil {
		fmt.Printf("injector's own handling time (controller_runtime_webhook_latency_seconds mean): %v\n", mean.Round(time.Microsecond))
	}
	return nil
}

type latencies []time.Duration

func (l latencies) p(q int) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, len(l)*q/100)]
}

// phase creates pods at a steady rate, each creation in its own goroutine
// (an open loop: a slow answer does not slow the next request), and prints
// the latency percentiles.
func phase(ctx context.Context, c client.Client, name string, newPod func(i int) *corev1.Pod, wantInjected bool, rate int, duration time.Duration) (latencies, error) {
	n := int(duration.Seconds() * float64(rate))
	var mu sync.Mutex
	var lat latencies
	var errs []error
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range n {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := newPod(i)
			start := time.Now()
			err := c.Create(ctx, pod)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if wantInjected && pod.Labels[podcontract.LabelInjected] != "true" {
				errs = append(errs, fmt.Errorf("pod %s was not injected", pod.Name))
			}
			lat = append(lat, d)
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	fmt.Printf("| %s | %d | %v | %v | %v | %v | %d |\n", name, len(lat), ms(lat.p(50)), ms(lat.p(90)), ms(lat.p(99)), ms(lat[len(lat)-1]), len(errs))
	if len(errs) > n/100 {
		return nil, fmt.Errorf("%s: %d of %d creations failed, first: %w", name, len(errs), n, errs[0])
	}
	return lat, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func channels(ns string) []*v1alpha1.IPCChannel {
	shm := func(name string) *v1alpha1.IPCChannel {
		return &v1alpha1.IPCChannel{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.IPCChannelSpec{
			Selector:        &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
			ChannelSettings: v1alpha1.ChannelSettings{Type: v1alpha1.ChannelTypeSharedMemory, SharedMemory: &v1alpha1.SharedMemorySettings{}},
		}}
	}
	mq := &v1alpha1.IPCChannel{ObjectMeta: metav1.ObjectMeta{Name: "jobs", Namespace: ns}, Spec: v1alpha1.IPCChannelSpec{
		ChannelSettings: v1alpha1.ChannelSettings{Type: v1alpha1.ChannelTypeMessageQueue, MessageQueue: &v1alpha1.MessageQueueSettings{}},
	}}
	return []*v1alpha1.IPCChannel{shm("frames"), shm("events"), mq}
}

func webhookConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "podipc-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.podipc.io",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			TimeoutSeconds:          ptr.To[int32](5),
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "podipc-system", Name: "podipc-injector", Path: ptr.To(admission.Path)}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	}
}

func waitInjected(ctx context.Context, c client.Client) error {
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("probe-%d", i), Namespace: "bench-inject", Annotations: map[string]string{podcontract.AnnotationInject: "true"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
		}
		err := c.Create(ctx, pod)
		if err == nil && pod.Labels[podcontract.LabelInjected] == "true" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server does not call the webhook: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the injector is not ready at %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rss reads a process's resident and peak resident memory.
func rss(pid int) (cur, peak string) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?", "?"
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			cur = kib(f[1])
		case "VmHWM:":
			peak = kib(f[1])
		}
	}
	return cur, peak
}

func kib(v string) string {
	n, _ := strconv.Atoi(v)
	return fmt.Sprintf("%.1f MiB", float64(n)/1024)
}

// webhookMean is the mean of the webhook latency histogram the injector exports.
func webhookMean(url string) (time.Duration, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum, count float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.Contains(line, `webhook="`+admission.Path+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case strings.HasPrefix(line, "controller_runtime_webhook_latency_seconds_sum"):
			sum = v
		case strings.HasPrefix(line, "controller_runtime_webhook_latency_seconds_count"):
			count = v
		}
	}
	if count == 0 {
		return 0, errors.New("no webhook latency samples")
	}
	return time.Duration(sum / count * float64(time.Second)), nil
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
