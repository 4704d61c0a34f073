package syncd

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func wl(ns, name string, ips ...string) Workload {
	return Workload{Namespace: ns, Name: name, IPs: addrs(ips...), Labels: map[string]string{"app": name}}
}

// describe returns the registry's workloads as text, one per line:
// "ns/name source ips [expires]".
func describe(r *registry) string {
	var b strings.Builder
	for _, e := range r.list() {
		fmt.Fprintf(&b, "%s %s %v", e.ID(), e.Source, e.IPs)
		if !e.Expires.IsZero() {
			fmt.Fprintf(&b, " expires %s", e.Expires.Format("15:04:05"))
		}
		b.WriteString("\n")
	}
	for a, id := range r.owners {
		if _, ok := r.get(id); !ok {
			fmt.Fprintf(&b, "stale owner %s of %s\n", id, a)
		}
	}
	return b.String()
}

func TestRegistry(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	r := newRegistry(30 * time.Second)
	if _, changed := r.setFile([]Workload{wl("default", "vm1", "10.0.9.10")}); !changed {
		t.Error("setFile of a first workload: not changed")
	}
	if _, changed := r.setFile([]Workload{wl("default", "vm1", "10.0.9.10")}); changed {
		t.Error("setFile of the same workloads again: changed")
	}

	step := func(what string, f func() error, wantErr error, want string) {
		t.Helper()
		err := f()
		if !errors.Is(err, wantErr) {
			t.Errorf("%s: err = %v, want %v", what, err, wantErr)
		}
		if got := describe(r); got != want {
			t.Errorf("%s: registry:\n%s\nwant:\n%s", what, got, want)
		}
	}
	put := func(w Workload, at time.Time, wantCreated, wantChanged bool) func() error {
		return func() error {
			created, changed, err := r.put(w, at)
			if err == nil && (created != wantCreated || changed != wantChanged) {
				t.Errorf("put %s: created %v, changed %v; want %v, %v", w.ID(), created, changed, wantCreated, wantChanged)
			}
			return err
		}
	}
	base := "default/vm1 file [10.0.9.10]\n"
	step("register vm2", put(wl("default", "vm2", "10.0.9.20"), t0, true, true), nil,
		base+"default/vm2 api [10.0.9.20] expires 12:00:30\n")
	step("register vm2 again, unchanged", put(wl("default", "vm2", "10.0.9.20"), t0.Add(10*time.Second), false, false), nil,
		base+"default/vm2 api [10.0.9.20] expires 12:00:40\n")
	step("move vm2 to another address", put(wl("default", "vm2", "10.0.9.21"), t0.Add(10*time.Second), false, true), nil,
		base+"default/vm2 api [10.0.9.21] expires 12:00:40\n")
	after := base + "default/vm2 api [10.0.9.21] expires 12:00:40\n"
	step("vm3 takes the file's address", put(wl("default", "vm3", "10.0.9.30", "10.0.9.10"), t0, false, false), ErrAddressInUse, after)
	step("vm3 takes vm2's address", put(wl("default", "vm3", "10.0.9.21"), t0, false, false), ErrAddressInUse, after)
	step("vm2's old address is free", put(wl("other", "vm3", "10.0.9.20"), t0.Add(10*time.Second), true, true), nil,
		after+"other/vm3 api [10.0.9.20] expires 12:00:40\n")
	after += "other/vm3 api [10.0.9.20] expires 12:00:40\n"
	step("register the file's vm1", put(wl("default", "vm1", "10.0.9.99"), t0, false, false), ErrFromFile, after)
	step("heartbeat the file's vm1", func() error { _, err := r.heartbeat("default/vm1", t0); return err }, ErrFromFile, after)
	step("remove the file's vm1", func() error { _, err := r.remove("default/vm1"); return err }, ErrFromFile, after)
	step("heartbeat an unknown one", func() error { _, err := r.heartbeat("default/vm9", t0); return err }, ErrNotFound, after)
	step("remove an unknown one", func() error { _, err := r.remove("default/vm9"); return err }, ErrNotFound, after)

	step("heartbeat vm2", func() error { _, err := r.heartbeat("default/vm2", t0.Add(20*time.Second)); return err }, nil,
		base+"default/vm2 api [10.0.9.21] expires 12:00:50\nother/vm3 api [10.0.9.20] expires 12:00:40\n")
	step("expire before the timeout", func() error {
		if gone := r.expire(t0.Add(39 * time.Second)); len(gone) != 0 {
			t.Errorf("expired %v, want none", gone)
		}
		return nil
	}, nil, base+"default/vm2 api [10.0.9.21] expires 12:00:50\nother/vm3 api [10.0.9.20] expires 12:00:40\n")
	step("expire at vm3's timeout", func() error {
		if gone := r.expire(t0.Add(40 * time.Second)); len(gone) != 1 || gone[0].ID() != "other/vm3" {
			t.Errorf("expired %v, want other/vm3", gone)
		}
		return nil
	}, nil, base+"default/vm2 api [10.0.9.21] expires 12:00:50\n")
	step("remove vm2", func() error { _, err := r.remove("default/vm2"); return err }, nil, base)
	step("vm2's address is free again", put(wl("default", "vm4", "10.0.9.21"), t0, true, true), nil,
		base+"default/vm4 api [10.0.9.21] expires 12:00:30\n")

	// The file wins: a file workload that takes an API workload's name or
	// address removes it.
	step("the file takes vm4's address and vm5's name", func() error {
		if _, _, err := r.put(wl("default", "vm5", "10.0.9.50"), t0); err != nil {
			return err
		}
		if _, _, err := r.put(wl("default", "vm6", "10.0.9.60"), t0); err != nil {
			return err
		}
		displaced, changed := r.setFile([]Workload{wl("default", "vm1", "10.0.9.10", "10.0.9.21"), wl("default", "vm5", "10.0.9.51")})
		var ids []string
		for _, w := range displaced {
			ids = append(ids, w.ID())
		}
		if got := strings.Join(ids, " "); got != "default/vm4 default/vm5" || !changed {
			t.Errorf("displaced %q, changed %v; want default/vm4 default/vm5, changed", got, changed)
		}
		return nil
	}, nil, "default/vm1 file [10.0.9.10 10.0.9.21]\ndefault/vm5 file [10.0.9.51]\ndefault/vm6 api [10.0.9.60] expires 12:00:30\n")
}

func TestRegistryLimit(t *testing.T) {
	r := newRegistry(time.Minute)
	now := time.Now()
	for i := range MaxAPIWorkloads {
		if _, _, err := r.put(wl("default", fmt.Sprintf("vm%d", i), fmt.Sprintf("10.%d.%d.1", i/256, i%256)), now); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.put(wl("default", "one-more", "192.0.2.1"), now); !errors.Is(err, ErrTooMany) {
		t.Errorf("registering workload %d: %v, want ErrTooMany", MaxAPIWorkloads+1, err)
	}
	// Updating a registered one is still fine.
	if _, _, err := r.put(wl("default", "vm0", "192.0.2.1"), now); err != nil {
		t.Errorf("updating a workload at the limit: %v", err)
	}
}
