package k8swatch

import (
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/testenv"
)

// TestDeps keeps out of this package the Kubernetes API machinery it does
// not use. roost-agent links it whether or not Kubernetes is enabled, and
// package init runs for everything linked (testenv.NoClientset says what
// the clientset costs).
func TestDeps(t *testing.T) {
	testenv.NoClientset(t)
	for _, dep := range testenv.Deps(t) {
		if strings.HasPrefix(dep, "k8s.io/api/") && dep != "k8s.io/api/core/v1" {
			t.Errorf("depends on API group %s; only core/v1 (Node) is used", dep)
		}
	}
}
