package loader

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// TestPrivilegedHostAddresses checks that the loader finds the node's own
// addresses on its interfaces (169.254.1.1 on every host-side veth, the
// node's address towards the external namespace; no loopback), and that
// WatchAddresses reports an address added and one removed, after which
// HostAddresses has them.
func TestPrivilegedHostAddresses(t *testing.T) {
	l := newLab(t)
	ld := l.open(t, AttachAuto)
	got, err := ld.HostAddresses()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr(gatewayIP), netip.MustParseAddr("192.168.77.1")}
	for _, a := range got {
		if a.IsLoopback() || a.IsUnspecified() {
			t.Errorf("HostAddresses has %s", a)
		}
	}
	for _, a := range want {
		if !slices.Contains(got, a) {
			t.Errorf("HostAddresses = %v, lacks %s", got, a)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- ld.WatchAddresses(ctx, func() { changed <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchAddresses: %v", err)
		}
	})
	// The subscription is made on the watcher's goroutine: retry the
	// change until it is seen, so a change made before it does not count.
	wait := func(what string, change func(), has bool) {
		t.Helper()
		added := netip.MustParseAddr("10.77.0.1")
		deadline := time.Now().Add(10 * time.Second)
		for {
			change()
			select {
			case <-changed:
				got, err := ld.HostAddresses()
				if err != nil {
					t.Fatal(err)
				}
				if slices.Contains(got, added) == has {
					return
				}
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reported within 10 s", what)
			}
		}
	}
	wait("address added", func() { _ = exec.Command("ip", "-n", l.node, "addr", "replace", "10.77.0.1/32", "dev", "lo").Run() }, true)
	wait("address removed", func() { _ = exec.Command("ip", "-n", l.node, "addr", "del", "10.77.0.1/32", "dev", "lo").Run() }, false)
}
