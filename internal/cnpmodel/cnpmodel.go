// Package cnpmodel is a reference model of how Cilium v1.18 decides whether a NEW (not reply)
// ingress flow to a local endpoint is allowed by CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy documents. It assumes Cilium's default options: dual stack IPv4 and
// IPv6, allow-localhost "always" (as in Kubernetes mode), enable-icmp-rules on,
// policy-default-local-cluster off, policy-cidr-match-mode empty, node selector labels off, and a
// single cluster.
//
// It is written from Cilium's documentation and source (the files each step follows are named where
// the step is implemented), independently of roost's compiler, and is the oracle of roost's
// differential tests; roost's binaries do not use it. It favours being easy to check against
// Cilium over speed.
//
// In short: an endpoint's identity is its pod labels, filtered by Cilium's default label filter, plus
// the labels Cilium derives (namespace, namespace labels, service account, cluster); a source address
// is an endpoint, the host, a remote node, or world (with the longest CIDR any policy names that
// contains it). Rules whose endpointSelector selects the destination and that have ingress or
// ingressDeny enforce ingress; a matching deny wins, then traffic from the host is allowed, then a
// matching allow, else the flow is denied.
//
// Of the datapath (bpf/bpf_lxc.c, bpf/lib/conntrack.h, bpf/lib/policy.h), the model keeps one step
// that decides what policy can allow: conntrack drops every protocol but TCP, UDP, ICMP, ICMPv6 and
// SCTP (the model assumes enable-sctp on) before policy, so to an endpoint that rules select, GRE and
// the like are denied whatever the rules say. It does not model that conntrack drops them to an
// endpoint no rule selects too (the model allows everything there, as policy does), nor that ICMPv6
// neighbour solicitations and advertisements (types 135, 136) pass before any policy lookup, nor that
// IPv4 ICMP "fragmentation needed" (type 3 code 4) passes the policy lookup (allow-icmp-frag-needed;
// Flow has no ICMP code). Nor does it model the Namespace label kubernetes.io/metadata.name, which
// the API server adds to every Namespace; a World must list it in NamespaceLabels to have it.
//
// One deliberate departure: Cilium v1.18.4 reads icmps type 0 as every type of the family
// (cilium/cilium#41304, a bug fixed later); the model, like roost, reads it as type 0.
package cnpmodel

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// World is everything outside the policies that a verdict depends on.
type World struct {
	Cluster   string       // the local cluster's name
	Endpoints []Endpoint   // every workload: pods and external workloads (VMs); local or not
	Nodes     []Node       // the other nodes of the cluster
	HostIPs   []netip.Addr // this node's own addresses
}

// Endpoint is a workload with an identity derived from its labels.
type Endpoint struct {
	Name            string
	Namespace       string            // every endpoint has one
	Labels          map[string]string // the workload's own labels (pod labels), as the user wrote them
	NamespaceLabels map[string]string // the labels of its Namespace object
	ServiceAccount  string            // may be empty
	IPs             []netip.Addr
	NamedPorts      []NamedPort // container ports with a name, in order (a later duplicate name wins)
}

// NamedPort is a container port with a name.
type NamedPort struct {
	Name     string
	Port     uint16
	Protocol string // "TCP", "UDP", "SCTP" or "" (= TCP)
}

// Node is another node of the cluster.
type Node struct {
	Name string
	IPs  []netip.Addr
}

// Flow is the first packet of a new ingress flow.
type Flow struct {
	Src   netip.Addr // source address of the packet
	Dst   string     // name of the destination endpoint (it runs on this node)
	Proto uint8      // IP protocol number: 6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6, 47 GRE, ...
	Port  uint16     // destination port for TCP/UDP/SCTP; the ICMP type for ICMP/ICMPv6; 0 for other protocols
}

// Verdict is the model's decision on a flow.
type Verdict int

// The verdicts.
const (
	Allow Verdict = iota + 1
	Deny
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "Allow"
	case Deny:
		return "Deny"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Verdict decides a new (not reply) ingress flow under pols. It panics if no endpoint is named
// f.Dst (Name, or Namespace/Name).
func (w World) Verdict(pols []Policy, f Flow) Verdict {
	return w.decide(pols, f).verdict
}

// Explain returns the same verdict as Verdict with a short human-readable reason: which rule allowed
// or denied the flow, or why it was allowed or denied by default. It panics as Verdict does.
func (w World) Explain(pols []Policy, f Flow) (Verdict, string) {
	d := w.decide(pols, f)
	return d.verdict, d.String()
}

// Reasons for a decision.
const (
	notEnforced = iota // no rule with ingress or ingressDeny selects the destination
	denyRule           // an ingressDeny item matched
	localhost          // the source is the host (allow-localhost)
	allowAll           // only rules with enableDefaultDeny.ingress false: Cilium's synthesized allow-all
	allowRule          // an ingress item matched
	defaultDeny        // enforced, and nothing matched
	notCarried         // a protocol Cilium's datapath does not carry to an endpoint
)

// carriedProtocols are the protocols Cilium's datapath carries to an endpoint: TCP, UDP, ICMP,
// ICMPv6, and SCTP with enable-sctp, which the model assumes on.
var carriedProtocols = []uint8{protoICMP, protoTCP, protoUDP, protoICMPv6, protoSCTP}

// decision is a verdict and what it rests on; String formats it only when asked.
type decision struct {
	verdict Verdict
	reason  int
	pol     *Policy // the policy of the rule that decided, or that turned on default deny
	path    string  // that rule's item or spec
	flow    Flow
	dst     Endpoint
	src     source
}

// decide follows computePolicyEnforcementAndRules (pkg/policy/repository.go) for which rules apply
// and whether they enforce default deny; then deny items, allow-localhost
// (determineAllowLocalhostIngress in pkg/policy/mapstate.go), and allow items, in that precedence.
func (w World) decide(pols []Policy, f Flow) decision {
	d := decision{flow: f, dst: w.endpoint(f.Dst)}
	dstLabels := endpointLabels(d.dst, w.Cluster)

	type selected struct {
		pol  *Policy
		rule *rule
	}
	var rules []selected
	var ddPol *Policy
	ddPath := ""
	for i := range pols {
		for j := range pols[i].rules {
			r := &pols[i].rules[j]
			if r.subject == nil || !r.subject.matches(dstLabels, w.Cluster) || len(r.ingress)+len(r.ingressDeny) == 0 {
				continue
			}
			rules = append(rules, selected{&pols[i], r})
			if r.defaultDeny && ddPol == nil {
				ddPol, ddPath = &pols[i], r.path
			}
		}
	}
	if len(rules) == 0 {
		d.verdict, d.reason = Allow, notEnforced
		return d
	}
	if !slices.Contains(carriedProtocols, f.Proto) {
		// Cilium's conntrack refuses the protocol before policy
		// (bpf/lib/conntrack.h; SCTP with enable-sctp).
		d.verdict, d.reason = Deny, notCarried
		return d
	}

	// The fromRequires of the rules selecting the destination constrain the fromEndpoints of all
	// of them: ingress items' those of ingress items, ingressDeny items' those of ingressDeny items
	// (resolveL4IngressPolicy in pkg/policy/rules.go).
	var requires, requiresDeny []requirement
	for _, s := range rules {
		for _, e := range s.rule.ingress {
			requires = append(requires, e.requires...)
		}
		for _, e := range s.rule.ingressDeny {
			requiresDeny = append(requiresDeny, e.requires...)
		}
	}

	d.src = w.source(pols, f.Src)
	ports := d.dst.NamedPorts
	for _, s := range rules {
		for _, e := range s.rule.ingressDeny {
			if e.withRequires(requiresDeny).matches(d.src.labels, w.Cluster, f, ports) {
				d.verdict, d.reason, d.pol, d.path = Deny, denyRule, s.pol, e.path
				return d
			}
		}
	}
	if d.src.host {
		d.verdict, d.reason = Allow, localhost
		return d
	}
	if ddPol == nil {
		d.verdict, d.reason = Allow, allowAll
		return d
	}
	for _, s := range rules {
		for _, e := range s.rule.ingress {
			if e.withRequires(requires).matches(d.src.labels, w.Cluster, f, ports) {
				d.verdict, d.reason, d.pol, d.path = Allow, allowRule, s.pol, e.path
				return d
			}
		}
	}
	d.verdict, d.reason, d.pol, d.path = Deny, defaultDeny, ddPol, ddPath
	return d
}

func (d decision) String() string {
	dst := d.dst.Namespace + "/" + d.dst.Name
	flow := fmt.Sprintf("%s from %s (%s: %s) to %s", protoPort(d.flow), d.flow.Src, d.src.desc, d.src.labels, dst)
	switch d.reason {
	case notEnforced:
		return fmt.Sprintf("allowed: no rule with ingress or ingressDeny selects %s, so its ingress is not enforced", dst)
	case denyRule:
		return fmt.Sprintf("denied by %s %s: %s", d.pol, d.path, flow)
	case localhost:
		return "allowed: the source is the host (allow-localhost): " + flow
	case allowAll:
		return "allowed by the allow-all rule Cilium synthesizes when every rule selecting the destination has enableDefaultDeny.ingress false: " + flow
	case allowRule:
		return fmt.Sprintf("allowed by %s %s: %s", d.pol, d.path, flow)
	}
	if d.reason == notCarried {
		return fmt.Sprintf("denied: Cilium's datapath carries no IP protocol %d to an endpoint policy selects: %s", d.flow.Proto, flow)
	}
	return fmt.Sprintf("denied by default (default deny from %s %s): no rule allows %s", d.pol, d.path, flow)
}

func (w World) endpoint(name string) Endpoint {
	for _, e := range w.Endpoints {
		if e.Name == name || e.Namespace+"/"+e.Name == name {
			return e
		}
	}
	panic(fmt.Sprintf("cnpmodel: no endpoint named %q in the world", name))
}

// source is the identity of a packet's source address.
type source struct {
	labels labelSet
	desc   string
	host   bool
}

// source finds the identity of a source address as Cilium's ipcache would: an endpoint's, the host's,
// a remote node's, or else world with, when some policy names a CIDR (longer than /0) that contains
// the address, the longest such CIDR (the CIDR identities Cilium allocates for policy selectors).
func (w World) source(pols []Policy, addr netip.Addr) source {
	for _, e := range w.Endpoints {
		if slices.Contains(e.IPs, addr) {
			return source{labels: endpointLabels(e, w.Cluster), desc: "endpoint " + e.Namespace + "/" + e.Name}
		}
	}
	if slices.Contains(w.HostIPs, addr) {
		return source{labels: reservedLabels(reservedHost), desc: "host", host: true}
	}
	for _, n := range w.Nodes {
		if slices.Contains(n.IPs, addr) {
			return source{labels: reservedLabels(reservedRemoteNode), desc: "node " + n.Name}
		}
	}
	world := reservedWorldIPv4
	if !addr.Is4() {
		world = reservedWorldIPv6
	}
	var longest netip.Prefix
	for _, p := range pols {
		for _, c := range p.prefixes {
			if c.Bits() > 0 && c.Contains(addr) && (!longest.IsValid() || c.Bits() > longest.Bits()) {
				longest = c
			}
		}
	}
	ls := reservedLabels(world)
	if longest.IsValid() {
		ls = append(labelSet{cidrLabel(longest)}, ls...) // sorted by key: hex digits sort before "world"
	}
	return source{labels: ls, desc: "world"}
}

// withRequires returns the element with reqs added to each of its peers when they are fromEndpoints
// selectors (GetSourceEndpointSelectorsWithRequirements in pkg/policy/api/ingress.go).
func (e element) withRequires(reqs []requirement) element {
	if len(reqs) == 0 || !e.endpoints {
		return e
	}
	peers := make([]selector, len(e.peers))
	for i, p := range e.peers {
		peers[i] = selector{reqs: slices.Concat(p.reqs, reqs)}
	}
	e.peers = peers
	return e
}

// matches reports whether an element selects the source and covers the flow's protocol and port.
func (e element) matches(src labelSet, cluster string, f Flow, ports []NamedPort) bool {
	if !slices.ContainsFunc(e.peers, func(s selector) bool { return s.matches(src, cluster) }) {
		return false
	}
	return e.l3 || slices.ContainsFunc(e.ports, func(r portRange) bool { return r.covers(f.Proto, f.Port, ports) })
}

// covers reports whether a port range covers a protocol and port, resolving a named port against
// the destination's (toMapState in pkg/policy/l4.go, PortRangeToMaskedPorts in portrange.go).
func (r portRange) covers(proto uint8, port uint16, named []NamedPort) bool {
	if proto != r.proto {
		return false
	}
	if r.icmpType {
		return port == r.start
	}
	start := r.start
	if r.name != "" {
		np, ok := lookupNamedPort(named, r.name)
		if !ok || (np.proto != 0 && np.proto != proto) {
			return false // an unknown or incompatible named port adds nothing
		}
		start = np.port
	}
	switch {
	case start == 0 && (r.end == 0 || r.end == 0xffff):
		return true
	case r.end <= start:
		return port == start
	default:
		return start <= port && port <= r.end
	}
}

// containerPortProtocols are the protocols of a named port: "" is TCP, as in Kubernetes, and the
// others are pkg/u8proto's names.
var containerPortProtocols = map[string]uint8{"": protoTCP, "all": 0, "any": 0, "none": 0, "icmp": protoICMP,
	"tcp": protoTCP, "udp": protoUDP, "icmpv6": protoICMPv6, "sctp": protoSCTP}

// namedPort is a resolved container port; proto 0 matches every protocol.
type namedPort struct {
	proto uint8
	port  uint16
}

// lookupNamedPort finds a named port of an endpoint as Cilium's SetK8sMetadata and
// NamedPortMap.AddPort build its map (pkg/endpoint/endpoint.go, pkg/types/portmap.go): names are
// IANA service names compared in lower case, invalid entries are skipped, and a later valid
// duplicate wins.
func lookupNamedPort(ports []NamedPort, name string) (namedPort, bool) {
	for i := len(ports) - 1; i >= 0; i-- {
		np := ports[i]
		proto, ok := containerPortProtocols[strings.ToLower(np.Protocol)]
		if ok && np.Port != 0 && strings.ToLower(np.Name) == name && isSvcName(np.Name) {
			return namedPort{proto: proto, port: np.Port}, true
		}
	}
	return namedPort{}, false
}

func protoPort(f Flow) string {
	switch f.Proto {
	case protoTCP:
		return fmt.Sprintf("TCP/%d", f.Port)
	case protoUDP:
		return fmt.Sprintf("UDP/%d", f.Port)
	case protoSCTP:
		return fmt.Sprintf("SCTP/%d", f.Port)
	case protoICMP:
		return fmt.Sprintf("ICMP type %d", f.Port)
	case protoICMPv6:
		return fmt.Sprintf("ICMPv6 type %d", f.Port)
	}
	return fmt.Sprintf("protocol %d", f.Proto)
}
