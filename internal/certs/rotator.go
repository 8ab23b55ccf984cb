package certs

import (
	"fmt"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
)

// RotatorOptions configure the self-managed certificates.
type RotatorOptions struct {
	// Secret holds the CA and the serving certificate. It must exist (the
	// manifests create it empty): the injector may only get and update it.
	Secret types.NamespacedName
	// Dir is where the Keeper writes the serving certificate.
	Dir string
	// Service is the webhook's Service; the certificate is for
	// <service>.<namespace>.svc and its shorter and longer forms.
	Service string
	// ExtraDNSNames are further names in the certificate (tests: localhost).
	ExtraDNSNames []string
	// WebhookConfiguration is the MutatingWebhookConfiguration whose caBundle
	// is kept current.
	WebhookConfiguration string
	// ServerCertValidity, CACertValidity, Lookahead and CheckInterval tune
	// rotation; zero takes cert-controller's defaults (1 year, 10 years, 90
	// days, 12 hours). A certificate is renewed once it expires within
	// Lookahead.
	ServerCertValidity time.Duration
	CACertValidity     time.Duration
	Lookahead          time.Duration
	CheckInterval      time.Duration
}

// AddRotator adds cert-controller's rotator to the manager. It runs on the
// leader only: one writer of the Secret and the caBundle.
func AddRotator(mgr ctrl.Manager, o RotatorOptions) error {
	ns := o.Secret.Namespace
	names := []string{o.Service, o.Service + "." + ns, o.Service + "." + ns + ".svc.cluster.local"}
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:              o.Secret,
		CertDir:                o.Dir,
		CAName:                 o.Service + "-ca",
		CAOrganization:         "podipc",
		DNSName:                o.Service + "." + ns + ".svc",
		ExtraDNSNames:          append(names, o.ExtraDNSNames...),
		IsReady:                make(chan struct{}),
		Webhooks:               []rotator.WebhookInfo{{Name: o.WebhookConfiguration, Type: rotator.Mutating}},
		FieldOwner:             "podipc-injector",
		RequireLeaderElection:  true,
		RestartOnSecretRefresh: false,
		EnableReadinessCheck:   true,
		ServerCertDuration:     o.ServerCertValidity,
		CaCertDuration:         o.CACertValidity,
		LookaheadInterval:      o.Lookahead,
		RotationCheckFrequency: o.CheckInterval,
	})
	if err != nil {
		return fmt.Errorf("add the certificate rotator: %w", err)
	}
	return nil
}
