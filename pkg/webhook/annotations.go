package webhook

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

// podOptions are a pod's podipc.io annotations, parsed and checked.
type podOptions struct {
	channels    []string // nil: select by label
	containers  []string // nil: every regular container
	mountPath   string
	tmpfsSize   *resource.Quantity
	metricsPort int32
	devShm      bool
	fileMode    string // "" : the sidecar's default (podcontract.DefaultFileMode)
}

// wantsInjection reports whether the pod asks for injection. An invalid
// value of podcontract.AnnotationInject is an error, so a typo is not silently ignored.
func wantsInjection(pod *corev1.Pod) (bool, error) {
	v, ok := pod.Annotations[podcontract.AnnotationInject]
	if !ok {
		return false, nil
	}
	return parseBool(podcontract.AnnotationInject, v)
}

// parseOptions reads the podipc.io annotations that shape an injection; it
// is called only for pods that want injection, so a pod without
// podipc.io/inject: "true" is never refused for its other annotations.
func parseOptions(pod *corev1.Pod) (podOptions, error) {
	opts := podOptions{mountPath: podcontract.DefaultMountPath, metricsPort: podcontract.DefaultMetricsPort}
	var err error
	a := pod.Annotations
	if v, ok := a[podcontract.AnnotationChannels]; ok {
		if opts.channels, err = parseNameList(podcontract.AnnotationChannels, v, "IPCChannel names (DNS-1123 labels)", validation.IsDNS1123Label); err != nil {
			return opts, err
		}
	}
	if v, ok := a[podcontract.AnnotationContainers]; ok {
		if opts.containers, err = parseNameList(podcontract.AnnotationContainers, v, "names of the pod's containers", validation.IsDNS1123Label); err != nil {
			return opts, err
		}
		if opts.containers == nil {
			return opts, &AnnotationError{Key: podcontract.AnnotationContainers, Value: v, Allowed: "a non-empty comma-separated list of the pod's container names"}
		}
	}
	if v, ok := a[podcontract.AnnotationMountPath]; ok {
		if opts.mountPath, err = parseMountPath(v); err != nil {
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
		opts.tmpfsSize = &q
	}
	if v, ok := a[podcontract.AnnotationMetricsPort]; ok {
		port, perr := strconv.ParseInt(v, 10, 32)
		if perr != nil || port < 1 || port > 65535 {
			return opts, &AnnotationError{Key: podcontract.AnnotationMetricsPort, Value: v, Allowed: "a port number from 1 to 65535"}
		}
		opts.metricsPort = int32(port)
	}
	if v, ok := a[podcontract.AnnotationDevShm]; ok {
		if opts.devShm, err = parseBool(podcontract.AnnotationDevShm, v); err != nil {
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
		opts.fileMode = v
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
	Key     string
	Value   string
	Allowed string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: invalid value %q: allowed: %s", e.Key, e.Value, e.Allowed)
}
