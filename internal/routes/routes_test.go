package routes

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, pfx(s))
	}
	return out
}

// ours returns a blackhole route of protocol Protocol.
func ours(s string) kroute {
	return kroute{Prefix: pfx(s), Protocol: Protocol, Type: unix.RTN_BLACKHOLE}
}

// other returns a route of protocol proto and type typ.
func other(s string, proto netlink.RouteProtocol, typ int) kroute {
	return kroute{Prefix: pfx(s), Protocol: proto, Type: typ}
}

// text renders a plan as one line per decision.
func (c changes) text() []string {
	var out []string
	for _, r := range c.del {
		out = append(out, fmt.Sprintf("del %s %s", r.Prefix, r.describe()))
	}
	for _, p := range c.add {
		out = append(out, "add "+p.String())
	}
	for _, err := range c.conflicts {
		if !errors.Is(err, ErrConflict) {
			out = append(out, "conflict error not wrapping ErrConflict: "+err.Error())
			continue
		}
		out = append(out, "conflict "+err.Error())
	}
	return out
}

func TestPlan(t *testing.T) {
	withMetric := func(r kroute, m int) kroute { r.Priority = m; return r }
	tests := []struct {
		name   string
		routes []kroute
		want   []netip.Prefix
		plan   []string
		metric uint32 // of every wanted prefix
	}{
		{
			name: "empty table gets every wanted prefix",
			want: pfxs("fd00:1::/64", "10.1.0.0/24"),
			plan: []string{"add 10.1.0.0/24", "add fd00:1::/64"},
		},
		{
			name:   "nothing to do when in place",
			routes: []kroute{ours("10.1.0.0/24"), withMetric(ours("fd00:1::/64"), 1024)},
			want:   pfxs("10.1.0.0/24", "fd00:1::/64"),
		},
		{
			name:   "unwanted routes of ours are deleted",
			routes: []kroute{ours("10.1.0.0/24"), ours("10.2.0.0/24"), withMetric(ours("fd00:2::/64"), 1024)},
			want:   pfxs("10.1.0.0/24"),
			plan: []string{
				"del 10.2.0.0/24 blackhole proto 167 metric 0",
				"del fd00:2::/64 blackhole proto 167 metric 1024",
			},
		},
		{
			name:   "nothing wanted deletes all of ours only",
			routes: []kroute{ours("10.1.0.0/24"), other("10.2.0.0/24", unix.RTPROT_STATIC, unix.RTN_BLACKHOLE)},
			plan:   []string{"del 10.1.0.0/24 blackhole proto 167 metric 0"},
		},
		{
			name:   "foreign route for the exact prefix is a conflict",
			routes: []kroute{other("10.9.0.0/24", unix.RTPROT_STATIC, unix.RTN_BLACKHOLE)},
			want:   pfxs("10.9.0.0/24", "10.1.0.0/24"),
			plan: []string{
				"add 10.1.0.0/24",
				"conflict blackhole 10.9.0.0/24: prefix is already routed by another protocol (blackhole proto static metric 0), left alone",
			},
		},
		{
			name: "foreign route appearing beside ours makes ours withdraw",
			routes: []kroute{
				ours("10.9.0.0/24"),
				withMetric(other("10.9.0.0/24", unix.RTPROT_KERNEL, unix.RTN_UNICAST), 100),
				other("10.9.0.0/24", unix.RTPROT_BOOT, unix.RTN_UNREACHABLE),
			},
			want: pfxs("10.9.0.0/24"),
			plan: []string{
				"del 10.9.0.0/24 blackhole proto 167 metric 0",
				"conflict blackhole 10.9.0.0/24: prefix is already routed by another protocol (unicast proto kernel metric 100; unreachable proto boot metric 0), left alone",
			},
		},
		{
			name: "foreign routes for other prefixes do not matter",
			routes: []kroute{
				other("10.9.0.5/32", unix.RTPROT_BOOT, unix.RTN_UNICAST),
				other("10.0.0.0/8", unix.RTPROT_BIRD, unix.RTN_UNICAST),
				other("0.0.0.0/0", unix.RTPROT_DHCP, unix.RTN_UNICAST),
			},
			want: pfxs("10.9.0.0/24"),
			plan: []string{"add 10.9.0.0/24"},
		},
		{
			name:   "route of ours with the wrong type is replaced",
			routes: []kroute{{Prefix: pfx("10.1.0.0/24"), Protocol: Protocol, Type: unix.RTN_UNREACHABLE}},
			want:   pfxs("10.1.0.0/24"),
			plan:   []string{"del 10.1.0.0/24 unreachable proto 167 metric 0", "add 10.1.0.0/24"},
		},
		{
			name:   "duplicate blackholes of ours are reduced to one",
			routes: []kroute{ours("10.1.0.0/24"), withMetric(ours("10.1.0.0/24"), 10)},
			want:   pfxs("10.1.0.0/24"),
			plan:   []string{"del 10.1.0.0/24 blackhole proto 167 metric 10"},
		},
		{
			name:   "a blackhole of another metric is replaced",
			routes: []kroute{ours("10.1.0.0/24")},
			want:   pfxs("10.1.0.0/24"),
			metric: 1 << 24,
			plan:   []string{"del 10.1.0.0/24 blackhole proto 167 metric 0", "add 10.1.0.0/24"},
		},
		{
			name:   "an IPv6 blackhole of metric 1024 is one of metric 0",
			routes: []kroute{withMetric(ours("2001:db8::/64"), 1024)},
			want:   pfxs("2001:db8::/64"),
		},
		{
			name:   "the blackhole of the wanted metric is kept",
			routes: []kroute{ours("10.1.0.0/24"), withMetric(ours("10.1.0.0/24"), 1<<24)},
			want:   pfxs("10.1.0.0/24"),
			metric: 1 << 24,
			plan:   []string{"del 10.1.0.0/24 blackhole proto 167 metric 0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := make(map[netip.Prefix]uint32)
			for _, p := range tt.want {
				want[p] = tt.metric
			}
			got := plan(tt.routes, want).text()
			if diff := cmp.Diff(tt.plan, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChangesString(t *testing.T) {
	tests := []struct {
		name string
		c    Changes
		want string
	}{
		{name: "empty", want: "no change"},
		{name: "added only", c: Changes{Added: pfxs("10.0.0.0/24", "fd00::/64")}, want: "+10.0.0.0/24 +fd00::/64"},
		{name: "both", c: Changes{Added: pfxs("10.0.0.0/24"), Removed: pfxs("10.1.0.0/24")}, want: "+10.0.0.0/24 -10.1.0.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := tt.c.Empty(); got != (tt.want == "no change") {
				t.Errorf("Empty() = %v", got)
			}
		})
	}
}

// fakeKernel is a routing table with the kernel's add and delete rules that
// matter here, recording every change as a line of text.
type fakeKernel struct {
	routes  []netlink.Route
	ops     []string
	listErr []error                                // returned by successive dumps, then nil
	addErr  map[netip.Prefix]error                 // RouteAdd fails for these
	delErr  map[netip.Prefix]error                 // RouteDel fails for these
	sneak   map[netip.Prefix]netlink.RouteProtocol // a route appears just before our add
}

func (k *fakeKernel) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	if mask != netlink.RT_FILTER_TABLE {
		return nil, fmt.Errorf("fake supports only a table filter, got mask %#x", mask)
	}
	if len(k.listErr) > 0 {
		err := k.listErr[0]
		k.listErr = k.listErr[1:]
		return nil, err
	}
	var out []netlink.Route
	for _, r := range k.routes {
		if r.Family == family && r.Table == filter.Table {
			out = append(out, r)
		}
	}
	return out, nil
}

// metric returns the metric the kernel stores for r.
func metric(r *netlink.Route) int {
	if r.Priority == 0 && r.Family == netlink.FAMILY_V6 {
		return 1024
	}
	return r.Priority
}

func prefixOf(r *netlink.Route) netip.Prefix {
	kr, _ := fromNetlink(*r)
	return kr.Prefix
}

func (k *fakeKernel) RouteAdd(r *netlink.Route) error {
	p := prefixOf(r)
	if err := k.addErr[p]; err != nil {
		return err
	}
	if proto, ok := k.sneak[p]; ok {
		delete(k.sneak, p)
		nr := *r
		nr.Protocol = proto
		k.routes = append(k.routes, nr)
		k.ops = append(k.ops, fmt.Sprintf("someone adds %s proto %s", p, proto))
		return unix.EEXIST
	}
	for _, x := range k.routes {
		if prefixOf(&x) == p && x.Table == r.Table && x.Tos == r.Tos && metric(&x) == metric(r) {
			return unix.EEXIST
		}
	}
	nr := *r
	nr.Priority = metric(r)
	k.routes = append(k.routes, nr)
	k.ops = append(k.ops, fmt.Sprintf("add %s %s table %d", p, kroute{Protocol: r.Protocol, Type: r.Type, Priority: nr.Priority}.describe(), r.Table))
	return nil
}

func (k *fakeKernel) RouteDel(r *netlink.Route) error {
	p := prefixOf(r)
	if err := k.delErr[p]; err != nil {
		return err
	}
	for i, x := range k.routes {
		if prefixOf(&x) == p && x.Table == r.Table &&
			(r.Protocol == 0 || x.Protocol == r.Protocol) &&
			(r.Type == 0 || x.Type == r.Type) &&
			(r.Priority == 0 || x.Priority == r.Priority) {
			k.routes = slices.Delete(k.routes, i, i+1)
			k.ops = append(k.ops, fmt.Sprintf("del %s %s table %d", p, kroute{Protocol: x.Protocol, Type: x.Type, Priority: x.Priority}.describe(), r.Table))
			return nil
		}
	}
	return unix.ESRCH
}

func TestSync(t *testing.T) {
	b0 := newBlackholes(nil, 0)
	route := func(s string, proto netlink.RouteProtocol, typ int) netlink.Route {
		r := b0.netlinkRoute(kroute{Prefix: pfx(s), Protocol: proto, Type: typ})
		r.Priority = metric(r)
		return *r
	}
	tests := []struct {
		name    string
		kernel  fakeKernel
		want    []netip.Prefix
		ops     []string
		changes string
		errs    []string // substrings the error must contain
		errIs   []error
		again   string         // changes of a second Sync; "" for none
		list    []netip.Prefix // List() after both
	}{
		{
			name: "adds both families",
			want: pfxs("10.1.0.0/24", "fd00:1::/64"),
			ops: []string{
				"add 10.1.0.0/24 blackhole proto 167 metric 0 table 254",
				"add fd00:1::/64 blackhole proto 167 metric 1024 table 254",
			},
			changes: "+10.1.0.0/24 +fd00:1::/64",
			list:    pfxs("10.1.0.0/24", "fd00:1::/64"),
		},
		{
			name: "replaces the set and spares foreign routes",
			kernel: fakeKernel{routes: []netlink.Route{
				route("10.1.0.0/24", Protocol, unix.RTN_BLACKHOLE),
				route("10.2.0.0/24", unix.RTPROT_STATIC, unix.RTN_BLACKHOLE),
			}},
			want: pfxs("10.3.0.0/24"),
			// The add first: whoever learns the table never sees it
			// emptier than either set.
			ops: []string{
				"add 10.3.0.0/24 blackhole proto 167 metric 0 table 254",
				"del 10.1.0.0/24 blackhole proto 167 metric 0 table 254",
			},
			changes: "+10.3.0.0/24 -10.1.0.0/24",
			list:    pfxs("10.3.0.0/24"),
		},
		{
			name: "a failed add does not stop the others",
			kernel: fakeKernel{addErr: map[netip.Prefix]error{
				pfx("10.2.0.0/24"): unix.EPERM,
			}},
			want: pfxs("10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"),
			ops: []string{
				"add 10.1.0.0/24 blackhole proto 167 metric 0 table 254",
				"add 10.3.0.0/24 blackhole proto 167 metric 0 table 254",
			},
			changes: "+10.1.0.0/24 +10.3.0.0/24",
			errs:    []string{"add blackhole 10.2.0.0/24 to table 254: operation not permitted"},
			errIs:   []error{unix.EPERM},
			list:    pfxs("10.1.0.0/24", "10.3.0.0/24"),
		},
		{
			name: "a failed delete is not reported as removed",
			kernel: fakeKernel{
				routes: []netlink.Route{
					route("10.1.0.0/24", Protocol, unix.RTN_BLACKHOLE),
					route("10.2.0.0/24", Protocol, unix.RTN_BLACKHOLE),
				},
				delErr: map[netip.Prefix]error{pfx("10.1.0.0/24"): unix.EBUSY},
			},
			ops:     []string{"del 10.2.0.0/24 blackhole proto 167 metric 0 table 254"},
			changes: "-10.2.0.0/24",
			errs:    []string{"delete blackhole 10.1.0.0/24 (blackhole proto 167 metric 0) from table 254: device or resource busy"},
			errIs:   []error{unix.EBUSY},
			list:    pfxs("10.1.0.0/24"),
		},
		{
			name: "foreign route for the prefix is a conflict",
			kernel: fakeKernel{routes: []netlink.Route{
				route("10.9.0.0/24", unix.RTPROT_STATIC, unix.RTN_BLACKHOLE),
			}},
			want:    pfxs("10.9.0.0/24"),
			changes: "no change",
			errs:    []string{"blackhole 10.9.0.0/24: prefix is already routed by another protocol (blackhole proto static metric 0), left alone"},
			errIs:   []error{ErrConflict},
		},
		{
			name:    "a route appearing between dump and add is a conflict",
			kernel:  fakeKernel{sneak: map[netip.Prefix]netlink.RouteProtocol{pfx("10.9.0.0/24"): unix.RTPROT_BOOT}},
			want:    pfxs("10.9.0.0/24"),
			ops:     []string{"someone adds 10.9.0.0/24 proto boot"},
			changes: "no change",
			errs:    []string{"add blackhole 10.9.0.0/24 to table 254: prefix is already routed by another protocol: a route with the same prefix and metric appeared meanwhile (file exists)"},
			errIs:   []error{ErrConflict, unix.EEXIST},
		},
		{
			name: "wrong type of ours is repaired and reported as added",
			kernel: fakeKernel{routes: []netlink.Route{
				route("10.1.0.0/24", Protocol, unix.RTN_UNREACHABLE),
			}},
			want: pfxs("10.1.0.0/24"),
			ops: []string{
				"del 10.1.0.0/24 unreachable proto 167 metric 0 table 254",
				"add 10.1.0.0/24 blackhole proto 167 metric 0 table 254",
			},
			changes: "+10.1.0.0/24",
			list:    pfxs("10.1.0.0/24"),
		},
		{
			name: "invalid prefixes are reported and skipped",
			want: []netip.Prefix{{}, pfx("10.1.0.7/24"), pfx("10.2.0.0/24")},
			ops:  []string{"add 10.2.0.0/24 blackhole proto 167 metric 0 table 254"},
			errs: []string{
				"blackhole invalid Prefix: invalid prefix",
				"blackhole 10.1.0.7/24: host bits set (the network is 10.1.0.0/24)",
			},
			changes: "+10.2.0.0/24",
			list:    pfxs("10.2.0.0/24"),
		},
		{
			name:    "an interrupted dump is retried",
			kernel:  fakeKernel{listErr: []error{netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted}},
			want:    pfxs("10.1.0.0/24"),
			ops:     []string{"add 10.1.0.0/24 blackhole proto 167 metric 0 table 254"},
			changes: "+10.1.0.0/24",
			list:    pfxs("10.1.0.0/24"),
		},
		{
			name:    "a failed dump changes nothing",
			kernel:  fakeKernel{listErr: []error{unix.ENOBUFS}},
			want:    pfxs("10.1.0.0/24"),
			changes: "no change",
			errs:    []string{"list routes of table 254: no buffer space available"},
			errIs:   []error{unix.ENOBUFS},
			again:   "+10.1.0.0/24",
			list:    pfxs("10.1.0.0/24"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &tt.kernel
			b := newBlackholes(k, 0)
			ch, err := b.Sync(tt.want)
			if got := ch.String(); got != tt.changes {
				t.Errorf("changes = %q, want %q", got, tt.changes)
			}
			if diff := cmp.Diff(tt.ops, k.ops); diff != "" {
				t.Errorf("kernel operations (-want +got):\n%s", diff)
			}
			checkErr(t, err, tt.errs, tt.errIs)

			// A second run changes nothing, unless the first one
			// failed for a passing reason.
			k.ops = nil
			ch2, err2 := b.Sync(tt.want)
			if tt.again == "" {
				tt.again = "no change"
				if len(k.ops) != 0 {
					t.Errorf("second Sync did %q", k.ops)
				}
			}
			if got := ch2.String(); got != tt.again {
				t.Errorf("second Sync changed %q, want %q", got, tt.again)
			}
			if err2 != nil && len(tt.errs) == 0 {
				t.Errorf("second Sync: %v", err2)
			}

			list, err := b.List()
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if diff := cmp.Diff(tt.list, list, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
		})
	}
}

// checkErr checks that err contains every substring of want (nil when want
// is empty) and wraps every error of is.
func checkErr(t *testing.T, err error, want []string, is []error) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	for _, target := range is {
		if !errors.Is(err, target) {
			t.Errorf("error %q does not wrap %v", err, target)
		}
	}
}

func TestRemoveAll(t *testing.T) {
	b0 := newBlackholes(nil, 100)
	var routes []netlink.Route
	for _, r := range []kroute{
		ours("10.1.0.0/24"),
		ours("fd00:1::/64"),
		other("10.2.0.0/24", unix.RTPROT_STATIC, unix.RTN_BLACKHOLE),
	} {
		routes = append(routes, *b0.netlinkRoute(r))
	}
	k := &fakeKernel{routes: routes}
	b := newBlackholes(k, 100)
	ch, err := b.RemoveAll()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ch.String(), "-10.1.0.0/24 -fd00:1::/64"; got != want {
		t.Errorf("changes = %q, want %q", got, want)
	}
	var left []string
	for _, r := range k.routes {
		left = append(left, prefixOf(&r).String()+" proto "+r.Protocol.String())
	}
	if diff := cmp.Diff([]string{"10.2.0.0/24 proto static"}, left); diff != "" {
		t.Errorf("routes left (-want +got):\n%s", diff)
	}
}

func TestSyncRemembers(t *testing.T) {
	k := &fakeKernel{}
	b := newBlackholes(k, 0)
	clock := time.Unix(1000, 0)
	b.now = func() time.Time { return clock }
	dumps := 0
	sync := func(want ...string) Changes {
		t.Helper()
		before := len(k.ops)
		listed := countingList{k, &dumps}
		b.nl = listed
		ch, err := b.Sync(pfxs(want...))
		if err != nil {
			t.Fatalf("Sync(%v): %v (ops %q)", want, err, k.ops[before:])
		}
		return ch
	}

	sync("10.1.0.0/24", "10.2.0.0/24")
	if dumps != 2 {
		t.Fatalf("first Sync read %d tables, want 2 (v4, v6)", dumps)
	}
	// Within the interval a change costs one request per prefix, no dump;
	// the addition goes first (make before break).
	before := len(k.ops)
	ch := sync("10.1.0.0/24", "10.3.0.0/24")
	if ch.String() != "+10.3.0.0/24 -10.2.0.0/24" || dumps != 2 {
		t.Errorf("remembered Sync: %s, %d dumps", ch, dumps)
	}
	if ops := k.ops[before:]; len(ops) != 2 || !strings.HasPrefix(ops[0], "add 10.3.0.0/24") || !strings.HasPrefix(ops[1], "del 10.2.0.0/24") {
		t.Errorf("remembered Sync's requests %q: want the add, then the delete", ops)
	}
	if ch := sync("10.1.0.0/24", "10.3.0.0/24"); !ch.Empty() || dumps != 2 {
		t.Errorf("unchanged Sync: %s, %d dumps", ch, dumps)
	}

	// Someone deletes our route: not seen within the interval, repaired
	// by the full read after it.
	k.routes = slices.DeleteFunc(k.routes, func(r netlink.Route) bool { return prefixOf(&r) == pfx("10.1.0.0/24") })
	if ch := sync("10.1.0.0/24", "10.3.0.0/24"); !ch.Empty() {
		t.Errorf("Sync within the interval saw %s", ch)
	}
	clock = clock.Add(FullSyncInterval)
	if ch := sync("10.1.0.0/24", "10.3.0.0/24"); ch.String() != "+10.1.0.0/24" || dumps != 4 {
		t.Errorf("Sync after the interval: %s, %d dumps", ch, dumps)
	}

	// A failing request falls back to a full read at once, which names
	// the conflict.
	k.sneak = map[netip.Prefix]netlink.RouteProtocol{pfx("10.4.0.0/24"): unix.RTPROT_STATIC}
	_, err := b.Sync(pfxs("10.1.0.0/24", "10.3.0.0/24", "10.4.0.0/24"))
	if !errors.Is(err, ErrConflict) || dumps != 6 {
		t.Errorf("conflict on a remembered add: %v, %d dumps", err, dumps)
	}
	if b.known != nil {
		t.Error("memory kept after an error")
	}
}

// countingList counts table dumps.
type countingList struct {
	*fakeKernel
	n *int
}

func (c countingList) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	*c.n++
	return c.fakeKernel.RouteListFiltered(family, filter, mask)
}
