package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/agentapi"
)

// TestDrain: a drain renders GRACEFUL_SHUTDOWN at once and withdraws after
// the wait, keeps its state in the file (LoadDrain reads it back, as a
// restarted agent does), and undrain goes back; a state file that cannot
// be written changes nothing.
func TestDrain(t *testing.T) {
	cfg := testConfig(t, "10.244.1.0/24")
	cfg.Drain.StateFile = filepath.Join(t.TempDir(), "state", "drain.json")
	bird := &fakeBird{boot: "b1"}
	h := &harness{t: t, bird: bird, holes: &fakeHoles{}, cfg: cfg}
	h.a = New(Options{Config: cfg, Bird: bird, Blackholes: h.holes, PollInterval: 20 * time.Millisecond})
	runAgent(t, h.a)
	h.waitStatus("first apply", applied("10.244.1.0/24"))
	running := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond(bird.runningText()) {
			if time.Now().After(deadline) {
				t.Fatalf("BIRD does not run %s:\n%s", what, bird.runningText())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	const gshut, drained = "bgp_community.add((65535, 0));", "# Drained (roostctl drain)"
	if strings.Contains(bird.runningText(), gshut) {
		t.Fatal("GRACEFUL_SHUTDOWN before any drain")
	}

	d, err := h.a.Drain(300 * time.Millisecond)
	if err != nil || d.State != agentapi.DrainDraining {
		t.Fatalf("Drain: %+v, %v", d, err)
	}
	running("GRACEFUL_SHUTDOWN", func(s string) bool { return strings.Contains(s, gshut) })
	if got, err := LoadDrain(cfg.Drain.StateFile); err != nil || got.State != agentapi.DrainDraining || !got.WithdrawAt.Equal(d.WithdrawAt) {
		t.Errorf("state file while draining: %+v, %v", got, err)
	}
	running("the withdrawal", func(s string) bool { return strings.Contains(s, drained) && !strings.Contains(s, gshut) })
	if s := h.a.Status(); s.Drain.State != agentapi.DrainDrained || !s.Ready {
		t.Errorf("status drained: %+v ready %v", s.Drain, s.Ready)
	}
	if got, _ := LoadDrain(cfg.Drain.StateFile); got.State != agentapi.DrainDrained {
		t.Errorf("state file drained: %+v", got)
	}
	// Again: nothing changes.
	if again, err := h.a.Drain(time.Hour); err != nil || again.State != agentapi.DrainDrained || !again.Since.Equal(d.Since) {
		t.Errorf("drain of a drained node: %+v, %v", again, err)
	}

	// A state file that cannot be written: undrain fails and changes
	// nothing.
	dir := filepath.Dir(cfg.Drain.StateFile)
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes anyway
		if _, err := h.a.Undrain(); err == nil || h.a.Status().Drain.State != agentapi.DrainDrained {
			t.Errorf("undrain with an unwritable state file: %v, state %s", err, h.a.Status().Drain.State)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if d, err := h.a.Undrain(); err != nil || d.State != agentapi.DrainNone {
		t.Fatalf("Undrain: %+v, %v", d, err)
	}
	running("everything again", func(s string) bool { return !strings.Contains(s, drained) && !strings.Contains(s, gshut) })
}

func TestLoadDrain(t *testing.T) {
	dir := t.TempDir()
	if d, err := LoadDrain(filepath.Join(dir, "missing.json")); err != nil || d.State != agentapi.DrainNone {
		t.Errorf("missing file: %+v, %v", d, err)
	}
	for name, text := range map[string]string{
		"garbage":     "{",
		"old version": `{"version": 0, "state": "drained"}`,
		"bad state":   `{"version": 1, "state": "half"}`,
	} {
		path := filepath.Join(dir, "drain.json")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadDrain(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}
