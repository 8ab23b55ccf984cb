package certs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	certutil "k8s.io/client-go/util/cert"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestKeeperLoadsAndReplacesTheCertificate(t *testing.T) {
	key := types.NamespacedName{Namespace: "podipc-system", Name: "podipc-injector-tls"}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	c := fake.NewClientBuilder().WithObjects(secret).Build()
	k := &Keeper{Reader: c, Secret: key, Dir: filepath.Join(t.TempDir(), "certs")}
	ctx := context.Background()
	reconcile := func() {
		t.Helper()
		if _, err := k.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
			t.Fatal(err)
		}
	}

	// An empty Secret (cert-controller has not filled it in): nothing served.
	reconcile()
	if _, err := k.GetCertificate(nil); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("GetCertificate before a certificate: %v", err)
	}
	if err := k.Checker()(nil); err == nil {
		t.Fatal("ready without a certificate")
	}

	setPair := func(certPEM, keyPEM []byte) {
		t.Helper()
		secret.Data = map[string][]byte{CertKey: certPEM, KeyKey: keyPEM}
		if err := c.Update(ctx, secret); err != nil {
			t.Fatal(err)
		}
		reconcile()
	}
	served := func() []byte {
		t.Helper()
		cert, err := k.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Certificate[0]
	}
	for i, host := range []string{"first.podipc.test", "second.podipc.test"} {
		certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		setPair(certPEM, keyPEM)
		certs, err := certutil.ParseCertsPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(served(), certs[0].Raw) {
			t.Fatalf("pair %d: serving another certificate", i)
		}
		if err := k.Checker()(nil); err != nil {
			t.Fatalf("not ready with a certificate: %v", err)
		}
		for name, want := range map[string][]byte{CertKey: certPEM, KeyKey: keyPEM} {
			got, err := os.ReadFile(filepath.Join(k.Dir, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("pair %d: %s in the directory differs (err %v)", i, name, err)
			}
		}
	}

	// A broken pair is not loaded: the last good one stays.
	before := served()
	setPair([]byte("not a certificate"), []byte("not a key"))
	if !bytes.Equal(served(), before) {
		t.Fatal("a broken pair replaced the served certificate")
	}
}
