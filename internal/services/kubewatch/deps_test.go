package kubewatch

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps client-go's clientset and informers out of this package:
// roost-agent links it for its VIPs (see internal/k8swatch's TestDeps for
// what they cost a binary that links them).
func TestDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to list dependencies with")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		switch {
		case dep == "k8s.io/client-go/kubernetes", strings.HasPrefix(dep, "k8s.io/client-go/kubernetes/"):
			t.Errorf("depends on %s, which registers every API group: build clients on k8s.io/client-go/rest", dep)
		case strings.HasPrefix(dep, "k8s.io/client-go/informers"):
			t.Errorf("depends on %s: use k8s.io/client-go/tools/cache", dep)
		}
	}
}
