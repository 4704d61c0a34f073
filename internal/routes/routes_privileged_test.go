package routes_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/roost-net/roost/internal/routes"
	"github.com/roost-net/roost/internal/testenv"
)

// handleIn returns a netlink handle working in the named namespace.
func handleIn(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", ns, err)
	}
	t.Cleanup(h.Close)
	return h
}

// ipRoute is a route as `ip -j route show` prints it.
type ipRoute struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Metric   int    `json:"metric"`
}

// kernelRoutes returns the routes of table 'table' in namespace ns, IPv4 then
// IPv6, as ip(8) shows them ("blackhole 10.9.0.0/24 proto 167 metric 0"),
// leaving out the kernel's own (proto kernel).
func kernelRoutes(t *testing.T, ns, table string) []string {
	t.Helper()
	var out []string
	for _, family := range []string{"-4", "-6"} {
		js := testenv.Run(t, "ip", "-j", "-n", ns, family, "route", "show", "table", table)
		var rs []ipRoute
		if err := json.Unmarshal([]byte(js), &rs); err != nil {
			t.Fatalf("parse ip -j route output %q: %v", js, err)
		}
		for _, r := range rs {
			if r.Protocol == "kernel" {
				continue
			}
			// ip(8) leaves out the defaults.
			if r.Type == "" {
				r.Type = "unicast"
			}
			if r.Protocol == "" {
				r.Protocol = "boot"
			}
			out = append(out, fmt.Sprintf("%s %s proto %s metric %d", r.Type, r.Dst, r.Protocol, r.Metric))
		}
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// step is one Sync (or RemoveAll, when want is nil and removeAll is set) and
// what the kernel must hold afterwards.
type step struct {
	name      string
	before    [][]string // ip(8) commands run in the namespace first
	want      []netip.Prefix
	removeAll bool
	changes   string
	conflicts []string // prefixes that must be reported as conflicts
	kernel    []string // kernelRoutes afterwards
	list      string   // List() afterwards, space separated
}

func runSteps(t *testing.T, ns, table string, b *routes.Blackholes, steps []step) {
	t.Helper()
	for _, s := range steps {
		for _, argv := range s.before {
			testenv.Run(t, "ip", append([]string{"-n", ns}, argv...)...)
		}
		if len(s.before) > 0 {
			// Changes made behind Sync's back are found by a full
			// read, which Sync makes every FullSyncInterval.
			b.Forget()
		}
		var (
			ch  routes.Changes
			err error
		)
		if s.removeAll {
			ch, err = b.RemoveAll()
		} else {
			ch, err = b.Sync(s.want)
		}
		if got := ch.String(); got != s.changes {
			t.Errorf("%s: changes = %q, want %q", s.name, got, s.changes)
		}
		switch {
		case len(s.conflicts) == 0 && err != nil:
			t.Errorf("%s: %v", s.name, err)
		case len(s.conflicts) > 0 && !errors.Is(err, routes.ErrConflict):
			t.Errorf("%s: error %v, want a conflict for %q", s.name, err, s.conflicts)
		case len(s.conflicts) > 0:
			for _, p := range s.conflicts {
				if !strings.Contains(err.Error(), "blackhole "+p+": ") {
					t.Errorf("%s: error %q does not name %s", s.name, err, p)
				}
			}
		}
		if diff := cmp.Diff(s.kernel, kernelRoutes(t, ns, table)); diff != "" {
			t.Errorf("%s: kernel routes (-want +got):\n%s", s.name, diff)
		}
		list, err := b.List()
		if err != nil {
			t.Fatalf("%s: List: %v", s.name, err)
		}
		var got []string
		for _, p := range list {
			got = append(got, p.String())
		}
		if g := strings.Join(got, " "); g != s.list {
			t.Errorf("%s: List() = %q, want %q", s.name, g, s.list)
		}
	}
}

func TestPrivilegedBlackholes(t *testing.T) {
	testenv.Privileged(t)
	ns := testenv.NetNS(t, "bh")
	b := routes.NewBlackholes(handleIn(t, ns), 0)

	runSteps(t, ns, "main", b, []step{
		{
			name:    "first sync adds both families",
			want:    prefixes("10.9.0.0/24", "fd00:9::/64", "10.9.1.0/25"),
			changes: "+10.9.0.0/24 +10.9.1.0/25 +fd00:9::/64",
			kernel: []string{
				"blackhole 10.9.0.0/24 proto 167 metric 0",
				"blackhole 10.9.1.0/25 proto 167 metric 0",
				"blackhole fd00:9::/64 proto 167 metric 1024",
			},
			list: "10.9.0.0/24 10.9.1.0/25 fd00:9::/64",
		},
		{
			name:    "second sync changes nothing",
			want:    prefixes("10.9.1.0/25", "fd00:9::/64", "10.9.0.0/24"),
			changes: "no change",
			kernel: []string{
				"blackhole 10.9.0.0/24 proto 167 metric 0",
				"blackhole 10.9.1.0/25 proto 167 metric 0",
				"blackhole fd00:9::/64 proto 167 metric 1024",
			},
			list: "10.9.0.0/24 10.9.1.0/25 fd00:9::/64",
		},
		{
			name: "new set replaces the old and spares foreign routes",
			before: [][]string{
				{"route", "add", "blackhole", "10.9.2.0/24", "proto", "static"},
				{"route", "add", "unreachable", "10.9.3.0/24", "proto", "boot", "metric", "100"},
				{"-6", "route", "add", "blackhole", "fd00:b::/64", "proto", "static"},
				{"route", "add", "blackhole", "10.8.0.0/24", "proto", "static"},
			},
			want:      prefixes("10.9.1.0/25", "10.9.2.0/24", "10.9.3.0/24", "fd00:a::/64", "fd00:b::/64"),
			changes:   "+fd00:a::/64 -10.9.0.0/24 -fd00:9::/64",
			conflicts: []string{"10.9.2.0/24", "10.9.3.0/24", "fd00:b::/64"},
			kernel: []string{
				"blackhole 10.8.0.0/24 proto static metric 0",
				"blackhole 10.9.1.0/25 proto 167 metric 0",
				"blackhole 10.9.2.0/24 proto static metric 0",
				"unreachable 10.9.3.0/24 proto boot metric 100",
				"blackhole fd00:a::/64 proto 167 metric 1024",
				"blackhole fd00:b::/64 proto static metric 1024",
			},
			list: "10.9.1.0/25 fd00:a::/64",
		},
		{
			name: "a foreign route beside ours makes ours withdraw",
			before: [][]string{
				{"route", "add", "unreachable", "10.9.1.0/25", "proto", "boot", "metric", "50"},
			},
			want:      prefixes("10.9.1.0/25", "fd00:a::/64"),
			changes:   "-10.9.1.0/25",
			conflicts: []string{"10.9.1.0/25"},
			kernel: []string{
				"blackhole 10.8.0.0/24 proto static metric 0",
				"unreachable 10.9.1.0/25 proto boot metric 50",
				"blackhole 10.9.2.0/24 proto static metric 0",
				"unreachable 10.9.3.0/24 proto boot metric 100",
				"blackhole fd00:a::/64 proto 167 metric 1024",
				"blackhole fd00:b::/64 proto static metric 1024",
			},
			list: "fd00:a::/64",
		},
		{
			name:      "remove all leaves foreign routes",
			removeAll: true,
			changes:   "-fd00:a::/64",
			kernel: []string{
				"blackhole 10.8.0.0/24 proto static metric 0",
				"unreachable 10.9.1.0/25 proto boot metric 50",
				"blackhole 10.9.2.0/24 proto static metric 0",
				"unreachable 10.9.3.0/24 proto boot metric 100",
				"blackhole fd00:b::/64 proto static metric 1024",
			},
		},
	})
}

func TestPrivilegedBlackholesOtherTable(t *testing.T) {
	testenv.Privileged(t)
	ns := testenv.NetNS(t, "bht")
	main := routes.NewBlackholes(handleIn(t, ns), 0)
	b := routes.NewBlackholes(handleIn(t, ns), 1000)

	if _, err := main.Sync(prefixes("10.7.0.0/24")); err != nil {
		t.Fatal(err)
	}
	runSteps(t, ns, "1000", b, []step{
		{
			name:    "adds to table 1000",
			want:    prefixes("10.7.0.0/24", "fd00:7::/64"),
			changes: "+10.7.0.0/24 +fd00:7::/64",
			kernel: []string{
				"blackhole 10.7.0.0/24 proto 167 metric 0",
				"blackhole fd00:7::/64 proto 167 metric 1024",
			},
			list: "10.7.0.0/24 fd00:7::/64",
		},
		{
			name:    "removes from table 1000 only",
			changes: "-10.7.0.0/24 -fd00:7::/64",
		},
	})
	if diff := cmp.Diff([]string{"blackhole 10.7.0.0/24 proto 167 metric 0"}, kernelRoutes(t, ns, "main")); diff != "" {
		t.Errorf("main table (-want +got):\n%s", diff)
	}
}

// TestPrivilegedBlackholeDrops shows what the routes are for: with a default
// route to the fabric, an unassigned pod address inside the blackholed
// PodCIDR is dropped on the node, while a pod's own /32 still wins.
func TestPrivilegedBlackholeDrops(t *testing.T) {
	testenv.Privileged(t)
	node := testenv.NetNS(t, "bhn")
	tor := testenv.NetNS(t, "bhr")
	up, down := testenv.Name("u"), testenv.Name("d")
	testenv.Veth(t, node, up, "192.0.2.1/30", tor, down, "192.0.2.2/30")
	testenv.Run(t, "ip", "-n", node, "route", "add", "default", "via", "192.0.2.2")
	pod, podPeer := testenv.Name("p"), testenv.Name("q")
	testenv.Veth(t, node, pod, "", tor, podPeer, "")
	// The route a CNI adds for one pod (the pod's end lives elsewhere;
	// only the node's routing decision matters here).
	testenv.Run(t, "ip", "-n", node, "route", "add", "10.9.0.5/32", "dev", pod, "proto", "boot")

	routeGet := func(addr string) (string, error) {
		out, err := exec.Command("ip", "-n", node, "route", "get", addr).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	// Before: the unassigned address goes back to the ToR.
	if out, err := routeGet("10.9.0.6"); err != nil || !strings.Contains(out, "via 192.0.2.2") {
		t.Fatalf("before the blackhole, route get 10.9.0.6 = %q, %v; want via the ToR", out, err)
	}

	b := routes.NewBlackholes(handleIn(t, node), 0)
	if _, err := b.Sync(prefixes("10.9.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if out, err := routeGet("10.9.0.6"); err == nil || !strings.Contains(out, "Invalid argument") {
		t.Errorf("with the blackhole, route get 10.9.0.6 = %q, %v; want Invalid argument", out, err)
	}
	if out, err := routeGet("10.9.0.5"); err != nil || !strings.Contains(out, "dev "+pod) {
		t.Errorf("with the blackhole, route get 10.9.0.5 = %q, %v; want the pod's route", out, err)
	}
	// A socket that tries to send to the unassigned address is refused.
	out, err := exec.Command("ip", "netns", "exec", node, "bash", "-c", "echo x >/dev/udp/10.9.0.6/9").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Invalid argument") {
		t.Errorf("sending to 10.9.0.6: %v, %q; want Invalid argument", err, out)
	}

	if _, err := b.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	if out, err := routeGet("10.9.0.6"); err != nil || !strings.Contains(out, "via 192.0.2.2") {
		t.Errorf("after RemoveAll, route get 10.9.0.6 = %q, %v; want via the ToR", out, err)
	}
}

// TestPrivilegedBlackholeMetrics: SyncMetrics moves a prefix between
// metrics in both families, on the remembered path and on a full read,
// and the table never holds fewer than one route per prefix.
func TestPrivilegedBlackholeMetrics(t *testing.T) {
	testenv.Privileged(t)
	ns := testenv.NetNS(t, "bhm")
	b := routes.NewBlackholes(handleIn(t, ns), 1001)
	tagged := uint32(1<<24 + 5)
	steps := []struct {
		want   map[netip.Prefix]uint32
		forget bool
		kernel []string
	}{
		{
			want:   map[netip.Prefix]uint32{netip.MustParsePrefix("192.0.2.10/32"): 0, netip.MustParsePrefix("2001:db8::10/128"): 0},
			kernel: []string{"blackhole 192.0.2.10 proto 167 metric 0", "blackhole 2001:db8::10 proto 167 metric 1024"},
		},
		{
			want:   map[netip.Prefix]uint32{netip.MustParsePrefix("192.0.2.10/32"): tagged, netip.MustParsePrefix("2001:db8::10/128"): tagged},
			kernel: []string{"blackhole 192.0.2.10 proto 167 metric 16777221", "blackhole 2001:db8::10 proto 167 metric 16777221"},
		},
		{
			want:   map[netip.Prefix]uint32{netip.MustParsePrefix("192.0.2.10/32"): 0, netip.MustParsePrefix("2001:db8::10/128"): 0},
			forget: true,
			kernel: []string{"blackhole 192.0.2.10 proto 167 metric 0", "blackhole 2001:db8::10 proto 167 metric 1024"},
		},
		{
			want:   map[netip.Prefix]uint32{netip.MustParsePrefix("192.0.2.10/32"): tagged, netip.MustParsePrefix("2001:db8::10/128"): 0},
			kernel: []string{"blackhole 192.0.2.10 proto 167 metric 16777221", "blackhole 2001:db8::10 proto 167 metric 1024"},
		},
	}
	for i, s := range steps {
		if s.forget {
			b.Forget()
		}
		ch, err := b.SyncMetrics(s.want)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if i > 0 && !ch.Empty() {
			t.Errorf("step %d: a change of metric reported as %s, want no prefix added or removed", i, ch)
		}
		if diff := cmp.Diff(s.kernel, kernelRoutes(t, ns, "1001")); diff != "" {
			t.Errorf("step %d: table 1001 (-want +got):\n%s", i, diff)
		}
	}
}
