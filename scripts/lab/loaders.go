package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/loaderapi"
)

// What the lab waits for and reads from the nodes' roost-loaders (through
// roostctl, in each node's namespace, where the loader's API listens on
// 127.0.0.1) and from the ToRs' kernels.

// roostctlLoader runs roostctl against node's roost-loader with args and
// returns its stdout.
func (l *lab) roostctlLoader(node string, args ...string) (string, error) {
	out, err := nsOutput(node, 0, l.prog.roostctl, append([]string{"--loader", loaderListen}, args...)...)
	if err != nil {
		return out, fmt.Errorf("%s: %w", node, err)
	}
	return out, nil
}

// loaderJSON runs roostctl -o json with args against node's roost-loader,
// giving it 2 s to answer, and decodes its answer into v.
func (l *lab) loaderJSON(node string, v any, args ...string) error {
	out, err := l.roostctlLoader(node, append([]string{"--timeout", "2s", "-o", "json"}, args...)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: roostctl -o json %s: %w", node, strings.Join(args, " "), err)
	}
	return nil
}

// endpoints returns the endpoints node's roost-loader knows (roostctl -o
// json endpoints).
func (l *lab) endpoints(node string) ([]loaderapi.Endpoint, error) {
	var eps []loaderapi.Endpoint
	return eps, l.loaderJSON(node, &eps, "endpoints")
}

// endpointsTable returns node's "roostctl endpoints": the table, and below
// it the last apply when it failed and the global view's state, which the
// JSON of the endpoints lacks.
func (l *lab) endpointsTable(node string) (string, error) {
	return l.roostctlLoader(node, "--timeout", "2s", "endpoints")
}

// uplinkReady reports whether node's roost-loader has attached its uplink
// load balancer to each of node's uplinks, and serves the VIP of every
// service of its cluster there with all of its service's backends, active,
// node's own as local.
func (l *lab) uplinkReady(node string) bool {
	var s loaderapi.Services
	if err := l.loaderJSON(node, &s, "services"); err != nil || s.Error != "" || s.Uplink == nil {
		return false
	}
	for _, up := range l.spec.uplinks(node) {
		if _, ok := s.Uplink.Interfaces[up]; !ok {
			return false
		}
	}
	for _, sv := range l.spec.Services {
		if !sv.ExternalIP.IsValid() || sv.Cluster != l.spec.nodeCluster(node) {
			continue
		}
		var want []string
		for _, b := range sv.Backends {
			want = append(want, uplinkBackend(netip.AddrPortFrom(l.spec.workloadIP(b, 0), uint16(sv.Port)).String(), l.spec.podNode(b) == node, "active"))
		}
		if !slices.Equal(sorted(want), sorted(frontendBackends(s.Uplink, "tcp/"+netip.AddrPortFrom(sv.ExternalIP, uint16(sv.Port)).String()))) {
			return false
		}
	}
	return true
}

// frontendBackends returns the backends u has for frontend (tcp/ADDR:PORT),
// each as uplinkBackend prints it.
func frontendBackends(u *loaderapi.Uplink, frontend string) []string {
	var out []string
	for _, fe := range u.Frontends {
		if fe.Frontend != frontend {
			continue
		}
		for _, b := range fe.Backends {
			out = append(out, uplinkBackend(b.Addr, b.Local, b.State))
		}
	}
	return out
}

// uplinkBackend prints an uplink backend as "ADDR:PORT local|remote STATE".
func uplinkBackend(addr string, local bool, state string) string {
	where := "remote"
	if local {
		where = "local"
	}
	return addr + " " + where + " " + state
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// loaderReady reports whether node's roost-loader answers, its last
// reconcile succeeded, it sees node's pods as local endpoints, with
// ingress enforced on exactly those the seed policy selects, it has every
// workload of the other clusters and of roost-sync from the global view,
// and it serves the VIPs at its uplinks (uplinkReady).
func (l *lab) loaderReady(node string) bool {
	table, err := l.endpointsTable(node)
	if err != nil || lastApplyFailed(table) {
		return false
	}
	eps, err := l.endpoints(node)
	if err != nil {
		return false
	}
	cluster := l.spec.nodeCluster(node)
	for _, w := range l.workloads() {
		if name := l.spec.ViewName(w); name != "" && l.spec.workloadCluster(w) != cluster && !viewHas(eps, name) {
			return false
		}
	}
	for _, p := range l.spec.Pods {
		if p.Node != node {
			continue
		}
		i := slices.IndexFunc(eps, func(e loaderapi.Endpoint) bool { return e.Name == p.Name })
		if i < 0 || !eps[i].Local || eps[i].Enforced != l.spec.enforcedPod(p.Name) {
			return false
		}
	}
	return l.uplinkReady(node)
}

// workloads returns the names of the pods, then of the vms.
func (l *lab) workloads() []string {
	var out []string
	for _, p := range l.spec.Pods {
		out = append(out, p.Name)
	}
	for _, v := range l.spec.VMs {
		out = append(out, v.Name)
	}
	return out
}

// lastApplyFailed reports whether the table of "roostctl endpoints" says
// the last reconcile did not succeed (a "last apply" line below it).
func lastApplyFailed(table string) bool {
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "last apply") {
			return true
		}
	}
	return false
}

// viewHas reports whether eps lists name.
func viewHas(eps []loaderapi.Endpoint, name string) bool {
	return slices.ContainsFunc(eps, func(e loaderapi.Endpoint) bool { return e.Name == name })
}

// viewLacksEverywhere reports whether every node's roost-loader answers and
// none lists name.
func (l *lab) viewLacksEverywhere(name string) bool {
	for _, nd := range l.spec.Nodes {
		eps, err := l.endpoints(nd.Name)
		if err != nil || viewHas(eps, name) {
			return false
		}
	}
	return true
}

// loadersReady reports whether every node's roost-loader is ready
// (loaderReady).
func (l *lab) loadersReady() bool {
	for _, nd := range l.spec.Nodes {
		if !l.loaderReady(nd.Name) {
			return false
		}
	}
	return true
}

// converged reports whether every ToR holds every PodCIDR of both
// families (the IPv6 ones learnt over the IPv6 sessions) and every VIP
// over every node of its service's cluster.
func (l *lab) converged() bool {
	for _, t := range l.spec.Tors {
		for _, nd := range l.spec.Nodes {
			if !torHolds(t.Name, nd.PodCIDR[0]) || !torHolds(t.Name, nd.PodCIDR[1]) {
				return false
			}
		}
		for _, c := range l.spec.Clusters {
			for _, vip := range l.spec.vips(c) {
				if !torHoldsEcmp(t.Name, netip.PrefixFrom(vip, vip.BitLen()), len(l.spec.clusterNodes(c))) {
					return false
				}
			}
		}
	}
	return true
}

// torRoute returns tor's kernel route to p learnt by BGP, "" for none.
func torRoute(tor string, p netip.Prefix) string {
	out, err := output(5*time.Second, "ip", "-n", tor, ipFamily(p.Addr()), "-o", "route", "show", p.String(), "proto", "bgp")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// torHolds reports whether tor's zebra has installed p, learnt by BGP,
// into tor's kernel.
func torHolds(tor string, p netip.Prefix) bool { return torRoute(tor, p) != "" }

// torHoldsEcmp reports whether tor's kernel routes p (learnt by BGP) over
// n next hops.
func torHoldsEcmp(tor string, p netip.Prefix, n int) bool {
	return nextHops(torRoute(tor, p)) == n
}

// nextHops counts the next hops of a route as "ip -o route" prints it: a
// "nexthop via" each for several, none for one.
func nextHops(route string) int {
	if route == "" {
		return 0
	}
	return max(1, strings.Count(route, "nexthop via"))
}

// ipFamily returns ip(8)'s family option for a: -4 or -6.
func ipFamily(a netip.Addr) string {
	if a.Is4() {
		return "-4"
	}
	return "-6"
}
