package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// This file holds the deployment test's environment: a private Docker
// engine, a masterless Salt, and the record of what the test changes in the
// root namespace and on the host's file system, put back at cleanup.

// dockerCache is the private engine's data root. It outlives a run, as a
// build cache does: the debootstrapped base image and the BIRD image's
// layers are reused by the next run. Nothing in it runs after a test.
const dockerCache = "/var/lib/roost-test/docker"

// saltVenv is where `scripts/deps.sh test` installs Salt from PyPI (a venv of
// Debian's python3 with its site packages, so that Salt's apt states can
// import python3-apt). ROOST_SALT_CALL overrides the salt-call path.
const saltVenv = "/opt/roost-test/salt"

// dockerd is a Docker engine started by the test with its own socket,
// exec root and containerd, no bridge and no iptables rules, so that it
// leaves the root namespace as it found it.
type dockerd struct {
	host string // DOCKER_HOST value
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startDockerd(t *testing.T) *dockerd {
	t.Helper()
	return startDockerdConfig(t, "")
}

// startDockerdConfig is startDockerd with the daemon's network settings
// (no bridge, no iptables rules, forwarding and masquerading left alone)
// from daemonJSON, a daemon.json given to dockerd as --config-file, instead
// of flags; "" means the flags.
func startDockerdConfig(t *testing.T, daemonJSON string) *dockerd {
	t.Helper()
	bin := testenv.Binary(t, "dockerd")
	testenv.Binary(t, "docker")
	testenv.Binary(t, "docker-compose")
	dir, err := os.MkdirTemp("/run", "rtdk") // short: it holds sockets
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dockerCache, 0o700); err != nil {
		t.Fatal(err)
	}
	d := &dockerd{host: "unix://" + dir + "/docker.sock", dir: dir, done: make(chan struct{})}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--host", d.host, "--data-root", dockerCache,
		"--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "docker.pid")}
	if daemonJSON == "" {
		args = append(args, "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--ip-forward=false")
	} else {
		conf := filepath.Join(dir, "daemon.json")
		if err := os.WriteFile(conf, []byte(daemonJSON), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config-file", conf)
	}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	go func() { d.cmd.Wait(); logf.Close(); close(d.done) }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.run("info", "--format", "{{.ServerVersion}}"); err == nil {
			d.removeStale(t)
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("dockerd exited:\n%s", d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s:\n%s", d.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *dockerd) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
	return string(b)
}

// removeStale removes the images an earlier, interrupted run of the test
// left in the cache (tags from testenv.Name("e2e")).
func (d *dockerd) removeStale(t *testing.T) {
	out, err := d.run("images", "--format", "{{.Repository}}:{{.Tag}}", "roost/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range strings.Fields(out) {
		if strings.Contains(ref, ":rte2e") {
			if _, err := d.run("rmi", "-f", ref); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// env is the environment for docker clients of this engine.
func (d *dockerd) env() []string { return append(os.Environ(), "DOCKER_HOST="+d.host) }

// run runs the docker CLI against the engine and returns its trimmed output.
func (d *dockerd) run(args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	cmd.Env = d.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// stop removes every container, then stops the engine (and its containerd).
func (d *dockerd) stop(t *testing.T) {
	if ids, err := d.run("ps", "-aq"); err == nil && ids != "" {
		if _, err := d.run(append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	_ = syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
	if t.Failed() {
		t.Logf("dockerd log (tail):\n%s", tail(d.log(), 40))
	}
	// dockerd leaves a bind mount of the root namespace's netns in its
	// exec root (exec/netns/default).
	for _, m := range mountsUnder(d.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("cleanup: unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// salt runs a masterless salt-call over the repository's salt/ tree with a
// pillar the test writes.
type salt struct {
	call     string
	dir      string // config dir, pillar root and Salt's own root
	fileRoot string // the repository's salt/
	pillars  string
}

func newSalt(t *testing.T, repo string) *salt {
	t.Helper()
	call := os.Getenv("ROOST_SALT_CALL")
	if call == "" {
		call = saltVenv + "/bin/salt-call"
	}
	if _, err := os.Stat(call); err != nil {
		if testenv.Required() {
			t.Fatalf("salt-call is not installed at %s (run scripts/deps.sh test)", call)
		}
		t.Skipf("salt-call is not installed at %s (run scripts/deps.sh test)", call)
	}
	s := &salt{call: call, dir: t.TempDir()}
	s.pillars = filepath.Join(s.dir, "pillar")
	for _, d := range []string{filepath.Join(s.dir, "conf"), s.pillars} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.fileRoot = filepath.Join(repo, "salt")
	// Only Salt's own state goes here; the roots are given on the command
	// line, as docs/deploy.md shows.
	conf := fmt.Sprintf(`id: roost-e2e
file_client: local
root_dir: %s/root
enable_fqdns_grains: False
`, s.dir)
	writeFile(t, filepath.Join(s.dir, "conf", "minion"), conf)
	writeFile(t, filepath.Join(s.pillars, "top.sls"), "base:\n  '*':\n    - roost\n")
	return s
}

// setPillar writes the pillar key roost (as JSON, which Salt's YAML reads).
func (s *salt) setPillar(t *testing.T, roost map[string]any) {
	t.Helper()
	b, err := json.MarshalIndent(map[string]any{"roost": roost}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.pillars, "roost.sls"), string(b)+"\n")
}

// stateResult is one state's outcome in salt-call's JSON output.
type stateResult struct {
	Name    string         `json:"name"`
	Result  *bool          `json:"result"` // nil: would change (test=True)
	Comment any            `json:"comment"`
	Changes map[string]any `json:"changes"`
	RunNum  int            `json:"__run_num__"`
}

// saltRun is one salt-call: its exit status and state results.
type saltRun struct {
	err    error
	out    string
	states map[string]stateResult
}

// apply runs salt-call --local with args (e.g. "state.apply", "roost").
func (s *salt) apply(t *testing.T, args ...string) saltRun {
	t.Helper()
	argv := append([]string{"--config-dir", filepath.Join(s.dir, "conf"), "--local",
		"--file-root=" + s.fileRoot, "--pillar-root=" + s.pillars,
		"--retcode-passthrough", "--out", "json", "--log-level", "warning"}, args...)
	cmd := exec.Command(s.call, argv...)
	out, err := cmd.Output()
	r := saltRun{err: err, out: string(out)}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.out += "\nstderr:\n" + string(ee.Stderr)
	}
	var doc struct {
		Local json.RawMessage `json:"local"`
	}
	if json.Unmarshal(out, &doc) == nil {
		_ = json.Unmarshal(doc.Local, &r.states) // a list of errors leaves states nil
	}
	return r
}

// changed names the states that changed something, or would (test=True).
func (r saltRun) changed() []string {
	var ids []string
	for id, st := range r.states {
		if len(st.Changes) > 0 || st.Result == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// failed names the states whose result is false.
func (r saltRun) failed() []string {
	var ids []string
	for id, st := range r.states {
		if st.Result != nil && !*st.Result {
			ids = append(ids, fmt.Sprintf("%s: %v", id, st.Comment))
		}
	}
	sort.Strings(ids)
	return ids
}

// hostPaths are what the roost formula writes on a node.
var hostPaths = []string{"/etc/roost", "/var/lib/roost", "/run/bird", "/usr/local/sbin/roost-check", "/etc/bird/bird.conf", "/run/roost", "/etc/bird/bird.conf.pre-roost", "/etc/bird/bird.conf.broken"}

// guardHost refuses to run on a host where roost is deployed already, and
// records what the test changes in the root namespace and on the file
// system, to put it back at cleanup: /etc/bird/bird.conf (the bird2
// package's), the bpffs mount on /sys/fs/bpf, IPv4 forwarding, and anything
// the formula left if the test failed before roost.clean.
func guardHost(t *testing.T) {
	t.Helper()
	for _, p := range hostPaths[:4] {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists: this host seems to run roost already; the deployment test would replace it", p)
		}
	}
	birdConf, birdErr := os.ReadFile("/etc/bird/bird.conf")
	birdStat, _ := os.Stat("/etc/bird/bird.conf")
	birdDir := dirExists("/etc/bird")
	bpffsBefore := mounted("/sys/fs/bpf")
	fwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range hostPaths {
			os.RemoveAll(p)
		}
		_ = exec.Command("ip", "-4", "route", "flush", "proto", "167").Run()
		_ = exec.Command("ip", "-6", "route", "flush", "proto", "167").Run()
		os.RemoveAll("/sys/fs/bpf/roost")
		if birdErr == nil {
			if err := os.WriteFile("/etc/bird/bird.conf", birdConf, birdStat.Mode()); err != nil {
				t.Errorf("restore /etc/bird/bird.conf: %v", err)
			}
			if st, ok := birdStat.Sys().(*syscall.Stat_t); ok {
				os.Chown("/etc/bird/bird.conf", int(st.Uid), int(st.Gid))
			}
		} else if !birdDir {
			os.Remove("/etc/bird")
		}
		if !bpffsBefore && mounted("/sys/fs/bpf") {
			if err := syscall.Unmount("/sys/fs/bpf", 0); err != nil {
				t.Errorf("unmount /sys/fs/bpf: %v", err)
			}
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", fwd, 0o644); err != nil {
			t.Errorf("restore ip_forward: %v", err)
		}
	})
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			ms = append(ms, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ms)))
	return ms
}

// mounted reports whether a file system is mounted exactly on dir.
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// saltMaster is a salt-master and a salt-minion (this host) talking over
// loopback, sharing the masterless run's file and pillar roots.
type saltMaster struct {
	salt string // the salt CLI
	conf string // the master's config dir
}

// startMaster starts salt-master and salt-minion from the venv of s.call,
// with the minion's key accepted automatically, and waits for the minion
// to answer test.ping. Both are killed when the test ends.
func startMaster(t *testing.T, s *salt, repo string) *saltMaster {
	t.Helper()
	bin := filepath.Dir(s.call)
	// Short: Salt's unix sockets live under the root dirs.
	dir, err := os.MkdirTemp("/run", "rts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ports := freePorts(t, 2)
	m := &saltMaster{salt: filepath.Join(bin, "salt"), conf: filepath.Join(dir, "master-conf")}
	if err := os.MkdirAll(m.conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "minion-conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(m.conf, "master"), fmt.Sprintf(`root_dir: %[1]s/master-root
interface: 127.0.0.1
publish_port: %[2]d
ret_port: %[3]d
auto_accept: True
file_roots:
  base: [%[4]s/salt]
pillar_roots:
  base: [%[5]s]
`, dir, ports[0], ports[1], repo, s.pillars))
	writeFile(t, filepath.Join(dir, "minion-conf", "minion"), fmt.Sprintf(`id: roost-e2e
root_dir: %[1]s/minion-root
master: 127.0.0.1
publish_port: %[2]d
master_port: %[3]d
enable_fqdns_grains: False
`, dir, ports[0], ports[1]))
	for _, d := range []struct{ bin, conf string }{{"salt-master", m.conf}, {"salt-minion", filepath.Join(dir, "minion-conf")}} {
		startProc(t, d.bin, "", filepath.Join(dir, d.bin+".log"), filepath.Join(bin, d.bin), "-c", d.conf, "-l", "warning")
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := exec.Command(m.salt, "-c", m.conf, "--out", "json", "--static", "-t", "5", "roost-e2e", "test.ping").Output()
		if err == nil && strings.Contains(string(out), "true") {
			return m
		}
		if time.Now().After(deadline) { // startProc logs both daemons' output
			t.Fatalf("the minion did not answer the master within 90s: %v %s", err, out)
		}
		time.Sleep(time.Second)
	}
}

// apply runs `salt roost-e2e ARGS...` on the master.
func (m *saltMaster) apply(t *testing.T, args ...string) saltRun {
	t.Helper()
	argv := append([]string{"-c", m.conf, "--out", "json", "--static", "-t", "300", "roost-e2e"}, args...)
	out, err := exec.Command(m.salt, argv...).Output()
	r := saltRun{err: err, out: string(out)}
	var doc map[string]json.RawMessage
	if json.Unmarshal(out, &doc) == nil {
		_ = json.Unmarshal(doc["roost-e2e"], &r.states)
	}
	return r
}

// freePorts returns n TCP ports on loopback that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
