package injector

import (
	"crypto/tls"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/internal/admission"
	"github.com/podipc/podipc/internal/certs"
	"github.com/podipc/podipc/internal/controller"
)

// NativeSidecarMinVersion is the first Kubernetes version whose native
// sidecars (SidecarContainers) are on by default.
var NativeSidecarMinVersion = version.MajorMinor(1, 29)

// SupportsNativeSidecars asks the API server its version.
func SupportsNativeSidecars(cfg *rest.Config) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, fmt.Errorf("create a discovery client: %w", err)
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return false, fmt.Errorf("get the API server's version: %w", err)
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		return false, fmt.Errorf("parse the API server's version %q: %w", info.GitVersion, err)
	}
	return v.AtLeast(NativeSidecarMinVersion), nil
}

// NewScheme is the injector's scheme: the built-in types and IPCChannel.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("add built-in types to the scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("add podipc types to the scheme: %w", err)
	}
	return s, nil
}

// NewManager builds the injector's manager; Start runs it.
func NewManager(cfg *rest.Config, o Options, log logr.Logger) (ctrl.Manager, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	native := false
	if o.NativeSidecar == NativeSidecarAuto {
		if native, err = SupportsNativeSidecars(cfg); err != nil {
			return nil, err
		}
	}
	settings, err := o.Settings(native)
	if err != nil {
		return nil, err
	}
	log.Info("injection settings", "nativeSidecar", settings.NativeSidecar, "sidecarImage", settings.SidecarImage,
		"maxTmpfsBytes", settings.MaxTmpfsBytes, "certMode", o.CertMode)

	podObj, podCache := controller.PodCacheConfig()
	byObject := map[client.Object]cache.ByObject{podObj: podCache}
	webhookOpts := ctrlwebhook.Options{Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.CertDir}
	secret := types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecretName}
	var keeper *certs.Keeper
	if o.CertMode == CertModeSelf {
		keeper = &certs.Keeper{Secret: secret, Dir: o.CertDir}
		// The manager reads one Secret: its informer is restricted to it.
		byObject[&corev1.Secret{}] = cache.ByObject{
			Namespaces: map[string]cache.Config{o.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", o.CertSecretName),
		}
		webhookOpts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = keeper.GetCertificate }}
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Logger:                        log,
		Cache:                         cache.Options{ByObject: byObject},
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.HealthAddr,
		PprofBindAddress:              o.PprofAddr,
		WebhookServer:                 ctrlwebhook.NewServer(webhookOpts),
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.Namespace,
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: ptr.To(o.SkipNameValidation)},
	})
	if err != nil {
		return nil, fmt.Errorf("create the manager: %w", err)
	}

	if keeper != nil {
		keeper.Reader = mgr.GetClient()
		if err := keeper.SetupWithManager(mgr); err != nil {
			return nil, err
		}
		err := certs.AddRotator(mgr, certs.RotatorOptions{
			Secret:               secret,
			Dir:                  o.CertDir,
			Service:              o.ServiceName,
			ExtraDNSNames:        o.CertExtraDNSNames,
			WebhookConfiguration: o.WebhookConfigName,
			ServerCertValidity:   o.CertServerValidity,
			Lookahead:            o.CertLookahead,
			CheckInterval:        o.CertCheckInterval,
		})
		if err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("serving-cert", keeper.Checker()); err != nil {
			return nil, fmt.Errorf("add readiness check: %w", err)
		}
	}

	mutator := &admission.PodMutator{Channels: admission.ReaderChannelLister{Reader: mgr.GetClient()}, Settings: settings}
	mgr.GetWebhookServer().Register(admission.Path, admission.NewHTTPHandler(mutator, log.WithName("webhook")))

	if err := (&controller.PodConfigReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("podipc-injector")}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&controller.ChannelStatusReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return nil, fmt.Errorf("add readiness check: %w", err)
	}
	return mgr, nil
}
