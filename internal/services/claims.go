package services

import (
	"fmt"
	"net/netip"
	"strings"
)

// Claims records which service serves each frontend address, port and
// protocol, so that no two services serve the same one (the datapath
// holds one set of backends per frontend). The zero value is not usable:
// use NewClaims.
type Claims struct {
	owner map[frontendPort]string
}

// NewClaims returns claims on nothing.
func NewClaims() *Claims { return &Claims{owner: map[frontendPort]string{}} }

// Claim claims the frontends of s. It first removes from s every
// frontend address that serves a port and protocol an earlier service
// claimed there, and every repeat of an address s already lists (the
// first list wins: cluster, external, load-balancer IPs), and returns a
// note for each address it removed because of another service. It gives
// s new address lists rather than change the old ones in place.
func (c *Claims) Claim(s *Service) []string {
	var notes []string
	seen := map[netip.Addr]bool{}
	keep := func(kind FrontendKind, addrs []netip.Addr) []netip.Addr {
		var out []netip.Addr
		for _, a := range addrs {
			if seen[a] {
				continue
			}
			var clash []string
			owner := ""
			for _, p := range s.Ports {
				if o, ok := c.owner[frontendPort{a, p.Protocol, p.Port}]; ok && o != s.FullName() {
					owner = o
					clash = append(clash, fmt.Sprintf("%s/%d", p.Protocol, p.Port))
				}
			}
			if owner != "" {
				notes = append(notes, fmt.Sprintf("service %s: %s %s left out: %s %s is already a frontend of %s",
					s.FullName(), kind, a, a, strings.Join(clash, ", "), owner))
				continue
			}
			seen[a] = true
			out = append(out, a)
		}
		return out
	}
	s.ClusterIPs = keep(ClusterIP, s.ClusterIPs)
	s.ExternalIPs = keep(ExternalIP, s.ExternalIPs)
	s.LoadBalancerIPs = keep(LoadBalancerIP, s.LoadBalancerIPs)
	for _, f := range s.Frontends() {
		for _, p := range s.Ports {
			c.owner[frontendPort{f.Addr, p.Protocol, p.Port}] = s.FullName()
		}
	}
	return notes
}
