// Package injector assembles the podipc injector: one controller-runtime
// manager with the pod mutation webhook (served on every replica), the
// IPCChannel controllers (on the leader), health and metrics endpoints, and
// webhook TLS that manages itself (cert-controller) or comes from
// cert-manager.
package injector

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podipc/podipc/pkg/webhook"
)

// CertMode is who provides the webhook's serving certificate.
type CertMode string

const (
	// CertModeSelf: the injector creates and rotates a CA and a serving
	// certificate in a Secret and patches the caBundle itself.
	CertModeSelf CertMode = "self"
	// CertModeCertManager: cert-manager issues the certificate into a Secret
	// mounted at CertDir, and its cainjector sets the caBundle.
	CertModeCertManager CertMode = "cert-manager"
)

// NativeSidecarMode chooses between a native and a plain sidecar.
type NativeSidecarMode string

const (
	NativeSidecarAuto   NativeSidecarMode = "auto" // native when the API server is 1.29 or later
	NativeSidecarAlways NativeSidecarMode = "always"
	NativeSidecarNever  NativeSidecarMode = "never"
)

// Options are the injector's flags.
type Options struct {
	Namespace            string
	ServiceName          string
	WebhookConfigName    string
	CertSecretName       string
	CertMode             CertMode
	CertDir              string
	CertExtraDNSNames    []string
	CertServerValidity   time.Duration
	CertLookahead        time.Duration
	CertCheckInterval    time.Duration
	WebhookHost          string
	WebhookPort          int
	MetricsAddr          string
	HealthAddr           string
	PprofAddr            string
	LeaderElect          bool
	LeaderElectionID     string
	NativeSidecar        NativeSidecarMode
	SidecarImage         string
	SidecarPullPolicy    string
	MaxTmpfs             string
	TmpfsHeadroom        string
	DevShmHeadroom       string
	SidecarCPURequest    string
	SidecarMemoryRequest string
	SidecarMemoryLimit   string
	MaxSidecarMemory     string
	SidecarStartup       time.Duration
	Version              string
	// SkipNameValidation lets several managers register the same controller
	// names in one process (tests); not a flag.
	SkipNameValidation bool
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	d := webhook.DefaultSettings()
	return Options{
		Namespace:            "podipc-system",
		ServiceName:          "podipc-injector",
		WebhookConfigName:    "podipc-injector",
		CertSecretName:       "podipc-injector-tls",
		CertMode:             CertModeSelf,
		CertDir:              "/tmp/k8s-webhook-server/serving-certs",
		WebhookPort:          9443,
		MetricsAddr:          ":8080",
		HealthAddr:           ":8081",
		LeaderElect:          true,
		LeaderElectionID:     "podipc-injector",
		NativeSidecar:        NativeSidecarAuto,
		SidecarImage:         d.SidecarImage,
		MaxTmpfs:             "4Gi",
		TmpfsHeadroom:        "1Mi",
		DevShmHeadroom:       "64Mi",
		SidecarCPURequest:    d.SidecarCPURequest.String(),
		SidecarMemoryRequest: d.SidecarMemoryRequest.String(),
		SidecarMemoryLimit:   d.SidecarMemoryLimit.String(),
		MaxSidecarMemory:     resource.NewQuantity(d.MaxSidecarMemoryBytes, resource.BinarySI).String(),
		SidecarStartup:       time.Duration(d.StartupTimeoutSeconds) * time.Second,
		Version:              d.InjectorVersion,
	}
}

// BindFlags registers every option on fs, defaulting to o's values.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace the injector runs in: its Secret, leader-election Lease and Service")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "the webhook's Service (the serving certificate's DNS names)")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", o.WebhookConfigName, "the MutatingWebhookConfiguration whose caBundle the injector keeps (cert-mode=self)")
	fs.StringVar(&o.CertSecretName, "cert-secret-name", o.CertSecretName, "the Secret that holds the CA and serving certificate (cert-mode=self; it must exist)")
	fs.Func("cert-mode", `who provides the serving certificate: "self" (the injector creates and rotates it) or "cert-manager" (read from --cert-dir)`, func(v string) error {
		switch CertMode(v) {
		case CertModeSelf, CertModeCertManager:
			o.CertMode = CertMode(v)
			return nil
		}
		return fmt.Errorf(`must be "self" or "cert-manager"`)
	})
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "directory of tls.crt and tls.key (cert-manager: the mounted Secret; self: written by the injector)")
	fs.Func("cert-extra-dns-names", "comma-separated extra DNS names for the self-managed certificate", func(v string) error {
		o.CertExtraDNSNames = strings.Split(v, ",")
		return nil
	})
	fs.DurationVar(&o.CertServerValidity, "cert-server-validity", o.CertServerValidity, "validity of self-managed serving certificates (0: 1 year)")
	fs.DurationVar(&o.CertLookahead, "cert-lookahead", o.CertLookahead, "renew a self-managed certificate this long before it expires (0: 90 days)")
	fs.DurationVar(&o.CertCheckInterval, "cert-check-interval", o.CertCheckInterval, "how often certificates are checked for renewal (0: 12 hours)")
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "address the webhook server listens on (empty: all)")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "port of the webhook server")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, `address of the Prometheus metrics endpoint ("0" disables it)`)
	fs.StringVar(&o.HealthAddr, "health-probe-bind-address", o.HealthAddr, "address of /healthz and /readyz")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", o.PprofAddr, "address of the Go profiler's /debug/pprof endpoints (empty: off)")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "elect a leader for the controllers and certificate rotation (the webhook serves on every replica)")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "name of the leader-election Lease")
	fs.Func("native-sidecar", `inject the sidecar as a native sidecar: "auto" (when the API server is 1.29 or later), "always" or "never"`, func(v string) error {
		switch NativeSidecarMode(v) {
		case NativeSidecarAuto, NativeSidecarAlways, NativeSidecarNever:
			o.NativeSidecar = NativeSidecarMode(v)
			return nil
		}
		return fmt.Errorf(`must be "auto", "always" or "never"`)
	})
	fs.StringVar(&o.SidecarImage, "sidecar-image", o.SidecarImage, "the podipc-sidecar image")
	fs.StringVar(&o.SidecarPullPolicy, "sidecar-image-pull-policy", o.SidecarPullPolicy, "the sidecar's imagePullPolicy (empty: the API server's default)")
	fs.StringVar(&o.MaxTmpfs, "max-tmpfs", o.MaxTmpfs, "largest tmpfs a pod may get; a pod whose channels need more is refused (0: no limit)")
	fs.StringVar(&o.TmpfsHeadroom, "tmpfs-headroom", o.TmpfsHeadroom, "tmpfs added to what the channels need")
	fs.StringVar(&o.DevShmHeadroom, "dev-shm-headroom", o.DevShmHeadroom, "tmpfs added further for pods with podipc.io/dev-shm")
	fs.StringVar(&o.SidecarCPURequest, "sidecar-cpu-request", o.SidecarCPURequest, "the sidecar's CPU request (it gets no CPU limit)")
	fs.StringVar(&o.SidecarMemoryRequest, "sidecar-memory-request", o.SidecarMemoryRequest, "the sidecar's memory request before its channels")
	fs.StringVar(&o.SidecarMemoryLimit, "sidecar-memory-limit", o.SidecarMemoryLimit, "the sidecar's memory limit before its channels")
	fs.StringVar(&o.MaxSidecarMemory, "max-sidecar-memory", o.MaxSidecarMemory, "largest memory limit the sidecar may get (its own, its tmpfs, its queues' bounds, its broker's connections and parked sends); a pod whose queues need more is refused (0: no limit)")
	fs.DurationVar(&o.SidecarStartup, "sidecar-startup-timeout", o.SidecarStartup, "how long the sidecar's startup probe waits for its channels")
}

// Settings turns the options into the mutation's settings; native says
// whether the cluster supports native sidecars (for NativeSidecarAuto).
func (o *Options) Settings(native bool) (webhook.Settings, error) {
	s := webhook.DefaultSettings()
	s.InjectorVersion = o.Version
	s.SidecarImage = o.SidecarImage
	s.SidecarImagePullPolicy = corev1.PullPolicy(o.SidecarPullPolicy)
	switch o.NativeSidecar {
	case NativeSidecarAlways:
		s.NativeSidecar = true
	case NativeSidecarNever:
		s.NativeSidecar = false
	default:
		s.NativeSidecar = native
	}
	var errs []error
	quantity := func(flagName, v string, dst *resource.Quantity) {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			errs = append(errs, fmt.Errorf("--%s %q: want a non-negative quantity such as 64Mi", flagName, v))
			return
		}
		*dst = q
	}
	var maxTmpfs, headroom, devShm, maxMemory resource.Quantity
	quantity("max-tmpfs", o.MaxTmpfs, &maxTmpfs)
	quantity("tmpfs-headroom", o.TmpfsHeadroom, &headroom)
	quantity("dev-shm-headroom", o.DevShmHeadroom, &devShm)
	quantity("sidecar-cpu-request", o.SidecarCPURequest, &s.SidecarCPURequest)
	quantity("sidecar-memory-request", o.SidecarMemoryRequest, &s.SidecarMemoryRequest)
	quantity("sidecar-memory-limit", o.SidecarMemoryLimit, &s.SidecarMemoryLimit)
	quantity("max-sidecar-memory", o.MaxSidecarMemory, &maxMemory)
	s.MaxSidecarMemoryBytes = maxMemory.Value()
	s.MaxTmpfsBytes, s.TmpfsHeadroomBytes, s.DevShmHeadroomBytes = maxTmpfs.Value(), headroom.Value(), devShm.Value()
	s.StartupTimeoutSeconds = int32(o.SidecarStartup.Round(time.Second) / time.Second)
	switch p := s.SidecarImagePullPolicy; p {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--sidecar-image-pull-policy %q: want Always, IfNotPresent or Never", p))
	}
	if err := errors.Join(errs...); err != nil {
		return webhook.Settings{}, err
	}
	if err := s.Validate(); err != nil {
		return webhook.Settings{}, err
	}
	return s, nil
}
