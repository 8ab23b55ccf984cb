package injector_test

import (
	"flag"
	"strings"
	"testing"

	"github.com/podipc/podipc/internal/injector"
)

func parseFlags(t *testing.T, args ...string) (injector.Options, error) {
	t.Helper()
	opts := injector.DefaultOptions()
	fs := flag.NewFlagSet("podipc-injector", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	opts.BindFlags(fs)
	return opts, fs.Parse(args)
}

func TestOptionsSettings(t *testing.T) {
	opts, err := parseFlags(t, "--sidecar-image=registry.example/podipc-sidecar:v1", "--max-tmpfs=1Gi", "--tmpfs-headroom=2Mi",
		"--native-sidecar=never", "--sidecar-memory-limit=128Mi", "--max-sidecar-memory=2Gi", "--sidecar-startup-timeout=30s", "--cert-mode=cert-manager",
		"--cert-extra-dns-names=localhost,injector.local")
	if err != nil {
		t.Fatal(err)
	}
	if opts.CertMode != injector.CertModeCertManager || len(opts.CertExtraDNSNames) != 2 {
		t.Fatalf("options %+v", opts)
	}
	s, err := opts.Settings(true)
	if err != nil {
		t.Fatal(err)
	}
	if s.NativeSidecar || s.SidecarImage != "registry.example/podipc-sidecar:v1" || s.MaxTmpfsBytes != 1<<30 ||
		s.TmpfsHeadroomBytes != 2<<20 || s.SidecarMemoryLimit.Value() != 128<<20 || s.MaxSidecarMemoryBytes != 2<<30 || s.StartupTimeoutSeconds != 30 {
		t.Fatalf("settings %+v", s)
	}
	// auto follows what the API server supports.
	opts.NativeSidecar = injector.NativeSidecarAuto
	for _, native := range []bool{true, false} {
		if s, _ := opts.Settings(native); s.NativeSidecar != native {
			t.Fatalf("auto with support %v gave native %v", native, s.NativeSidecar)
		}
	}
}

func TestOptionsRejectBadValues(t *testing.T) {
	for _, args := range [][]string{{"--cert-mode=manual"}, {"--native-sidecar=sometimes"}} {
		if _, err := parseFlags(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	for flagArg, want := range map[string]string{
		"--max-tmpfs=lots":                 "--max-tmpfs",
		"--max-sidecar-memory=lots":        "--max-sidecar-memory",
		"--sidecar-memory-request=-1Mi":    "--sidecar-memory-request",
		"--sidecar-image-pull-policy=Some": "--sidecar-image-pull-policy",
		"--sidecar-image=":                 "image",
		"--sidecar-memory-limit=1Mi":       "below its request",
	} {
		opts, err := parseFlags(t, flagArg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := opts.Settings(true); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to mention %q", flagArg, err, want)
		}
	}
}
