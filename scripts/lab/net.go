package main

import (
	"fmt"
	"strings"
)

// The lab's network: namespaces, veths, addresses, routes and sysctls.
// Every step is done inside the lab's namespaces ("ip -n NS", "ip netns
// exec NS"), never in the root namespace, and is skipped or replaced when
// already done, so that "up" completes a lab as often as it runs.

// setupNetwork builds the namespaces, links, sysctls and routes.
func (l *lab) setupNetwork() error {
	s := l.spec
	for _, ns := range s.namespaces() {
		if err := l.makeNetns(ns); err != nil {
			return err
		}
		// No duplicate address detection: FRR 8.4's zebra never tells
		// bgpd about a link-local address that was still tentative when
		// zebra started, and bgpd then never brings up the IPv6 sessions
		// of that link. "default" covers the veth ends made later. IPv6
		// on: a lab made by the IPv4-only lab of old had it off in the
		// pods and vm1.
		if _, err := nsOutput(ns, 0, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0"); err != nil {
			return err
		}
	}
	var routers []string
	for _, t := range s.Tors {
		routers = append(routers, t.Name)
	}
	for _, n := range s.Nodes {
		routers = append(routers, n.Name)
	}
	for _, ns := range routers {
		for _, settings := range [][]string{
			// Hash flows by L4 ports so that ECMP spreads them.
			{"net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"},
			{"net.ipv4.ip_forward=1"},
			// A router: it also sends no router solicitations (which,
			// from a node into an enforced pod, would count as drops).
			{"net.ipv6.conf.all.forwarding=1"},
		} {
			if _, err := nsOutput(ns, 0, "sysctl", append([]string{"-qw"}, settings...)...); err != nil {
				return err
			}
		}
	}
	for _, k := range s.Links {
		if err := l.makeLink(k); err != nil {
			return err
		}
	}
	for _, n := range s.Nodes {
		if err := ip("-n", n.Name, "addr", "replace", n.Lo[0].String()+"/32", "dev", "lo"); err != nil {
			return err
		}
		if err := ip("-n", n.Name, "addr", "replace", n.Lo[1].String()+"/128", "dev", "lo"); err != nil {
			return err
		}
	}
	for fam := range families {
		for _, n := range s.Nodes {
			if err := s.nodeDefaultRoute(n.Name, fam); err != nil {
				return err
			}
		}
	}
	for _, p := range s.Pods {
		if err := makePod(p); err != nil {
			return err
		}
	}
	for _, a := range s.attached() {
		if err := makeAttached(a); err != nil {
			return err
		}
	}
	// Each node linked to the ToR of a vm (or etcd) routes its subnets
	// via that link.
	for _, a := range s.attached() {
		for fam, f := range families {
			if !a.Addr[fam].IsValid() {
				continue
			}
			for _, k := range s.Links {
				if k.Tor != a.Tor {
					continue
				}
				if err := ip("-n", k.Node, fmt.Sprintf("-%d", f.n), "route", "replace", a.Addr[fam].Masked().String(),
					"via", k.TorAddr[fam].Addr().String(), "dev", k.Tor); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// netnsExists reports whether namespace ns exists.
func netnsExists(ns string) (bool, error) {
	out, err := output(0, "ip", "netns", "list")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
			return true, nil
		}
	}
	return false, nil
}

// makeNetns creates namespace ns with lo up, unless it exists.
func (l *lab) makeNetns(ns string) error {
	ok, err := netnsExists(ns)
	if err != nil {
		return err
	}
	if !ok {
		if err := ip("netns", "add", ns); err != nil {
			return err
		}
		l.logf("namespace %s created", ns)
	}
	return ip("-n", ns, "link", "set", "lo", "up")
}

// makeLink creates the veth of link k directly inside its two namespaces
// (never in the root namespace), each end named after the namespace at
// the other, addresses both ends (IPv4 and IPv6), gives them the uplink
// MTU and sets them up.
func (l *lab) makeLink(k Link) error {
	if ip("-n", k.Tor, "link", "show", k.Node) != nil {
		// A half-made pair cannot exist (veths die in pairs), but a
		// stale end left by something else can: clear it.
		ip("-n", k.Node, "link", "del", k.Tor)
		if err := ip("-n", k.Tor, "link", "add", k.Node, "type", "veth", "peer", "name", k.Tor, "netns", k.Node); err != nil {
			return err
		}
	}
	mtu := fmt.Sprint(l.spec.UplinkMTU)
	for _, args := range [][]string{
		{"-n", k.Tor, "addr", "replace", k.TorAddr[0].String(), "dev", k.Node},
		{"-n", k.Node, "addr", "replace", k.NodeAddr[0].String(), "dev", k.Tor},
		// nodad: usable at once (see setupNetwork).
		{"-n", k.Tor, "addr", "replace", k.TorAddr[1].String(), "dev", k.Node, "nodad"},
		{"-n", k.Node, "addr", "replace", k.NodeAddr[1].String(), "dev", k.Tor, "nodad"},
		{"-n", k.Tor, "link", "set", k.Node, "mtu", mtu, "up"},
		{"-n", k.Node, "link", "set", k.Tor, "mtu", mtu, "up"},
	} {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// makePod wires pod p to its node as Calico and Cilium do: a veth named
// after the pod on the node and eth0 in the pod; the pod's /32 and /128
// on eth0 and its default routes via podGateway and podGateway6, which
// every host-side veth holds (a /32 and a link-local /64); on the node,
// host routes to the pod's /32 (by which roost-loader finds a local
// endpoint) and /128 through the veth.
func makePod(p Pod) error {
	if ip("-n", p.Node, "link", "show", p.Name) != nil {
		ip("-n", p.Name, "link", "del", "eth0")
		if err := ip("-n", p.Node, "link", "add", p.Name, "type", "veth", "peer", "name", "eth0", "netns", p.Name); err != nil {
			return err
		}
	}
	// A lab made by the IPv4-only lab of old had IPv6 off on the
	// host-side veth.
	if _, err := nsOutput(p.Node, 0, "sysctl", "-qw", "net.ipv6.conf."+p.Name+".disable_ipv6=0"); err != nil {
		return err
	}
	ip4, ip6 := p.IP[0].String(), p.IP[1].String()
	for _, args := range [][]string{
		{"-n", p.Node, "addr", "replace", podGateway + "/32", "dev", p.Name},
		{"-n", p.Node, "addr", "replace", podGateway6 + "/64", "dev", p.Name, "nodad"},
		{"-n", p.Name, "addr", "replace", ip4 + "/32", "dev", "eth0"},
		{"-n", p.Name, "addr", "replace", ip6 + "/128", "dev", "eth0", "nodad"},
		{"-n", p.Node, "link", "set", p.Name, "up"},
		{"-n", p.Name, "link", "set", "eth0", "up"},
		{"-n", p.Name, "route", "replace", podGateway, "dev", "eth0", "scope", "link"},
		{"-n", p.Name, "route", "replace", "default", "via", podGateway, "dev", "eth0"},
		{"-n", p.Name, "-6", "route", "replace", "default", "via", podGateway6, "dev", "eth0"},
		{"-n", p.Node, "route", "replace", ip4 + "/32", "dev", p.Name},
		{"-n", p.Node, "-6", "route", "replace", ip6 + "/128", "dev", p.Name},
	} {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// makeAttached wires a (a vm, or etcd) to its ToR on its subnet of each
// family it has an address of: the ToR holds the gateways, a its own
// addresses and its default routes via them.
func makeAttached(a Attached) error {
	if ip("-n", a.Tor, "link", "show", a.Name) != nil {
		ip("-n", a.Name, "link", "del", a.Tor)
		if err := ip("-n", a.Tor, "link", "add", a.Name, "type", "veth", "peer", "name", a.Tor, "netns", a.Name); err != nil {
			return err
		}
	}
	var steps [][]string
	for fam := range families {
		if !a.Addr[fam].IsValid() {
			continue
		}
		var nodad []string
		if fam == 1 {
			nodad = []string{"nodad"}
		}
		gw := fmt.Sprintf("%s/%d", a.Gateway[fam], a.Addr[fam].Bits())
		steps = append(steps,
			append([]string{"-n", a.Tor, "addr", "replace", gw, "dev", a.Name}, nodad...),
			append([]string{"-n", a.Name, "addr", "replace", a.Addr[fam].String(), "dev", a.Tor}, nodad...))
	}
	steps = append(steps,
		[]string{"-n", a.Tor, "link", "set", a.Name, "up"},
		[]string{"-n", a.Name, "link", "set", a.Tor, "up"})
	for fam, f := range families {
		if a.Gateway[fam].IsValid() {
			steps = append(steps, []string{"-n", a.Name, fmt.Sprintf("-%d", f.n), "route", "replace", "default", "via", a.Gateway[fam].String(), "dev", a.Tor})
		}
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// nodeDefaultRoute sets node's default route of family fam: a next hop
// via each ToR it is linked to (ECMP).
func (s *Lab) nodeDefaultRoute(node string, fam int) error {
	var hops []string
	for _, k := range s.nodeLinks(node) {
		hops = append(hops, "nexthop", "via", k.TorAddr[fam].Addr().String(), "dev", k.Tor)
	}
	if hops == nil {
		return nil
	}
	return ip(append([]string{"-n", node, fmt.Sprintf("-%d", families[fam].n), "route", "replace", "default"}, hops...)...)
}

// noTentative reports whether no IPv6 address in ns is tentative (in
// duplicate address detection) and every interface that is up has its
// link-local address.
func noTentative(ns string) bool {
	out, err := output(0, "ip", "-n", ns, "-6", "-o", "addr", "show", "tentative")
	if err != nil || strings.TrimSpace(out) != "" {
		return false
	}
	links, err := output(0, "ip", "-n", ns, "-o", "link", "show", "up")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(links), "\n") {
		// "2: node1@if3: <BROADCAST,...> ..."
		f := strings.SplitN(line, ": ", 3)
		if len(f) < 2 {
			continue
		}
		ifname, _, _ := strings.Cut(f[1], "@")
		if ifname == "lo" {
			continue
		}
		out, err := output(0, "ip", "-n", ns, "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
		if err != nil || strings.TrimSpace(out) == "" {
			return false
		}
	}
	return true
}
