package testenv

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// NetNS creates a fresh named network namespace (name from Name(prefix)) with
// lo up, and removes it, with every process still inside, when the test ends.
func NetNS(tb testing.TB, prefix string) string {
	tb.Helper()
	Privileged(tb)
	ns := Name(prefix)
	Run(tb, "ip", "netns", "add", ns)
	tb.Cleanup(func() { DeleteNetNS(ns) })
	Run(tb, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// DeleteNetNS kills every process in the namespace and deletes it. Errors are
// ignored: it is cleanup.
func DeleteNetNS(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			_ = exec.Command("kill", "-9", pid).Run()
		}
	}
	_ = exec.Command("ip", "netns", "del", ns).Run()
}

// Veth links namespace nsA and namespace nsB with a veth pair, gives each end
// its address (CIDR notation, e.g. "10.0.1.2/30"; empty for none) and sets
// both ends up. An empty namespace name means the test's own namespace.
func Veth(tb testing.TB, nsA, ifA, addrA, nsB, ifB, addrB string) {
	tb.Helper()
	Run(tb, "ip", "link", "add", ifA, "type", "veth", "peer", "name", ifB)
	for _, end := range []struct{ ns, ifc, addr string }{{nsA, ifA, addrA}, {nsB, ifB, addrB}} {
		if end.ns != "" {
			Run(tb, "ip", "link", "set", end.ifc, "netns", end.ns)
		}
		if end.addr != "" {
			Run(tb, "ip", ipArgs(end.ns, "addr", "add", end.addr, "dev", end.ifc)...)
		}
		Run(tb, "ip", ipArgs(end.ns, "link", "set", end.ifc, "up")...)
	}
}

// ipArgs returns the arguments of an ip(8) command run against namespace ns.
func ipArgs(ns string, args ...string) []string {
	if ns == "" {
		return args
	}
	return append([]string{"-n", ns}, args...)
}

// InNS returns the argv that runs argv inside namespace ns (argv itself when
// ns is empty).
func InNS(ns string, argv ...string) []string {
	if ns == "" {
		return argv
	}
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// InNetNS runs f on a thread inside the named network namespace, and moves
// the thread back after; if that fails, the thread stays locked and Go
// discards it when f's goroutine ends. Sockets f opens stay in ns.
func InNetNS(ns string, f func() error) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = f()
		if backErr := netns.Set(orig); backErr != nil {
			errc <- errors.Join(err, backErr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}
