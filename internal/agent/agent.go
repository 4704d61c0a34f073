// Package agent is roost-agent's reconcile loop: from the configuration and
// the PodCIDR source it renders BIRD's config, checks it with BIRD, puts it in
// place and reconfigures BIRD, keeps the kernel blackhole routes, and records
// the outcome for the status API, the metrics and the log.
//
// The loop never replaces a config BIRD runs with one BIRD rejects, and never
// touches a protocol bgp block unless the peer's own settings changed, so BGP
// sessions survive every prefix change (see birdconf).
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/routes"
)

// Log field names.
const (
	fieldPrefixes = "prefixes"
	fieldDuration = "duration"
	fieldAttempt  = "attempt"
	fieldRetryIn  = "retryIn"
	fieldFile     = "file"
	fieldVersion  = "version"
	fieldAdded    = "added"
	fieldRemoved  = "removed"
)

// Bird is what the agent needs of BIRD's control socket.
type Bird interface {
	// CheckConfig asks BIRD to parse file without applying it.
	CheckConfig(ctx context.Context, file string) error
	// Reconfigure makes BIRD load file.
	Reconfigure(ctx context.Context, file string) error
	// State reports BIRD's version, boot time and protocol states.
	State(ctx context.Context) (BirdState, error)
}

// BirdState is one poll of BIRD.
type BirdState struct {
	Version    string
	LastReboot string
	// Protocols maps BIRD protocol names to their state.
	Protocols map[string]ProtocolState
}

// ProtocolState is one BIRD protocol's state.
type ProtocolState struct {
	State    string // e.g. "up", "start"
	BGPState string // e.g. "Established", "Active"
}

// Blackholes keeps the kernel blackhole routes of owned prefixes.
type Blackholes interface {
	// Sync makes the set of roost's blackhole routes equal want and says
	// what it changed.
	Sync(want []netip.Prefix) (routes.Changes, error)
}

// Options are the parts an Agent is built from.
type Options struct {
	Config config.Config
	Bird   Bird
	// Blackholes may be nil when config.BlackholeRoutes is false.
	Blackholes Blackholes
	Log        logrus.FieldLogger
	Metrics    *Metrics
	// PollInterval is how often BIRD is polled; 0 means 2s.
	PollInterval time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Render renders BIRD's config; nil means birdconf.Render. Tests use
	// it to hand BIRD a config it rejects.
	Render func(birdconf.Input) ([]byte, error)
}

// Agent is the reconcile loop. Its setters may be called from any goroutine.
type Agent struct {
	bird    Bird
	holes   Blackholes
	log     logrus.FieldLogger
	metrics *Metrics
	poll    time.Duration
	now     func() time.Time
	render  func(birdconf.Input) ([]byte, error)

	kick chan struct{}

	mu       sync.Mutex
	cfg      config.Config
	node     *k8swatch.NodeState // nil until the source reports
	force    bool                // apply even when the render is unchanged
	applied  []byte              // what BIRD confirmed it runs
	status   agentapi.Status
	birdBoot string // BIRD's last reboot time when applied was confirmed
	waiters  []chan struct{}
}

// New returns an Agent for the given options.
func New(o Options) *Agent {
	if o.PollInterval == 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Render == nil {
		o.Render = birdconf.Render
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(nopWriter{})
		o.Log = l
	}
	a := &Agent{
		bird: o.Bird, holes: o.Blackholes, log: o.Log, metrics: o.Metrics,
		poll: o.PollInterval, now: o.Now, render: o.Render, cfg: o.Config,
		kick: make(chan struct{}, 1),
	}
	a.status = agentapi.Status{
		Node: o.Config.Node, Source: sourceName(o.Config),
		LastApply: agentapi.Apply{Result: agentapi.ResultPending},
	}
	return a
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func sourceName(c config.Config) string {
	if c.Kubernetes.Enabled {
		return "kubernetes"
	}
	return "static"
}

// SetConfig replaces the configuration (after a reload of the file).
func (a *Agent) SetConfig(c config.Config) {
	a.mu.Lock()
	a.cfg = c
	a.status.Node, a.status.Source = c.Node, sourceName(c)
	a.mu.Unlock()
	a.trigger()
}

// SetConfigError records that reloading the configuration failed (nil
// clears it); the agent keeps the configuration it has.
func (a *Agent) SetConfigError(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.ConfigError = ""
	if err != nil {
		a.status.ConfigError = err.Error()
	}
}

// SetNode records the Kubernetes Node's state.
func (a *Agent) SetNode(s k8swatch.NodeState) {
	a.mu.Lock()
	a.node = &s
	a.mu.Unlock()
	a.trigger()
}

// Reload forces the next apply even when nothing changed, and returns a
// channel closed once that apply has been attempted.
func (a *Agent) Reload() <-chan struct{} {
	done := make(chan struct{})
	a.mu.Lock()
	a.force = true
	a.waiters = append(a.waiters, done)
	a.mu.Unlock()
	a.trigger()
	return done
}

func (a *Agent) trigger() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Status returns a copy of the current status.
func (a *Agent) Status() agentapi.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Desired = slices.Clone(s.Desired)
	s.Peers = slices.Clone(s.Peers)
	s.LastApply.Applied = slices.Clone(s.LastApply.Applied)
	s.Blackholes = slices.Clone(s.Blackholes)
	return s
}

// Rendered returns the config the agent would render now, and the path it
// writes it to; nil when it renders nothing yet.
func (a *Agent) Rendered() ([]byte, string, error) {
	a.mu.Lock()
	cfg, node := a.cfg, a.node
	a.mu.Unlock()
	prefixes, ok, _ := desired(cfg, node)
	if !ok {
		return nil, cfg.Bird.ConfigFile(), nil
	}
	out, err := a.render(RenderInput(cfg, prefixes))
	return out, cfg.Bird.ConfigFile(), err
}

// Run reconciles until ctx ends. It applies once at start, again on every
// change (no more often than config.Debounce), retries failures with
// exponential backoff, and polls BIRD to notice restarts.
func (a *Agent) Run(ctx context.Context) error {
	poll := time.NewTicker(a.poll)
	defer poll.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		lastApply time.Time
		next      time.Time // when the timer fires; zero when it is idle
		failures  int
	)
	// schedule makes the next apply happen at or before at.
	schedule := func(at time.Time) {
		if next.IsZero() || at.Before(next) {
			next = at
			timer.Reset(max(at.Sub(a.now()), 0))
		}
	}
	a.pollBird(ctx) // learn BIRD's boot time before the first apply
	schedule(a.now())
	for {
		select {
		case <-ctx.Done():
			a.releaseWaiters()
			return nil
		case <-a.kick:
			// A new input: apply once the debounce since the last apply
			// has passed, even during a failure's backoff, since the new
			// input may be what fixes it.
			schedule(lastApply.Add(a.debounce()))
		case <-poll.C:
			if a.pollBird(ctx) {
				schedule(a.now())
			}
		case <-timer.C:
			next = time.Time{}
			lastApply = a.now()
			waiters := a.takeWaiters()
			if err := a.apply(ctx); err != nil {
				failures++
				backoff := min(time.Second<<min(failures-1, 5), 30*time.Second)
				a.log.WithError(err).WithFields(logrus.Fields{fieldAttempt: failures, fieldRetryIn: backoff}).Warn("apply failed")
				a.setFailures(failures)
				schedule(a.now().Add(backoff))
			} else {
				failures = 0
			}
			for _, w := range waiters {
				close(w)
			}
		}
	}
}

func (a *Agent) debounce() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg.Debounce
}

// takeWaiters returns the Reload callers waiting for the next apply.
func (a *Agent) takeWaiters() []chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ws := a.waiters
	a.waiters = nil
	return ws
}

func (a *Agent) releaseWaiters() {
	for _, w := range a.takeWaiters() {
		close(w)
	}
}

func (a *Agent) setFailures(n int) {
	a.mu.Lock()
	a.status.LastApply.Failures = n
	a.mu.Unlock()
}

// desired returns the prefixes to announce, whether the source is ready to
// be rendered, and a message for the status when that needs one.
func desired(c config.Config, node *k8swatch.NodeState) ([]netip.Prefix, bool, string) {
	if !c.Kubernetes.Enabled {
		return sortedSet(c.PodCIDRs), true, ""
	}
	switch {
	case node == nil || !node.Synced:
		return nil, false, "waiting for the Node informer to sync"
	case !node.Exists:
		return nil, true, fmt.Sprintf("node %q does not exist in Kubernetes: announcing nothing", c.Node)
	case len(node.PodCIDRs) == 0 && node.Err != nil:
		return nil, true, fmt.Sprintf("node %q has no valid spec.podCIDRs: announcing nothing: %v", c.Node, node.Err)
	case len(node.PodCIDRs) == 0:
		return nil, true, fmt.Sprintf("node %q has no spec.podCIDRs yet: announcing nothing", c.Node)
	case node.Err != nil:
		return sortedSet(node.PodCIDRs), true, fmt.Sprintf("some spec.podCIDRs of node %q are left out: %v", c.Node, node.Err)
	}
	return sortedSet(node.PodCIDRs), true, ""
}

// RenderInput is the birdconf input for configuration c announcing prefixes.
func RenderInput(c config.Config, prefixes []netip.Prefix) birdconf.Input {
	in := birdconf.Input{RouterID: c.RouterID, ASN: c.ASN, Prefixes: prefixes}
	for _, p := range c.Peers {
		in.Peers = append(in.Peers, birdconf.Peer{
			Name: p.Name, Address: p.Address, ASN: p.ASN, Password: p.Password, HoldTime: p.HoldTime,
		})
	}
	return in
}

// apply brings BIRD to the desired state. A change that both adds and
// removes prefixes (a PodCIDR moved) goes make-before-break: first BIRD
// announces the union, then withdraws the old prefixes, so the ToRs never
// lack a route to the node's pods, and the announcement leaves before the
// withdrawal (BIRD writes them as separate UPDATEs; behind a withdrawal, the
// announcement would wait for the ToR's delayed ACK, about 40 ms).
func (a *Agent) apply(ctx context.Context) (err error) {
	a.mu.Lock()
	cfg, node, force := a.cfg, a.node, a.force
	before := a.status.LastApply.Applied
	a.force = false
	a.mu.Unlock()

	start := a.now()
	prefixes, ok, msg := desired(cfg, node)
	a.mu.Lock()
	a.status.Desired, a.status.SourceMessage = prefixes, msg
	a.status.Peers = peersOf(cfg, a.status.Peers)
	a.mu.Unlock()
	a.metrics.setDesired(len(prefixes))
	if !ok {
		a.record(agentapi.ResultWaiting, start, nil, nil)
		return nil
	}
	added, removed := diff(before, prefixes)
	if len(added) > 0 && len(removed) > 0 {
		if err := a.push(ctx, cfg, union(prefixes, before), force, start); err != nil {
			return err
		}
	}
	if err := a.push(ctx, cfg, prefixes, force, start); err != nil {
		return err
	}
	if len(added)+len(removed) > 0 || force {
		a.log.WithFields(logrus.Fields{
			fieldPrefixes: len(prefixes), fieldAdded: prefixStrings(added), fieldRemoved: prefixStrings(removed),
			fieldDuration: a.now().Sub(start),
		}).Info("bird configured")
	}
	return nil
}

// push runs the pipeline once for prefixes: render → skip if BIRD runs it
// already → blackholes → temp file → check → rename → configure → record.
func (a *Agent) push(ctx context.Context, cfg config.Config, prefixes []netip.Prefix, force bool, start time.Time) (err error) {
	defer func() {
		if err != nil {
			a.record(agentapi.ResultFailed, start, err, nil)
		}
	}()
	rendered, err := a.render(RenderInput(cfg, prefixes))
	if err != nil {
		return fmt.Errorf("render bird config: %w", err)
	}
	path := cfg.Bird.ConfigFile()
	onDisk, _ := os.ReadFile(path) // a missing file is just different
	a.mu.Lock()
	applied, boot, curBoot := a.applied, a.birdBoot, a.status.Bird.LastReboot
	before := a.status.LastApply.Applied
	a.mu.Unlock()
	if !force && bytes.Equal(rendered, applied) && bytes.Equal(rendered, onDisk) && boot == curBoot {
		a.record(agentapi.ResultOK, start, nil, prefixes)
		return nil
	}

	// Blackholes first for every prefix that is or was announced, so no
	// announced prefix is ever without its blackhole; the ones no longer
	// owned go after BIRD has withdrawn them.
	var holeErr error
	if a.holes != nil {
		holeErr = a.syncBlackholes(union(prefixes, before))
	}
	if !bytes.Equal(rendered, onDisk) {
		if err := a.install(ctx, path, rendered); err != nil {
			return err
		}
	}
	if err := a.bird.Reconfigure(ctx, path); err != nil {
		return fmt.Errorf("configure bird with %s: %w", path, err)
	}
	a.mu.Lock()
	a.applied = rendered
	a.birdBoot = curBoot
	a.mu.Unlock()
	if a.holes != nil {
		holeErr = errors.Join(holeErr, a.syncBlackholes(prefixes))
	}
	if holeErr != nil {
		return fmt.Errorf("bird configured, but kernel blackhole routes: %w", holeErr)
	}
	a.record(agentapi.ResultOK, start, nil, prefixes)
	return nil
}

// install writes rendered to a temp file beside path, has BIRD check it and
// renames it into place. On any failure path is left as it was.
func (a *Agent) install(ctx context.Context, path string, rendered []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".roost-*")
	if err != nil {
		return fmt.Errorf("write bird config: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // after a successful rename this fails quietly
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return fmt.Errorf("write bird config %s: %w", tmpName, err)
	}
	if _, err := tmp.Write(rendered); err != nil {
		tmp.Close()
		return fmt.Errorf("write bird config %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write bird config %s: %w", tmpName, err)
	}
	if err := a.bird.CheckConfig(ctx, tmpName); err != nil {
		return fmt.Errorf("bird rejected the rendered config (running config kept): %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("put bird config in place: %w", err)
	}
	a.log.WithField(fieldFile, path).Debug("bird config written")
	return nil
}

func (a *Agent) syncBlackholes(want []netip.Prefix) error {
	ch, err := a.holes.Sync(want)
	if !ch.Empty() {
		a.log.WithFields(logrus.Fields{fieldAdded: prefixStrings(ch.Added), fieldRemoved: prefixStrings(ch.Removed)}).Info("kernel blackhole routes changed")
	}
	a.mu.Lock()
	a.status.Blackholes = want // a fresh slice from union or desired; Status copies it
	a.mu.Unlock()
	return err
}

// record stores the result of an apply in the status and the metrics.
func (a *Agent) record(result string, start time.Time, err error, applied []netip.Prefix) {
	d := a.now().Sub(start)
	a.metrics.observeApply(result, d)
	a.mu.Lock()
	defer a.mu.Unlock()
	la := &a.status.LastApply
	la.Result, la.Time, la.Duration, la.Error = result, a.now(), d, ""
	if err != nil {
		la.Error = err.Error()
	}
	if result == agentapi.ResultOK {
		la.Applied = slices.Clone(applied)
		la.Failures = 0
		a.metrics.setAnnounced(len(applied))
	}
	a.updateReady()
}

// updateReady sets the readiness rule; a.mu must be held. Ready means: BIRD
// answers on its socket, and the last apply succeeded, so BIRD runs the
// config rendered from the current inputs. A down BGP session does not make
// the agent unready: it is the ToR's state, shown per peer.
func (a *Agent) updateReady() {
	switch {
	case !a.status.Bird.Up:
		a.status.Ready, a.status.ReadyMessage = false, "bird does not answer on its control socket"
	case a.status.LastApply.Result != agentapi.ResultOK:
		a.status.Ready, a.status.ReadyMessage = false, "last apply: "+a.status.LastApply.Result
	default:
		a.status.Ready, a.status.ReadyMessage = true, ""
	}
}

// pollBird refreshes BIRD's state and reports whether an apply is due: BIRD
// came back, or restarted, since the config was last confirmed.
func (a *Agent) pollBird(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := a.bird.State(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &a.status.Bird
	wasUp := b.Up
	b.Polled = a.now()
	if err != nil {
		b.Up, b.Error = false, err.Error()
		a.metrics.setBirdUp(false)
		a.updateReady()
		return false
	}
	b.Up, b.Error, b.Version, b.LastReboot = true, "", st.Version, st.LastReboot
	a.metrics.setBirdUp(true)
	for i := range a.status.Peers {
		p := &a.status.Peers[i]
		ps := st.Protocols[p.Protocol]
		p.State, p.BGPState = ps.State, ps.BGPState
	}
	a.metrics.setPeers(a.status.Peers)
	a.updateReady()
	due := a.applied != nil && a.birdBoot != st.LastReboot
	if !wasUp && a.status.LastApply.Result == agentapi.ResultFailed {
		due = true // BIRD is back: retry now rather than at the backoff
	}
	if due {
		a.log.WithField(fieldVersion, st.Version).Info("bird restarted or came back: applying again")
	}
	return due
}

// peersOf lists the configured peers, keeping states already polled.
func peersOf(c config.Config, old []agentapi.Peer) []agentapi.Peer {
	out := make([]agentapi.Peer, 0, len(c.Peers))
	for _, p := range c.Peers {
		ap := agentapi.Peer{Name: p.Name, Protocol: birdconf.ProtocolName(p.Name), Neighbor: p.Address, ASN: p.ASN}
		for _, o := range old {
			if o.Protocol == ap.Protocol && o.Neighbor == ap.Neighbor {
				ap.State, ap.BGPState = o.State, o.BGPState
			}
		}
		out = append(out, ap)
	}
	return out
}

// sortedSet returns ps sorted and without duplicates (a new slice).
func sortedSet(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, netip.Prefix.Compare)
	return slices.Compact(out)
}

// union merges two sorted sets.
func union(a, b []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, max(len(a), len(b)))
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && a[0].Compare(b[0]) < 0:
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || b[0].Compare(a[0]) < 0:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return out
}

// diff returns what is in the sorted set to but not in from, and the
// reverse.
func diff(from, to []netip.Prefix) (added, removed []netip.Prefix) {
	for len(from) > 0 || len(to) > 0 {
		switch {
		case len(from) == 0 || len(to) > 0 && to[0].Compare(from[0]) < 0:
			added, to = append(added, to[0]), to[1:]
		case len(to) == 0 || from[0].Compare(to[0]) < 0:
			removed, from = append(removed, from[0]), from[1:]
		default:
			from, to = from[1:], to[1:]
		}
	}
	return added, removed
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
