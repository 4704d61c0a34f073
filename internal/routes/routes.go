// Package routes keeps the kernel blackhole routes for the prefixes this node
// owns.
//
// For every owned PodCIDR the node holds a route such as
//
//	blackhole 10.244.1.0/24 proto 167
//
// so that traffic to a pod address nobody has been given is dropped on the
// node, instead of following the default route back to the ToR, which would
// send it straight back. The routes a CNI adds for each pod (/32, /128) are
// more specific and still win by longest prefix. The routes carry their own
// protocol number, Protocol, which is how roost recognises them: routes of any
// other protocol are never changed or deleted.
//
// The routes stay when the agent stops; RemoveAll is for cleanup tools.
package routes

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Protocol is the route protocol number (rtm_protocol) of roost's blackhole
// routes: "proto 167" in ip-route(8), krt_source = 167 in BIRD filters.
//
// The kernel leaves numbers from 4 up to userspace, and no registry assigns
// them. 167 is named neither in the kernel's rtnetlink.h, nor in iproute2's
// rt_protos, nor in FRR's rt_protos.d/frr.conf (186-197), and is clear of the
// numbers other networking daemons are known to use (BIRD 12, Calico 80, OVN
// 84, Open/R 99, FRR 186-197). Operators can name it with a line
// "167 roost" in /etc/iproute2/rt_protos.d/roost.conf.
const Protocol netlink.RouteProtocol = 167

// ErrConflict reports that a route of another protocol already exists for
// exactly an owned prefix. roost leaves that route alone and installs no
// blackhole beside it (in IPv4 a blackhole with metric 0 would shadow it).
var ErrConflict = errors.New("prefix is already routed by another protocol")

// routeHandle is the part of *netlink.Handle that Blackholes uses.
type routeHandle interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteAdd(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

// FullSyncInterval is how long Sync trusts its memory of what it installed.
// Within it, Sync only adds and deletes the prefixes that changed since the
// last call; past it, or after any error, it reads the whole table again,
// repairing routes that someone else deleted and finding routes of other
// protocols that appeared for owned prefixes. Reading a table of 10,000
// routes costs tens of milliseconds; a change of one prefix, two requests.
const FullSyncInterval = 30 * time.Second

// Blackholes manages roost's blackhole routes in one routing table of one
// network namespace. The kernel table is the truth: Sync reads it whole at
// least every FullSyncInterval and remembers in between what it installed.
// A Blackholes is not safe for concurrent use.
type Blackholes struct {
	nl    routeHandle
	table int
	now   func() time.Time

	known  map[netip.Prefix]uint32 // what the last clean Sync left (prefix → metric); nil: unknown
	fullAt time.Time               // when the table was last read whole
}

// NewBlackholes returns a Blackholes working through h in routing table
// table. A nil h means the network namespace of the calling thread; table 0
// means the main table (254).
func NewBlackholes(h *netlink.Handle, table int) *Blackholes {
	if h == nil {
		// A zero Handle opens a socket per request in the current
		// namespace, as netlink's package-level functions do.
		h = &netlink.Handle{}
	}
	return newBlackholes(h, table)
}

// NewHandle returns a netlink handle for routes in the calling thread's
// network namespace whose every request fails after timeout instead of
// waiting for the kernel forever. Close it when done.
func NewHandle(timeout time.Duration) (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	if timeout > 0 {
		if err := h.SetSocketTimeout(timeout); err != nil {
			h.Close()
			return nil, fmt.Errorf("netlink: set timeout: %w", err)
		}
	}
	return h, nil
}

func newBlackholes(h routeHandle, table int) *Blackholes {
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	return &Blackholes{nl: h, table: table, now: time.Now}
}

// Changes is what one Sync changed in the kernel.
type Changes struct {
	Added   []netip.Prefix // blackholes installed (or repaired), sorted
	Removed []netip.Prefix // prefixes that no longer have a blackhole of ours, sorted
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Added) == 0 && len(c.Removed) == 0 }

// String returns the changes as "+10.0.0.0/24 -fd00::/64", or "no change".
func (c Changes) String() string {
	if c.Empty() {
		return "no change"
	}
	var parts []string
	for _, p := range c.Added {
		parts = append(parts, "+"+p.String())
	}
	for _, p := range c.Removed {
		parts = append(parts, "-"+p.String())
	}
	return strings.Join(parts, " ")
}

// List returns the prefixes that have a route of protocol Protocol in the
// table, IPv4 and IPv6, sorted and without duplicates. It returns an error
// when the kernel table cannot be read.
func (b *Blackholes) List() ([]netip.Prefix, error) {
	rs, err := b.dump()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Protocol == Protocol {
			out = append(out, r.Prefix)
		}
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return slices.Compact(out), nil
}

// Sync makes the table hold exactly one blackhole route of protocol Protocol
// for each prefix of want, and none for any other prefix. It never changes or
// deletes a route of another protocol. A prefix that another protocol
// already routes (exactly that prefix, any type or metric) gets no blackhole,
// and a blackhole of ours for it is withdrawn, so that roost never shadows
// another owner's route; each such prefix is reported as an error wrapping
// ErrConflict that describes the other route. Invalid prefixes and prefixes
// with host bits set are reported and skipped.
//
// Sync carries on past a failed prefix and returns every problem joined
// (errors.Join), each naming the prefix and the operation, together with
// what it did change. Calling Sync again with the same want changes nothing.
func (b *Blackholes) Sync(want []netip.Prefix) (Changes, error) {
	m := make(map[netip.Prefix]uint32, len(want))
	for _, p := range want {
		m[p] = 0
	}
	return b.SyncMetrics(m)
}

// SyncMetrics is Sync with a metric per prefix: each blackhole of ours has
// the metric want gives its prefix (0 is the kernel's default: 1024 for
// IPv6). Whoever learns the table tells prefixes apart by it (BIRD's
// krt_metric: the VIPs' communities of their own). When a prefix's metric
// changes, the route of the new metric is added before the old one is
// deleted, so the prefix is never missing.
func (b *Blackholes) SyncMetrics(want map[netip.Prefix]uint32) (Changes, error) {
	var errs []error
	set := make(map[netip.Prefix]uint32, len(want))
	for p, m := range want {
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("blackhole %v: invalid prefix", p))
		case p != p.Masked():
			errs = append(errs, fmt.Errorf("blackhole %s: host bits set (the network is %s)", p, p.Masked()))
		case m > math.MaxInt32:
			errs = append(errs, fmt.Errorf("blackhole %s: metric %d is larger than %d", p, m, math.MaxInt32))
		default:
			set[p] = m
		}
	}
	if len(errs) == 0 && b.known != nil && b.now().Sub(b.fullAt) < FullSyncInterval {
		if ch, ok := b.syncKnown(set); ok {
			return ch, nil
		}
	}
	ch, err := b.sync(set)
	b.known, b.fullAt = nil, b.now()
	if err == nil && len(errs) == 0 {
		b.known = set
	}
	return ch, errors.Join(append(errs, err)...)
}

// syncKnown moves from the remembered set to want with one request per
// changed prefix. It reports false, having forgotten the remembered set,
// when a request fails: the caller then reads the table whole, which also
// says why (a foreign route, a route deleted behind our back). What it did
// change before the failure is found again by that full sync.
func (b *Blackholes) syncKnown(want map[netip.Prefix]uint32) (Changes, bool) {
	var ch Changes
	// Additions first: whoever learns the table (BIRD, for the VIPs)
	// sends the new route before the withdrawals, so it does not wait
	// behind them on the session; and a prefix whose metric changes is
	// never missing.
	for p, m := range want {
		if old, ok := b.known[p]; ok && old == m {
			continue
		}
		if err := b.nl.RouteAdd(b.netlinkRoute(kroute{Prefix: p, Protocol: Protocol, Type: unix.RTN_BLACKHOLE, Priority: int(m)})); err != nil {
			b.known = nil
			return Changes{}, false
		}
		if _, had := b.known[p]; !had {
			ch.Added = append(ch.Added, p)
		}
	}
	for p, old := range b.known {
		if m, ok := want[p]; ok && m == old {
			continue
		}
		prio := int(old)
		if prio == 0 && p.Addr().Is6() {
			prio = ip6DefaultMetric // as stored; 0 would match any metric
		}
		if err := b.nl.RouteDel(b.netlinkRoute(kroute{Prefix: p, Protocol: Protocol, Type: unix.RTN_BLACKHOLE, Priority: prio})); err != nil {
			b.known = nil
			return Changes{}, false
		}
		if _, ok := want[p]; !ok {
			ch.Removed = append(ch.Removed, p)
		}
	}
	slices.SortFunc(ch.Added, netip.Prefix.Compare)
	slices.SortFunc(ch.Removed, netip.Prefix.Compare)
	b.known = want
	return ch, true
}

// Forget drops what Sync remembers, so that the next Sync reads the table
// whole at once instead of within FullSyncInterval.
func (b *Blackholes) Forget() { b.known = nil }

// RemoveAll deletes every route of protocol Protocol in the table. The agent
// does not call it on shutdown (the blackholes should outlive a restart); it
// is for cleanup tools.
func (b *Blackholes) RemoveAll() (Changes, error) {
	b.known = nil
	return b.sync(nil)
}

func (b *Blackholes) sync(want map[netip.Prefix]uint32) (Changes, error) {
	rs, err := b.dump()
	if err != nil {
		return Changes{}, err
	}
	p := plan(rs, want)
	errs := p.conflicts

	// Routes of ours with the key of a route to add (same prefix and
	// metric, another type) must go first; the others after the adds, so
	// a prefix whose metric changes is never missing.
	deleted := make(map[kroute]bool)
	del := func(first bool) {
		for _, r := range p.del {
			m, wanted := want[r.Prefix]
			if first != (wanted && sameMetric(r, m)) {
				continue
			}
			if err := b.nl.RouteDel(b.netlinkRoute(r)); err != nil {
				errs = append(errs, fmt.Errorf("delete blackhole %s (%s) from table %d: %w", r.Prefix, r.describe(), b.table, err))
				continue
			}
			deleted[r] = true
		}
	}
	del(true)
	// A prefix that had a blackhole of ours of another metric is not
	// added: only its metric changes.
	blackholed := make(map[netip.Prefix]bool)
	for _, r := range rs {
		if r.Protocol == Protocol && r.Type == unix.RTN_BLACKHOLE {
			blackholed[r.Prefix] = true
		}
	}
	var ch Changes
	added := make(map[netip.Prefix]bool)
	for _, pfx := range p.add {
		r := kroute{Prefix: pfx, Protocol: Protocol, Type: unix.RTN_BLACKHOLE, Priority: int(want[pfx])}
		// RouteAdd, not RouteReplace: NLM_F_EXCL makes the kernel refuse
		// if a route with the same key (prefix, tos, metric) appeared
		// since the dump, so a foreign route is never overwritten.
		if err := b.nl.RouteAdd(b.netlinkRoute(r)); err != nil {
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("%w: a route with the same prefix and metric appeared meanwhile (%w)", ErrConflict, err)
			}
			errs = append(errs, fmt.Errorf("add blackhole %s to table %d: %w", pfx, b.table, err))
			continue
		}
		added[pfx] = true
		if !blackholed[pfx] {
			ch.Added = append(ch.Added, pfx)
		}
	}
	del(false)

	// A prefix is removed when one of our routes for it was deleted, none
	// is left, and none was added.
	left := make(map[netip.Prefix]bool)
	for _, r := range rs {
		if r.Protocol == Protocol && !deleted[r] {
			left[r.Prefix] = true
		}
	}
	for r := range deleted {
		if !left[r.Prefix] && !added[r.Prefix] && !slices.Contains(ch.Removed, r.Prefix) {
			ch.Removed = append(ch.Removed, r.Prefix)
		}
	}
	slices.SortFunc(ch.Added, netip.Prefix.Compare)
	slices.SortFunc(ch.Removed, netip.Prefix.Compare)
	return ch, errors.Join(errs...)
}

// dumpAttempts bounds the retries of a route dump that the kernel
// interrupted because the table changed underneath it.
const dumpAttempts = 3

// dump reads every IPv4 and IPv6 route of the table.
func (b *Blackholes) dump() ([]kroute, error) {
	var out []kroute
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var (
			rs  []netlink.Route
			err error
		)
		for range dumpAttempts {
			rs, err = b.nl.RouteListFiltered(family, &netlink.Route{Table: b.table}, netlink.RT_FILTER_TABLE)
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("list routes of table %d: %w", b.table, err)
		}
		for _, r := range rs {
			if kr, ok := fromNetlink(r); ok {
				out = append(out, kr)
			}
		}
	}
	return out, nil
}

// netlinkRoute returns the netlink form of r in b's table.
func (b *Blackholes) netlinkRoute(r kroute) *netlink.Route {
	family := netlink.FAMILY_V4
	if r.Prefix.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	return &netlink.Route{
		Dst: &net.IPNet{
			IP:   r.Prefix.Addr().AsSlice(),
			Mask: net.CIDRMask(r.Prefix.Bits(), r.Prefix.Addr().BitLen()),
		},
		Family:   family,
		Table:    b.table,
		Protocol: r.Protocol,
		Type:     r.Type,
		Priority: r.Priority,
		Tos:      r.Tos,
	}
}

// kroute is what Blackholes needs to know of a kernel route. It is
// comparable, so it can key a map.
type kroute struct {
	Prefix   netip.Prefix
	Protocol netlink.RouteProtocol
	Type     int // unix.RTN_*
	Priority int // metric
	Tos      int
}

// fromNetlink converts a dumped route; ok is false for routes that are not
// IPv4 or IPv6.
func fromNetlink(r netlink.Route) (kroute, bool) {
	var pfx netip.Prefix
	switch {
	case r.Dst == nil && r.Family == netlink.FAMILY_V4:
		pfx = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	case r.Dst == nil && r.Family == netlink.FAMILY_V6:
		pfx = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	case r.Dst != nil:
		addr, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			return kroute{}, false
		}
		if r.Family == netlink.FAMILY_V4 {
			addr = addr.Unmap()
		}
		ones, bits := r.Dst.Mask.Size()
		if bits != addr.BitLen() {
			return kroute{}, false
		}
		pfx = netip.PrefixFrom(addr, ones)
	default:
		return kroute{}, false
	}
	return kroute{Prefix: pfx, Protocol: r.Protocol, Type: r.Type, Priority: r.Priority, Tos: r.Tos}, true
}

// describe returns r as ip-route(8) would name it: "blackhole proto static
// metric 0".
func (r kroute) describe() string {
	return fmt.Sprintf("%s proto %s metric %d", typeName(r.Type), r.Protocol, r.Priority)
}

// typeName returns the ip-route(8) name of a route type.
func typeName(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_ANYCAST:
		return "anycast"
	case unix.RTN_MULTICAST:
		return "multicast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_THROW:
		return "throw"
	case unix.RTN_NAT:
		return "nat"
	default:
		return fmt.Sprintf("type %d", t)
	}
}

// changes is what sync must do, decided from a dump alone.
type changes struct {
	del       []kroute       // routes of ours to delete
	add       []netip.Prefix // prefixes to give a blackhole
	conflicts []error        // wanted prefixes another protocol routes
}

// plan decides, from the routes of a table and the wanted prefixes, which
// routes of ours to delete and which blackholes to add:
//   - a wanted prefix that another protocol routes is a conflict: no
//     blackhole, and ours for it are deleted;
//   - a wanted prefix with one blackhole of ours keeps it; further routes of
//     ours for it (duplicates, wrong type) are deleted;
//   - a wanted prefix without a blackhole of ours gets one, after its other
//     routes of ours are deleted;
//   - routes of ours for prefixes not wanted are deleted.
//
// Routes of other protocols are never in del. Outputs are sorted by prefix.
func plan(routes []kroute, want map[netip.Prefix]uint32) changes {
	ours := make(map[netip.Prefix][]kroute)
	foreign := make(map[netip.Prefix][]kroute)
	for _, r := range routes {
		if _, wanted := want[r.Prefix]; r.Protocol == Protocol {
			ours[r.Prefix] = append(ours[r.Prefix], r)
		} else if wanted {
			foreign[r.Prefix] = append(foreign[r.Prefix], r)
		}
	}
	var c changes
	for pfx, rs := range ours {
		if _, wanted := want[pfx]; !wanted {
			c.del = append(c.del, rs...)
		}
	}
	for _, pfx := range slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare) {
		rs := ours[pfx]
		if f := foreign[pfx]; len(f) > 0 {
			var descs []string
			for _, r := range f {
				descs = append(descs, r.describe())
			}
			slices.Sort(descs)
			c.conflicts = append(c.conflicts, fmt.Errorf("blackhole %s: %w (%s), left alone", pfx, ErrConflict, strings.Join(descs, "; ")))
			c.del = append(c.del, rs...)
			continue
		}
		keep := slices.IndexFunc(rs, func(r kroute) bool { return r.Type == unix.RTN_BLACKHOLE && sameMetric(r, want[pfx]) })
		for i, r := range rs {
			if i != keep {
				c.del = append(c.del, r)
			}
		}
		if keep < 0 {
			c.add = append(c.add, pfx)
		}
	}
	slices.SortFunc(c.del, compareRoutes)
	return c
}

// sameMetric reports whether r has metric m as the kernel stores it: an
// IPv6 route added with metric 0 gets 1024 (IP6_RT_PRIO_USER).
func sameMetric(r kroute, m uint32) bool {
	if m == 0 && r.Prefix.Addr().Is6() {
		return r.Priority == 0 || r.Priority == ip6DefaultMetric
	}
	return r.Priority == int(m)
}

// ip6DefaultMetric is the metric the kernel gives an IPv6 route added with
// none.
const ip6DefaultMetric = 1024

// compareRoutes orders routes by prefix, then metric, type and tos.
func compareRoutes(a, b kroute) int {
	if c := a.Prefix.Compare(b.Prefix); c != 0 {
		return c
	}
	if a.Priority != b.Priority {
		return a.Priority - b.Priority
	}
	if a.Type != b.Type {
		return a.Type - b.Type
	}
	return a.Tos - b.Tos
}
