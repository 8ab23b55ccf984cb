package webhook

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Settings are the injector-wide choices: what a cluster operator sets with
// the injector's flags (the Helm chart's values). They are an input of
// Mutate, never global state.
type Settings struct {
	// InjectorVersion is recorded in every pod's status annotation.
	InjectorVersion string
	// SidecarImage is the podipc-sidecar image, with its tag.
	SidecarImage string
	// SidecarImagePullPolicy is the sidecar's pull policy; empty lets the
	// API server default it.
	SidecarImagePullPolicy corev1.PullPolicy
	// NativeSidecar injects the sidecar as a Kubernetes native sidecar (an
	// init container with restartPolicy Always, Kubernetes 1.29 and later), so
	// the app containers start once its startup probe passes; false injects a
	// plain container, and applications must retry opening their channels.
	NativeSidecar bool
	// MaxTmpfsBytes is the largest tmpfs a pod may get; 0 means no limit.
	MaxTmpfsBytes int64
	// TmpfsHeadroomBytes is added to what the channels need for the broker
	// socket and what else the pod keeps in the tmpfs.
	TmpfsHeadroomBytes int64
	// DevShmHeadroomBytes is added further when the pod asks for /dev/shm, for
	// what shm_open-based libraries create there.
	DevShmHeadroomBytes int64
	// SidecarCPURequest is the sidecar's CPU request; it gets no CPU limit, so
	// that the broker is never throttled mid-message.
	SidecarCPURequest resource.Quantity
	// SidecarMemoryRequest and SidecarMemoryLimit are the sidecar's own memory,
	// before the channels: the injector adds the tmpfs bytes the sidecar
	// allocates to both, and the message queues' in-memory bound to the limit.
	SidecarMemoryRequest resource.Quantity
	SidecarMemoryLimit   resource.Quantity
	// MaxSidecarMemoryBytes is the largest memory limit the sidecar may get:
	// SidecarMemoryLimit plus the tmpfs bytes, the message queues' in-memory
	// bound and the broker's fixed bounds (channelconfig.BrokerFixedBytes). A
	// pod whose queues need more is refused; 0 means no limit.
	MaxSidecarMemoryBytes int64
	// StartupTimeoutSeconds bounds how long the sidecar's startup probe waits
	// for every channel to exist.
	StartupTimeoutSeconds int32
}

// DefaultSettings are the settings of an injector run without flags.
func DefaultSettings() Settings {
	return Settings{
		InjectorVersion:       "dev",
		SidecarImage:          "podipc-sidecar:latest",
		NativeSidecar:         true,
		MaxTmpfsBytes:         4 << 30,
		TmpfsHeadroomBytes:    1 << 20,
		DevShmHeadroomBytes:   64 << 20,
		SidecarCPURequest:     resource.MustParse("10m"),
		SidecarMemoryRequest:  resource.MustParse("16Mi"),
		SidecarMemoryLimit:    resource.MustParse("64Mi"),
		MaxSidecarMemoryBytes: 8 << 30,
		StartupTimeoutSeconds: 120,
	}
}

// Validate reports settings no pod could be injected with.
func (s *Settings) Validate() error {
	var errs []error
	if s.SidecarImage == "" {
		errs = append(errs, errors.New("the sidecar image is empty"))
	}
	if s.MaxTmpfsBytes < 0 || s.TmpfsHeadroomBytes < 0 || s.DevShmHeadroomBytes < 0 {
		errs = append(errs, errors.New("tmpfs sizes must not be negative"))
	}
	if s.MaxSidecarMemoryBytes < 0 {
		errs = append(errs, errors.New("the sidecar's maximum memory must not be negative"))
	}
	if s.SidecarMemoryLimit.Cmp(s.SidecarMemoryRequest) < 0 {
		errs = append(errs, fmt.Errorf("the sidecar memory limit %s is below its request %s", &s.SidecarMemoryLimit, &s.SidecarMemoryRequest))
	}
	if s.StartupTimeoutSeconds < 1 {
		errs = append(errs, errors.New("the startup timeout must be at least 1 second"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid injector settings: %w", err)
	}
	return nil
}
