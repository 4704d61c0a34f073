// Package services is what roost-loader will load-balance: Kubernetes-style
// Services (cluster IPs, external and load-balancer IPs, ports, traffic
// policies, session affinity) and their backends with EndpointSlice
// conditions. Its sources are the services file (LoadFile) and the
// Kubernetes API (FromKubernetes, WatchKubernetes); the model is the same
// whatever the source.
//
// The package only reads, validates and describes services: the datapath
// that serves them is not built yet.
package services

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/roost-net/roost/internal/community"
)

// DefaultNamespace is the namespace of a service that names none.
const DefaultNamespace = "default"

// Session affinity timeouts, as Kubernetes bounds
// sessionAffinityConfig.clientIP.timeoutSeconds.
const (
	DefaultSessionAffinityTimeout = 10800 * time.Second
	MaxSessionAffinityTimeout     = 86400 * time.Second
)

// Protocol is a service port's transport protocol, by its IP protocol
// number.
type Protocol uint8

// The protocols a service port may have.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

// String returns TCP, UDP or SCTP, or the protocol's number.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("protocol %d", uint8(p))
}

// TrafficPolicy says which backends traffic may go to: all of them
// (Cluster) or only those on the node it arrived at or comes from (Local).
type TrafficPolicy string

// The traffic policies.
const (
	TrafficPolicyCluster TrafficPolicy = "Cluster"
	TrafficPolicyLocal   TrafficPolicy = "Local"
)

// SessionAffinity says whether a client's connections stick to one backend.
type SessionAffinity string

// The session affinities.
const (
	SessionAffinityNone     SessionAffinity = "None"
	SessionAffinityClientIP SessionAffinity = "ClientIP"
)

// Service is one load-balanced service.
type Service struct {
	Namespace string
	Name      string
	// ClusterIPs are the in-cluster frontends, at most one per family.
	ClusterIPs []netip.Addr
	// ExternalIPs are the VIPs (spec.externalIPs), announced over BGP.
	ExternalIPs []netip.Addr
	// LoadBalancerIPs are the load balancer's frontends
	// (status.loadBalancer.ingress[].ip).
	LoadBalancerIPs []netip.Addr
	// Ports has at least one port; (Port, Protocol) is unique in it.
	Ports []Port
	// ExternalTrafficPolicy applies to external and load-balancer IPs
	// and node ports; InternalTrafficPolicy to cluster IPs.
	ExternalTrafficPolicy TrafficPolicy
	InternalTrafficPolicy TrafficPolicy
	SessionAffinity       SessionAffinity
	// SessionAffinityTimeout is how long a client stays with its
	// backend when SessionAffinity is ClientIP; 0 otherwise.
	SessionAffinityTimeout time.Duration
	// Backends are the service's endpoints, of either family; their IPs
	// are unique.
	Backends []Backend
	// BGPCommunities are added to the announcement of the service's VIPs
	// (roost-agent), besides the agent's own for every VIP: from the
	// services file's bgpCommunities, or the Service's annotation
	// community.Annotation. Sorted, each once.
	BGPCommunities []community.Community
}

// Port is one port of a service.
type Port struct {
	// Name is required when the service has more than one port.
	Name     string
	Protocol Protocol
	Port     uint16
	// TargetPort is the backends' port; 0 when TargetPortName names it
	// instead (see Resolve). From Kubernetes, TargetPortName is always
	// set: it is the port's own name, under which each backend holds its
	// EndpointSlice's port (see FromKubernetes).
	TargetPort     uint16
	TargetPortName string
	// NodePort is the port on every node's addresses; 0 for none.
	NodePort uint16
}

// Backend is one endpoint of a service. The conditions are an
// EndpointSlice's: Ready takes new connections, Serving could (it stays
// true while a terminating backend drains), Terminating is going away.
type Backend struct {
	IP netip.Addr
	// Node is the node the backend runs on; may be empty.
	Node        string
	Ready       bool
	Serving     bool
	Terminating bool
	// Ports are the backend's named ports by name, for services whose
	// targetPort is a name.
	Ports map[string]NamedPort
}

// NamedPort is the number and protocol a backend's port name stands for.
type NamedPort struct {
	Port     uint16
	Protocol Protocol
}

// FullName returns "namespace/name".
func (s Service) FullName() string { return s.Namespace + "/" + s.Name }

// FrontendKind says how a frontend address is reached.
type FrontendKind uint8

// The kinds of frontend address.
const (
	ClusterIP FrontendKind = iota
	ExternalIP
	LoadBalancerIP
)

// String returns the kind's key in the services file, without the plural.
func (k FrontendKind) String() string {
	switch k {
	case ClusterIP:
		return "clusterIP"
	case ExternalIP:
		return "externalIP"
	case LoadBalancerIP:
		return "loadBalancerIP"
	}
	return fmt.Sprintf("frontend kind %d", uint8(k))
}

// Frontend is one frontend address of a service.
type Frontend struct {
	Kind FrontendKind
	Addr netip.Addr
}

// Frontends returns the service's cluster, external and load-balancer
// IPs, in that order.
func (s Service) Frontends() []Frontend {
	out := make([]Frontend, 0, len(s.ClusterIPs)+len(s.ExternalIPs)+len(s.LoadBalancerIPs))
	for _, list := range []struct {
		kind  FrontendKind
		addrs []netip.Addr
	}{{ClusterIP, s.ClusterIPs}, {ExternalIP, s.ExternalIPs}, {LoadBalancerIP, s.LoadBalancerIPs}} {
		for _, a := range list.addrs {
			out = append(out, Frontend{Kind: list.kind, Addr: a})
		}
	}
	return out
}

// BackendsFor returns the backends of frontend's family, in order: as in
// Kubernetes, an IPv4 frontend leads to IPv4 backends only. A family may
// have none.
func (s Service) BackendsFor(frontend netip.Addr) []Backend {
	var out []Backend
	for _, b := range s.Backends {
		if b.IP.Is4() == frontend.Is4() {
			out = append(out, b)
		}
	}
	return out
}

// Key returns the backend's identity in a frontend's Maglev table: its
// address in canonical text (netip.Addr.String). It is the same on every
// node, whatever the order of the source or the node computing it, and
// unique among a service's backends (the file refuses a repeated address).
// The target port is left out on purpose: within one service port an
// address has one target port, and a named port renumbered must not move
// the backend's slots.
func (b Backend) Key() string { return b.IP.String() }

// ErrNoNamedPort is the error Resolve wraps when a backend has no port of
// the name a service port targets.
var ErrNoNamedPort = errors.New("no such named port")

// Resolve returns the port on b that p's traffic goes to: p.TargetPort, or
// the number of b's port named p.TargetPortName with p's protocol. A
// backend without that port is an error wrapping ErrNoNamedPort; it gets
// none of p's traffic.
func Resolve(p Port, b Backend) (uint16, error) {
	if p.TargetPortName == "" {
		return p.TargetPort, nil
	}
	np, ok := b.Ports[p.TargetPortName]
	switch {
	case !ok:
		return 0, fmt.Errorf("backend %s: %w %q", b.IP, ErrNoNamedPort, p.TargetPortName)
	case np.Protocol != p.Protocol:
		return 0, fmt.Errorf("backend %s: %w %q with protocol %s (it is %s)", b.IP, ErrNoNamedPort, p.TargetPortName, p.Protocol, np.Protocol)
	}
	return np.Port, nil
}

// Unusable names what keeps a from being a frontend or backend address
// ("unspecified", "loopback", "multicast", "link-local", "broadcast"), or
// returns "" when nothing does.
func Unusable(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsMulticast():
		return "multicast"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	return ""
}

// Active returns the backends of bs that take new connections, in bs's
// order: those Ready and not Terminating; when there is none, those
// Serving and Terminating, as kube-proxy falls back to them (so that the
// last pods of a rollout still answer).
func Active(bs []Backend) []Backend {
	pick := func(ok func(Backend) bool) []Backend {
		var out []Backend
		for _, b := range bs {
			if ok(b) {
				out = append(out, b)
			}
		}
		return out
	}
	if ready := pick(func(b Backend) bool { return b.Ready && !b.Terminating }); len(ready) > 0 {
		return ready
	}
	return pick(func(b Backend) bool { return b.Serving && b.Terminating })
}
