package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Protocol is an IP protocol number. In a PortRange, ProtoAny is Cilium's
// ANY: TCP, UDP and SCTP. In an Entry it matches every protocol, and only
// L3 entries (every port) have it.
type Protocol uint8

// The protocols policies name.
const (
	ProtoAny    Protocol = 0
	ProtoICMP   Protocol = 1
	ProtoTCP    Protocol = 6
	ProtoUDP    Protocol = 17
	ProtoICMPv6 Protocol = 58
	ProtoSCTP   Protocol = 132
)

var protocolNames = map[Protocol]string{
	ProtoAny: "ANY", ProtoICMP: "ICMP", ProtoTCP: "TCP", ProtoUDP: "UDP", ProtoICMPv6: "ICMPv6", ProtoSCTP: "SCTP",
}

// portProtocols are the protocols Cilium's ANY stands for in toPorts.
var portProtocols = []Protocol{ProtoTCP, ProtoUDP, ProtoSCTP}

// ParseProtocol parses a toPorts protocol: TCP, UDP, SCTP or ANY (the
// empty string is ANY, as in Cilium). Names are upper case, as Cilium's CRD
// requires.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "", "ANY":
		return ProtoAny, nil
	case "TCP":
		return ProtoTCP, nil
	case "UDP":
		return ProtoUDP, nil
	case "SCTP":
		return ProtoSCTP, nil
	}
	switch up := strings.ToUpper(s); up {
	case "TCP", "UDP", "SCTP", "ANY":
		return ProtoAny, fmt.Errorf("%q must be upper case: %s", s, up)
	case "ICMP", "ICMPV6":
		return ProtoAny, fmt.Errorf("protocol %s is not a toPorts protocol in Cilium's CRD (TCP, UDP, SCTP, ANY); write icmps: [{fields: [{type: ..., family: ...}]}]", up)
	case "VRRP", "IGMP":
		return ProtoAny, fmt.Errorf("protocol %s is not a toPorts protocol in Cilium's CRD (TCP, UDP, SCTP, ANY)%s", up, rejectedWhole)
	}
	return ProtoAny, fmt.Errorf("unknown protocol %q (TCP, UDP, SCTP or ANY)", s)
}

// String returns the protocol's name, or its number if it has none.
func (p Protocol) String() string {
	if name, ok := protocolNames[p]; ok {
		return name
	}
	return fmt.Sprintf("%d", uint8(p))
}

// MarshalText returns the protocol's name (or number).
func (p Protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses what MarshalText writes.
func (p *Protocol) UnmarshalText(b []byte) error {
	for v, name := range protocolNames {
		if string(b) == name {
			*p = v
			return nil
		}
	}
	n, err := strconv.ParseUint(string(b), 10, 8)
	if err != nil {
		return fmt.Errorf("unknown protocol %q", b)
	}
	*p = Protocol(n)
	return nil
}

// Verdict is what an entry does to matching traffic.
type Verdict uint8

// The verdicts. The zero Verdict is invalid.
const (
	Allow Verdict = 1
	Deny  Verdict = 2
)

// String returns "allow" or "deny".
func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// MarshalText returns "allow" or "deny".
func (v Verdict) MarshalText() ([]byte, error) {
	if v != Allow && v != Deny {
		return nil, fmt.Errorf("invalid verdict %d", uint8(v))
	}
	return []byte(v.String()), nil
}

// UnmarshalText parses "allow" or "deny".
func (v *Verdict) UnmarshalText(b []byte) error {
	switch string(b) {
	case "allow":
		*v = Allow
	case "deny":
		*v = Deny
	default:
		return fmt.Errorf("invalid verdict %q", b)
	}
	return nil
}

// Entry is one line of an endpoint's ingress table: traffic from Remote
// (IdentityAny: every source) with Protocol to a port in [Port, EndPort]
// (Port 0: every port, see AllPorts). For ICMP and ICMPv6 the port is the
// message type, one per entry; protocols without ports only have port 0.
// An entry of ProtoAny (always with Port 0) covers every protocol: it
// comes from an L3 rule.
type Entry struct {
	Remote   Identity `json:"remote"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
	EndPort  uint16   `json:"endPort"`
	Verdict  Verdict  `json:"verdict"`
	// Sources are the rules that produced the entry.
	Sources []RuleRef `json:"sources"`
}

// AllPorts reports whether the entry covers every port of its protocol:
// Port 0, except for ICMP and ICMPv6, whose entries always name one type
// (type 0 is EchoReply).
func (e Entry) AllPorts() bool {
	return e.Port == 0 && e.Protocol != ProtoICMP && e.Protocol != ProtoICMPv6
}

// Matches reports whether the entry covers traffic from remote with proto
// to port.
func (e Entry) Matches(remote Identity, proto Protocol, port uint16) bool {
	return (e.Remote == IdentityAny || e.Remote == remote) &&
		(e.Protocol == ProtoAny || e.Protocol == proto) &&
		(e.AllPorts() || port >= e.Port && port <= e.EndPort)
}

// CarriedProtocols are the IP protocols Cilium's datapath carries to an
// endpoint (with SCTP enabled): TCP, UDP, SCTP, ICMP and ICMPv6. It drops
// every other protocol (GRE, ESP, IPIP, ...) before policy, so an L3 allow
// does not let them through. roost does the same at every endpoint a rule
// selects; an endpoint no rule selects it leaves alone.
var CarriedProtocols = []Protocol{ProtoICMP, ProtoTCP, ProtoUDP, ProtoICMPv6, ProtoSCTP}

// Decide is the reference verdict for new ingress traffic from remote to
// the endpoint: any matching deny entry denies; an endpoint no rule selects
// allows everything else; one that rules select lets through only the
// CarriedProtocols, and of those, when it is enforced (default deny), only
// what an allow entry matches. (Replies to connections the endpoint opened
// are the datapath's business: connection tracking lets them through.)
func (p EndpointPolicy) Decide(remote Identity, proto Protocol, port uint16) Verdict {
	allowed := false
	for _, e := range p.Entries {
		if e.Matches(remote, proto, port) {
			if e.Verdict == Deny {
				return Deny
			}
			allowed = true
		}
	}
	switch {
	case len(p.SelectedBy) == 0:
		return Allow
	case !slices.Contains(CarriedProtocols, proto):
		return Deny
	case allowed || !p.Enforced:
		return Allow
	}
	return Deny
}

// Lookup returns the identity of a source address: the ipcache entry with
// the longest prefix containing it, IdentityWorld if none does.
func (r Resolved) Lookup(addr netip.Addr) Identity {
	addr = addr.Unmap()
	id, bits := IdentityWorld, -1
	for _, e := range r.IPCache {
		if e.Prefix.Bits() > bits && e.Prefix.Contains(addr) {
			id, bits = e.Identity, e.Prefix.Bits()
		}
	}
	return id
}

// PortPrefix is a block of ports: those whose top Bits bits equal Port's.
type PortPrefix struct {
	Port uint16
	Bits int
}

// PortPrefixes splits the entry's port range into the fewest aligned
// blocks, for datapaths that key an LPM trie on ports. Every port is one
// block {0, 0}.
func (e Entry) PortPrefixes() []PortPrefix {
	if e.AllPorts() {
		return []PortPrefix{{}}
	}
	var out []PortPrefix
	lo, hi := uint32(e.Port), uint32(e.EndPort)
	for lo <= hi {
		size := uint32(1)
		for lo%(size*2) == 0 && lo+size*2-1 <= hi {
			size *= 2
		}
		bits := 16
		for s := size; s > 1; s /= 2 {
			bits--
		}
		out = append(out, PortPrefix{Port: uint16(lo), Bits: bits})
		lo += size
	}
	return out
}
