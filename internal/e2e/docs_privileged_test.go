package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// The example node of docs/deploy.md, which the ToRs below are built for.
const (
	docNodeASN = 65100
	docPodCIDR = "10.251.7.0/24"
)

// docPaths are what docs/deploy.md's commands create outside the formula's
// own paths (hostPaths): the build's tarballs, Salt's roots, and Salt's
// default directories (salt-call with no config of its own).
var docPaths = []string{"/srv/roost-images", "/srv/salt", "/srv/pillar"}
var saltDefaultPaths = []string{"/etc/salt", "/var/cache/salt", "/var/log/salt", "/var/run/salt"}

// hostBirdConf stands for the host's own BIRD config, which roost must keep
// and put back.
const hostBirdConf = "# the host's own BIRD config (TestPrivilegedDeployDocs)\nlog syslog all;\nprotocol device {\n}\n"

// TestPrivilegedDeployDocs plays the new operator: it follows
// docs/deploy.md's commands, as written, from a bare root namespace with
// two FRR ToRs in namespaces at the document's addresses — the compose path
// to Established sessions and its teardown, then the Salt path (test=True
// on the bare node, apply, a second run, roost.clean) — and after each step
// checks what the document says it does. Its only departures are the ones
// docs/deploy.md lists under "How this document is tested": its own Docker
// engine (started with the document's daemon.json), the tests' Salt, and
// no installs. It also checks that the formula refuses to run beside a
// BIRD of the host's own.
func TestPrivilegedDeployDocs(t *testing.T) {
	testenv.Privileged(t)
	testenv.Binary(t, "debootstrap")
	testenv.Binary(t, "bird")
	testenv.Binary(t, "make")
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	for _, b := range readDocBlocks(t, filepath.Join(repo, "docs", "deploy.md")) {
		if b.name != "" {
			blocks[b.name] = b.body
		}
	}
	// Salt as installed: the tests' salt-call, alone in a directory first
	// on PATH.
	s := newSalt(t, repo)
	saltBin := t.TempDir()
	if err := os.Symlink(s.call, filepath.Join(saltBin, "salt-call")); err != nil {
		t.Fatal(err)
	}
	path := "PATH=" + saltBin + ":" + os.Getenv("PATH")
	guardHost(t)
	guardDocPaths(t)
	version := strings.TrimSpace(mustRead(t, filepath.Join(repo, "VERSION")))
	writeFile(t, "/etc/bird/bird.conf", hostBirdConf) // guardHost puts the real one back

	d := startDockerdConfig(t, blocks["daemon.json"])
	t.Cleanup(func() { d.run("rmi", "-f", "roost/bird:"+version, "roost/roost:"+version) })

	// The fabric of the document's example: node1 is this host.
	var tors [2]*testenv.FRR
	var hostAddr [2]netip.Addr
	for j := range tors {
		ns := testenv.NetNS(t, fmt.Sprintf("doctor%d", j+1))
		torAddr := netip.MustParseAddr(fmt.Sprintf("10.252.%d.1", j+1))
		hostAddr[j] = netip.MustParseAddr(fmt.Sprintf("10.252.%d.2", j+1))
		hostIf := testenv.Name("u")
		testenv.Veth(t, "", hostIf, hostAddr[j].String()+"/30", ns, testenv.Name("d"), torAddr.String()+"/30")
		t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
		sysctlRoot(t, "net.ipv6.conf."+hostIf+".disable_ipv6=1")
		tors[j] = testenv.StartFRR(t, ns, testenv.FRRConfig{ASN: torASN, RouterID: torAddr,
			Neighbors: []testenv.FRRPeer{{Address: hostAddr[j], ASN: docNodeASN}}})
	}
	podCIDR := netip.MustParsePrefix(docPodCIDR)

	// run runs the document's block name with bash, as an operator pastes
	// it, from the repository, and returns its output.
	run := func(name string) string {
		t.Helper()
		body, ok := blocks[name]
		if !ok {
			t.Fatalf("docs/deploy.md has no block %s", name)
		}
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", body)
		cmd.Dir = repo
		cmd.Env = append(d.env(), path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docs/deploy.md block %s: %v\n--- block:\n%s--- output:\n%s", name, err, body, out)
		}
		t.Logf("block %s: ok", name)
		return string(out)
	}
	established := func() {
		t.Helper()
		waitHealthy(t, d, "roost-bird", "roost-agent", "roost-loader")
		for j, tor := range tors {
			tor.WaitEstablished(t, 60*time.Second, hostAddr[j])
			tor.WaitBGPRoute(t, 30*time.Second, podCIDR, hostAddr[j])
		}
	}
	withdrawn := func(step string) {
		t.Helper()
		for _, tor := range tors { // withdrawn, not kept stale
			tor.WaitFor(t, 10*time.Second, "PodCIDR withdrawn by "+step, func() (bool, string) {
				rs, err := tor.KernelRoutes()
				return err == nil && len(rs[podCIDR]) == 0, fmt.Sprint(rs, err)
			})
		}
		if ids, _ := d.run("ps", "-aq"); ids != "" {
			t.Errorf("after %s: containers left: %s", step, ids)
		}
		if _, err := os.Stat("/sys/fs/bpf/roost"); err == nil {
			t.Errorf("after %s: the loader's pins are left in /sys/fs/bpf/roost", step)
		}
		for _, fam := range []string{"-4", "-6"} {
			if out := testenv.Run(t, "ip", fam, "route", "show", "proto", "167"); out != "" {
				t.Errorf("after %s: blackhole routes left: %s", step, out)
			}
		}
	}
	bare := func(step string) {
		t.Helper()
		for _, p := range hostPaths {
			if p == "/etc/bird/bird.conf" {
				continue
			}
			if _, err := os.Stat(p); err == nil {
				t.Errorf("after %s: %s is there", step, p)
			}
		}
		if got, _ := os.ReadFile("/etc/bird/bird.conf"); string(got) != hostBirdConf {
			t.Errorf("after %s: /etc/bird/bird.conf is not the host's own:\n%s", step, got)
		}
		if _, err := os.Stat("/etc/bird/bird.conf.pre-roost"); err == nil {
			t.Errorf("after %s: /etc/bird/bird.conf.pre-roost is left", step)
		}
	}

	run("images-build")
	for _, tar := range []string{"roost-bird-", "roost-roost-"} {
		if _, err := os.Stat("/srv/roost-images/" + tar + version + ".tar"); err != nil {
			t.Fatalf("images-build: %v", err)
		}
	}

	// The compose path.
	run("bpffs")
	run("compose-files")
	if out := run("compose-check"); !strings.Contains(out, "valid") {
		t.Errorf("compose-check said:\n%s", out)
	}
	run("compose-up")
	established()
	if got, _ := os.ReadFile("/etc/bird/bird.conf.pre-roost"); string(got) != hostBirdConf {
		t.Errorf("the BIRD container did not keep the host's bird.conf as bird.conf.pre-roost: %q", got)
	}
	if out := run("compose-look"); !strings.Contains(out, podCIDR.String()) || strings.Count(out, "Established") < 2 {
		t.Errorf("compose-look does not show two Established sessions and %s:\n%s", podCIDR, out)
	}
	run("compose-down")
	withdrawn("compose-down")
	run("compose-remove")
	bare("compose-remove")

	// The Salt path. First, a BIRD of the host's own on port 179 and
	// BIRD's control socket stops the formula before anything changes.
	run("salt-files")
	run("salt-pillar")
	f, err := os.OpenFile("/srv/pillar/roost.sls", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  docker: {manage_service: false, host: %q}\n", d.host)
	f.Close()
	stopHostBird := startHostBird(t)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", blocks["salt-test"])
	cmd.Dir, cmd.Env = repo, append(d.env(), path)
	refused, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(refused), "listens on TCP port 179") || !strings.Contains(string(refused), "holds BIRD's control socket /run/bird/bird.ctl") {
		t.Errorf("salt-test beside a host BIRD: %v, want it refused naming port 179 and the control socket:\n%s", err, refused)
	}
	stopHostBird()
	bare("the refused run")

	out := run("salt-test")
	if !strings.Contains(out, "/etc/roost/agent.yaml") || !strings.Contains(out, "Failed:     0") {
		t.Errorf("salt-test on a bare node does not report agent.yaml as a change:\n%s", out)
	}
	bare("salt-test")
	run("salt-apply")
	established()
	if got, _ := os.ReadFile("/etc/bird/bird.conf.pre-roost"); string(got) != hostBirdConf {
		t.Errorf("the formula did not keep the host's bird.conf as bird.conf.pre-roost: %q", got)
	}
	if out := run("salt-look"); strings.Contains(out, "(changed=") || !strings.Contains(out, podCIDR.String()) {
		t.Errorf("salt-look: the second run changed something, or routes does not show %s:\n%s", podCIDR, out)
	}
	run("salt-clean")
	withdrawn("salt-clean")
	bare("salt-clean")
}

// guardDocPaths refuses to run where docs/deploy.md's paths exist already,
// and removes them, and Salt's default directories it finds absent now, at
// cleanup.
func guardDocPaths(t *testing.T) {
	t.Helper()
	for _, p := range docPaths {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists: the documentation test would replace it", p)
		}
	}
	remove := append([]string{}, docPaths...)
	for _, p := range saltDefaultPaths {
		if _, err := os.Stat(p); err != nil {
			remove = append(remove, p)
		}
	}
	t.Cleanup(func() {
		for _, p := range remove {
			os.RemoveAll(p)
		}
	})
}

// startHostBird starts a BIRD in the root namespace as a host's own would
// run: listening on TCP port 179 (a passive session to a loopback address,
// so it sends nothing) and holding /run/bird/bird.ctl. The returned
// function stops it and removes /run/bird.
func startHostBird(t *testing.T) func() {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "bird.conf")
	writeFile(t, conf, `router id 192.0.2.1;
protocol device {
}
protocol bgp hostpeer {
	local as 65001;
	neighbor 127.0.0.2 as 65002;
	passive;
	multihop;
	ipv4 { import none; export none; };
}
`)
	if err := os.MkdirAll("/run/bird", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bird", "-f", "-c", conf, "-s", "/run/bird/bird.ctl")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { stopBird(cmd, done) }) }
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ss, _ := exec.Command("ss", "-Hltn", "sport = :179").Output()
		if _, err := os.Stat("/run/bird/bird.ctl"); err == nil && len(ss) > 0 {
			return stop
		}
		select {
		case <-done:
			t.Fatalf("the host BIRD exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host BIRD did not listen on 179 within 10s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopBird stops the host BIRD started by startHostBird and removes
// /run/bird.
func stopBird(cmd *exec.Cmd, done chan struct{}) {
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	os.RemoveAll("/run/bird")
}
