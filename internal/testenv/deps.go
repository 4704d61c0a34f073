package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// Deps returns the packages the package in the current directory depends
// on (go list -deps), skipping the test when no go tool is in PATH.
func Deps(tb testing.TB) []string {
	tb.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		tb.Skip("no go tool in PATH to list dependencies with")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		tb.Fatalf("go list -deps: %v", err)
	}
	return strings.Fields(string(out))
}

// NoClientset fails the test when the package in the current directory
// depends on client-go's clientset or informers: their init registers every
// API group, which made roost-agent's binary 39 MB larger and its idle RSS
// about 19 MB larger (internal/k8swatch). Clients are built on
// k8s.io/client-go/rest instead, informers on k8s.io/client-go/tools/cache.
func NoClientset(tb testing.TB) {
	tb.Helper()
	for _, dep := range Deps(tb) {
		switch {
		case dep == "k8s.io/client-go/kubernetes", strings.HasPrefix(dep, "k8s.io/client-go/kubernetes/"):
			tb.Errorf("depends on %s, which registers every API group: build clients on k8s.io/client-go/rest", dep)
		case strings.HasPrefix(dep, "k8s.io/client-go/informers"):
			tb.Errorf("depends on %s, whose informers need a kubernetes.Interface: use k8s.io/client-go/tools/cache", dep)
		}
	}
}
