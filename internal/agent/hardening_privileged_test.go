package agent

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdctl"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/testenv"
)

// TestPrivilegedBirdStoppedThenContinued stops the real BIRD with SIGSTOP:
// within seconds the agent is unready, BIRD down and the peers unknown, and
// a PodCIDR change that arrives meanwhile is applied once BIRD continues.
func TestPrivilegedBirdStoppedThenContinued(t *testing.T) {
	f := newFabric(t)
	cfg := f.config("10.244.1.0/24")
	cfg.Bird.Timeout = time.Second
	a := f.startAgent(cfg)
	f.waitAnnounced("10.244.1.0/24")
	waitStatus(t, a, "ready", func(s agentapi.Status) bool { return s.Ready })

	f.bird.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	s := waitStatus(t, a, "unready", func(s agentapi.Status) bool { return !s.Ready && !s.Bird.Up })
	t.Logf("unready %v after SIGSTOP: %s", time.Since(stopped).Round(time.Millisecond), s.ReadyMessage)
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("unready only after %v", d)
	}
	for _, p := range s.Peers {
		if p.BGPState != agentapi.StateUnknown {
			t.Errorf("peer %s = %q with BIRD stopped, want unknown", p.Name, p.BGPState)
		}
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	if code, _ := get(t, srv, "GET", agentapi.PathReadyz); code != 503 {
		t.Errorf("readyz with BIRD stopped = %d", code)
	}
	if _, body := get(t, srv, "GET", agentapi.PathMetrics); !strings.Contains(body, "roost_bird_up 0") || strings.Contains(body, "roost_bgp_session_established{") {
		t.Errorf("metrics with BIRD stopped:\n%s", body)
	}

	a.SetConfig(f.config("10.244.9.0/24"))
	s = waitStatus(t, a, "failed apply", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	t.Logf("apply with BIRD stopped: %s", s.LastApply.Error)

	f.bird.Signal(syscall.SIGCONT)
	f.waitAnnounced("10.244.9.0/24")
	waitStatus(t, a, "ready again", func(s agentapi.Status) bool { return s.Ready && s.Bird.Up })
}

// TestPrivilegedWrongASRolledBack renders a peer with a wrong AS: the
// session to that ToR does not come back, so the agent has BIRD undo the
// change, keeps bird.conf, and says so in status, metrics and the log.
func TestPrivilegedWrongASRolledBack(t *testing.T) {
	f := newFabric(t)
	cfg := f.config("10.244.1.0/24")
	cfg.Bird.ConfirmTimeout = 8 * time.Second
	var logBuf testenv.SyncBuffer
	log := logrus.New()
	log.SetOutput(&logBuf)
	a := f.startAgent(cfg, func(o *Options) { o.Log = log })
	f.waitAnnounced("10.244.1.0/24")
	before := f.waitEstablished()
	waitStatus(t, a, "peers up", func(s agentapi.Status) bool {
		return s.Peers[0].BGPState == "Established" && s.Peers[1].BGPState == "Established"
	})
	good, err := os.ReadFile(f.bird.Config)
	if err != nil {
		t.Fatal(err)
	}

	bad := f.config("10.244.1.0/24")
	bad.Bird.ConfirmTimeout = cfg.Bird.ConfirmTimeout
	bad.Peers[0].ASN = 65999 // tor1 is AS 65000
	a.SetConfig(bad)
	s := waitStatus(t, a, "rollback", func(s agentapi.Status) bool { return s.LastApply.RolledBack })
	if s.Bird.Rollbacks != 1 || !strings.Contains(s.LastApply.Error, "bgp_tor1 did not return to Established") || s.Ready {
		t.Errorf("status after rollback: %+v", s.LastApply)
	}
	if now, _ := os.ReadFile(f.bird.Config); !bytes.Equal(now, good) {
		t.Error("bird.conf holds the rolled-back config")
	}
	if !strings.Contains(logBuf.String(), "bird config rolled back") {
		t.Errorf("log lacks the rollback:\n%s", logBuf.String())
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	if _, body := get(t, srv, "GET", agentapi.PathMetrics); !strings.Contains(body, "roost_bird_rollbacks_total 1") {
		t.Error("metrics lack roost_bird_rollbacks_total 1")
	}
	// BIRD runs the old config: tor1 comes back with AS 65000 and tor2
	// was never touched.
	c, err := birdctl.Dial(t.Context(), f.bird.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ps, err := c.Protocols(t.Context(), birdctl.ProtocolQuery{All: true, Pattern: "bgp_tor1"})
	if err != nil || len(ps) != 1 || ps[0].NeighborAS != 65000 {
		t.Errorf("bgp_tor1 after rollback: %+v %v", ps, err)
	}
	f.tors[0].WaitEstablished(t, waitLimit, f.uplinks[0])
	f.waitAnnounced("10.244.1.0/24")
	now := f.sessions()
	if now[1].ConnectionsDropped != before[1].ConnectionsDropped {
		t.Errorf("tor2's session was reset by tor1's rollback: %+v → %+v", before[1], now[1])
	}
}

// TestPrivilegedExternalConfigureUndone: someone runs birdc configure with a
// file of their own; the agent notices BIRD's reconfiguration time and puts
// its config back.
func TestPrivilegedExternalConfigureUndone(t *testing.T) {
	f := newFabric(t)
	log := logrus.New()
	log.SetOutput(testWriter{t})
	a := f.startAgent(f.config("10.244.1.0/24"), func(o *Options) { o.Log = log })
	f.waitAnnounced("10.244.1.0/24")
	ours, err := os.ReadFile(f.bird.Config)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(f.bird.Dir, "other.conf")
	foreign := strings.Replace(string(ours), "\troute 10.244.1.0/24 blackhole;\n", "\troute 10.244.1.0/24 blackhole;\n\troute 10.99.0.0/24 blackhole;\n", 1)
	if err := os.WriteFile(other, []byte(foreign), 0o640); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "birdc", "-s", f.bird.Socket, "configure", fmt.Sprintf("%q", other))
	s := waitStatus(t, a, "noticed", func(s agentapi.Status) bool { return s.Bird.ExternalReconfigs >= 1 })
	t.Logf("external reconfiguration noticed: %s", s.Bird.LastReconfig)
	f.waitAnnounced("10.244.1.0/24")
	if s := waitStatus(t, a, "ready", func(s agentapi.Status) bool { return s.Ready }); s.Bird.ExternalReconfigs != 1 {
		t.Errorf("external reconfigurations = %d, want 1 (the agent's own configure is not one)", s.Bird.ExternalReconfigs)
	}
}

// TestPrivilegedRepairWhileBirdDown: BIRD dies and someone leaves a broken
// bird.conf; the agent parses it with bird -p, puts the last good config
// back, and BIRD can start.
func TestPrivilegedRepairWhileBirdDown(t *testing.T) {
	f := newFabric(t)
	a := f.startAgent(f.config("10.244.1.0/24"), func(o *Options) { o.Check = ParseCheck(testenv.Binary(t, "bird")) })
	f.waitAnnounced("10.244.1.0/24")
	good, err := os.ReadFile(f.bird.Config)
	if err != nil {
		t.Fatal(err)
	}
	f.bird.Kill()
	if err := os.WriteFile(f.bird.Config, []byte("protocol bgp broken {\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, a, "repair", func(s agentapi.Status) bool { return strings.Contains(s.Bird.Repair, "replaced") })
	t.Logf("repair: %s", s.Bird.Repair)
	if now, _ := os.ReadFile(f.bird.Config); !bytes.Equal(now, good) {
		t.Errorf("bird.conf after repair:\n%s", now)
	}
	f.bird.Start("") // fails the test unless BIRD starts
	f.waitEstablished()
	f.waitAnnounced("10.244.1.0/24")
}

// TestPrivilegedBlackholeDeletedByHand: a blackhole deleted with ip route
// del is back within the resync interval.
func TestPrivilegedBlackholeDeletedByHand(t *testing.T) {
	f := newFabric(t)
	cfg := f.config("10.244.1.0/24")
	cfg.ResyncInterval = 500 * time.Millisecond
	a := f.startAgent(cfg)
	f.waitAnnounced("10.244.1.0/24")
	waitStatus(t, a, "ready", func(s agentapi.Status) bool { return s.Ready && len(s.Blackholes) == 1 })
	testenv.Run(t, "ip", "-n", f.node, "route", "del", "blackhole", "10.244.1.0/24")
	deleted := time.Now()
	for !strings.Contains(f.kernelBlackholes(), "blackhole 10.244.1.0/24") {
		if time.Since(deleted) > 10*time.Second {
			t.Fatal("blackhole deleted by hand not restored")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("blackhole restored %v after it was deleted", time.Since(deleted).Round(time.Millisecond))
}

// TestPrivilegedBirdAsUserBird runs BIRD as Debian's bird.service does, as
// user bird with its socket directory owned by bird: the agent gives
// bird.conf to group bird, so BIRD can read what it is told to load, and
// BIRD can create its log file beside its socket (the default). Given to
// root's group (as before), BIRD cannot read bird.conf.
func TestPrivilegedBirdAsUserBird(t *testing.T) {
	testenv.Privileged(t)
	u, err := user.Lookup("bird")
	if err != nil {
		t.Skipf("no user bird (Debian's bird2 package makes it): %v", err)
	}
	ns := testenv.NetNS(t, "node")
	b := testenv.NewBird(t, ns, testenv.MinimalConfig)
	b.User = "bird"
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	// As Debian lays it out: /run/bird is bird:bird, the config
	// directory is readable by all, the config by group bird.
	if err := os.Chown(filepath.Dir(b.Socket), uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{b.Dir, filepath.Dir(b.Dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(b.Config, 0, gid); err != nil {
		t.Fatal(err)
	}
	b.Start("")

	cfg := testConfig(t, "10.244.1.0/24")
	cfg.Bird.Socket, cfg.Bird.ConfigDir, cfg.Bird.ConfigGroup = b.Socket, b.Dir, ""
	// The default log file, beside the socket: BIRD as bird can create it.
	cfg.Bird.LogFile = config.DefaultLogFile(b.Socket)
	cfg.Peers[0].Address = cfg.RouterID.Next() // no such peer: the session stays down
	bird := NewBirdClient(b.Socket)
	defer bird.Close()
	a := New(Options{Config: cfg, Bird: bird, PollInterval: 100 * time.Millisecond})
	runAgent(t, a)
	waitStatus(t, a, "applied", applied("10.244.1.0/24"))
	fi, err := os.Stat(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid || fi.Mode().Perm() != 0o640 {
		t.Errorf("bird.conf is %v gid %d, want 0640 group bird (%d)", fi.Mode().Perm(), st.Gid, gid)
	}
	out := testenv.Run(t, "birdc", "-s", b.Socket, "show", "route", "protocol", "roost_owned4")
	if !strings.Contains(out, "10.244.1.0/24") {
		t.Errorf("BIRD running as bird does not hold the prefix:\n%s", out)
	}
	if fi, err := os.Stat(cfg.Bird.LogFile); err != nil {
		t.Errorf("BIRD running as bird has no log file: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
		t.Errorf("log file %s is owned by uid %d, want bird (%d)", cfg.Bird.LogFile, st.Uid, uid)
	}

	// The old behaviour, root's group: BIRD as bird cannot read the file.
	cfg.Bird.ConfigGroup = "0"
	a.SetConfig(testConfigIn(cfg, "10.244.2.0/24"))
	s := waitStatus(t, a, "refused", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	if !strings.Contains(strings.ToLower(s.LastApply.Error), "permission denied") {
		t.Errorf("error = %q, want BIRD's permission denied", s.LastApply.Error)
	}
}

// testWriter sends a logger's lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
