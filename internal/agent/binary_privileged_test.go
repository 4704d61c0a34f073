package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/inspect"
	"github.com/roost-net/roost/internal/testenv"
)

// binaries builds roost-agent and roostctl once per test run.
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "roost-bin")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "build", "-o", dir+"/", "../../cmd/roost-agent", "../../cmd/roostctl").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return dir, nil
})

func binDir(t testing.TB) string {
	t.Helper()
	dir, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// agentProc is roost-agent running as a process in the node's namespace.
type agentProc struct {
	f    *fabric
	bin  string
	conf string // its config file
	log  string
	cmd  *exec.Cmd
	// drainFile is the drain state file given to a config that names
	// none.
	drainFile string
}

const agentYAML = `node: node1
asn: 65101
routerID: 10.0.1.2
podCIDRs: [%s]
peers:
  - {name: tor1, address: 10.0.1.1, asn: 65000}
  - {name: tor2, address: 10.0.2.1, asn: 65000}
bird: {socket: %s, configDir: %s}
listen: 127.0.0.1:9479
controlSocket: %s
`

func (f *fabric) agentYAML(prefixes string) string {
	return fmt.Sprintf(agentYAML, prefixes, f.bird.Socket, f.bird.Dir, f.controlSocket())
}

// controlSocket is the agent's control socket for this fabric: in a short
// directory of its own (sun_path holds 108 bytes), never the lab's.
func (f *fabric) controlSocket() string {
	if f.ctlSock == "" {
		dir, err := os.MkdirTemp("", "ra")
		if err != nil {
			f.t.Fatal(err)
		}
		f.t.Cleanup(func() { os.RemoveAll(dir) })
		f.ctlSock = filepath.Join(dir, "agent.sock")
	}
	return f.ctlSock
}

func (f *fabric) startAgentProc(yaml string) *agentProc {
	f.t.Helper()
	dir := f.t.TempDir()
	p := &agentProc{f: f, bin: binDir(f.t), conf: filepath.Join(dir, "agent.yaml"), log: filepath.Join(dir, "agent.log")}
	p.drainFile = filepath.Join(dir, "drain.json")
	p.writeConfig(yaml)
	logf, err := os.Create(p.log)
	if err != nil {
		f.t.Fatal(err)
	}
	defer logf.Close()
	argv := testenv.InNS(f.node, filepath.Join(p.bin, "roost-agent"), "--config", p.conf, "--log-level", "debug")
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		p.kill()
		if f.t.Failed() {
			out, _ := os.ReadFile(p.log)
			f.t.Logf("roost-agent log:\n%s", out)
		}
	})
	return p
}

func (p *agentProc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// writeConfig replaces the config file the way Salt does: a temp file
// renamed into place.
func (p *agentProc) writeConfig(yaml string) {
	p.f.t.Helper()
	if !strings.Contains(yaml, "\ndrain:") {
		// Never the host's drain state (the default file).
		yaml += fmt.Sprintf("drain: {stateFile: %s}\n", p.drainFile)
	}
	tmp := p.conf + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		p.f.t.Fatal(err)
	}
	if err := os.Rename(tmp, p.conf); err != nil {
		p.f.t.Fatal(err)
	}
}

// roostctl runs roostctl in the node's namespace and returns its output and
// exit error.
func (p *agentProc) roostctl(args ...string) (string, error) {
	argv := testenv.InNS(p.f.node, append([]string{filepath.Join(p.bin, "roostctl"), "--bird-socket", p.f.bird.Socket, "--agent-socket", p.f.controlSocket()}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("roostctl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

func (p *agentProc) roostctlJSON(v any, args ...string) error {
	out, err := p.roostctl(append(args, "-o", "json")...)
	if jerr := json.Unmarshal([]byte(out), v); jerr != nil && err == nil {
		err = fmt.Errorf("decode %q: %w", out, jerr)
	}
	return err
}

func (p *agentProc) status() agentapi.Status {
	p.f.t.Helper()
	var s agentapi.Status
	if err := p.roostctlJSON(&s, "status"); err != nil {
		p.f.t.Logf("status: %v", err)
	}
	return s
}

func (p *agentProc) waitStatus(what string, cond func(agentapi.Status) bool) agentapi.Status {
	p.f.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s := p.status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.f.t.Fatalf("timed out waiting for %s; status %+v", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPrivilegedAgentBinary runs roost-agent and roostctl as an operator
// would, in the node's namespace, against real BIRD and FRR ToRs.
func TestPrivilegedAgentBinary(t *testing.T) {
	f := newFabric(t)
	p := f.startAgentProc(f.agentYAML("10.244.1.0/24"))
	f.waitAnnounced("10.244.1.0/24")
	before := f.waitEstablished()

	t.Run("roostctl", func(t *testing.T) {
		p.waitStatus("ready", func(s agentapi.Status) bool { return s.Ready })
		var peers []inspect.Session
		if err := p.roostctlJSON(&peers, "peers"); err != nil {
			t.Fatal(err)
		}
		if len(peers) != 2 || peers[0].Name != "tor1" || peers[1].Name != "tor2" {
			t.Fatalf("peers = %+v", peers)
		}
		for i, pe := range peers {
			if pe.BGPState != "Established" || pe.Exported != 1 || pe.ASN != 65000 || pe.Neighbor != f.torAddr[i] || pe.State != "up" || pe.Since == "" {
				t.Errorf("peer %d = %+v", i, pe)
			}
		}
		var rows []inspect.Route
		if err := p.roostctlJSON(&rows, "routes"); err != nil {
			t.Fatalf("routes on a healthy node: %v", err)
		}
		if len(rows) != 1 || !rows[0].OK || !rows[0].InBird || !rows[0].ExportedTo["tor1"] || !rows[0].ExportedTo["tor2"] || rows[0].Blackhole == nil || !*rows[0].Blackhole {
			t.Errorf("routes = %+v", rows)
		}
		if out, err := p.roostctl("config", "--diff"); err != nil || out != "" {
			t.Errorf("config --diff on a converged node: %q %v", out, err)
		}
		if out, err := p.roostctl("routes"); err != nil || !strings.Contains(out, "TO TOR2") {
			t.Errorf("routes table: %v\n%s", err, out)
		}
	})

	t.Run("file change", func(t *testing.T) {
		p.writeConfig(f.agentYAML("10.244.2.0/24"))
		f.waitAnnounced("10.244.2.0/24")
		f.assertNoReset(before)
	})

	t.Run("bad input", func(t *testing.T) {
		good := f.agentYAML("10.244.2.0/24")
		birdConf, _ := os.ReadFile(f.bird.Config)
		tests := []struct {
			name, yaml, want string
			validFile        bool // refused only as a reload
		}{
			{"invalid CIDR", f.agentYAML("10.244.2.0/33"), `podCIDRs[0]: "10.244.2.0/33" is not a CIDR prefix`, false},
			{"AS 0", strings.Replace(good, "asn: 65101", "asn: 0", 1), "asn: 0 is out of range", false},
			{"AS out of range", strings.Replace(good, "asn: 65101", "asn: 4294967296", 1), "asn: 4294967296 is out of range", false},
			{"duplicate peer names", strings.Replace(good, "name: tor2", "name: tor1", 1), `peers[1].name: "tor1" clashes with peers[0]`, false},
			{"unknown field", good + "colour: blue\n", "field colour not found", false},
			{"restart-only setting", strings.Replace(good, "listen: 127.0.0.1:9479", "listen: 127.0.0.1:9480", 1), "reload refused, the running config is kept: listen take(s) effect only when roost-agent restarts", true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// The same file fails roost-agent --dry-run (Salt's check).
				bad := filepath.Join(t.TempDir(), "agent.yaml")
				os.WriteFile(bad, []byte(tt.yaml), 0o644)
				out, err := exec.Command(filepath.Join(p.bin, "roost-agent"), "--config", bad, "--dry-run").CombinedOutput()
				if tt.validFile {
					if err != nil {
						t.Errorf("--dry-run of a valid file: %v\n%s", err, out)
					}
				} else if err == nil || !strings.Contains(string(out), tt.want) {
					t.Errorf("--dry-run: %v\n%s\nwant %q", err, out, tt.want)
				}
				p.writeConfig(tt.yaml)
				s := p.waitStatus("config error", func(s agentapi.Status) bool { return strings.Contains(s.ConfigError, tt.want) })
				if s.LastApply.Result != agentapi.ResultOK || !s.Ready {
					t.Errorf("bad file disturbed the running config: %+v", s.LastApply)
				}
				now, _ := os.ReadFile(f.bird.Config)
				if !bytes.Equal(now, birdConf) {
					t.Error("bird.conf changed after a bad config file")
				}
				p.writeConfig(good)
				p.waitStatus("config error cleared", func(s agentapi.Status) bool { return s.ConfigError == "" })
			})
		}
		f.waitAnnounced("10.244.2.0/24")
		f.assertNoReset(before)
	})

	t.Run("session down is flagged", func(t *testing.T) {
		testenv.Run(t, "ip", "-n", f.node, "link", "set", f.upIf[1], "down")
		deadline := time.Now().Add(waitLimit)
		var err error
		var out string
		for time.Now().Before(deadline) {
			out, err = p.roostctl("routes")
			if err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err == nil || !strings.Contains(out, "not sent to tor2: session is") {
			t.Errorf("roostctl routes with tor2 down: %v\n%s", err, out)
		}
		testenv.Run(t, "ip", "-n", f.node, "link", "set", f.upIf[1], "up")
		f.waitAnnounced("10.244.2.0/24")
		before = f.waitEstablished()
	})

	t.Run("bird restarts with an old file", func(t *testing.T) {
		f.bird.Kill()
		if err := os.WriteFile(f.bird.Config, []byte(testenv.MinimalConfig), 0o640); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		f.bird.Start("")
		// The ToRs keep the prefix as stale under graceful restart, so
		// they prove nothing yet: wait for BIRD itself to hold it again
		// and for new sessions to carry it.
		deadline := time.Now().Add(waitLimit)
		for {
			out, _ := exec.Command("birdc", "-s", f.bird.Socket, "show", "route", "protocol", "roost_owned4").CombinedOutput()
			if strings.Contains(string(out), "10.244.2.0/24") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the agent did not configure the restarted BIRD: %s", out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("bird restarted with an old file: configured again after %v", time.Since(start).Round(time.Millisecond))
		for i, tor := range f.tors {
			tor.WaitFor(t, waitLimit, "a new session", func() (bool, string) {
				n := f.sessions()[i]
				return n.State == "Established" && n.ConnectionsEstablished > before[i].ConnectionsEstablished, fmt.Sprintf("%+v", n)
			})
		}
		f.waitAnnounced("10.244.2.0/24")
		p.waitStatus("applied again", func(s agentapi.Status) bool { return s.Ready })
		if now, _ := os.ReadFile(f.bird.Config); strings.Contains(string(now), testenv.MinimalConfig) {
			t.Error("bird.conf still holds the old file")
		}
		before = f.waitEstablished()
	})

	t.Run("agent killed: routes stay", func(t *testing.T) {
		p.kill()
		time.Sleep(3 * time.Second) // longer than any apply or poll of the agent
		f.waitAnnounced("10.244.2.0/24")
		f.assertNoReset(before)
		if got := f.kernelBlackholes(); !strings.Contains(got, "blackhole 10.244.2.0/24") {
			t.Errorf("blackhole gone with the agent: %q", got)
		}
	})
}
