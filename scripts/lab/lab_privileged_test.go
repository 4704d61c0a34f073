package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/testenv"
)

// TestPrivilegedLab runs roost-lab itself, as make lab does, on
// testdata/privileged.yaml: the default lab's parts, one of each, under
// namespace names of the test's own and a state directory of its own.
// up must converge and pass every check (both clusters, etcd, roost-sync,
// a deregistration, the VIP), status must pass them again, and down must
// leave no namespace, mount or state behind.
func TestPrivilegedLab(t *testing.T) {
	testenv.Privileged(t)
	for _, b := range []string{"bird", "birdc", "vtysh", "nc.openbsd", "nft", "etcd", "curl"} {
		testenv.Binary(t, b)
	}
	dir := t.TempDir()
	// FRR's daemons drop to the user frr, who must reach the state
	// directory: TempDir makes its directories 0700.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-trimpath", "-o", bin+"/",
		"../../cmd/roost-agent", "../../cmd/roost-loader", "../../cmd/roost-sync", "../../cmd/roostctl", ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	desc, err := filepath.Abs("testdata/privileged.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := parse(t, readFile(t, desc))
	state := filepath.Join(dir, "state")
	lab := func(cmd string) (string, error) {
		c := exec.Command(filepath.Join(bin, "lab"), cmd) // roost-lab, built from "."
		c.Env = append(os.Environ(), "ROOST_LAB_DIR="+state, "ROOST_BIN="+bin, "ROOST_LAB_FILE="+desc, "ROOST_LAB_TIMEOUT=60")
		out, err := c.CombinedOutput()
		return string(out), err
	}
	downed := false
	t.Cleanup(func() {
		if !downed {
			if out, err := lab("down"); err != nil {
				t.Errorf("roost-lab down: %v\n%s", err, out)
			}
		}
	})

	out, err := lab("up")
	if err != nil || !strings.Contains(out, "lab: all checks passed") {
		t.Fatalf("roost-lab up: %v\n%s", err, out)
	}
	// Every check of the file ran and passed: the traffic tables' rows
	// end in "ok", one per check of each family and per deregistration.
	want := len(spec.Checks[0]) + len(spec.Checks[1])
	for _, fam := range spec.Checks {
		for _, c := range fam {
			if c.Deregistered != "" {
				want++
			}
		}
	}
	if got := countOK(out); got != want {
		t.Errorf("up: %d checks passed, want %d\n%s", got, want, out)
	}
	for _, s := range []string{"publisher of cluster:rxa: leader", "other clusters' nodes (remote-node): cluster:rxb=1",
		"gone from every loader's view", "in every loader's view again"} {
		if !strings.Contains(out, s) {
			t.Errorf("up's report lacks %q", s)
		}
	}

	out, err = lab("status")
	if err != nil || !strings.Contains(out, "lab: all checks passed") || strings.Contains(out, "NOT RUNNING") {
		t.Errorf("roost-lab status: %v\n%s", err, out)
	}
	if got := countOK(out); got != len(spec.Checks[0])+len(spec.Checks[1]) {
		t.Errorf("status: %d checks passed, want %d", got, len(spec.Checks[0])+len(spec.Checks[1]))
	}

	downed = true
	if out, err := lab("down"); err != nil {
		t.Fatalf("roost-lab down: %v\n%s", err, out)
	}
	for _, ns := range spec.namespaces() {
		if left, err := netnsExists(ns); left || err != nil {
			t.Errorf("namespace %s left after down (%v)", ns, err)
		}
	}
	if exists(state) {
		t.Errorf("%s left after down", state)
	}
	if m, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(m), state) {
		t.Errorf("mounts under %s left after down", state)
	}
}

// countOK counts the rows of the traffic tables that passed.
func countOK(out string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasSuffix(line, " ok") {
			n++
		}
	}
	return n
}
