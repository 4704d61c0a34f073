package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Cgroup makes a cgroup v2 directory of the test's own under root (the
// hierarchy's mount point) and moves the test process into it, so that
// programs attached to it see the test's sockets and no other process's.
// At cleanup the process moves back to where it was and the directory goes.
func Cgroup(tb testing.TB, root string) string {
	tb.Helper()
	Privileged(tb)
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		tb.Fatal(err)
	}
	var orig string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			orig = filepath.Join(root, rest)
		}
	}
	if orig == "" {
		tb.Fatal("the test process is in no cgroup v2 cgroup")
	}
	cg := filepath.Join(root, Name("rtcg"))
	if err := os.Mkdir(cg, 0o755); err != nil {
		tb.Fatal(err)
	}
	pid := []byte(fmt.Sprint(os.Getpid()))
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), pid, 0); err != nil {
		os.Remove(cg)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(orig, "cgroup.procs"), pid, 0); err != nil {
			tb.Errorf("cleanup: back to cgroup %s: %v", orig, err)
		}
		if err := os.Remove(cg); err != nil {
			tb.Errorf("cleanup: remove cgroup %s: %v", cg, err)
		}
	})
	return cg
}
