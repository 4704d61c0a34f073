package socklb

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/roost-net/roost/internal/services"
)

// Entries returns the frontends that node serves at the socket, for
// svcs: every TCP and UDP port of every cluster, external and
// load-balancer IP (in-cluster clients of a VIP need no trip to the
// uplink), each with the backends that take new connections. SCTP ports
// are not served at the socket. It also returns what it left out, one line
// each (a backend without the named port a service port targets).
//
// The backends of a frontend are those of its family that are Ready and
// not Terminating; when there is none, those Serving and Terminating, as
// kube-proxy falls back to them (so a rollout's last pods still answer).
// internalTrafficPolicy: Local limits a cluster IP to the backends on node;
// externalTrafficPolicy does not apply here (it is about traffic from
// outside the cluster, served at the uplink). Backends are in address
// order, so every node writes the same slots.
func Entries(svcs []services.Service, node string) ([]Entry, []string) {
	var (
		out   []Entry
		notes []string
	)
	for _, s := range svcs {
		var affinity = s.SessionAffinityTimeout
		if s.SessionAffinity != services.SessionAffinityClientIP {
			affinity = 0
		}
		for _, f := range s.Frontends() {
			local := f.Kind == services.ClusterIP && s.InternalTrafficPolicy == services.TrafficPolicyLocal
			candidates := s.BackendsFor(f.Addr)
			if local {
				candidates = slices.DeleteFunc(slices.Clone(candidates), func(b services.Backend) bool { return b.Node != node })
			}
			active := activeBackends(candidates)
			for _, p := range s.Ports {
				if p.Protocol != services.TCP && p.Protocol != services.UDP {
					continue
				}
				e := Entry{Frontend: Frontend{Addr: f.Addr, Port: p.Port, Proto: uint8(p.Protocol)}, Affinity: affinity}
				for _, b := range active {
					port, err := services.Resolve(p, b)
					if err != nil {
						notes = append(notes, fmt.Sprintf("service %s port %d/%s: %v", s.FullName(), p.Port, p.Protocol, err))
						continue
					}
					e.Backends = append(e.Backends, netip.AddrPortFrom(b.IP, port))
				}
				out = append(out, e)
			}
		}
	}
	return out, notes
}

// activeBackends returns the backends that take new connections
// (services.Active), ordered by address.
func activeBackends(bs []services.Backend) []services.Backend {
	out := services.Active(bs)
	slices.SortFunc(out, func(a, b services.Backend) int { return a.IP.Compare(b.IP) })
	return out
}
