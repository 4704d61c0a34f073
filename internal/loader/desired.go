package loader

import (
	"fmt"
	"net/netip"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/policy"
)

// tableKey is a verdict table as the verdicts map stores it: two tables
// with the same key decide everything alike and can be shared.
type tableKey = bpf.PolicyVerdictTable

// policyKey is the key of a policy entry: (endpoint id, remote identity).
type policyKey struct {
	endpoint uint32
	remote   datapath.Identity
}

// local is an endpoint policy together with the host-side interface its
// traffic leaves the node through.
type local struct {
	policy.EndpointPolicy
	ifindex int
	ifname  string
}

// state is what the loader's maps hold, or should hold: endpoint entries by
// ifindex, the verdict table of every policy entry, and the ipcache.
type state struct {
	endpoints map[uint32]datapath.Endpoint
	policy    map[policyKey]tableKey
	ipcache   map[netip.Prefix]datapath.Identity
}

// desiredState computes the map contents for the local endpoints and the
// ipcache of res. The endpoint id is the ifindex. It returns an error naming
// the endpoint when a policy does not fit the datapath's tables; nothing is
// then to be written.
func desiredState(ipcache []policy.IPCacheEntry, eps []local) (state, error) {
	s := state{
		endpoints: make(map[uint32]datapath.Endpoint, len(eps)),
		policy:    make(map[policyKey]tableKey),
		ipcache:   make(map[netip.Prefix]datapath.Identity, len(ipcache)),
	}
	for _, e := range ipcache {
		s.ipcache[e.Prefix.Masked()] = datapath.Identity(e.Identity)
	}
	for _, ep := range eps {
		id := uint32(ep.ifindex)
		enforce, tables, err := policyTables(ep.EndpointPolicy)
		if err != nil {
			return state{}, fmt.Errorf("endpoint %q: %w", ep.Name, err)
		}
		s.endpoints[id] = datapath.Endpoint{ID: id, EnforceIngress: enforce}
		for remote, t := range tables {
			s.policy[policyKey{endpoint: id, remote: remote}] = *t.Encode()
		}
	}
	return s, nil
}

// policyTables turns one endpoint's ingress entries into what the datapath
// looks up: whether the endpoint enforces ingress, and the verdict table of
// each remote identity that gets a policy entry of its own.
//
// The datapath consults the entry of the packet's identity, or else the
// entry of IdentityAny, never both; so the rules of wildcard entries are
// folded into every identity's table, and deny precedence is resolved
// inside each table. An identity whose table would equal the wildcard one
// gets no entry. Without any wildcard rule the wildcard entry has the empty
// table, which denies everything: it decides exactly as no entry would, and
// gives the default denials of identities without an entry a counter.
//
// An endpoint no rule selects passes everything without looking at its
// policy. One that rules select without turning on default deny still
// has its deny entries apply, and only the protocols Cilium's datapath
// carries pass (policy.EndpointPolicy.Decide): it is made enforcing with
// an allow of those under its denies, in every table.
func policyTables(ep policy.EndpointPolicy) (bool, map[datapath.Identity]datapath.VerdictTable, error) {
	if len(ep.SelectedBy) == 0 && len(ep.Entries) == 0 {
		return false, nil, nil
	}
	var wildcard []datapath.Rule
	if !ep.Enforced {
		// Selected by rules without default deny: everything Cilium's
		// datapath carries, less the denies.
		wildcard = append(wildcard, l3Allow()...)
	}
	specific := make(map[datapath.Identity][]datapath.Rule)
	for _, e := range ep.Entries {
		rules, err := entryRules(e)
		if err != nil {
			return false, nil, err
		}
		if e.Remote == policy.IdentityAny {
			wildcard = append(wildcard, rules...)
		} else {
			r := datapath.Identity(e.Remote)
			specific[r] = append(specific[r], rules...)
		}
	}
	tables := make(map[datapath.Identity]datapath.VerdictTable, len(specific)+1)
	var wild *tableKey
	if len(wildcard) > 0 {
		t, err := datapath.NewVerdictTable(wildcard)
		if err != nil {
			return false, nil, fmt.Errorf("rules for any identity: %w", err)
		}
		tables[datapath.IdentityAny] = t
		wild = t.Encode()
	} else {
		tables[datapath.IdentityAny] = datapath.VerdictTable{}
	}
	for remote, rules := range specific {
		t, err := datapath.NewVerdictTable(append(rules, wildcard...))
		if err != nil {
			return false, nil, fmt.Errorf("rules for identity %d: %w", remote, err)
		}
		if wild != nil && *t.Encode() == *wild {
			continue
		}
		tables[remote] = t
	}
	return true, tables, nil
}

// entryRules returns the datapath rules of one policy entry. Port 0 means
// every port of the protocol (and, for protocols without ports, their only
// "port" 0); protocol ANY, which the compiler gives L3 entries only, means
// every protocol and port for a deny, and every port of the
// policy.CarriedProtocols for an allow (see policy.EndpointPolicy.Decide).
func entryRules(e policy.Entry) ([]datapath.Rule, error) {
	var deny bool
	switch e.Verdict {
	case policy.Allow:
	case policy.Deny:
		deny = true
	default:
		return nil, fmt.Errorf("entry %+v: invalid verdict %d", e, e.Verdict)
	}
	switch {
	case e.Protocol == policy.ProtoAny && e.Port != 0:
		return nil, fmt.Errorf("entry %+v: protocol ANY with ports (the compiler gives TCP, UDP and SCTP entries for those)", e)
	case e.Protocol == policy.ProtoAny && deny:
		r := datapath.AnyProtocol()
		r.Deny = true
		return []datapath.Rule{r}, nil
	case e.Protocol == policy.ProtoAny:
		return l3Allow(), nil
	case e.AllPorts():
		return []datapath.Rule{{Proto: uint8(e.Protocol), FirstPort: 0, LastPort: 65535, Deny: deny}}, nil
	}
	return []datapath.Rule{{Proto: uint8(e.Protocol), FirstPort: e.Port, LastPort: max(e.EndPort, e.Port), Deny: deny}}, nil
}

// l3Allow returns the rules of an L3 allow: every port of every protocol
// Cilium's datapath carries (policy.CarriedProtocols).
func l3Allow() []datapath.Rule {
	rules := make([]datapath.Rule, 0, len(policy.CarriedProtocols))
	for _, p := range policy.CarriedProtocols {
		rules = append(rules, datapath.Rule{Proto: uint8(p), FirstPort: 0, LastPort: 65535})
	}
	return rules
}
