package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/testenv"
)

// Tests for the defects of issue 9, each failing on the agent before it.

func TestBirdThatStopsAnsweringMakesAgentUnready(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	cfg.Bird.Timeout = 200 * time.Millisecond
	bird := &fakeBird{boot: "b1"}
	h := start(t, cfg, bird)
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	h.waitStatus("ready", func(s agentapi.Status) bool { return s.Ready })

	bird.set(func(b *fakeBird) { b.hang = true })
	s := h.waitStatus("unready", func(s agentapi.Status) bool { return !s.Ready && !s.Bird.Up })
	if p := s.Peers[0]; p.State != agentapi.StateUnknown || p.BGPState != agentapi.StateUnknown {
		t.Errorf("peer state with BIRD hung = %q/%q, want unknown", p.State, p.BGPState)
	}
	if !strings.Contains(s.ReadyMessage, "bird does not answer") {
		t.Errorf("ready message = %q", s.ReadyMessage)
	}
	// An input that arrives meanwhile fails to apply, boundedly, and is
	// kept.
	h.a.SetConfig(testConfigIn(h.cfg, "10.244.7.0/24"))
	s = h.waitStatus("failed apply", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	if !strings.Contains(s.LastApply.Error, "deadline exceeded") {
		t.Errorf("apply error = %q, want a deadline", s.LastApply.Error)
	}
	bird.set(func(b *fakeBird) { b.hang = false })
	h.waitStatus("kept input applied", applied("10.244.7.0/24"))
	h.waitStatus("ready again", func(s agentapi.Status) bool { return s.Ready && s.Peers[0].BGPState == "Established" })
}

func TestRollbackWhenSessionDoesNotComeBack(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	cfg.Bird.ConfirmTimeout = 1500 * time.Millisecond
	bird := &fakeBird{boot: "b1", breaks: "as 65999"}
	h := start(t, cfg, bird)
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	good := h.fileText()
	bird.take()

	bad := h.cfg
	bad.Peers = []config.Peer{{Name: "tor1", Address: netip.MustParseAddr("10.0.1.1"), ASN: 65999}}
	h.a.SetConfig(bad)
	s := h.waitStatus("rollback", func(s agentapi.Status) bool { return s.LastApply.RolledBack })
	if s.Ready || s.Bird.Rollbacks != 1 || !strings.Contains(s.LastApply.Error, "bgp_tor1 did not return to Established") {
		t.Errorf("status after rollback: ready %v rollbacks %d error %q", s.Ready, s.Bird.Rollbacks, s.LastApply.Error)
	}
	if got := bird.take(); !slices.Equal(got, []string{"configure tmp [10.244.1.0/24] timeout 1.5s", "undo"}) {
		t.Errorf("calls = %q, want configure with timeout then undo", got)
	}
	if h.fileText() != good || bird.running != good {
		t.Error("bird.conf or BIRD's config is not the one before the rollback")
	}
	// The change broke the peer: it is not tried again by itself…
	time.Sleep(1500 * time.Millisecond) // past the first backoff
	if got := bird.take(); len(got) != 0 {
		t.Errorf("rolled-back config retried unasked: %q", got)
	}
	if s := h.a.Status(); s.LastApply.Result != agentapi.ResultFailed || s.Bird.ExternalReconfigs != 0 {
		t.Errorf("after rollback: result %s, external reconfigs %d (the undo is the agent's own)", s.LastApply.Result, s.Bird.ExternalReconfigs)
	}
	// …but a fixed input applies at once.
	h.a.SetConfig(testConfigIn(h.cfg, "10.244.2.0/24"))
	h.waitStatus("fixed", applied("10.244.2.0/24"))
}

func TestExternalReconfigureIsUndone(t *testing.T) {
	bird := &fakeBird{boot: "b1"}
	h := start(t, testConfig(t, "10.244.1.0/24"), bird)
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	ours := h.fileText()
	bird.take()
	// Someone runs `birdc configure "other.conf"`.
	bird.set(func(b *fakeBird) { b.running = "router id 9.9.9.9;\n"; b.reconfig++ })
	h.waitStatus("noticed", func(s agentapi.Status) bool { return s.Bird.ExternalReconfigs == 1 })
	deadline := time.Now().Add(5 * time.Second)
	for bird.runningText() != ours {
		if time.Now().After(deadline) {
			t.Fatal("agent did not put its own config back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // several polls: no loop of re-applies
	if got := bird.take(); len(got) != 2 {
		t.Errorf("calls = %q, want one configure and its confirm", got)
	}
}

func (f *fakeBird) runningText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

func TestBlackholeFailureStaysFailedUntilFixed(t *testing.T) {
	// Failing from the first apply on: set after the start, the failure
	// could miss a first apply that was quicker.
	cfg := testConfig(t, "10.244.1.0/24")
	h := &harness{t: t, bird: &fakeBird{boot: "b1"}, cfg: cfg,
		holes: &fakeHoles{fail: errors.New("add blackhole 10.244.1.0/24: operation not permitted")}}
	h.a = New(Options{Config: cfg, Bird: h.bird, Blackholes: h.holes, PollInterval: 20 * time.Millisecond})
	runAgent(t, h.a)
	h.waitStatus("failed", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	// The retry must fail again, not take the "unchanged" shortcut.
	s := h.waitStatus("second failure", func(s agentapi.Status) bool { return s.LastApply.Failures >= 2 })
	if s.Ready || !strings.Contains(s.BlackholeError, "operation not permitted") || len(s.Blackholes) != 0 {
		t.Errorf("status: ready %v blackholeError %q blackholes %v", s.Ready, s.BlackholeError, s.Blackholes)
	}
	h.holes.set(func(fh *fakeHoles) { fh.fail = nil })
	s = h.waitStatus("recovered", func(s agentapi.Status) bool { return s.Ready })
	if len(s.Blackholes) != 1 || s.BlackholeError != "" {
		t.Errorf("blackholes = %v, error %q", s.Blackholes, s.BlackholeError)
	}
}

func TestDeletedBlackholeRestoredByResync(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	cfg.ResyncInterval = 50 * time.Millisecond
	h := start(t, cfg, &fakeBird{boot: "b1"})
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	h.holes.set(func(fh *fakeHoles) { fh.have = nil }) // `ip route del blackhole …`
	deadline := time.Now().Add(5 * time.Second)
	for {
		if l, _ := h.holes.List(); len(l) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deleted blackhole not restored")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRestartedBirdRejectingBacksOff(t *testing.T) {
	bird := &fakeBird{boot: "b1"}
	h := start(t, testConfig(t, "10.244.1.0/24"), bird)
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	bird.set(func(b *fakeBird) { b.boot = "b2"; b.reject = "10.244.1.0/24"; b.calls = nil })
	time.Sleep(time.Second) // 50 polls
	// One attempt when the restart is seen, then backoff (1 s): not one
	// per poll.
	if got := bird.take(); len(got) > 2 {
		t.Errorf("%d configure attempts in 1s after BIRD restarted: %q", len(got), got)
	}
}

func TestRepairBrokenConfigWhileBirdDown(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	if err := os.WriteFile(cfg.Bird.ConfigFile(), []byte("protocol bgp {{ broken\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	checked := make(chan string, 100)
	check := func(ctx context.Context, file string) error {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		checked <- file
		if strings.Contains(string(b), "broken") {
			return errors.New("bird.conf:1:15 syntax error")
		}
		return nil
	}
	bird := &fakeBird{boot: "b1", down: true}
	h := &harness{t: t, bird: bird, holes: &fakeHoles{}, cfg: cfg}
	h.a = New(Options{Config: cfg, Bird: bird, Blackholes: h.holes, Check: check, PollInterval: 20 * time.Millisecond})
	runAgent(t, h.a)
	s := h.waitStatus("repair", func(s agentapi.Status) bool { return s.Bird.Repair != "" })
	if !strings.Contains(s.Bird.Repair, "replaced with the current render") || !strings.Contains(h.fileText(), "route 10.244.1.0/24 blackhole;") {
		t.Errorf("repair = %q; bird.conf:\n%s", s.Bird.Repair, h.fileText())
	}
	// The repaired file is checked once, not on every poll.
	time.Sleep(200 * time.Millisecond)
	if n := len(checked); n > 3 {
		t.Errorf("%d checks while BIRD stays down", n)
	}
}

func TestNoRepairWithoutBirdBinary(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	h := start(t, cfg, &fakeBird{boot: "b1", down: true})
	s := h.waitStatus("note", func(s agentapi.Status) bool { return s.Bird.Repair != "" })
	if !strings.Contains(s.Bird.Repair, "no bird binary") {
		t.Errorf("repair note = %q", s.Bird.Repair)
	}
}

func TestStatusListsAreNeverNull(t *testing.T) {
	cfg := testConfig(t)
	cfg.Kubernetes.Enabled = true
	a := New(Options{Config: cfg, Bird: &fakeBird{}})
	b, err := json.Marshal(a.Status())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "null") {
		t.Errorf("status has null: %s", b)
	}
}

func TestChangedFor(t *testing.T) {
	in := func(asn uint32, prefixes ...string) []byte {
		c := testConfig(t, prefixes...)
		c.Peers = append(c.Peers, config.Peer{Name: "tor2", Address: netip.MustParseAddr("10.0.2.1"), ASN: 65002})
		c.Peers[0].ASN = asn
		b, err := birdconf.Render(c.BirdInput(c.PodCIDRs))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old := in(65000, "10.244.1.0/24")
	if changedFor(old, in(65000, "10.244.9.0/24"), []string{"bgp_tor1", "bgp_tor2"}) {
		t.Error("a prefix change counted as a session change")
	}
	if !changedFor(old, in(65999, "10.244.1.0/24"), []string{"bgp_tor1"}) {
		t.Error("tor1's AS change not seen")
	}
	if changedFor(old, in(65999, "10.244.1.0/24"), []string{"bgp_tor2"}) {
		t.Error("tor1's change counted for tor2")
	}
	if !changedFor(nil, old, []string{"bgp_tor2"}) {
		t.Error("no old config must count as changed")
	}
}

func TestRenderErrorSaysSoOnce(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	cfg.RouterID = netip.IPv4Unspecified() // past validation, as a bug would
	h := start(t, cfg, &fakeBird{boot: "b1"})
	s := h.waitStatus("failure", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	if n := strings.Count(s.LastApply.Error, "render bird config"); n != 1 {
		t.Errorf("error says %q %d times: %s", "render bird config", n, s.LastApply.Error)
	}
}

func TestBirdConfEditedByHandIsRewritten(t *testing.T) {
	h := start(t, testConfig(t, "10.244.1.0/24"), &fakeBird{boot: "b1"})
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	ours := h.fileText()
	h.bird.take()
	if err := os.WriteFile(h.cfg.Bird.ConfigFile(), []byte("# edited\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	h.a.SetConfig(h.cfg) // the next apply notices the file is not its own
	deadline := time.Now().Add(5 * time.Second)
	for h.fileText() != ours {
		if time.Now().After(deadline) {
			t.Fatalf("bird.conf not rewritten:\n%s", h.fileText())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := h.bird.take(); len(got) == 0 {
		t.Error("BIRD not configured with the rewritten file")
	}
}

func TestPasswordNeverLogged(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	cfg.Peers[0].Password = "s3cret-md5"
	var buf testenv.SyncBuffer
	log := logrus.New()
	log.SetOutput(&buf)
	log.SetLevel(logrus.DebugLevel)
	bird := &fakeBird{boot: "b1", reject: "10.66.0.0/16"}
	h := &harness{t: t, bird: bird, holes: &fakeHoles{}, cfg: cfg}
	h.a = New(Options{Config: cfg, Bird: bird, Blackholes: h.holes, Log: log, PollInterval: 20 * time.Millisecond})
	runAgent(t, h.a)
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	h.a.SetConfig(testConfigIn(cfg, "10.66.0.0/16")) // rejected: logged with BIRD's error
	h.waitStatus("failure", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	bird.set(func(b *fakeBird) { b.down = true })
	h.waitStatus("bird down", func(s agentapi.Status) bool { return !s.Bird.Up })
	if strings.Contains(buf.String(), "s3cret") {
		t.Errorf("a log line holds the password:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "apply failed") {
		t.Errorf("the failure was not logged (the test saw nothing):\n%s", buf.String())
	}
	if b, _ := json.Marshal(h.a.Status()); strings.Contains(string(b), "s3cret") {
		t.Error("status holds the password")
	}
}
