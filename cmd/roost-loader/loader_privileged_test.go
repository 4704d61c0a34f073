package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/testenv"
)

// The node of these tests: a "node" namespace routing for three "pod"
// namespaces, each behind a veth whose host side is in the node (a /32
// route per pod; the pods reach the node through 169.254.1.1, an address of
// every host-side veth), as in internal/loader's lab.
//
//	db        10.244.1.10   app=protected-db   listens on 6379
//	employee  10.244.1.11   app=employee
//	guest     10.244.1.12   app=guest
const (
	dbIP       = "10.244.1.10"
	employeeIP = "10.244.1.11"
	guestIP    = "10.244.1.12"
	dbRedis    = dbIP + ":6379"
	gatewayIP  = "169.254.1.1"
	apiAddr    = "127.0.0.1:9480"
)

const endpointsYAML = `endpoints:
  - name: db
    ips: [10.244.1.10]
    labels: {app: protected-db}
  - name: employee
    ips: [10.244.1.11]
    labels: {app: employee}
  - name: guest
    ips: [10.244.1.12]
    labels: {app: guest}
`

// seedPolicy is issue 3's policy: only employee reaches db's 6379.
const seedPolicy = `apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "clustermesh-ingress-l4-policy"
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - toPorts:
    - ports:
      - port: "6379"
        protocol: TCP
    fromEndpoints:
      - matchLabels:
          app: employee
`

// guestPolicy lets guest reach db's 6379 too.
const guestPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: guest-too
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: guest
    toPorts:
    - ports:
      - port: "6379"
        protocol: TCP
`

// brokenPolicy has an egress section, which roost refuses (line 9).
const brokenPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: broken
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  egress:
  - toEndpoints:
    - matchLabels:
        app: guest
`

// node is the namespaces and files of one test, and the loader running on
// them.
type node struct {
	bin                    string // holds roost-loader and roostctl
	ns                     string
	db, employee, guest    string // pod namespaces
	config, policyDir, log string
	cmd                    *exec.Cmd
	exited                 chan struct{} // closed when cmd has exited
	exitErr                error         // cmd's exit status, once exited is closed
}

func newNode(t testing.TB) *node {
	t.Helper()
	testenv.Privileged(t)
	n := &node{ns: testenv.NetNS(t, "rlnode")}
	testenv.Run(t, "ip", "netns", "exec", n.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for _, p := range []struct {
		ns *string
		ip string
	}{{&n.db, dbIP}, {&n.employee, employeeIP}, {&n.guest, guestIP}} {
		*p.ns = testenv.NetNS(t, "rlpod")
		hostIf, podIf := testenv.Name("h"), testenv.Name("p")
		testenv.Veth(t, n.ns, hostIf, gatewayIP+"/32", *p.ns, podIf, p.ip+"/32")
		testenv.Run(t, "ip", "-n", n.ns, "route", "add", p.ip+"/32", "dev", hostIf)
		testenv.Run(t, "ip", "-n", *p.ns, "route", "add", gatewayIP, "dev", podIf, "scope", "link")
		testenv.Run(t, "ip", "-n", *p.ns, "route", "add", "default", "via", gatewayIP)
	}

	// A private BPF filesystem: the host's /sys/fs/bpf is never touched.
	// Unmounted after the loader is killed (cleanups run in reverse).
	mnt := t.TempDir()
	testenv.Run(t, "mount", "-t", "bpf", "bpf", mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})

	dir := t.TempDir()
	n.policyDir = filepath.Join(dir, "policies")
	if err := os.Mkdir(n.policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	epFile := filepath.Join(dir, "endpoints.yaml")
	n.config = filepath.Join(dir, "loader.yaml")
	n.log = filepath.Join(dir, "loader.log")
	n.writeFile(t, epFile, endpointsYAML)
	n.writeFile(t, filepath.Join(n.policyDir, "seed.yaml"), seedPolicy)
	n.writeFile(t, n.config, fmt.Sprintf("node: node1\nbpffs: %s\npolicyDir: %s\nendpointsFile: %s\nlisten: %s\n",
		filepath.Join(mnt, "roost"), n.policyDir, epFile, apiAddr))

	n.bin = t.TempDir()
	out, err := exec.Command("go", "build", "-o", n.bin+"/", ".", "../roostctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			out, _ := os.ReadFile(n.log)
			t.Logf("roost-loader log:\n%s", out)
		}
	})
	return n
}

// writeFile writes a file the way configuration management does: a hidden
// temporary file renamed into place.
func (n *node) writeFile(t testing.TB, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// start runs roost-loader in the node's namespace.
func (n *node) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	argv := testenv.InNS(n.ns, filepath.Join(n.bin, "roost-loader"), "--config", n.config)
	n.cmd = exec.Command(argv[0], argv[1:]...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, exited := n.cmd, make(chan struct{})
	n.exited = exited
	go func() {
		n.exitErr = cmd.Wait()
		close(exited)
	}()
}

// kill stops roost-loader with SIGKILL, as a crash would.
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

// roostctl runs roostctl against the loader, in the node's namespace.
func (n *node) roostctl(args ...string) (string, error) {
	argv := testenv.InNS(n.ns, append([]string{filepath.Join(n.bin, "roostctl"), "--loader", apiAddr}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("roostctl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// roostctlJSON runs roostctl with -o json and decodes its output into v.
func (n *node) roostctlJSON(v any, args ...string) error {
	out, err := n.roostctl(append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("roostctl %s: decode %q: %w", strings.Join(args, " "), out, err)
	}
	return nil
}

// waitFor polls cond every 50 ms until it holds, for up to 20 s.
func (n *node) waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		if n.cmd != nil {
			select {
			case <-n.exited:
				t.Fatalf("waiting for %s: roost-loader exited: %v", what, n.exitErr)
			default:
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEnforced waits until roostctl endpoints shows db local and enforced,
// which a loader process shows only after a reconcile succeeded.
func (n *node) waitEnforced(t testing.TB) {
	t.Helper()
	n.waitFor(t, "db enforced", func() (bool, string) {
		var eps []loaderapi.Endpoint
		if err := n.roostctlJSON(&eps, "endpoints"); err != nil {
			return false, err.Error()
		}
		i := slices.IndexFunc(eps, func(e loaderapi.Endpoint) bool { return e.Name == "db" })
		return i >= 0 && eps[i].Local && eps[i].Enforced, fmt.Sprintf("%+v", eps)
	})
}

// waitLastApply waits until roostctl endpoints reports the last apply as
// failed with an error containing errText, or (errText empty) as ok.
func (n *node) waitLastApply(t *testing.T, errText string) string {
	t.Helper()
	var out string
	n.waitFor(t, "last apply "+errText, func() (bool, string) {
		var err error
		out, err = n.roostctl("endpoints")
		if err != nil {
			return false, err.Error()
		}
		if errText == "" {
			return !strings.Contains(out, "last apply"), out
		}
		return strings.Contains(out, "last apply failed: ") && strings.Contains(out, errText), out
	})
	return out
}

// checkEnforced checks the seed policy: employee reaches db's 6379, guest
// does not.
func (n *node) checkEnforced(t *testing.T, step string) {
	t.Helper()
	if err := testenv.ConnectHello(n.employee, dbRedis, 3*time.Second); err != nil {
		t.Errorf("%s: employee -> db:6379: %v", step, err)
	}
	if err := testenv.ConnectHello(n.guest, dbRedis, 300*time.Millisecond); !errors.Is(err, testenv.ErrDropped) {
		t.Errorf("%s: guest -> db:6379: %v; want it dropped", step, err)
	}
}

// probeUntil tries guest -> db:6379 every 10 ms, each attempt with a 50 ms
// timeout, until the policy changed since start has taken effect: allowed
// (an attempt connects) or, with !allowed, dropped (two attempts in a row
// time out; a single timeout could be a slow machine). It gives up after
// 30 s, a bound for a broken setup, not a performance target. The change
// took effect between the SYNs of the last attempt that did not see it and
// the first that did: it returns both times, since start, and the number
// of attempts.
func (n *node) probeUntil(t *testing.T, start time.Time, what string, allowed bool) (from, to time.Duration, attempts int) {
	t.Helper()
	var (
		prev    time.Duration // start of the previous attempt
		dropped = -1          // start index of the current run of timeouts
		starts  []time.Duration
	)
	for {
		at := time.Since(start)
		starts = append(starts, at)
		err := testenv.ConnectHello(n.guest, dbRedis, 50*time.Millisecond)
		switch {
		case err == nil && allowed:
			return prev, at, len(starts)
		case err == nil:
			dropped = -1
		case errors.Is(err, testenv.ErrDropped) && !allowed:
			if dropped < 0 {
				dropped = len(starts) - 1
			} else {
				first := starts[dropped]
				if dropped > 0 {
					return starts[dropped-1], first, len(starts)
				}
				return 0, first, len(starts)
			}
		case !errors.Is(err, testenv.ErrDropped):
			t.Fatalf("%s: guest -> db:6379: %v", what, err)
		}
		prev = at
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s: not enforced after %v (%d attempts)", what, time.Since(start), len(starts))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPrivilegedLoaderBinary runs roost-loader and roostctl as an operator
// would, in a node's namespace with a private BPF filesystem: the seed
// policy is enforced on real TCP and its drops show in roostctl; a policy
// file added and removed is enforced (the delay is logged); a broken policy
// file shows as a failed apply naming its line and changes nothing; a
// loader killed with SIGKILL leaves enforcement running, and the next one
// adopts its pinned links; --dry-run prints the resolved policy.
func TestPrivilegedLoaderBinary(t *testing.T) {
	n := newNode(t)
	testenv.ServeHello(t, n.db, dbRedis)
	n.start(t)
	n.waitEnforced(t)
	n.waitLastApply(t, "")

	t.Run("seed policy", func(t *testing.T) {
		n.checkEnforced(t, "seed")
		n.waitFor(t, "guest's drop in roostctl drops", func() (bool, string) {
			out, err := n.roostctl("drops", "-o", "json")
			if err != nil {
				return false, err.Error()
			}
			dec := json.NewDecoder(strings.NewReader(out))
			for {
				var d loaderapi.Drop
				if err := dec.Decode(&d); err != nil {
					return false, fmt.Sprintf("%v: %s", err, out)
				}
				if d.Src.String() == guestIP && d.Dst.String() == dbIP && d.DstPort == 6379 && d.Proto == 6 &&
					d.Reason == "drop-policy-default" && d.Endpoint == "db" {
					return true, ""
				}
			}
		})
	})

	t.Run("policy change", func(t *testing.T) {
		path := filepath.Join(n.policyDir, "guest.yaml")
		start := time.Now()
		n.writeFile(t, path, guestPolicy)
		from, to, tries := n.probeUntil(t, start, "guest allowed", true)
		t.Logf("policy file added: enforced between %v and %v after the rename (guest -> db:6379 connects; %d attempts)", from, to, tries)
		if err := testenv.ConnectHello(n.employee, dbRedis, 3*time.Second); err != nil {
			t.Errorf("employee -> db:6379 with guest allowed too: %v", err)
		}

		start = time.Now()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		from, to, tries = n.probeUntil(t, start, "guest denied again", false)
		t.Logf("policy file removed: enforced between %v and %v after the removal (guest -> db:6379 dropped; %d attempts)", from, to, tries)
		n.checkEnforced(t, "policy file removed")
	})

	t.Run("broken policy file", func(t *testing.T) {
		path := filepath.Join(n.policyDir, "broken.yaml")
		n.writeFile(t, path, brokenPolicy)
		out := n.waitLastApply(t, path+":9: spec.egress")
		if !strings.Contains(out, "enforced") {
			t.Errorf("roostctl endpoints after a failed apply:\n%s\nwant db still enforced", out)
		}
		n.checkEnforced(t, "broken policy file")

		// --dry-run names the same problem and fails.
		dry := exec.Command(filepath.Join(n.bin, "roost-loader"), "--config", n.config, "--dry-run")
		if out, err := dry.CombinedOutput(); err == nil || !strings.Contains(string(out), path+":9: spec.egress") {
			t.Errorf("--dry-run with a broken policy file: %v\n%s", err, out)
		}

		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		n.waitLastApply(t, "")
		n.checkEnforced(t, "broken policy file removed")
	})

	t.Run("restart", func(t *testing.T) {
		var before loaderapi.BPF
		if err := n.roostctlJSON(&before, "bpf"); err != nil {
			t.Fatal(err)
		}
		if len(before.Attachments) != 6 {
			t.Fatalf("roostctl bpf: %d attachments, want 6 (2 on each of 3 endpoints): %+v", len(before.Attachments), before)
		}
		for _, a := range before.Attachments {
			if a.Mode != "tcx" || !a.Current || a.LinkID == 0 || a.Tag == "" || a.Pin == "" {
				t.Errorf("attachment %+v: want a current, pinned TCX link with a tag", a)
			}
		}

		n.kill()
		if _, err := n.roostctl("endpoints"); err == nil || !strings.Contains(err.Error(), "is roost-loader running?") {
			t.Errorf("roostctl with the loader killed: %v", err)
		}
		n.checkEnforced(t, "loader killed")

		n.start(t)
		n.waitEnforced(t)
		n.waitLastApply(t, "")
		var after loaderapi.BPF
		if err := n.roostctlJSON(&after, "bpf"); err != nil {
			t.Fatal(err)
		}
		if len(after.Attachments) != len(before.Attachments) {
			t.Fatalf("roostctl bpf after the restart: %+v; want %+v", after, before)
		}
		for i, a := range after.Attachments {
			b := before.Attachments[i]
			if a.Ifindex != b.Ifindex || a.Program != b.Program || a.LinkID != b.LinkID || a.Pin != b.Pin || a.Tag != b.Tag ||
				a.ProgramID == b.ProgramID || !a.Current {
				t.Errorf("attachment after the restart %+v; want link %d adopted and moved to the new loader's program (same tag %s, not program %d)",
					a, b.LinkID, b.Tag, b.ProgramID)
			}
		}
		n.checkEnforced(t, "loader restarted")
	})

	t.Run("dry run", func(t *testing.T) {
		// The same files, and a bpffs directory on no BPF filesystem:
		// --dry-run loads nothing.
		conf, err := os.ReadFile(n.config)
		if err != nil {
			t.Fatal(err)
		}
		noBPF := filepath.Join(t.TempDir(), "loader.yaml")
		text := regexp.MustCompile(`(?m)^bpffs: .*$`).ReplaceAllString(string(conf), "bpffs: "+filepath.Join(t.TempDir(), "roost"))
		if err := os.WriteFile(noBPF, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, config := range []string{n.config, noBPF} {
			out, err := exec.Command(filepath.Join(n.bin, "roost-loader"), "--config", config, "--dry-run").CombinedOutput()
			if err != nil {
				t.Fatalf("--dry-run --config %s: %v\n%s", config, err, out)
			}
			for _, want := range []string{"db", "6379"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("--dry-run --config %s: output lacks %q:\n%s", config, want, out)
				}
			}
		}
	})
}
