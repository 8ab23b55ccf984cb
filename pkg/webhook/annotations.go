package webhook

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The podipc.io annotations and labels. docs/annotations.md describes each.
const (
	// AnnotationInject turns injection on: "true" injects, "false" or absent
	// does not.
	AnnotationInject = "podipc.io/inject"
	// AnnotationChannels is an explicit, comma-separated list of IPCChannel
	// names; without it the pod gets every IPCChannel of its namespace whose
	// selector matches its labels.
	AnnotationChannels = "podipc.io/channels"
	// AnnotationContainers is a comma-separated list of the containers that get
	// the tmpfs mount and the PODIPC_* variables; default every container.
	AnnotationContainers = "podipc.io/containers"
	// AnnotationMountPath is where the tmpfs is mounted; default DefaultMountPath.
	AnnotationMountPath = "podipc.io/mount-path"
	// AnnotationTmpfsSize overrides the tmpfs sizeLimit (a quantity, "256Mi").
	AnnotationTmpfsSize = "podipc.io/tmpfs-size"
	// AnnotationMetricsPort is the sidecar's HTTP port; default DefaultMetricsPort.
	AnnotationMetricsPort = "podipc.io/metrics-port"
	// AnnotationDevShm, "true", also mounts the tmpfs at /dev/shm in the
	// selected containers, for shm_open-based libraries.
	AnnotationDevShm = "podipc.io/dev-shm"

	// AnnotationConfig holds the pod's ChannelConfig document, written by the
	// injector and kept current by the controller; the sidecar reads it through
	// a downward-API file.
	AnnotationConfig = "podipc.io/config"
	// AnnotationStatus records what the injector did (a JSON Status).
	AnnotationStatus = "podipc.io/status"

	// LabelInjected marks the pods the injector mutated, so the controller's
	// cache can watch those alone.
	LabelInjected = "podipc.io/injected"
	// LabelInjection, "disabled" on a namespace or a pod, keeps the webhook
	// from being called for it at all (the shipped webhook configuration's
	// namespace and object selectors).
	LabelInjection = "podipc.io/injection"
)

// Names and paths of what the injector adds.
const (
	// SidecarName is the name of the injected sidecar container.
	SidecarName = "podipc-sidecar"
	// VolumeName is the tmpfs emptyDir volume.
	VolumeName = "podipc"
	// ConfigVolumeName is the downward-API volume with the channel configuration.
	ConfigVolumeName = "podipc-config"
	// NoTokenVolumeName is an empty read-only volume mounted over the
	// service-account token path in the sidecar: the ServiceAccount admission
	// plugin skips containers that already mount that path, so the sidecar
	// never holds Kubernetes credentials whatever the pod's
	// automountServiceAccountToken says.
	NoTokenVolumeName = "podipc-no-token"
	// ServiceAccountTokenDir is where Kubernetes mounts a pod's
	// service-account credentials.
	ServiceAccountTokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// ConfigDir is where the sidecar mounts ConfigVolumeName.
	ConfigDir = "/etc/podipc/config"
	// ConfigFile is the file, in ConfigDir, that holds AnnotationConfig.
	ConfigFile = "channels.yaml"
	// DefaultMountPath is where the tmpfs is mounted by default.
	DefaultMountPath = "/var/run/podipc"
	// DevShmPath is where AnnotationDevShm mounts the tmpfs too.
	DevShmPath = "/dev/shm"
	// DefaultMetricsPort is the sidecar's default HTTP port.
	DefaultMetricsPort = 9464
	// MetricsPortName names the sidecar's HTTP port.
	MetricsPortName = "podipc-metrics"
	// MQSocketName is the broker's socket in the tmpfs.
	MQSocketName = "mq.sock"

	// EnvDir, EnvMQSocket and EnvChannels are set in the selected containers.
	EnvDir      = "PODIPC_DIR"
	EnvMQSocket = "PODIPC_MQ_SOCKET"
	EnvChannels = "PODIPC_CHANNELS"
)

// podOptions are a pod's podipc.io annotations, parsed and checked.
type podOptions struct {
	channels    []string // nil: select by label
	containers  []string // nil: every regular container
	mountPath   string
	tmpfsSize   *resource.Quantity
	metricsPort int32
	devShm      bool
}

// wantsInjection reports whether the pod asks for injection. An invalid
// value of AnnotationInject is an error, so a typo is not silently ignored.
func wantsInjection(pod *corev1.Pod) (bool, error) {
	v, ok := pod.Annotations[AnnotationInject]
	if !ok {
		return false, nil
	}
	return parseBool(AnnotationInject, v)
}

// parseOptions reads the podipc.io annotations that shape an injection; it
// is called only for pods that want injection, so a pod without
// podipc.io/inject: "true" is never refused for its other annotations.
func parseOptions(pod *corev1.Pod) (podOptions, error) {
	opts := podOptions{mountPath: DefaultMountPath, metricsPort: DefaultMetricsPort}
	var err error
	a := pod.Annotations
	if v, ok := a[AnnotationChannels]; ok {
		if opts.channels, err = parseNameList(AnnotationChannels, v, "IPCChannel names (DNS-1123 labels)", validation.IsDNS1123Label); err != nil {
			return opts, err
		}
	}
	if v, ok := a[AnnotationContainers]; ok {
		if opts.containers, err = parseNameList(AnnotationContainers, v, "names of the pod's containers", validation.IsDNS1123Label); err != nil {
			return opts, err
		}
		if opts.containers == nil {
			return opts, &AnnotationError{Key: AnnotationContainers, Value: v, Allowed: "a non-empty comma-separated list of the pod's container names"}
		}
	}
	if v, ok := a[AnnotationMountPath]; ok {
		if opts.mountPath, err = parseMountPath(v); err != nil {
			return opts, err
		}
	}
	if v, ok := a[AnnotationTmpfsSize]; ok {
		q, perr := resource.ParseQuantity(v)
		if perr != nil || q.Sign() <= 0 {
			return opts, &AnnotationError{Key: AnnotationTmpfsSize, Value: v, Allowed: `a positive quantity of bytes, such as "64Mi" or "1Gi"`}
		}
		opts.tmpfsSize = &q
	}
	if v, ok := a[AnnotationMetricsPort]; ok {
		port, perr := strconv.ParseInt(v, 10, 32)
		if perr != nil || port < 1 || port > 65535 {
			return opts, &AnnotationError{Key: AnnotationMetricsPort, Value: v, Allowed: "a port number from 1 to 65535"}
		}
		opts.metricsPort = int32(port)
	}
	if v, ok := a[AnnotationDevShm]; ok {
		if opts.devShm, err = parseBool(AnnotationDevShm, v); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

func parseBool(key, v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, &AnnotationError{Key: key, Value: v, Allowed: `"true" or "false"`}
}

// parseNameList splits "a, b,c" into sorted unique names, each checked by
// valid. An empty list is nil.
func parseNameList(key, v, what string, valid func(string) []string) ([]string, error) {
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if errs := valid(n); len(errs) > 0 {
			return nil, &AnnotationError{Key: key, Value: v, Allowed: "a comma-separated list of " + what + `; "` + n + `" is not one: ` + strings.Join(errs, "; ")}
		}
		names = append(names, n)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

func parseMountPath(v string) (string, error) {
	allowed := "an absolute, clean path other than /, /dev/shm and " + ConfigDir + ", such as " + DefaultMountPath
	if !path.IsAbs(v) || path.Clean(v) != v || v == "/" || v == DevShmPath || v == ConfigDir || strings.ContainsAny(v, ":,") {
		return "", &AnnotationError{Key: AnnotationMountPath, Value: v, Allowed: allowed}
	}
	return v, nil
}

// AnnotationError reports a podipc.io annotation with a value the injector
// does not accept. The pod is refused with its message.
type AnnotationError struct {
	Key     string
	Value   string
	Allowed string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: invalid value %q: allowed: %s", e.Key, e.Value, e.Allowed)
}
