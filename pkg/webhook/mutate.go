package webhook

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/injection"
)

// ErrConflict is matched (errors.Is) by the errors of a pod that already has
// something the injector would add: a volume or container of the same name,
// a mount at the same path, the sidecar's port.
var ErrConflict = errors.New("the pod conflicts with what podipc injects")

// Mutate returns the pod as the injector admits it, given the IPCChannels
// selected for it (injection.SelectChannels) and the injector's settings.
// The input is never modified.
//
// A pod without podipc.io/inject: "true", or one already injected, comes
// back unchanged (a deep copy), so Mutate(Mutate(p)) equals Mutate(p). An
// invalid annotation is an *injection.AnnotationError, a pod whose channels
// exceed Settings.MaxTmpfsBytes a *TmpfsTooLargeError, one whose sidecar
// would need more memory than Settings.MaxSidecarMemoryBytes a
// *SidecarMemoryTooLargeError, a pod that already has
// what the injector adds an error matching ErrConflict.
func Mutate(pod *corev1.Pod, channels []v1alpha1.IPCChannel, s Settings) (*corev1.Pod, error) {
	inject, err := injection.WantsInjection(pod)
	if err != nil {
		return nil, err
	}
	out := pod.DeepCopy()
	if !inject || injection.IsInjected(pod) {
		return out, nil
	}
	opts, err := injection.ParseOptions(pod)
	if err != nil {
		return nil, err
	}
	targets, err := targetContainers(out, opts)
	if err != nil {
		return nil, err
	}
	if err := checkConflicts(out, opts, targets); err != nil {
		return nil, err
	}
	cfg, err := injection.BuildConfig(channels)
	if err != nil {
		return nil, err
	}
	size, err := planSizing(cfg.Document, opts, &s)
	if err != nil {
		return nil, err
	}

	out.Spec.Volumes = append(out.Spec.Volumes, tmpfsVolume(size.tmpfsBytes), configVolume(), noTokenVolume())
	sidecar := sidecarContainer(opts, size, &s)
	if s.NativeSidecar {
		out.Spec.InitContainers = slices.Insert(out.Spec.InitContainers, 0, sidecar)
	} else {
		out.Spec.Containers = append(out.Spec.Containers, sidecar)
	}
	env := appEnv(opts.MountPath, cfg.Names())
	for _, t := range targets {
		c := t.in(out)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: podcontract.VolumeName, MountPath: opts.MountPath})
		if opts.DevShm {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: podcontract.VolumeName, MountPath: podcontract.DevShmPath})
		}
		for _, e := range env {
			if !slices.ContainsFunc(c.Env, func(have corev1.EnvVar) bool { return have.Name == e.Name }) {
				c.Env = append(c.Env, e)
			}
		}
	}

	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[podcontract.LabelInjected] = "true"
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[podcontract.AnnotationConfig] = string(cfg.JSON)
	st := injection.Status{
		Version:                s.InjectorVersion,
		Channels:               cfg.Names(),
		Missing:                opts.Missing(channels),
		Rejected:               cfg.Rejected,
		TmpfsBytes:             size.tmpfsBytes,
		ChannelBudgetBytes:     size.budgetBytes,
		QueueMemoryBudgetBytes: new(size.footprint.SidecarMemoryBytes),
		ConfigHash:             cfg.Hash(),
	}
	out.Annotations[podcontract.AnnotationStatus] = st.Encode()
	return out, nil
}

// containerRef points at a container of a pod by list and name, so that it
// stays valid when the sidecar is inserted before it.
type containerRef struct {
	init bool
	name string
}

func (r containerRef) in(pod *corev1.Pod) *corev1.Container {
	list := pod.Spec.Containers
	if r.init {
		list = pod.Spec.InitContainers
	}
	return &list[injection.ContainerIndex(list, r.name)]
}

// targetContainers are the containers that get the mount and environment:
// those podipc.io/containers names (regular or init containers), or every
// regular container.
func targetContainers(pod *corev1.Pod, opts injection.Options) ([]containerRef, error) {
	var refs []containerRef
	if opts.Containers == nil {
		for i := range pod.Spec.Containers {
			refs = append(refs, containerRef{name: pod.Spec.Containers[i].Name})
		}
		return refs, nil
	}
	var unknown []string
	for _, name := range opts.Containers {
		switch {
		case injection.ContainerIndex(pod.Spec.Containers, name) >= 0:
			refs = append(refs, containerRef{name: name})
		case injection.ContainerIndex(pod.Spec.InitContainers, name) >= 0:
			refs = append(refs, containerRef{init: true, name: name})
		default:
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		var names []string
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			names = append(names, c.Name)
		}
		return nil, &injection.AnnotationError{Key: podcontract.AnnotationContainers, Value: pod.Annotations[podcontract.AnnotationContainers],
			Allowed: fmt.Sprintf("names of the pod's containers (%s); not found: %s", strings.Join(names, ", "), strings.Join(unknown, ", "))}
	}
	return refs, nil
}

func checkConflicts(pod *corev1.Pod, opts injection.Options, targets []containerRef) error {
	var problems []string
	for _, v := range pod.Spec.Volumes {
		if v.Name == podcontract.VolumeName || v.Name == podcontract.ConfigVolumeName || v.Name == podcontract.NoTokenVolumeName {
			problems = append(problems, fmt.Sprintf("volume %q already exists", v.Name))
		}
	}
	all := slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers, ephemeralAsContainers(pod))
	if slices.ContainsFunc(all, func(c corev1.Container) bool { return c.Name == podcontract.SidecarName }) {
		problems = append(problems, fmt.Sprintf("container %q already exists but the pod has no valid %s annotation", podcontract.SidecarName, podcontract.AnnotationStatus))
	}
	for _, t := range targets {
		c := t.in(pod)
		for _, m := range c.VolumeMounts {
			if underOrAt(m.MountPath, opts.MountPath) || (opts.DevShm && underOrAt(m.MountPath, podcontract.DevShmPath)) {
				problems = append(problems, fmt.Sprintf("container %q already mounts %s (set %s to another path)", c.Name, m.MountPath, podcontract.AnnotationMountPath))
			}
		}
	}
	for _, c := range all {
		for _, p := range c.Ports {
			if p.ContainerPort == opts.MetricsPort {
				problems = append(problems, fmt.Sprintf("container %q already uses port %d (set %s to a free port)", c.Name, p.ContainerPort, podcontract.AnnotationMetricsPort))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrConflict, strings.Join(problems, "; "))
	}
	return nil
}

func ephemeralAsContainers(pod *corev1.Pod) []corev1.Container {
	cs := make([]corev1.Container, len(pod.Spec.EphemeralContainers))
	for i := range pod.Spec.EphemeralContainers {
		cs[i] = corev1.Container{Name: pod.Spec.EphemeralContainers[i].Name}
	}
	return cs
}

// underOrAt reports whether mount p and mount q overlap: one is the other
// or lies beneath it.
func underOrAt(p, q string) bool {
	p, q = path.Clean(p), path.Clean(q)
	return p == q || strings.HasPrefix(p, q+"/") || strings.HasPrefix(q, p+"/")
}

func tmpfsVolume(sizeBytes int64) corev1.Volume {
	return corev1.Volume{Name: podcontract.VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium:    corev1.StorageMediumMemory,
		SizeLimit: resource.NewQuantity(sizeBytes, resource.BinarySI),
	}}}
}

// noTokenVolume is the empty volume the sidecar mounts over the
// service-account token path (see podcontract.NoTokenVolumeName).
func noTokenVolume() corev1.Volume {
	return corev1.Volume{Name: podcontract.NoTokenVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium:    corev1.StorageMediumMemory,
		SizeLimit: resource.NewQuantity(4096, resource.BinarySI),
	}}}
}

func configVolume() corev1.Volume {
	return corev1.Volume{Name: podcontract.ConfigVolumeName, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{{
			Path:     podcontract.ConfigFile,
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations['" + podcontract.AnnotationConfig + "']"},
		}},
		DefaultMode: ptr.To[int32](0o444),
	}}}
}

// appEnv is what the selected containers learn about the channels.
func appEnv(mountPath string, channels []string) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: podcontract.EnvDir, Value: mountPath},
		{Name: podcontract.EnvMQSocket, Value: path.Join(mountPath, podcontract.MQSocketName)},
		{Name: podcontract.EnvChannels, Value: strings.Join(channels, ",")},
		{Name: podcontract.EnvBrokerUID, Value: strconv.Itoa(podcontract.SidecarUID)},
	}
}

// sidecarContainer is the hardened podipc-sidecar. Its memory request
// includes the tmpfs bytes it allocates (fallocate; tmpfs pages are charged to the
// cgroup that first touches them), its limit also the message queues'
// in-memory bound and the broker's fixed bounds (see planSizing).
func sidecarContainer(opts injection.Options, size sizing, s *Settings) corev1.Container {
	memRequest := s.SidecarMemoryRequest.DeepCopy()
	memRequest.Add(*resource.NewQuantity(size.footprint.TmpfsBytes, resource.BinarySI))
	memLimit := *resource.NewQuantity(size.memoryLimitBytes, resource.BinarySI)
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromString(podcontract.MetricsPortName), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 1, SuccessThreshold: 1,
		}
	}
	c := corev1.Container{
		Name:            podcontract.SidecarName,
		Image:           s.SidecarImage,
		ImagePullPolicy: s.SidecarImagePullPolicy,
		Args: []string{
			"--config=" + path.Join(podcontract.ConfigDir, podcontract.ConfigFile),
			"--dir=" + opts.MountPath,
			"--metrics-addr=:" + strconv.Itoa(int(opts.MetricsPort)),
		},
		Ports: []corev1.ContainerPort{{Name: podcontract.MetricsPortName, ContainerPort: opts.MetricsPort, Protocol: corev1.ProtocolTCP}},
		VolumeMounts: []corev1.VolumeMount{
			{Name: podcontract.VolumeName, MountPath: opts.MountPath},
			{Name: podcontract.ConfigVolumeName, MountPath: podcontract.ConfigDir, ReadOnly: true},
			{Name: podcontract.NoTokenVolumeName, MountPath: podcontract.ServiceAccountTokenDir, ReadOnly: true},
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: s.SidecarCPURequest.DeepCopy(), corev1.ResourceMemory: memRequest},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: memLimit},
		},
		// The startup probe gates the app containers of a native sidecar:
		// /readyz passes once every declared channel exists.
		StartupProbe:   probe("/readyz", 1, s.StartupTimeoutSeconds),
		ReadinessProbe: probe("/readyz", 5, 3),
		LivenessProbe:  probe("/healthz", 10, 3),
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](podcontract.SidecarUID),
			RunAsGroup:               ptr.To[int64](podcontract.SidecarUID),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if opts.FileMode != "" {
		c.Args = append(c.Args, "--file-mode="+opts.FileMode)
	}
	if s.NativeSidecar {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	}
	return c
}
