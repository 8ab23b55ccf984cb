package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoKubernetesAPIMachinery holds the sidecar to the channel model:
// it serves pkg/channelconfig's types and must not link the versioned API or
// the machinery that comes with it (docs/sidecar.md, Measurements).
func TestLinksNoKubernetesAPIMachinery(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"github.com/podipc/podipc/api/",
		"k8s.io/apimachinery/pkg/runtime",
		"k8s.io/apimachinery/pkg/apis/",
		"k8s.io/client-go/",
		"k8s.io/klog/",
		"sigs.k8s.io/controller-runtime",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed only %d packages", len(deps))
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("the sidecar links %s", dep)
			}
		}
	}
}
