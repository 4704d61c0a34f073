// Package agent is roost-agent's reconcile loop: from the configuration and
// the PodCIDR source it renders BIRD's config, has BIRD load it with a
// timeout and confirms it once every session that was up is up again, keeps
// the kernel blackhole routes, and records the outcome for the status API,
// the metrics and the log.
//
// The loop never replaces a config BIRD runs with one BIRD rejects, never
// touches a protocol bgp block unless the peer's own settings changed, so
// BGP sessions survive every prefix change (see birdconf), and never waits
// for BIRD, the kernel or an informer without a deadline: a BIRD that stops
// answering makes the agent unready within a few seconds, and the inputs
// that arrive meanwhile are applied when it answers again.
package agent

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
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
	fieldSessions = "sessions"
	fieldReconfig = "lastReconfig"
)

// Bird is what the agent needs of BIRD's control socket. Every call must
// end when ctx does.
type Bird interface {
	// Configure makes BIRD load file. With timeout > 0 BIRD undoes the
	// change by itself unless Confirm comes within timeout.
	Configure(ctx context.Context, file string, timeout time.Duration) error
	// Confirm keeps the config loaded with a timeout; Undo goes back to
	// the config before it.
	Confirm(ctx context.Context) error
	Undo(ctx context.Context) error
	// State reports BIRD's version, boot and reconfiguration times and
	// protocol states.
	State(ctx context.Context) (BirdState, error)
}

// BirdState is one poll of BIRD.
type BirdState struct {
	Version string
	// LastReboot and LastReconfig are BIRD's boot and last
	// reconfiguration times. BIRD prints them from its monotonic clock
	// converted to wall time at each call, so two prints of one instant
	// may differ by a millisecond: compare them with sameTime.
	LastReboot   time.Time
	LastReconfig time.Time
	// Protocols maps BIRD protocol names to their state.
	Protocols map[string]ProtocolState
}

// ProtocolState is one BIRD protocol's state.
type ProtocolState struct {
	State    string // e.g. "up", "start"
	BGPState string // e.g. "Established", "Active"
	Exported int    // routes exported on its channels
}

// Blackholes keeps the kernel blackhole routes of owned prefixes.
type Blackholes interface {
	// Sync makes the set of roost's blackhole routes equal want and says
	// what it changed.
	Sync(want []netip.Prefix) (routes.Changes, error)
	// List reads roost's blackhole routes back from the kernel.
	List() ([]netip.Prefix, error)
	// Forget makes the next Sync read the kernel table whole.
	Forget()
}

// Options are the parts an Agent is built from.
type Options struct {
	Config config.Config
	// Bird is used by the apply; Poller, when not nil, by the poll, so a
	// slow apply never delays noticing that BIRD stopped answering.
	Bird   Bird
	Poller Bird
	// Blackholes may be nil when config.BlackholeRoutes is false.
	Blackholes Blackholes
	// Check parses a BIRD config file without BIRD running (bird -p); nil
	// when no bird binary is at hand: then a broken bird.conf cannot be
	// repaired while BIRD is down.
	Check   func(ctx context.Context, file string) error
	Log     logrus.FieldLogger
	Metrics *Metrics
	// PollInterval is how often BIRD is polled; 0 means 2s.
	PollInterval time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Render renders BIRD's config; nil means birdconf.Render. Tests use
	// it to hand BIRD a config it rejects.
	Render func(birdconf.Input) ([]byte, error)
	// VIPs, when not nil, reports the VIPs announced and the last error
	// of their sync, for the status.
	VIPs func() (vips []netip.Prefix, err string)
	// Drain is the drain state to start in (LoadDrain); the zero value is
	// not drained.
	Drain agentapi.Drain
	// VIPTagsApplied, when not nil, is called after an apply that changed
	// the VIP tags BIRD runs (SetVIPTags), so VIPs that waited for their
	// tag can be announced.
	VIPTagsApplied func()
}

// Agent is the reconcile loop. Its setters may be called from any goroutine.
type Agent struct {
	vips    func() ([]netip.Prefix, string)
	bird    Bird
	poller  Bird
	holes   Blackholes
	check   func(ctx context.Context, file string) error
	log     logrus.FieldLogger
	metrics *Metrics
	poll    time.Duration
	now     func() time.Time
	render  func(birdconf.Input) ([]byte, error)

	kick           chan struct{}
	drainKick      chan struct{}
	vipTagsApplied func()

	mu      sync.Mutex
	drain   agentapi.Drain
	vipTags []birdconf.VIPTag // what SetVIPTags asked for
	// appliedTags are the metrics of the VIP tags in the config BIRD
	// last confirmed.
	appliedTags map[uint32]bool
	cfg         config.Config
	node        *k8swatch.NodeState // nil until the source reports
	force       bool                // apply even when the render is unchanged
	boot        time.Time           // BIRD's last reboot at the last poll
	status      agentapi.Status
	waiters     []chan struct{}

	// Owned by the Run goroutine.
	applied    []byte    // what BIRD confirmed it runs
	birdBoot   time.Time // BIRD's last reboot when applied was confirmed
	ownReconf  time.Time // BIRD's last reconfiguration, as the agent left it
	rejected   []byte    // a render BIRD rolled back: not retried unasked
	appliedEnd time.Time // when the last apply ended
	holeFails  int       // consecutive failed blackhole syncs
	checked    fileStamp // bird.conf as last found parseable by Check
	written    fileStamp // bird.conf as the agent last renamed it into place
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
	if o.Poller == nil {
		o.Poller = o.Bird
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(nopWriter{})
		o.Log = l
	}
	a := &Agent{
		vips: o.VIPs, bird: o.Bird, poller: o.Poller, holes: o.Blackholes, check: o.Check, log: o.Log, metrics: o.Metrics,
		poll: o.PollInterval, now: o.Now, render: o.Render, cfg: o.Config,
		kick: make(chan struct{}, 1), drainKick: make(chan struct{}, 1), vipTagsApplied: o.VIPTagsApplied,
		drain: o.Drain,
	}
	if a.drain.State == "" {
		a.drain.State = agentapi.DrainNone
	}
	a.metrics.setDrain(a.drain.State)
	a.status = agentapi.Status{
		Node: o.Config.Node, Source: sourceName(o.Config),
		LastApply:       agentapi.Apply{Result: agentapi.ResultPending},
		BlackholeRoutes: o.Blackholes != nil,
		Peers:           peersOf(o.Config, nil),
	}
	a.updateReady()
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

// SetConfig replaces the configuration (after a reload of the file). The
// caller has refused changes to settings that take effect only on restart.
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

// Reload forces the next apply even when nothing changed (also retrying a
// config BIRD rolled back), and returns a channel closed once that apply
// has been attempted.
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

// Status returns a copy of the current status. Lists are never null in its
// JSON.
func (a *Agent) Status() agentapi.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Desired = cloneOrEmpty(s.Desired)
	s.Peers = cloneOrEmpty(s.Peers)
	s.LastApply.Applied = cloneOrEmpty(s.LastApply.Applied)
	s.Blackholes = cloneOrEmpty(s.Blackholes)
	s.Drain = a.drain
	if a.vips != nil {
		s.VIPs, s.VIPError = a.vips()
		s.VIPs = cloneOrEmpty(s.VIPs)
		// As for the kernel blackholes: what is announced may not be
		// what should be.
		if s.Ready && s.VIPError != "" {
			s.Ready, s.ReadyMessage = false, "VIPs: "+s.VIPError
		}
	}
	return s
}

func cloneOrEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return slices.Clone(s)
}

// Rendered returns the config the agent would render now, and the path it
// writes it to; nil when it renders nothing yet. It holds the passwords:
// callers that serve it redact them.
func (a *Agent) Rendered() ([]byte, string, error) {
	a.mu.Lock()
	cfg, node, attrs := a.cfg, a.node, a.attrsLocked()
	a.mu.Unlock()
	prefixes, ok, _ := desired(cfg, node)
	if !ok {
		return nil, cfg.Bird.ConfigFile(), nil
	}
	out, err := a.render(attrs.input(cfg, prefixes))
	return out, cfg.Bird.ConfigFile(), err
}

// attrs is what bird.conf depends on besides the configuration and the
// prefixes: the VIP tags and the drain state.
type attrs struct {
	tags  []birdconf.VIPTag
	drain birdconf.Drain
}

// attrsLocked returns the current attrs; a.mu must be held.
func (a *Agent) attrsLocked() attrs {
	return attrs{tags: a.vipTags, drain: birdDrain(a.drain)}
}

// input is BIRD's input for cfg and prefixes with these attrs.
func (at attrs) input(cfg config.Config, prefixes []netip.Prefix) birdconf.Input {
	in := cfg.BirdInput(prefixes)
	in.VIPTags, in.Drain = at.tags, at.drain
	return in
}

// SetVIPTags sets the VIP tags bird.conf carries (vips.Announcer asks for
// those of the VIPs it announces or is about to), applying when they
// change. AppliedVIPTags says when BIRD runs them.
func (a *Agent) SetVIPTags(tags []birdconf.VIPTag) {
	a.mu.Lock()
	same := slices.EqualFunc(tags, a.vipTags, func(x, y birdconf.VIPTag) bool {
		return x.Metric == y.Metric && slices.Equal(x.Communities, y.Communities)
	})
	if !same {
		a.vipTags = slices.Clone(tags)
	}
	a.mu.Unlock()
	if !same {
		a.trigger()
	}
}

// AppliedVIPTags returns the metrics of the VIP tags in the config BIRD
// runs.
func (a *Agent) AppliedVIPTags() map[uint32]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.appliedTags)
}

// Run reconciles until ctx ends. It applies once at start, again on every
// change (no more often than config.Debounce), retries failures with
// exponential backoff, re-applies when BIRD restarted or was reconfigured
// by someone else, resyncs the kernel blackholes every
// config.ResyncInterval, and repairs a bird.conf BIRD could not start from.
// BIRD is polled on a goroutine of its own.
func (a *Agent) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	resync := time.NewTicker(a.resyncInterval())
	defer resync.Stop()
	var (
		lastApply time.Time
		next      time.Time // when the timer fires; zero when it is idle
		failures  int
		seen      pollResult // the last poll acted on
	)
	// schedule makes the next apply happen at or before at.
	schedule := func(at time.Time) {
		if next.IsZero() || at.Before(next) {
			next = at
			timer.Reset(max(at.Sub(a.now()), 0))
		}
	}
	backoff := func(n int) time.Duration { return min(time.Second<<min(n-1, 5), 30*time.Second) }

	// Learn BIRD's boot and reconfiguration times before the first apply.
	seen = a.pollOnce(ctx)
	polls := make(chan pollResult, 1)
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go a.pollLoop(pollCtx, polls)
	go a.drainLoop(pollCtx)
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
		case pr := <-polls:
			if why := a.applyDue(seen, pr, failures > 0); why != "" {
				a.log.WithField(fieldVersion, pr.state.Version).Info(why + ": applying again")
				schedule(a.now())
			}
			if pr.err != nil {
				a.repair(ctx)
			}
			seen = pr
		case <-resync.C:
			a.resyncBlackholes()
		case <-timer.C:
			next = time.Time{}
			lastApply = a.now()
			waiters := a.takeWaiters()
			if err := a.apply(ctx); err != nil {
				failures++
				retry := backoff(failures)
				a.log.WithError(err).WithFields(logrus.Fields{fieldAttempt: failures, fieldRetryIn: retry}).Warn("apply failed")
				a.setFailures(failures)
				schedule(a.now().Add(retry))
			} else {
				failures = 0
			}
			a.appliedEnd = a.now()
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

func (a *Agent) resyncInterval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg.ResyncInterval <= 0 {
		return 10 * time.Second
	}
	return a.cfg.ResyncInterval
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
	a.metrics.setApplyFailures(n)
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

// peersOf lists the configured peers, keeping states already polled.
func peersOf(c config.Config, old []agentapi.Peer) []agentapi.Peer {
	out := make([]agentapi.Peer, 0, len(c.Peers))
	for _, p := range c.Peers {
		ap := agentapi.Peer{Name: p.Name, Protocol: birdconf.ProtocolName(p.Name), Neighbor: p.Address, ASN: p.ASN, Family: familyOf(p.Address)}
		for _, o := range old {
			if o.Protocol == ap.Protocol && o.Neighbor == ap.Neighbor {
				ap.State, ap.BGPState, ap.Exported = o.State, o.BGPState, o.Exported
			}
		}
		out = append(out, ap)
	}
	return out
}

func familyOf(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "ipv4"
	}
	return "ipv6"
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
