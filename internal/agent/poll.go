package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/roost-net/roost/internal/agentapi"
)

// pollResult is one poll of BIRD.
type pollResult struct {
	start time.Time // when the poll was sent
	state BirdState
	err   error
}

// pollLoop polls BIRD every a.poll and hands the newest result to out,
// dropping one the loop has not taken yet.
func (a *Agent) pollLoop(ctx context.Context, out chan pollResult) {
	t := time.NewTicker(a.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pr := a.pollOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case <-out:
		default:
		}
		out <- pr
	}
}

// pollOnce asks BIRD for its state, bounded by bird.timeout, and records it.
// When BIRD does not answer, every peer's state becomes unknown.
func (a *Agent) pollOnce(ctx context.Context) pollResult {
	a.mu.Lock()
	timeout := a.cfg.Bird.Timeout
	a.mu.Unlock()
	pr := pollResult{start: a.now()}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	pr.state, pr.err = a.poller.State(cctx)
	cancel()
	if ctx.Err() != nil {
		return pr
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &a.status.Bird
	b.Polled = a.now()
	if pr.err != nil {
		b.Up, b.Error = false, pr.err.Error()
		for i := range a.status.Peers {
			p := &a.status.Peers[i]
			p.State, p.BGPState, p.Exported = agentapi.StateUnknown, agentapi.StateUnknown, 0
		}
		a.metrics.setBirdUp(false)
		a.metrics.setPeers(a.status.Peers, false)
		a.updateReady()
		return pr
	}
	st := pr.state
	b.Up, b.Error, b.Version = true, "", st.Version
	b.LastReboot, b.LastReconfig = st.LastReboot.String(), st.LastReconfig.String()
	a.boot = st.LastReboot
	for i := range a.status.Peers {
		p := &a.status.Peers[i]
		ps := st.Protocols[p.Protocol]
		p.State, p.BGPState, p.Exported = ps.State, ps.BGPState, 0
		if ps.BGPState == "Established" {
			p.Exported = ps.Exported
		}
		if ps.State == "" {
			p.State = "missing" // not in BIRD's config (yet)
		}
	}
	a.metrics.setBirdUp(true)
	a.metrics.setPeers(a.status.Peers, true)
	a.updateReady()
	return pr
}

// applyDue says why an apply is due now after poll cur (prev is the poll
// before it), or "" when none is. BIRD coming back or restarting is acted
// on once, when it is seen, not on every poll after: the apply's own
// backoff handles retries. A reconfiguration the agent did not make forces
// its config back in.
func (a *Agent) applyDue(prev, cur pollResult, failing bool) string {
	if cur.err != nil {
		return ""
	}
	st := cur.state
	switch {
	case prev.err != nil && (failing || a.applied != nil && !sameTime(st.LastReboot, a.birdBoot)):
		return "bird answers again"
	case prev.err == nil && a.applied != nil && !sameTime(st.LastReboot, prev.state.LastReboot) && !sameTime(st.LastReboot, a.birdBoot):
		return "bird restarted"
	case a.applied != nil && !failing && sameTime(st.LastReboot, a.birdBoot) && !sameTime(st.LastReconfig, a.ownReconf) &&
		!sameTime(st.LastReconfig, prev.state.LastReconfig) && cur.start.After(a.appliedEnd):
		a.mu.Lock()
		a.force = true
		a.status.Bird.ExternalReconfigs++
		a.mu.Unlock()
		a.metrics.externalReconfigs.Inc()
		return fmt.Sprintf("bird was reconfigured by someone else (last reconfiguration %s, ours %s)", st.LastReconfig, a.ownReconf)
	}
	return ""
}

// sameTime reports whether two of BIRD's times are one instant: BIRD
// prints them to the millisecond, converting from its monotonic clock
// anew at each call.
func sameTime(a, b time.Time) bool {
	const tolerance = 20 * time.Millisecond
	d := a.Sub(b)
	return d > -tolerance && d < tolerance
}

// repair runs while BIRD does not answer: if bird.conf is missing or does
// not parse (Check, i.e. bird -p), it is replaced with the last config BIRD
// accepted, or else with the current render when that parses, so that BIRD
// can start.
func (a *Agent) repair(ctx context.Context) {
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	if a.check == nil {
		a.setRepair("bird.conf is not checked while BIRD is down: no bird binary to parse it with (bird.binary)")
		return
	}
	path := cfg.Bird.ConfigFile()
	stamp, err := stampOf(path)
	if err == nil && stamp == a.checked {
		return // parsed already, unchanged since
	}
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 4*cfg.Bird.Timeout)
		err = a.check(cctx, path)
		cancel()
		if err == nil {
			a.checked = stamp
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	bad := err
	good := a.applied
	source := "the last config BIRD accepted"
	if good == nil {
		var rerr error
		if good, _, rerr = a.Rendered(); rerr != nil || good == nil {
			a.setRepair(fmt.Sprintf("%s cannot be used by BIRD (%v) and there is no good config to put instead", path, bad))
			return
		}
		source = "the current render"
	}
	tmp, err := writeTemp(path, good, cfg.Bird)
	if err != nil {
		a.setRepair(fmt.Sprintf("repair %s: %v", path, err))
		return
	}
	defer os.Remove(tmp)
	cctx, cancel := context.WithTimeout(ctx, 4*cfg.Bird.Timeout)
	err = a.check(cctx, tmp)
	cancel()
	if err != nil {
		a.setRepair(fmt.Sprintf("%s cannot be used by BIRD (%v), and %s does not parse either: %v", path, bad, source, err))
		return
	}
	if err := renameSynced(tmp, path); err != nil {
		a.setRepair(fmt.Sprintf("repair %s: %v", path, err))
		return
	}
	what := "does not parse"
	if errors.Is(bad, fs.ErrNotExist) {
		what = "is missing"
	}
	msg := fmt.Sprintf("%s %s while BIRD is down: replaced with %s (%v)", path, what, source, bad)
	a.log.WithField(fieldFile, path).Warn(msg)
	a.setRepair(msg)
	a.checked, _ = stampOf(path)
}

func (a *Agent) setRepair(msg string) {
	a.mu.Lock()
	a.status.Bird.Repair = msg
	a.mu.Unlock()
}

// fileStamp identifies one version of a file well enough to skip parsing it
// again.
type fileStamp struct {
	size  int64
	mtime time.Time
	inode uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime(), inode: inodeOf(fi)}, nil
}
