package injection

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// maxTmpfsBytes (1Ei) bounds podipc.io/tmpfs-size far beyond any memory,
// and below the largest int64.
const maxTmpfsBytes = 1 << 60

// Options are a pod's podipc.io annotations, parsed and checked: what the
// webhook shapes an injection by and what the controller selects channels by.
type Options struct {
	// Channels are the names podipc.io/channels lists, sorted and unique; nil
	// without the annotation, when channels are selected by label.
	Channels []string
	// Containers are the names podipc.io/containers lists, sorted and unique;
	// nil means every regular container.
	Containers []string
	// MountPath is where the tmpfs is mounted (podipc.io/mount-path).
	MountPath string
	// TmpfsSize is podipc.io/tmpfs-size; nil sizes the tmpfs by the channels.
	TmpfsSize *resource.Quantity
	// MetricsPort is the sidecar's HTTP port (podipc.io/metrics-port).
	MetricsPort int32
	// DevShm is podipc.io/dev-shm: the tmpfs is mounted at /dev/shm too.
	DevShm bool
	// FileMode is podipc.io/file-mode; "" is the sidecar's default
	// (podcontract.DefaultFileMode).
	FileMode string
}

// WantsInjection reports whether the pod asks for injection. An invalid
// value of podcontract.AnnotationInject is an error, so a typo is not silently ignored.
func WantsInjection(pod *corev1.Pod) (bool, error) {
	v, ok := pod.Annotations[podcontract.AnnotationInject]
	if !ok {
		return false, nil
	}
	return parseBool(podcontract.AnnotationInject, v)
}

// ParseOptions reads the podipc.io annotations that shape an injection. The
// injector calls it only for pods that want injection (WantsInjection), so a
// pod without podipc.io/inject: "true" is never refused for its other
// annotations.
func ParseOptions(pod *corev1.Pod) (Options, error) {
	opts := Options{MountPath: podcontract.DefaultMountPath, MetricsPort: podcontract.DefaultMetricsPort}
	var err error
	a := pod.Annotations
	if v, ok := a[podcontract.AnnotationChannels]; ok {
		if opts.Channels, err = parseNameList(podcontract.AnnotationChannels, v, "IPCChannel names (DNS-1123 labels)", validation.IsDNS1123Label); err != nil {
			return opts, err
		}
	}
	if v, ok := a[podcontract.AnnotationContainers]; ok {
		if opts.Containers, err = parseNameList(podcontract.AnnotationContainers, v, "names of the pod's containers", validation.IsDNS1123Label); err != nil {
			return opts, err
		}
		if opts.Containers == nil {
			return opts, &AnnotationError{Key: podcontract.AnnotationContainers, Value: v, Allowed: "a non-empty comma-separated list of the pod's container names"}
		}
	}
	if v, ok := a[podcontract.AnnotationMountPath]; ok {
		if opts.MountPath, err = parseMountPath(v); err != nil {
			return opts, err
		}
	}
	if v, ok := a[podcontract.AnnotationTmpfsSize]; ok {
		q, perr := resource.ParseQuantity(v)
		// Past maxTmpfsBytes a quantity no longer fits the int64 of a
		// sizeLimit in bytes (1e30 would wrap to nonsense).
		if perr != nil || q.Sign() <= 0 || q.CmpInt64(maxTmpfsBytes) > 0 {
			return opts, &AnnotationError{Key: podcontract.AnnotationTmpfsSize, Value: v, Allowed: `a positive quantity of bytes up to 1Ei, such as "64Mi" or "1Gi"`}
		}
		opts.TmpfsSize = &q
	}
	if v, ok := a[podcontract.AnnotationMetricsPort]; ok {
		port, perr := strconv.ParseInt(v, 10, 32)
		if perr != nil || port < 1 || port > 65535 {
			return opts, &AnnotationError{Key: podcontract.AnnotationMetricsPort, Value: v, Allowed: "a port number from 1 to 65535"}
		}
		opts.MetricsPort = int32(port)
	}
	if v, ok := a[podcontract.AnnotationDevShm]; ok {
		if opts.DevShm, err = parseBool(podcontract.AnnotationDevShm, v); err != nil {
			return opts, err
		}
	}
	if v, ok := a[podcontract.AnnotationFileMode]; ok {
		switch {
		case v != "0666" && v != "0660":
			return opts, &AnnotationError{Key: podcontract.AnnotationFileMode, Value: v, Allowed: `"0666" (every container of the pod) or "0660" (the containers of the pod's fsGroup)`}
		case v == "0660" && (pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.FSGroup == nil):
			return opts, &AnnotationError{Key: podcontract.AnnotationFileMode, Value: v, Allowed: `"0660" only with spec.securityContext.fsGroup set: the files get that group, which the app containers must share`}
		}
		opts.FileMode = v
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
	allowed := "an absolute, clean path other than /, /dev/shm and " + podcontract.ConfigDir + ", such as " + podcontract.DefaultMountPath
	if !path.IsAbs(v) || path.Clean(v) != v || v == "/" || v == podcontract.DevShmPath || v == podcontract.ConfigDir || strings.ContainsAny(v, ":,") {
		return "", &AnnotationError{Key: podcontract.AnnotationMountPath, Value: v, Allowed: allowed}
	}
	return v, nil
}

// AnnotationError reports a podipc.io annotation with a value the injector
// does not accept. The pod is refused with its message.
type AnnotationError struct {
	// Key is the annotation, such as podcontract.AnnotationTmpfsSize.
	Key string
	// Value is the pod's value of it.
	Value string
	// Allowed says which values are accepted.
	Allowed string
}

// Error implements error.
func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: invalid value %q: allowed: %s", e.Key, e.Value, e.Allowed)
}
