package xdplb

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/roost-net/roost/internal/services"
)

// Entries returns the frontends node serves at its uplinks for svcs: every
// TCP and UDP port of every external and load-balancer IP (VIPs), and
// every node port on each of nodeAddrs (the node's own addresses) and on
// the unspecified address of each family that has backends (where packets
// encapsulated by another node find it). Cluster IPs are not served here: in-cluster clients are
// served at the socket (socklb), and the fabric does not route cluster IPs.
// SCTP ports are not served. It also returns what it left out, one line
// each.
//
// With externalTrafficPolicy: Local a frontend has this node's backends
// only, so its packets are never encapsulated; with Cluster it has them
// all. Backends that take new flows are active: those Ready and not
// Terminating, or when there is none, those Serving and Terminating, as at
// the socket. Every other backend of the slice stays, inactive, so that
// the flows it has keep going until it leaves the EndpointSlice.
func Entries(svcs []services.Service, node string, nodeAddrs []netip.Addr) ([]Entry, []string) {
	var (
		out   []Entry
		notes []string
		seen  = map[Frontend]string{}
	)
	add := func(s services.Service, e Entry) {
		if other, dup := seen[e.Frontend]; dup {
			notes = append(notes, fmt.Sprintf("service %s: %s is %s's already; left out", s.FullName(), e.Frontend, other))
			return
		}
		seen[e.Frontend] = s.FullName()
		out = append(out, e)
	}
	for _, s := range svcs {
		affinity := s.SessionAffinity == services.SessionAffinityClientIP
		backends := func(fam netip.Addr, p services.Port) []Backend {
			cands := s.BackendsFor(fam)
			if s.ExternalTrafficPolicy == services.TrafficPolicyLocal {
				cands = slices.DeleteFunc(slices.Clone(cands), func(b services.Backend) bool { return b.Node != node })
			}
			active := map[netip.Addr]bool{}
			for _, b := range services.Active(cands) {
				active[b.IP] = true
			}
			var bs []Backend
			for _, b := range cands {
				port, err := services.Resolve(p, b)
				if err != nil {
					notes = append(notes, fmt.Sprintf("service %s port %d/%s: %v", s.FullName(), p.Port, p.Protocol, err))
					continue
				}
				bs = append(bs, Backend{Addr: netip.AddrPortFrom(b.IP, port), Local: node != "" && b.Node == node, Active: active[b.IP]})
			}
			slices.SortFunc(bs, func(a, b Backend) int { return a.Addr.Compare(b.Addr) })
			return bs
		}
		for _, p := range s.Ports {
			if p.Protocol != services.TCP && p.Protocol != services.UDP {
				continue
			}
			for _, f := range s.Frontends() {
				if f.Kind == services.ClusterIP {
					continue
				}
				add(s, Entry{Frontend: Frontend{Addr: f.Addr, Port: p.Port, Proto: uint8(p.Protocol)}, VIP: true,
					Affinity: affinity, Backends: backends(f.Addr, p)})
			}
			if p.NodePort == 0 {
				continue
			}
			for _, a := range append([]netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}, nodeAddrs...) {
				bs := backends(a.Unmap(), p)
				if a.IsUnspecified() && len(bs) == 0 {
					continue // a family without backends
				}
				add(s, Entry{Frontend: Frontend{Addr: a.Unmap(), Port: p.NodePort, Proto: uint8(p.Protocol)},
					Affinity: affinity, Backends: bs})
			}
		}
	}
	return out, notes
}
