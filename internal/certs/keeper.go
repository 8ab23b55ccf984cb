// Package certs keeps the injector's webhook serving certificate: cert-controller
// (github.com/open-policy-agent/cert-controller) creates and rotates a CA and a
// serving certificate in a Secret and patches the CA into the
// MutatingWebhookConfiguration's caBundle; the Keeper loads the certificate
// from that Secret into the webhook server on every replica, without waiting
// for the kubelet to project the Secret into a volume.
package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// The keys of the certificate Secret, as cert-controller and cert-manager
// write them.
const (
	CertKey = corev1.TLSCertKey       // tls.crt
	KeyKey  = corev1.TLSPrivateKeyKey // tls.key
	CAKey   = "ca.crt"
)

// ErrNoCertificate is returned to TLS handshakes before the Secret holds a
// certificate.
var ErrNoCertificate = errors.New("the webhook serving certificate is not loaded yet")

// Keeper serves the certificate of a Secret to a TLS server and copies it
// into a directory (where cert-controller checks that it is "mounted").
// It reconciles the Secret on every replica: no leader election.
type Keeper struct {
	// Reader reads the Secret; the manager's cache, restricted to this one
	// Secret.
	Reader client.Reader
	// Secret is the Secret cert-controller writes.
	Secret types.NamespacedName
	// Dir receives tls.crt and tls.key.
	Dir string

	current atomic.Pointer[tls.Certificate]
}

// SetupWithManager registers the Keeper as a controller of the one Secret.
func (k *Keeper) SetupWithManager(mgr ctrl.Manager) error {
	isOurs := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == k.Secret.Namespace && o.GetName() == k.Secret.Name
	})
	err := ctrl.NewControllerManagedBy(mgr).
		Named("serving-cert").
		For(&corev1.Secret{}, builder.WithPredicates(isOurs)).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), MaxConcurrentReconciles: 1}).
		Complete(k)
	if err != nil {
		return fmt.Errorf("set up the serving certificate keeper: %w", err)
	}
	return nil
}

// Reconcile loads the Secret's certificate when it changes.
func (k *Keeper) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var secret corev1.Secret
	if err := k.Reader.Get(ctx, req.NamespacedName, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get secret %s: %w", req.NamespacedName, err)
	}
	certPEM, keyPEM := secret.Data[CertKey], secret.Data[KeyKey]
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return ctrl.Result{}, nil // cert-controller has not filled it in yet
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Not retried: the next write of the Secret triggers another reconcile.
		logf.FromContext(ctx).Error(err, "the secret holds no usable key pair", "secret", req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if cur := k.current.Load(); cur != nil && bytes.Equal(cur.Certificate[0], pair.Certificate[0]) {
		return ctrl.Result{}, nil
	}
	if err := writeAtomic(k.Dir, CertKey, certPEM); err != nil {
		return ctrl.Result{}, err
	}
	if err := writeAtomic(k.Dir, KeyKey, keyPEM); err != nil {
		return ctrl.Result{}, err
	}
	k.current.Store(&pair)
	logf.FromContext(ctx).Info("serving certificate loaded", "secret", req.NamespacedName, "notAfter", pair.Leaf.NotAfter)
	return ctrl.Result{}, nil
}

// GetCertificate is the TLS server's tls.Config.GetCertificate.
func (k *Keeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := k.current.Load(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

// Checker is a readiness check that passes once a certificate is loaded.
func (k *Keeper) Checker() healthz.Checker {
	return func(*http.Request) error {
		if k.current.Load() == nil {
			return ErrNoCertificate
		}
		return nil
	}
}

// writeAtomic replaces dir/name with data through a rename, so a reader never
// sees half a file.
func writeAtomic(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
