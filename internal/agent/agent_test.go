package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/routes"
)

// fakeBird records what the agent asks of BIRD as readable lines, and
// behaves as BIRD does with configure timeouts: a configured file runs at
// once, confirm keeps it, undo goes back to the one before.
type fakeBird struct {
	mu       sync.Mutex
	calls    []string
	reject   string // configure fails for configs containing it
	breaks   string // a config containing it keeps bgp_tor1 from Established
	down     bool   // calls fail at once
	hang     bool   // calls block until their context ends
	boot     string
	reconfig int    // counts reconfigurations: LastReconfig
	running  string // content of the config BIRD runs
	previous string // what undo goes back to
	pending  bool   // a configure timeout awaits confirm
}

func (f *fakeBird) enter(ctx context.Context) (unlock func(), err error) {
	f.mu.Lock()
	if f.hang {
		f.mu.Unlock()
		<-ctx.Done()
		return nil, fmt.Errorf("read reply: %w", ctx.Err())
	}
	if f.down {
		f.mu.Unlock()
		return nil, errors.New("dial: connection refused")
	}
	return f.mu.Unlock, nil
}

func (f *fakeBird) Configure(ctx context.Context, file string, timeout time.Duration) error {
	unlock, err := f.enter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	name := filepath.Base(file)
	if strings.HasPrefix(name, ".bird.conf.roost-") {
		name = "tmp"
	}
	call := "configure " + name + " " + routesIn(string(b))
	if timeout > 0 {
		call += fmt.Sprintf(" timeout %s", timeout)
	}
	f.calls = append(f.calls, call)
	if f.reject != "" && strings.Contains(string(b), f.reject) {
		return errors.New("bird.conf:3:1 syntax error")
	}
	f.previous, f.running, f.pending = f.running, string(b), timeout > 0
	f.reconfig++
	return nil
}

func (f *fakeBird) Confirm(ctx context.Context) error {
	unlock, err := f.enter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	f.calls = append(f.calls, "confirm")
	f.pending = false
	return nil
}

func (f *fakeBird) Undo(ctx context.Context) error {
	unlock, err := f.enter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	f.calls = append(f.calls, "undo")
	f.running, f.pending = f.previous, false
	f.reconfig++
	return nil
}

func (f *fakeBird) State(ctx context.Context) (BirdState, error) {
	unlock, err := f.enter(ctx)
	if err != nil {
		return BirdState{}, err
	}
	defer unlock()
	st := "Established"
	if f.breaks != "" && strings.Contains(f.running, f.breaks) {
		st = "Active"
	}
	return BirdState{Version: "2.0.12", LastReboot: fakeTime(f.boot), LastReconfig: time.Unix(int64(f.reconfig)*60, 0), Protocols: map[string]ProtocolState{
		"bgp_tor1": {State: "up", BGPState: st, Exported: strings.Count(f.running, " blackhole;")},
	}}, nil
}

// fakeTime turns a boot name ("b1") into a time of its own, a minute or
// more from any other.
func fakeTime(s string) time.Time {
	n := 0
	for _, c := range s {
		n = n*31 + int(c)
	}
	return time.Unix(int64(n)*60, 0)
}

// routesIn lists the static routes of a rendered config, e.g. "[10.0.0.0/24]".
func routesIn(conf string) string {
	var rs []string
	for _, l := range strings.Split(conf, "\n") {
		if r, ok := strings.CutPrefix(strings.TrimSpace(l), "route "); ok {
			rs = append(rs, strings.TrimSuffix(r, " blackhole;"))
		}
	}
	return fmt.Sprint(rs)
}

// take returns and clears the recorded calls.
func (f *fakeBird) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeBird) set(fn func(*fakeBird)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// fakeHoles records blackhole syncs; fail makes them fail.
type fakeHoles struct {
	mu    sync.Mutex
	syncs []string
	have  []netip.Prefix
	fail  error
}

func (h *fakeHoles) Sync(want []netip.Prefix) (routes.Changes, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.syncs = append(h.syncs, fmt.Sprint(want))
	if h.fail != nil {
		return routes.Changes{}, h.fail
	}
	var ch routes.Changes
	for _, p := range want {
		if !slices.Contains(h.have, p) {
			ch.Added = append(ch.Added, p)
		}
	}
	for _, p := range h.have {
		if !slices.Contains(want, p) {
			ch.Removed = append(ch.Removed, p)
		}
	}
	h.have = slices.Clone(want)
	return ch, nil
}

func (h *fakeHoles) List() ([]netip.Prefix, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.have), nil
}

func (h *fakeHoles) Forget() {}

func (h *fakeHoles) state() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.syncs)
}

func (h *fakeHoles) set(fn func(*fakeHoles)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(h)
}

func testConfig(t *testing.T, prefixes ...string) config.Config {
	t.Helper()
	c := config.Default()
	c.Node, c.ASN, c.RouterID = "node1", 65101, netip.MustParseAddr("10.0.1.2")
	c.Peers = []config.Peer{{Name: "tor1", Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000}}
	c.Bird.ConfigDir = t.TempDir()
	c.Bird.Socket = c.Bird.ConfigDir + "/bird.ctl"
	c.Bird.LogFile = "" // a fake BIRD opens no log file
	c.Bird.Timeout = time.Second
	c.Bird.ConfirmTimeout = 4 * time.Second
	c.Bird.ConfigGroup = fmt.Sprint(os.Getegid())
	c.ResyncInterval = time.Hour
	c.Debounce = 0
	for _, p := range prefixes {
		c.PodCIDRs = append(c.PodCIDRs, netip.MustParsePrefix(p))
	}
	return c
}

type harness struct {
	t     testing.TB
	a     *Agent
	bird  *fakeBird
	holes *fakeHoles
	cfg   config.Config
}

func start(t *testing.T, cfg config.Config, bird *fakeBird) *harness {
	t.Helper()
	h := &harness{t: t, bird: bird, holes: &fakeHoles{}, cfg: cfg}
	h.a = New(Options{Config: cfg, Bird: bird, Blackholes: h.holes, PollInterval: 20 * time.Millisecond})
	runAgent(t, h.a)
	return h
}

// runAgent runs a until the test ends.
func runAgent(t *testing.T, a *Agent) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitStatus waits until cond holds for the agent's status.
func (h *harness) waitStatus(what string, cond func(agentapi.Status) bool) agentapi.Status {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := h.a.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; status: %+v", what, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) fileText() string {
	b, err := os.ReadFile(h.cfg.Bird.ConfigFile())
	if err != nil {
		return ""
	}
	return string(b)
}

func applied(want ...string) func(agentapi.Status) bool {
	return func(s agentapi.Status) bool {
		if s.LastApply.Result != agentapi.ResultOK || len(s.LastApply.Applied) != len(want) {
			return false
		}
		for i, p := range s.LastApply.Applied {
			if p.String() != want[i] {
				return false
			}
		}
		return true
	}
}

func TestApplyOnceThenNothing(t *testing.T) {
	h := start(t, testConfig(t, "10.244.1.0/24"), &fakeBird{boot: "b1"})
	s := h.waitStatus("first apply", applied("10.244.1.0/24"))
	if !s.Ready {
		t.Errorf("not ready after apply: %s", s.ReadyMessage)
	}
	// One parse: BIRD loads the temp file with a timeout, and it becomes
	// bird.conf once confirmed.
	if got := h.bird.take(); !slices.Equal(got, []string{"configure tmp [10.244.1.0/24] timeout 4s", "confirm"}) {
		t.Errorf("calls = %q, want configure with timeout, confirm", got)
	}
	if !strings.Contains(h.fileText(), "route 10.244.1.0/24 blackhole;") {
		t.Errorf("bird.conf lacks the prefix:\n%s", h.fileText())
	}
	if got := h.holes.state(); !slices.Equal(got, []string{"[10.244.1.0/24]"}) {
		t.Errorf("blackhole syncs = %q", got)
	}
	// An input that changes nothing must not touch BIRD (idempotent).
	h.a.SetConfig(h.cfg)
	<-h.a.Reload() // a Reload forces a configure
	if got := h.bird.take(); !slices.Equal(got, []string{"configure tmp [10.244.1.0/24] timeout 4s", "confirm"}) {
		t.Errorf("after Reload calls = %q, want one configure", got)
	}
	h.a.SetConfig(h.cfg)
	time.Sleep(100 * time.Millisecond) // several poll and debounce periods
	if got := h.bird.take(); len(got) != 0 {
		t.Errorf("unchanged input caused %q", got)
	}
	st, err := os.Stat(h.cfg.Bird.ConfigFile())
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("bird.conf mode = %v (%v), want 0640", st.Mode(), err)
	}
}

func TestPrefixChange(t *testing.T) {
	h := start(t, testConfig(t, "10.244.1.0/24"), &fakeBird{boot: "b1"})
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	h.bird.take()
	h.a.SetConfig(testConfigIn(h.cfg, "10.244.9.0/24"))
	h.waitStatus("second apply", applied("10.244.9.0/24"))
	// Make before break: the union first, then the new set alone.
	want := []string{"configure tmp [10.244.1.0/24 10.244.9.0/24] timeout 4s", "confirm", "configure tmp [10.244.9.0/24] timeout 4s", "confirm"}
	if got := h.bird.take(); !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	txt := h.fileText()
	if !strings.Contains(txt, "10.244.9.0/24") || strings.Contains(txt, "10.244.1.0/24") {
		t.Errorf("bird.conf not swapped:\n%s", txt)
	}
	// The old blackhole stays until BIRD has withdrawn the prefix.
	// Only what changes is synced: the kernel holds the last clean sync.
	want = []string{"[10.244.1.0/24]", "[10.244.1.0/24 10.244.9.0/24]", "[10.244.9.0/24]"}
	if got := h.holes.state(); !slices.Equal(got, want) {
		t.Errorf("blackhole syncs = %q, want %q", got, want)
	}
}

func testConfigIn(c config.Config, prefixes ...string) config.Config {
	c.PodCIDRs = nil
	for _, p := range prefixes {
		c.PodCIDRs = append(c.PodCIDRs, netip.MustParsePrefix(p))
	}
	return c
}

func TestRejectedConfigKeepsRunningOne(t *testing.T) {
	h := start(t, testConfig(t, "10.244.1.0/24"), &fakeBird{boot: "b1"})
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	good := h.fileText()
	h.bird.set(func(b *fakeBird) { b.reject = "10.66.0.0/16" })
	h.a.SetConfig(testConfigIn(h.cfg, "10.66.0.0/16"))
	s := h.waitStatus("failure", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	if !strings.Contains(s.LastApply.Error, "bird rejected the rendered config") || !strings.Contains(s.LastApply.Error, ":3:1") {
		t.Errorf("error = %q", s.LastApply.Error)
	}
	if s.Ready {
		t.Error("ready after a failed apply")
	}
	if h.fileText() != good {
		t.Error("bird.conf replaced by a rejected config")
	}
	if got := s.LastApply.Applied; len(got) != 1 || got[0].String() != "10.244.1.0/24" {
		t.Errorf("applied = %v, want the old prefix", got)
	}
	if h.bird.running != good {
		t.Error("BIRD was configured with the rejected file")
	}
	entries, _ := os.ReadDir(h.cfg.Bird.ConfigDir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	// Retried with backoff: a second failure follows after about 1s.
	h.waitStatus("retry", func(s agentapi.Status) bool { return s.LastApply.Failures >= 2 })
	// Fixing the input applies at once (no backoff wait).
	h.a.SetConfig(testConfigIn(h.cfg, "10.244.2.0/24"))
	h.waitStatus("recovery", applied("10.244.2.0/24"))
}

func TestBirdDownThenBack(t *testing.T) {
	bird := &fakeBird{boot: "b1", down: true}
	h := start(t, testConfig(t, "10.244.1.0/24"), bird)
	s := h.waitStatus("failure", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	if s.Bird.Up || s.Ready {
		t.Errorf("bird down but status %+v", s.Bird)
	}
	bird.set(func(b *fakeBird) { b.down = false })
	// The poll notices BIRD is back and applies at once, not after backoff.
	h.waitStatus("apply after bird is back", applied("10.244.1.0/24"))
}

func TestBirdRestartReapplies(t *testing.T) {
	bird := &fakeBird{boot: "b1"}
	h := start(t, testConfig(t, "10.244.1.0/24"), bird)
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	bird.take()
	bird.set(func(b *fakeBird) { b.boot = "b2"; b.running = "" })
	deadline := time.Now().Add(10 * time.Second)
	for {
		bird.mu.Lock()
		running := bird.running
		bird.mu.Unlock()
		if running != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted bird was not configured again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := bird.take(); !slices.Equal(got, []string{"configure tmp [10.244.1.0/24] timeout 4s", "confirm"}) {
		t.Errorf("calls after restart = %q, want one configure", got)
	}
}

func TestBirdStartedWithForeignFile(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	if err := os.WriteFile(cfg.Bird.ConfigFile(), []byte("router id 1.2.3.4;\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	h := start(t, cfg, &fakeBird{boot: "b1"})
	h.waitStatus("apply", applied("10.244.1.0/24"))
	if !strings.Contains(h.fileText(), "10.244.1.0/24") {
		t.Error("foreign bird.conf not replaced")
	}
}

func TestKubernetesSource(t *testing.T) {
	cfg := testConfig(t)
	cfg.Kubernetes.Enabled = true
	h := start(t, cfg, &fakeBird{boot: "b1"})
	s := h.waitStatus("waiting", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultWaiting })
	if !strings.Contains(s.SourceMessage, "informer") || s.Ready {
		t.Errorf("status before sync: %+v", s)
	}
	if h.fileText() != "" || len(h.bird.take()) != 0 {
		t.Fatal("rendered before the informer synced")
	}
	h.a.SetNode(k8swatch.NodeState{Synced: true, Exists: true})
	s = h.waitStatus("empty apply", applied())
	if !strings.Contains(s.SourceMessage, "no spec.podCIDRs yet") {
		t.Errorf("source message = %q", s.SourceMessage)
	}
	h.a.SetNode(k8swatch.NodeState{Synced: true, Exists: true, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.5.0/24")}})
	h.waitStatus("assigned", applied("10.244.5.0/24"))
	h.a.SetNode(k8swatch.NodeState{Synced: true, Exists: true, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.6.0/24")}})
	h.waitStatus("changed", applied("10.244.6.0/24"))
}

func TestDebounceFoldsBursts(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	cfg.Debounce = 300 * time.Millisecond
	h := start(t, cfg, &fakeBird{boot: "b1"})
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	h.bird.take()
	for i := 2; i < 12; i++ {
		h.a.SetConfig(testConfigIn(h.cfg, fmt.Sprintf("10.244.%d.0/24", i)))
	}
	h.waitStatus("last of the burst", applied("10.244.11.0/24"))
	want := []string{"configure tmp [10.244.1.0/24 10.244.11.0/24] timeout 4s", "confirm", "configure tmp [10.244.11.0/24] timeout 4s", "confirm"}
	if got := h.bird.take(); !slices.Equal(got, want) {
		t.Errorf("a burst of 10 changes gave calls %q, want one make-before-break change %q", got, want)
	}
}

func TestPeersStateInStatus(t *testing.T) {
	h := start(t, testConfig(t, "10.244.1.0/24"), &fakeBird{boot: "b1"})
	s := h.waitStatus("peer state", func(s agentapi.Status) bool {
		return len(s.Peers) == 1 && s.Peers[0].BGPState == "Established"
	})
	if p := s.Peers[0]; p.Name != "tor1" || p.Protocol != "bgp_tor1" || p.ASN != 65000 {
		t.Errorf("peer = %+v", p)
	}
}

func TestUnionAndDiff(t *testing.T) {
	ps := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	a := ps("10.0.1.0/24", "10.0.3.0/24", "fd00::/64")
	b := ps("10.0.2.0/24", "10.0.3.0/24")
	if got, want := union(a, b), ps("10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24", "fd00::/64"); !slices.Equal(got, want) {
		t.Errorf("union = %v, want %v", got, want)
	}
	added, removed := diff(a, b)
	if !slices.Equal(added, ps("10.0.2.0/24")) || !slices.Equal(removed, ps("10.0.1.0/24", "fd00::/64")) {
		t.Errorf("diff = +%v -%v", added, removed)
	}
	if got := sortedSet(ps("10.0.3.0/24", "10.0.1.0/24", "10.0.3.0/24")); !slices.Equal(got, ps("10.0.1.0/24", "10.0.3.0/24")) {
		t.Errorf("sortedSet = %v", got)
	}
}
