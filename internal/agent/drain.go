package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdconf"
)

// drainFileVersion is the version of the drain state file's format.
const drainFileVersion = 1

// drainRecord is the drain state file's content.
type drainRecord struct {
	Version    int       `json:"version"`
	State      string    `json:"state"`
	Since      time.Time `json:"since,omitzero"`
	WithdrawAt time.Time `json:"withdrawAt,omitzero"`
}

// LoadDrain reads the drain state kept in path (config drain.stateFile).
// A missing file is a node not drained. A file that does not parse is an
// error naming it: guessing either way could put a node under maintenance
// back into service, or keep a healthy one out.
func LoadDrain(path string) (agentapi.Drain, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return agentapi.Drain{State: agentapi.DrainNone}, nil
	}
	if err != nil {
		return agentapi.Drain{}, fmt.Errorf("drain state %s: %w", path, err)
	}
	var r drainRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return agentapi.Drain{}, fmt.Errorf("drain state %s: %w (fix it, or remove it to announce everything)", path, err)
	}
	if r.Version != drainFileVersion {
		return agentapi.Drain{}, fmt.Errorf("drain state %s: version %d, this agent reads %d", path, r.Version, drainFileVersion)
	}
	switch r.State {
	case agentapi.DrainNone:
		return agentapi.Drain{State: agentapi.DrainNone}, nil
	case agentapi.DrainDraining, agentapi.DrainDrained:
		return agentapi.Drain{State: r.State, Since: r.Since, WithdrawAt: r.WithdrawAt}, nil
	}
	return agentapi.Drain{}, fmt.Errorf("drain state %s: state %q is not %s, %s or %s", path, r.State, agentapi.DrainNone, agentapi.DrainDraining, agentapi.DrainDrained)
}

// saveDrain writes d to path whole or not at all (a temp file renamed over
// it, synced), making its directory if needed.
func saveDrain(path string, d agentapi.Drain) error {
	data, err := json.Marshal(drainRecord{Version: drainFileVersion, State: d.State, Since: d.Since, WithdrawAt: d.WithdrawAt})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("drain state %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".drain-*")
	if err != nil {
		return fmt.Errorf("drain state %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("drain state %s: %w", path, err)
	}
	return nil
}

// birdDrain is what BIRD is given for the drain state d.
func birdDrain(d agentapi.Drain) birdconf.Drain {
	switch d.State {
	case agentapi.DrainDraining:
		return birdconf.DrainShutdown
	case agentapi.DrainDrained:
		return birdconf.DrainWithdrawn
	}
	return birdconf.NotDrained
}

// Drain takes the node out of service: everything it announces gets
// GRACEFUL_SHUTDOWN at once, and is withdrawn after wait (at once for 0),
// the sessions staying up. The state is written to the drain state file
// first: if that fails, nothing changes and the error says why. Draining
// a node that is draining or drained changes nothing.
func (a *Agent) Drain(wait time.Duration) (agentapi.Drain, error) {
	if wait < 0 {
		return agentapi.Drain{}, fmt.Errorf("drain: wait %s is negative", wait)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.drain.State != agentapi.DrainNone {
		return a.drain, nil
	}
	now := a.now()
	d := agentapi.Drain{State: agentapi.DrainDraining, Since: now, WithdrawAt: now.Add(wait)}
	if wait == 0 {
		d.State = agentapi.DrainDrained
	}
	if err := saveDrain(a.cfg.Drain.StateFile, d); err != nil {
		return a.drain, fmt.Errorf("drain: nothing changed: %w", err)
	}
	a.setDrainLocked(d)
	a.log.WithFields(logrus.Fields{"state": d.State, "withdrawAt": d.WithdrawAt}).Info("draining the node")
	return d, nil
}

// Undrain announces everything again, also while a drain waits. As Drain,
// it writes the state file first.
func (a *Agent) Undrain() (agentapi.Drain, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := agentapi.Drain{State: agentapi.DrainNone}
	if err := saveDrain(a.cfg.Drain.StateFile, d); err != nil {
		return a.drain, fmt.Errorf("undrain: nothing changed: %w", err)
	}
	if a.drain.State != agentapi.DrainNone {
		a.log.Info("undrained: announcing everything again")
	}
	a.setDrainLocked(d)
	return d, nil
}

// setDrainLocked records d, tells the drain loop and asks for an apply;
// a.mu must be held.
func (a *Agent) setDrainLocked(d agentapi.Drain) {
	a.drain = d
	a.metrics.setDrain(d.State)
	select {
	case a.drainKick <- struct{}{}:
	default:
	}
	a.trigger()
}

// drainLoop withdraws everything when a drain's wait ends, until ctx
// does.
func (a *Agent) drainLoop(ctx context.Context) {
	for {
		a.mu.Lock()
		d := a.drain
		a.mu.Unlock()
		var (
			due <-chan time.Time
			t   *time.Timer
		)
		if d.State == agentapi.DrainDraining {
			t = time.NewTimer(max(d.WithdrawAt.Sub(a.now()), 0))
			due = t.C
		}
		select {
		case <-ctx.Done():
		case <-a.drainKick:
		case <-due:
			a.withdrawIfDue()
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// withdrawIfDue moves a drain whose wait is over to drained. If the state
// file cannot be written, the node is withdrawn all the same (the operator
// asked for it) and the status says the state would not survive a
// restart.
func (a *Agent) withdrawIfDue() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.drain.State != agentapi.DrainDraining || a.now().Before(a.drain.WithdrawAt) {
		return
	}
	d := a.drain
	d.State = agentapi.DrainDrained
	if err := saveDrain(a.cfg.Drain.StateFile, d); err != nil {
		d.Error = err.Error()
		a.log.WithError(err).Warn("drained, but the drain state was not saved")
	}
	a.log.Info("drain wait over: withdrawing everything")
	a.setDrainLocked(d)
}
