package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/config"
)

// ErrRolledBack means BIRD went back to its previous config because a
// session that was Established before the change did not come back.
var ErrRolledBack = errors.New("rolled back")

// sessionPoll is how often an apply waiting to confirm looks at the
// sessions.
const sessionPoll = 100 * time.Millisecond

// apply brings BIRD to the desired state. A change that both adds and
// removes prefixes (a PodCIDR moved) goes make-before-break: first BIRD
// announces the union, then withdraws the old prefixes, so the ToRs never
// lack a route to the node's pods, and the announcement leaves before the
// withdrawal (BIRD writes them as separate UPDATEs; behind a withdrawal, the
// announcement would wait for the ToR's delayed ACK, about 40 ms).
func (a *Agent) apply(ctx context.Context) error {
	a.mu.Lock()
	cfg, node, force, at := a.cfg, a.node, a.force, a.attrsLocked()
	before := a.status.LastApply.Applied
	a.force = false
	a.mu.Unlock()

	start := a.now()
	prefixes, ok, msg := desired(cfg, node)
	a.mu.Lock()
	a.status.Desired, a.status.SourceMessage = prefixes, msg
	a.status.Peers = peersOf(cfg, a.status.Peers)
	a.mu.Unlock()
	a.metrics.setDesired(prefixes)
	if !ok {
		a.record(agentapi.ResultWaiting, start, nil, nil)
		return nil
	}
	added, removed := diff(before, prefixes)
	if len(added) > 0 && len(removed) > 0 {
		if err := a.push(ctx, cfg, at, union(prefixes, before), force, start); err != nil {
			return err
		}
	}
	if err := a.push(ctx, cfg, at, prefixes, force, start); err != nil {
		return err
	}
	a.tagsApplied(at.tags)
	if len(added)+len(removed) > 0 || force {
		a.log.WithFields(logrus.Fields{
			fieldPrefixes: len(prefixes), fieldAdded: someOf(added), fieldRemoved: someOf(removed),
			fieldDuration: a.now().Sub(start),
		}).Info("bird configured")
	}
	return nil
}

// push runs the pipeline once for prefixes: render → blackholes → skip
// BIRD if it runs the render already → temp file → configure with timeout
// → wait for the sessions → confirm → rename → blackholes → record. BIRD
// parses the file once: a file it rejects never becomes bird.conf.
func (a *Agent) push(ctx context.Context, cfg config.Config, at attrs, prefixes []netip.Prefix, force bool, start time.Time) (err error) {
	defer func() {
		if err != nil {
			a.record(agentapi.ResultFailed, start, err, nil)
		}
	}()
	rendered, err := a.render(at.input(cfg, prefixes))
	if err != nil {
		return err // "render bird config: …"
	}
	path := cfg.Bird.ConfigFile()
	// bird.conf is read back only when it is not the file the agent put
	// there (at 10,000 prefixes a read is 300 KB).
	var onDisk []byte
	if st, err := stampOf(path); err == nil && st == a.written && a.applied != nil {
		onDisk = a.applied
	} else {
		onDisk, _ = os.ReadFile(path) // a missing file is just different
	}
	a.mu.Lock()
	curBoot := a.boot
	before := a.status.LastApply.Applied
	a.mu.Unlock()

	unchanged := bytes.Equal(rendered, a.applied) && bytes.Equal(rendered, onDisk) && sameTime(a.birdBoot, curBoot)
	if !force && !unchanged && bytes.Equal(rendered, a.rejected) {
		return fmt.Errorf("not applying again the config BIRD rolled back (change the inputs or run roostctl reload): %w", ErrRolledBack)
	}
	// Blackholes first for every prefix that is or was announced, so no
	// announced prefix is ever without its blackhole; the ones no longer
	// owned go after BIRD has withdrawn them. The sync runs on every
	// apply, also when BIRD needs nothing, so a failed one is retried.
	// The kernel holds before since the last clean sync, so a sync is
	// needed only for what changes, or to retry a failed one.
	var holeErr error
	pre := union(prefixes, before)
	synced := false
	if a.holes != nil && (a.holeFails > 0 || len(pre) != len(before)) {
		holeErr, synced = a.syncBlackholes(pre), true
	}
	if force || !unchanged {
		if err := a.configure(ctx, cfg, path, rendered, force); err != nil {
			return err
		}
	}
	if a.holes != nil && (len(prefixes) != len(pre) || !synced && a.holeFails > 0) {
		holeErr = errors.Join(holeErr, a.syncBlackholes(prefixes))
	}
	if holeErr != nil {
		return fmt.Errorf("bird configured, but kernel blackhole routes: %w", holeErr)
	}
	a.record(agentapi.ResultOK, start, nil, prefixes)
	return nil
}

// tagsApplied records that BIRD runs the VIP tags tags, and tells the
// VIP announcer when that changed.
func (a *Agent) tagsApplied(tags []birdconf.VIPTag) {
	m := make(map[uint32]bool, len(tags))
	for _, t := range tags {
		m[t.Metric] = true
	}
	a.mu.Lock()
	changed := !maps.Equal(m, a.appliedTags)
	a.appliedTags = m
	a.mu.Unlock()
	if changed && a.vipTagsApplied != nil {
		a.vipTagsApplied()
	}
}

// configure has BIRD load rendered from a temp file beside path with
// `configure "tmp" timeout N`, waits until every session that was
// Established before is Established again, confirms, and only then renames
// the temp file to path. A session that does not come back makes the agent
// undo the change (BIRD would by itself after N seconds, e.g. when the
// agent dies meanwhile).
//
// A change of the static routes alone, from the config BIRD is known to
// run, touches no protocol bgp block, so BIRD restarts no session: it is
// confirmed at once, without asking BIRD for the sessions' states.
func (a *Agent) configure(ctx context.Context, cfg config.Config, path string, rendered []byte, force bool) error {
	timeout := cfg.Bird.Timeout
	call := func(f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return f(cctx)
	}
	peers := make([]string, len(cfg.Peers))
	for i, p := range cfg.Peers {
		peers[i] = protocolOf(p)
	}
	watch := cfg.Bird.ConfirmTimeout > 0 && (force || changedFor(a.applied, rendered, peers))
	// Which sessions are up now: they must be up after the change.
	var up []string
	if watch {
		var st BirdState
		if err := call(func(c context.Context) (err error) { st, err = a.bird.State(c); return err }); err != nil {
			return fmt.Errorf("bird state before configure: %w", err)
		}
		for name, p := range st.Protocols {
			if p.BGPState == "Established" && slices.Contains(peers, name) {
				up = append(up, name)
			}
		}
		slices.Sort(up)
	}
	tmp, err := writeTemp(path, rendered, cfg.Bird)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // after a successful rename this fails quietly
	err = call(func(c context.Context) error { return a.bird.Configure(c, tmp, cfg.Bird.ConfirmTimeout) })
	if errors.Is(err, context.DeadlineExceeded) {
		// BIRD may still load it once it answers: the timeout undoes it
		// then, as nobody confirms it.
		return fmt.Errorf("bird did not answer configure within %s (bird.timeout): %w", timeout, err)
	}
	if err != nil {
		return fmt.Errorf("bird rejected the rendered config (running config kept): %w", err)
	}
	switch {
	case watch:
		if err := a.confirm(ctx, cfg, up, rendered, call); err != nil {
			return err
		}
	case cfg.Bird.ConfirmTimeout > 0:
		if err := call(a.bird.Confirm); err != nil {
			return fmt.Errorf("confirm bird config: %w", err)
		}
	}
	if err := renameSynced(tmp, path); err != nil {
		return err
	}
	a.written, _ = stampOf(path)
	st, err := a.stateAfter(call)
	if err != nil {
		return fmt.Errorf("bird state after configure: %w", err)
	}
	a.applied, a.rejected = rendered, nil
	a.birdBoot, a.ownReconf = st.LastReboot, st.LastReconfig
	a.log.WithFields(logrus.Fields{fieldFile: path, fieldReconfig: st.LastReconfig}).Debug("bird config in place")
	return nil
}

// confirm waits for the sessions in up (those still configured) to be
// Established, then confirms; otherwise undoes the change.
func (a *Agent) confirm(ctx context.Context, cfg config.Config, up []string, rendered []byte, call func(func(context.Context) error) error) error {
	// Leave a quarter of BIRD's timeout (at least a second) for our own
	// undo, so the agent, not the timer, decides when it is alive.
	wait := cfg.Bird.ConfirmTimeout - max(cfg.Bird.ConfirmTimeout/4, time.Second)
	deadline := a.now().Add(max(wait, 0))
	var down []string
	for {
		var st BirdState
		err := call(func(c context.Context) (err error) { st, err = a.bird.State(c); return err })
		if err == nil {
			down = down[:0]
			for _, name := range up {
				if p, ok := st.Protocols[name]; ok && p.BGPState != "Established" {
					down = append(down, name)
				}
			}
			if len(down) == 0 {
				if err := call(a.bird.Confirm); err != nil {
					return fmt.Errorf("confirm bird config: %w", err)
				}
				return nil
			}
		}
		if !a.now().Before(deadline) || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(sessionPoll)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	undoErr := call(a.bird.Undo)
	st, stErr := a.stateAfter(call)
	if stErr == nil {
		a.ownReconf = st.LastReconfig // BIRD's undo is ours, not someone else's
	}
	if changedFor(a.applied, rendered, down) {
		a.rejected = rendered // our change broke them: do not repeat it
	}
	a.metrics.rollbacks.Inc()
	a.mu.Lock()
	a.status.Bird.Rollbacks++
	a.mu.Unlock()
	a.log.WithField(fieldSessions, down).Warn("sessions did not come back after configure: bird config rolled back")
	err := fmt.Errorf("session(s) %s did not return to Established within %s: %w", strings.Join(down, ", "), cfg.Bird.ConfirmTimeout, ErrRolledBack)
	if undoErr != nil && !errors.Is(undoErr, context.Canceled) {
		err = fmt.Errorf("%w (undo: %v; BIRD undoes it by itself when its timeout ends)", err, undoErr)
	}
	return err
}

func (a *Agent) stateAfter(call func(func(context.Context) error) error) (BirdState, error) {
	var st BirdState
	err := call(func(c context.Context) (err error) { st, err = a.bird.State(c); return err })
	return st, err
}

// syncBlackholes makes the kernel hold want and records what it holds.
func (a *Agent) syncBlackholes(want []netip.Prefix) error {
	ch, err := a.holes.Sync(want)
	if !ch.Empty() {
		a.log.WithFields(logrus.Fields{fieldAdded: someOf(ch.Added), fieldRemoved: someOf(ch.Removed)}).Info("kernel blackhole routes changed")
	}
	// After a clean sync the kernel holds want (Sync reads the table whole
	// at least every routes.FullSyncInterval); after a failed one, ask it.
	have, lerr := slices.Clone(want), error(nil)
	if err != nil {
		have, lerr = a.holes.List()
		err = errors.Join(err, lerr)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if lerr == nil {
		a.status.Blackholes = have
	}
	a.status.BlackholeError = ""
	if err != nil {
		a.holeFails++
		a.status.BlackholeError = err.Error()
	} else {
		a.holeFails = 0
	}
	a.metrics.setBlackholeFailures(a.holeFails)
	a.updateReady()
	return err
}

// resyncBlackholes reads the kernel table whole and puts back what is
// missing of what BIRD announces (e.g. a blackhole deleted by hand).
func (a *Agent) resyncBlackholes() {
	if a.holes == nil {
		return
	}
	a.mu.Lock()
	want := a.status.LastApply.Applied
	ok := a.status.LastApply.Result == agentapi.ResultOK
	a.mu.Unlock()
	if !ok || a.applied == nil {
		return // the apply's retries sync them
	}
	a.holes.Forget()
	if err := a.syncBlackholes(want); err != nil {
		a.log.WithError(err).Warn("blackhole resync failed")
	}
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
	la.RolledBack = errors.Is(err, ErrRolledBack)
	if result == agentapi.ResultOK {
		la.Applied = slices.Clone(applied)
		la.Failures = 0
		a.metrics.setApplyFailures(0)
		a.metrics.setAnnounced(applied)
	}
	a.updateReady()
}

// updateReady sets the readiness rule; a.mu must be held. Ready means: BIRD
// answers on its socket, the last apply succeeded, so BIRD runs the config
// rendered from the current inputs, and the kernel holds the blackholes. A
// down BGP session does not make the agent unready: it is the ToR's state,
// shown per peer.
func (a *Agent) updateReady() {
	switch {
	case !a.status.Bird.Up:
		msg := "bird does not answer on its control socket"
		if a.status.Bird.Error != "" {
			msg += ": " + a.status.Bird.Error
		}
		a.status.Ready, a.status.ReadyMessage = false, msg
	case a.status.LastApply.Result != agentapi.ResultOK:
		msg := "last apply: " + a.status.LastApply.Result
		if a.status.LastApply.Error != "" {
			msg += ": " + a.status.LastApply.Error
		}
		a.status.Ready, a.status.ReadyMessage = false, msg
	case a.status.BlackholeError != "":
		a.status.Ready, a.status.ReadyMessage = false, "kernel blackhole routes: "+a.status.BlackholeError
	default:
		a.status.Ready, a.status.ReadyMessage = true, ""
	}
	a.metrics.setReady(a.status.Ready)
}

// logPrefixes is how many prefixes a log line lists; the rest are counted.
const logPrefixes = 16

// someOf returns the first logPrefixes of ps as strings, and "…and N more"
// after them, so a first apply of 10,000 prefixes logs one short line.
func someOf(ps []netip.Prefix) []string {
	if len(ps) <= logPrefixes {
		return prefixStrings(ps)
	}
	return append(prefixStrings(ps[:logPrefixes]), fmt.Sprintf("…and %d more", len(ps)-logPrefixes))
}
