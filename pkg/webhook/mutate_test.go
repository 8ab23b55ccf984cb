package webhook_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/internal/injectortest"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/injection"
	"github.com/podipc/podipc/pkg/webhook"
)

// ringBytes is the tmpfs of a default shared-memory channel (4096 B × 1024
// slots): a 64 KiB header and 1024 slots of 4224 B, 67 × 64 KiB.
const ringBytes = 4390912

func TestMutateLeavesPodsWithoutInjectionAlone(t *testing.T) {
	channels := []v1alpha1.IPCChannel{injectortest.ShmChannel("frames", 0, 0, nil)}
	for name, pod := range map[string]*corev1.Pod{
		"no annotations":      injectortest.NewPod(nil, "app"),
		"other annotations":   injectortest.NewPod(map[string]string{"example.com/x": "y"}, "app"),
		"inject false":        injectortest.NewPod(map[string]string{podcontract.AnnotationInject: "false"}, "app"),
		"false, bad options":  injectortest.NewPod(map[string]string{podcontract.AnnotationInject: "false", podcontract.AnnotationMountPath: "relative", podcontract.AnnotationTmpfsSize: "lots"}, "app"),
		"knobs but no inject": injectortest.NewPod(map[string]string{podcontract.AnnotationChannels: "frames", podcontract.AnnotationDevShm: "true"}, "app"),
	} {
		t.Run(name, func(t *testing.T) {
			in := pod.DeepCopy()
			out := injectortest.MustMutate(t, pod, channels, injectortest.Settings())
			injectortest.AssertSamePod(t, out, in)
			injectortest.AssertSamePod(t, pod, in) // the input is not modified either
		})
	}
}

func TestMutateInjectsNativeSidecar(t *testing.T) {
	pod := injectortest.InjectPod(nil, "producer", "consumer")
	pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate:1"}}
	in := pod.DeepCopy()
	channels := []v1alpha1.IPCChannel{injectortest.ShmChannel("frames", 0, 0, injectortest.SelectApp("demo")), injectortest.MQChannel("jobs", false, ""), injectortest.ShmChannel("other", 0, 0, injectortest.SelectApp("else"))}

	sel, err := injection.SelectChannels(pod, channels)
	if err != nil {
		t.Fatal(err)
	}
	out := injectortest.MustMutate(t, pod, sel.Channels, injectortest.Settings())
	injectortest.AssertSamePod(t, pod, in)

	if got := out.Spec.InitContainers[0].Name; got != podcontract.SidecarName {
		t.Fatalf("first init container is %q, want the sidecar", got)
	}
	if got := out.Spec.InitContainers[1].Name; got != "migrate" {
		t.Fatalf("the pod's init container moved: second is %q", got)
	}
	side := &out.Spec.InitContainers[0]
	if side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("native sidecar restartPolicy = %v, want Always", side.RestartPolicy)
	}
	if p := side.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.StrVal != podcontract.MetricsPortName {
		t.Fatalf("startup probe = %+v, want GET /readyz on %s", p, podcontract.MetricsPortName)
	}
	if got, want := side.Args, []string{"--config=/etc/podipc/config/channels.yaml", "--dir=/var/run/podipc", "--metrics-addr=:9464"}; !slices.Equal(got, want) {
		t.Fatalf("sidecar args = %q, want %q", got, want)
	}
	if len(out.Spec.Containers) != 2 {
		t.Fatalf("app containers = %d, want 2 (the sidecar is an init container)", len(out.Spec.Containers))
	}

	tmpfs := volumeOf(t, out, podcontract.VolumeName).EmptyDir
	if tmpfs == nil || tmpfs.Medium != corev1.StorageMediumMemory {
		t.Fatalf("volume %s = %+v, want an emptyDir with medium Memory", podcontract.VolumeName, tmpfs)
	}
	// frames (a default ring) is on the tmpfs; jobs is an in-memory queue.
	if got, want := tmpfs.SizeLimit.Value(), int64(ringBytes+injectortest.Settings().TmpfsHeadroomBytes); got != want {
		t.Fatalf("sizeLimit = %d, want %d", got, want)
	}
	dapi := volumeOf(t, out, podcontract.ConfigVolumeName).DownwardAPI
	if dapi == nil || len(dapi.Items) != 1 || dapi.Items[0].FieldRef.FieldPath != "metadata.annotations['podipc.io/config']" || dapi.Items[0].Path != podcontract.ConfigFile {
		t.Fatalf("config volume = %+v, want the podipc.io/config annotation projected as %s", dapi, podcontract.ConfigFile)
	}

	for _, c := range out.Spec.Containers {
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == podcontract.VolumeName && m.MountPath == podcontract.DefaultMountPath
		}) {
			t.Errorf("container %s lacks the tmpfs mount: %+v", c.Name, c.VolumeMounts)
		}
		for name, want := range map[string]string{podcontract.EnvDir: "/var/run/podipc", podcontract.EnvMQSocket: "/var/run/podipc/mq.sock", podcontract.EnvChannels: "frames,jobs", podcontract.EnvBrokerUID: "65532"} {
			if got, _ := envValue(&c, name); got != want {
				t.Errorf("container %s: %s = %q, want %q", c.Name, name, got, want)
			}
		}
	}
	if m := out.Spec.InitContainers[1].VolumeMounts; len(m) != 0 {
		t.Errorf("init container migrate got mounts %+v without being named in %s", m, podcontract.AnnotationContainers)
	}

	cfg, err := channelconfig.Parse([]byte(out.Annotations[podcontract.AnnotationConfig]))
	if err != nil {
		t.Fatalf("podipc.io/config does not parse as the sidecar reads it: %v", err)
	}
	if names := injectortest.ConfigNames(cfg); !slices.Equal(names, []string{"frames", "jobs"}) {
		t.Fatalf("configured channels = %v, want [frames jobs] (other's selector does not match)", names)
	}
	if out.Labels[podcontract.LabelInjected] != "true" {
		t.Fatalf("label %s = %q, want \"true\"", podcontract.LabelInjected, out.Labels[podcontract.LabelInjected])
	}
	st := injectortest.MustStatus(t, out)
	if st.Version != "v0.0.0-test" || !slices.Equal(st.Channels, []string{"frames", "jobs"}) || st.TmpfsBytes != tmpfs.SizeLimit.Value() || len(st.ConfigHash) != 16 {
		t.Fatalf("status = %+v", st)
	}
}

func TestMutateHardensSidecar(t *testing.T) {
	channels := []v1alpha1.IPCChannel{injectortest.ShmChannel("frames", 0, 0, nil), injectortest.MQChannel("jobs", false, "")}
	pod := injectortest.InjectPod(nil, "app")
	pod.Spec.AutomountServiceAccountToken = nil
	out := injectortest.MustMutate(t, pod, channels, injectortest.Settings())
	side := sidecarOf(t, out)
	sc := side.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("sidecar has no security context")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot not set")
	case sc.RunAsUser == nil || *sc.RunAsUser != 65532:
		t.Errorf("runAsUser = %v, want 65532", sc.RunAsUser)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem not set")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation not false")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities = %+v, want drop ALL", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccomp = %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	// The tmpfs the sidecar allocates (the ring) is in its request and
	// limit; the queue's in-memory bound (16 MiB waiting and as much in flight,
	// one more message, 10000 × 256 B of bookkeeping for each) in its limit.
	s := injectortest.Settings()
	wantReq := s.SidecarMemoryRequest.Value() + ringBytes
	wantLim := s.SidecarMemoryLimit.Value() + ringBytes + 2*channelconfig.DefaultMaxBytes + channelconfig.DefaultMaxMessageSize + 2*channelconfig.DefaultMaxDepth*channelconfig.BrokerMessageOverheadBytes +
		channelconfig.BrokerMaxBlockedSendBytes + channelconfig.BrokerMaxConnections*channelconfig.BrokerConnectionBytes
	if got := side.Resources.Requests.Memory().Value(); got != wantReq {
		t.Errorf("memory request = %d, want %d", got, wantReq)
	}
	if got := side.Resources.Limits.Memory().Value(); got != wantLim {
		t.Errorf("memory limit = %d, want %d", got, wantLim)
	}
	if _, ok := side.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Error("sidecar has a CPU limit; it should not be throttled")
	}
	// No credentials: the sidecar mounts only the tmpfs, its config and an
	// empty read-only volume over the token path (so the ServiceAccount
	// admission plugin adds no token to it), and the pod's token setting is
	// untouched.
	for _, m := range side.VolumeMounts {
		if m.Name != podcontract.VolumeName && m.Name != podcontract.ConfigVolumeName && m.Name != podcontract.NoTokenVolumeName {
			t.Errorf("sidecar mounts %s at %s", m.Name, m.MountPath)
		}
	}
	if !slices.ContainsFunc(side.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == podcontract.NoTokenVolumeName && m.MountPath == podcontract.ServiceAccountTokenDir && m.ReadOnly
	}) {
		t.Errorf("sidecar does not mount %s read-only over %s: %+v", podcontract.NoTokenVolumeName, podcontract.ServiceAccountTokenDir, side.VolumeMounts)
	}
	if v := volumeOf(t, out, podcontract.NoTokenVolumeName).EmptyDir; v == nil {
		t.Errorf("volume %s is not an emptyDir", podcontract.NoTokenVolumeName)
	}
	for _, c := range out.Spec.Containers {
		if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == podcontract.NoTokenVolumeName }) {
			t.Errorf("app container %s got the sidecar's no-token mount", c.Name)
		}
	}
	if out.Spec.AutomountServiceAccountToken != nil {
		t.Errorf("automountServiceAccountToken changed to %v", *out.Spec.AutomountServiceAccountToken)
	}
}

func TestMutatePlainSidecarWhenNativeUnsupported(t *testing.T) {
	s := injectortest.Settings()
	s.NativeSidecar = false
	out := injectortest.MustMutate(t, injectortest.InjectPod(nil, "app"), nil, s)
	if len(out.Spec.InitContainers) != 0 {
		t.Fatalf("init containers = %d, want none", len(out.Spec.InitContainers))
	}
	if got := out.Spec.Containers[len(out.Spec.Containers)-1]; got.Name != podcontract.SidecarName || got.RestartPolicy != nil {
		t.Fatalf("last container = %s (restartPolicy %v), want the plain sidecar", got.Name, got.RestartPolicy)
	}
}

func TestMutateOptions(t *testing.T) {
	channels := []v1alpha1.IPCChannel{injectortest.ShmChannel("frames", 0, 0, nil)}
	t.Run("containers", func(t *testing.T) {
		pod := injectortest.InjectPod(map[string]string{podcontract.AnnotationContainers: "b, init"}, "a", "b")
		pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "i"}}
		out := injectortest.MustMutate(t, pod, channels, injectortest.Settings())
		mounted := map[string]bool{}
		for _, c := range slices.Concat(out.Spec.InitContainers, out.Spec.Containers) {
			if _, ok := envValue(&c, podcontract.EnvDir); ok {
				mounted[c.Name] = true
			}
		}
		if !mounted["b"] || !mounted["init"] || mounted["a"] || mounted[podcontract.SidecarName] {
			t.Fatalf("containers with PODIPC_DIR = %v, want b and init", mounted)
		}
	})
	t.Run("mount path and port", func(t *testing.T) {
		out := injectortest.MustMutate(t, injectortest.InjectPod(map[string]string{podcontract.AnnotationMountPath: "/ipc", podcontract.AnnotationMetricsPort: "9999"}, "a"), channels, injectortest.Settings())
		side := sidecarOf(t, out)
		if !slices.Contains(side.Args, "--dir=/ipc") || !slices.Contains(side.Args, "--metrics-addr=:9999") || side.Ports[0].ContainerPort != 9999 {
			t.Fatalf("sidecar args %q ports %+v", side.Args, side.Ports)
		}
		if got, _ := envValue(&out.Spec.Containers[0], podcontract.EnvMQSocket); got != "/ipc/mq.sock" {
			t.Fatalf("%s = %q", podcontract.EnvMQSocket, got)
		}
	})
	t.Run("tmpfs size", func(t *testing.T) {
		out := injectortest.MustMutate(t, injectortest.InjectPod(map[string]string{podcontract.AnnotationTmpfsSize: "256Mi"}, "a"), channels, injectortest.Settings())
		if got := volumeOf(t, out, podcontract.VolumeName).EmptyDir.SizeLimit.Value(); got != 256<<20 {
			t.Fatalf("sizeLimit = %d, want 256Mi", got)
		}
		if st := injectortest.MustStatus(t, out); st.ChannelBudgetBytes != 256<<20-injectortest.Settings().TmpfsHeadroomBytes {
			t.Fatalf("channel budget = %d", st.ChannelBudgetBytes)
		}
	})
	t.Run("dev shm", func(t *testing.T) {
		out := injectortest.MustMutate(t, injectortest.InjectPod(map[string]string{podcontract.AnnotationDevShm: "true"}, "a"), channels, injectortest.Settings())
		c := out.Spec.Containers[0]
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == podcontract.VolumeName && m.MountPath == "/dev/shm" }) {
			t.Fatalf("no /dev/shm mount: %+v", c.VolumeMounts)
		}
		s := injectortest.Settings()
		if got, want := volumeOf(t, out, podcontract.VolumeName).EmptyDir.SizeLimit.Value(), ringBytes+s.TmpfsHeadroomBytes+s.DevShmHeadroomBytes; got != want {
			t.Fatalf("sizeLimit = %d, want %d (with /dev/shm headroom)", got, want)
		}
	})
	t.Run("file mode narrowed to the fsGroup", func(t *testing.T) {
		pod := injectortest.InjectPod(map[string]string{podcontract.AnnotationFileMode: "0660"}, "a")
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr.To[int64](3000)}
		out := injectortest.MustMutate(t, pod, channels, injectortest.Settings())
		side := sidecarOf(t, out)
		if !slices.Contains(side.Args, "--file-mode=0660") {
			t.Fatalf("sidecar args %q lack --file-mode=0660", side.Args)
		}
		if def := sidecarOf(t, injectortest.MustMutate(t, injectortest.InjectPod(nil, "a"), channels, injectortest.Settings())); slices.ContainsFunc(def.Args, func(a string) bool { return strings.HasPrefix(a, "--file-mode") }) {
			t.Fatalf("default sidecar args %q set a file mode", def.Args)
		}
	})
	t.Run("user env wins", func(t *testing.T) {
		pod := injectortest.InjectPod(nil, "a")
		pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: podcontract.EnvDir, Value: "/mine"}}
		out := injectortest.MustMutate(t, pod, channels, injectortest.Settings())
		if got, _ := envValue(&out.Spec.Containers[0], podcontract.EnvDir); got != "/mine" || len(out.Spec.Containers[0].Env) != 4 {
			t.Fatalf("env = %+v", out.Spec.Containers[0].Env)
		}
	})
}

func TestMutateRefusesInvalidAnnotations(t *testing.T) {
	for _, tc := range []struct {
		key, value, allowed string
	}{
		{podcontract.AnnotationInject, "yes", `"true" or "false"`},
		{podcontract.AnnotationInject, "True", `"true" or "false"`},
		{podcontract.AnnotationDevShm, "1", `"true" or "false"`},
		{podcontract.AnnotationChannels, "frames,Bad_Name", "IPCChannel names"},
		{podcontract.AnnotationContainers, "ghost", "not found: ghost"},
		{podcontract.AnnotationContainers, " , ", "non-empty"},
		{podcontract.AnnotationMountPath, "relative/path", "absolute"},
		{podcontract.AnnotationMountPath, "/a/../b", "clean"},
		{podcontract.AnnotationMountPath, "/dev/shm", "other than"},
		{podcontract.AnnotationTmpfsSize, "-1Mi", "positive quantity"},
		{podcontract.AnnotationTmpfsSize, "lots", "positive quantity"},
		{podcontract.AnnotationTmpfsSize, "1e30", "up to 1Ei"},
		{podcontract.AnnotationTmpfsSize, "9Ei", "up to 1Ei"},
		{podcontract.AnnotationMetricsPort, "0", "1 to 65535"},
		{podcontract.AnnotationMetricsPort, "http", "1 to 65535"},
		{podcontract.AnnotationFileMode, "0777", `"0666"`},
		{podcontract.AnnotationFileMode, "0600", `"0660"`},
		{podcontract.AnnotationFileMode, "0660", "fsGroup"}, // the test pod sets none
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			pod := injectortest.InjectPod(map[string]string{tc.key: tc.value}, "app")
			_, err := webhook.Mutate(pod, nil, injectortest.Settings())
			var ae *injection.AnnotationError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an *AnnotationError", err)
			}
			if ae.Key != tc.key || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.allowed) {
				t.Fatalf("err = %q, want it to name %s and say %q", err, tc.key, tc.allowed)
			}
		})
	}
}

func TestMutateSizing(t *testing.T) {
	big := injectortest.ShmChannel("video", 1<<20, 128, nil) // 128 slots of 1 MiB + headers
	small := injectortest.ShmChannel("frames", 0, 0, nil)
	journal := injectortest.MQChannel("jobs", true, "")
	channels := []v1alpha1.IPCChannel{big, small, journal}
	s := injectortest.Settings()
	s.MaxTmpfsBytes = 64 << 20

	_, err := webhook.Mutate(injectortest.InjectPod(nil, "app"), channels, s)
	var tooLarge *webhook.TmpfsTooLargeError
	if !errors.As(err, &tooLarge) {
		t.Fatalf("err = %v, want *TmpfsTooLargeError", err)
	}
	need := tmpfsFootprint(&big) + tmpfsFootprint(&small) + tmpfsFootprint(&journal) + s.TmpfsHeadroomBytes
	if tooLarge.NeedBytes != need || tooLarge.MaxBytes != 64<<20 {
		t.Fatalf("need %d max %d, want %d and %d", tooLarge.NeedBytes, tooLarge.MaxBytes, need, 64<<20)
	}
	msg := err.Error()
	over := injection.FormatBytes(need - 64<<20)
	for _, want := range []string{"video", "frames", "jobs", over, "64Mi"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not mention %q", msg, want)
		}
	}
	if tooLarge.Channels[0].Name != "video" {
		t.Errorf("largest channel listed first: %+v", tooLarge.Channels)
	}

	_, err = webhook.Mutate(injectortest.InjectPod(map[string]string{podcontract.AnnotationTmpfsSize: "1Mi"}, "app"), []v1alpha1.IPCChannel{small}, s)
	var tooSmall *webhook.TmpfsTooSmallError
	if !errors.As(err, &tooSmall) || !strings.Contains(err.Error(), podcontract.AnnotationTmpfsSize) {
		t.Fatalf("err = %v, want *TmpfsTooSmallError naming %s", err, podcontract.AnnotationTmpfsSize)
	}
	_, err = webhook.Mutate(injectortest.InjectPod(map[string]string{podcontract.AnnotationTmpfsSize: "1Gi"}, "app"), []v1alpha1.IPCChannel{small}, s)
	if !errors.As(err, &tooLarge) || !tooLarge.FromAnnotation || !strings.Contains(err.Error(), podcontract.AnnotationTmpfsSize) {
		t.Fatalf("err = %v, want *TmpfsTooLargeError from the annotation", err)
	}
	// Exactly at the maximum is allowed.
	s.MaxTmpfsBytes = ringBytes + s.TmpfsHeadroomBytes
	injectortest.MustMutate(t, injectortest.InjectPod(nil, "app"), []v1alpha1.IPCChannel{small}, s)
}

// A pod whose queues, with the broker's fixed bounds, need a sidecar memory
// limit above the injector's maximum is refused, saying what takes it.
func TestMutateRefusesQueuesBeyondTheSidecarsMemory(t *testing.T) {
	jobs := injectortest.MQChannel("jobs", false, "")
	big := injectortest.MQChannel("big", false, "")
	big.Spec.MessageQueue.MaxBytes = 1 << 30
	s := injectortest.Settings()
	s.MaxSidecarMemoryBytes = 1 << 30

	_, err := webhook.Mutate(injectortest.InjectPod(nil, "app"), []v1alpha1.IPCChannel{jobs, big}, s)
	var tooLarge *webhook.SidecarMemoryTooLargeError
	if !errors.As(err, &tooLarge) {
		t.Fatalf("err = %v, want *SidecarMemoryTooLargeError", err)
	}
	if tooLarge.BrokerBytes != channelconfig.BrokerFixedBytes() || tooLarge.NeedBytes <= s.MaxSidecarMemoryBytes || tooLarge.Queues[0].Name != "big" {
		t.Fatalf("%+v, want the broker's bytes, more than the maximum and big first", tooLarge)
	}
	for _, want := range []string{"big", "jobs", "1Gi", injection.FormatBytes(channelconfig.BrokerFixedBytes()), "maxBytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %q", err, want)
		}
	}

	// What fits is injected with the limit the sidecar's bounds need.
	pod := injectortest.MustMutate(t, injectortest.InjectPod(nil, "app"), []v1alpha1.IPCChannel{jobs}, s)
	side := sidecarOf(t, pod)
	if got, min := side.Resources.Limits.Memory().Value(), s.SidecarMemoryLimit.Value()+channelconfig.BrokerFixedBytes(); got < min || got > s.MaxSidecarMemoryBytes {
		t.Fatalf("memory limit %d, want at least %d and at most %d", got, min, s.MaxSidecarMemoryBytes)
	}
}

func TestMutateRefusesConflicts(t *testing.T) {
	for name, edit := range map[string]func(*corev1.Pod){
		"volume": func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: podcontract.VolumeName})
		},
		"sidecar": func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: podcontract.SidecarName})
		},
		"mount": func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "x", MountPath: "/var/run"}}
		},
		"port": func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: podcontract.DefaultMetricsPort}}
		},
		"bad status": func(p *corev1.Pod) {
			p.Annotations[podcontract.AnnotationStatus] = "{"
			p.Spec.InitContainers = []corev1.Container{{Name: podcontract.SidecarName}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			pod := injectortest.InjectPod(nil, "app")
			edit(pod)
			if _, err := webhook.Mutate(pod, nil, injectortest.Settings()); !errors.Is(err, webhook.ErrConflict) {
				t.Fatalf("err = %v, want ErrConflict", err)
			}
		})
	}
}

func TestMutateIsIdempotent(t *testing.T) {
	channels := []v1alpha1.IPCChannel{injectortest.ShmChannel("frames", 0, 0, nil), injectortest.MQChannel("jobs", true, ""), injectortest.MQChannel("dlq", false, "")}
	plain := injectortest.Settings()
	plain.NativeSidecar = false
	for name, tc := range map[string]struct {
		pod *corev1.Pod
		s   webhook.Settings
	}{
		"native":      {injectortest.InjectPod(nil, "a", "b"), injectortest.Settings()},
		"plain":       {injectortest.InjectPod(nil, "a"), plain},
		"all knobs":   {injectortest.InjectPod(map[string]string{podcontract.AnnotationChannels: "frames,missing", podcontract.AnnotationContainers: "b", podcontract.AnnotationDevShm: "true", podcontract.AnnotationMountPath: "/ipc", podcontract.AnnotationMetricsPort: "9000", podcontract.AnnotationTmpfsSize: "128Mi"}, "a", "b"), injectortest.Settings()},
		"no channels": {injectortest.InjectPod(nil, "a"), injectortest.Settings()},
	} {
		t.Run(name, func(t *testing.T) {
			once := injectortest.MustMutate(t, tc.pod, channels, tc.s)
			twice := injectortest.MustMutate(t, once, channels, tc.s)
			injectortest.AssertSamePod(t, twice, once)
			// Changed channels or settings do not re-inject an injected pod
			// either: pushing changes is the controller's job.
			other := tc.s
			other.SidecarImage = "podipc-sidecar:other"
			injectortest.AssertSamePod(t, injectortest.MustMutate(t, once, channels[:1], other), once)
		})
	}
}

func TestMutateRecordsMissingAndRejectedChannels(t *testing.T) {
	channels := []v1alpha1.IPCChannel{
		injectortest.MQChannel("jobs", false, "jobs-dlq"), // its dead-letter queue is not selected
		injectortest.ShmChannel("frames", 0, 0, nil),
		injectortest.MQChannel("jobs-dlq", false, ""),
	}
	pod := injectortest.InjectPod(map[string]string{podcontract.AnnotationChannels: "jobs,frames,later"}, "app")
	sel, err := injection.SelectChannels(pod, channels[:2])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sel.Missing, []string{"later"}) {
		t.Fatalf("missing = %v, want [later]", sel.Missing)
	}
	out := injectortest.MustMutate(t, pod, sel.Channels, injectortest.Settings())
	st := injectortest.MustStatus(t, out)
	if !slices.Equal(st.Channels, []string{"frames"}) || !slices.Equal(st.Missing, []string{"later"}) {
		t.Fatalf("status = %+v, want channels [frames] and missing [later]", st)
	}
	if len(st.Rejected) != 1 || st.Rejected[0].Name != "jobs" || !strings.Contains(st.Rejected[0].Reason, "deadLetterQueue") {
		t.Fatalf("rejected = %+v, want jobs for its dead-letter queue", st.Rejected)
	}
	if _, err := channelconfig.Parse([]byte(out.Annotations[podcontract.AnnotationConfig])); err != nil {
		t.Fatalf("config with a rejected channel left out does not parse: %v", err)
	}
}

func TestSettingsValidate(t *testing.T) {
	s := webhook.DefaultSettings()
	if err := s.Validate(); err != nil {
		t.Fatalf("default settings invalid: %v", err)
	}
	s.SidecarImage = ""
	s.SidecarMemoryLimit = resource.MustParse("1Mi")
	err := s.Validate()
	if err == nil || !strings.Contains(err.Error(), "image") || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("err = %v, want both problems", err)
	}
}

// tmpfsFootprint is the tmpfs the channel's ring or journal takes.
func tmpfsFootprint(ch *v1alpha1.IPCChannel) int64 {
	m := ch.Spec.ChannelSettings.Model()
	return m.Footprint().TmpfsBytes
}
