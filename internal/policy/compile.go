package policy

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Endpoint is a workload roost knows: a pod on this or another node, or an
// external workload (VM, bare-metal host).
type Endpoint struct {
	// Name is unique among endpoints, e.g. "namespace/pod" or a VM's name.
	Name string
	IPs  []netip.Addr
	// Labels are all its labels, as EndpointLabels derives them; only
	// security labels count (see IsSecurityLabel).
	Labels map[string]string
	// NamedPorts are its named ports by lower-case name (a pod's container
	// ports): toPorts that name a port mean these for this endpoint.
	NamedPorts map[string]NamedPort `json:",omitempty"`
	// Local says the endpoint runs on this node, so Compile resolves its
	// ingress policy. Remote endpoints only feed identities and the ipcache.
	Local bool
}

// NamedPort is the port and protocol behind a port name.
type NamedPort struct {
	Port     uint16   `json:"port"`
	Protocol Protocol `json:"protocol"`
}

// Option changes how Compile works.
type Option func(*options)

type options struct {
	hostIPs     []netip.Addr
	nodeIPs     []netip.Addr
	cluster     string
	prev        map[string]Identity
	noHostAllow bool
}

// WithHostIPs maps the node's own addresses to IdentityHost in the ipcache.
func WithHostIPs(ips ...netip.Addr) Option {
	return func(o *options) { o.hostIPs = append(o.hostIPs, ips...) }
}

// WithRemoteNodeIPs maps the other nodes' addresses to IdentityRemoteNode
// in the ipcache. An address that is also the host's stays the host's.
func WithRemoteNodeIPs(ips ...netip.Addr) Option {
	return func(o *options) { o.nodeIPs = append(o.nodeIPs, ips...) }
}

// WithCluster names the local cluster: entity cluster selects the
// endpoints whose ClusterLabel is name. Without it, DefaultCluster.
func WithCluster(name string) Option {
	return func(o *options) { o.cluster = name }
}

// DefaultCluster is the cluster name Cilium uses when none is configured.
const DefaultCluster = "default"

// WithPrevious keeps the identities an earlier Compile gave to label sets
// and prefixes that still exist, so that a hash collision between a new and
// an existing label set never renumbers the existing one.
func WithPrevious(prev Resolved) Option {
	return func(o *options) {
		o.prev = make(map[string]Identity, len(prev.Identities))
		for _, id := range prev.Identities {
			switch {
			case id.ID.IsLabels():
				o.prev[labelsKeyPrefix+canonicalLabels(id.Labels)] = id.ID
			case id.ID.IsCIDR():
				o.prev[cidrKeyPrefix+id.Prefix.String()] = id.ID
			}
		}
	}
}

// WithoutHostAllow drops the implicit allow of IdentityHost into enforced
// endpoints. By default roost, like Cilium's allow-localhost, lets the
// local host (kubelet probes) reach its endpoints unless a deny says
// otherwise.
func WithoutHostAllow() Option {
	return func(o *options) { o.noHostAllow = true }
}

// Resolved is everything the datapath needs, sorted and deterministic.
type Resolved struct {
	// Cluster is the local cluster's name (WithCluster).
	Cluster string `json:"cluster"`
	// Identities lists the reserved identities, every label identity of a
	// known endpoint and every CIDR identity, by ID.
	Identities []IdentityInfo `json:"identities"`
	// IPCache maps source prefixes to identities, longest prefix winning;
	// it always holds 0.0.0.0/0 and ::/0.
	IPCache []IPCacheEntry `json:"ipcache"`
	// Endpoints are the local endpoints' ingress policies, by name.
	Endpoints []EndpointPolicy `json:"endpoints"`
}

// IdentityInfo describes one identity: exactly one of Reserved, Labels (for
// a label identity, possibly empty) or Prefix is meaningful.
type IdentityInfo struct {
	ID       Identity          `json:"id"`
	Reserved string            `json:"reserved,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Prefix   netip.Prefix      `json:"prefix,omitzero"`
	// Endpoints names the endpoints with a label identity.
	Endpoints []string `json:"endpoints,omitempty"`
}

// IPCacheEntry maps a source prefix to an identity.
type IPCacheEntry struct {
	Prefix   netip.Prefix `json:"prefix"`
	Identity Identity     `json:"identity"`
}

// EndpointPolicy is the ingress policy of one local endpoint.
type EndpointPolicy struct {
	Name     string       `json:"name"`
	IPs      []netip.Addr `json:"ips"`
	Identity Identity     `json:"identity"`
	// Enforced is true when some selecting rule turns on default deny.
	Enforced bool `json:"ingressEnforced"`
	// SelectedBy lists the rules whose endpointSelector selects it.
	SelectedBy []RuleRef `json:"selectedBy,omitempty"`
	// Entries are sorted: denies first, then by remote, protocol and port.
	Entries []Entry `json:"entries,omitempty"`
}

// RuleRef names the rule an entry or selection comes from. An implicit
// entry has no Policy.
type RuleRef struct {
	Policy string `json:"policy,omitempty"`
	Rule   string `json:"rule"`
	// Source is "file:line" of the rule.
	Source string `json:"source,omitempty"`
}

// Compile resolves policies against endpoints. It returns an error joining
// every problem found: an endpoint without a name or with a duplicate name,
// a bad label, an address that is invalid or claimed twice (by endpoints or
// WithHostIPs), or a policy defined twice.
//
// CIDR peers select CIDR identities: every prefix named by any fromCIDR,
// fromCIDRSet cidr or except gets one in the ipcache, unless it is exactly an
// endpoint or host address (the endpoint's identity wins, as in Cilium). A
// CIDR peer P except E selects the CIDR identities of all those prefixes
// inside P and not inside E, so a longer prefix from another rule still
// counts as P, and excepted ranges resolve to their own identity, which P
// does not select. 0.0.0.0/0 and ::/0 are IdentityWorldIPv4 and
// IdentityWorldIPv6. Endpoint, host and node addresses are never selected
// by CIDR.
func Compile(policies []Policy, endpoints []Endpoint, opts ...Option) (Resolved, error) {
	o := options{cluster: DefaultCluster}
	for _, opt := range opts {
		opt(&o)
	}
	c := &compiler{policies: policies, opts: o}
	if err := c.validate(endpoints); err != nil {
		return Resolved{}, err
	}
	c.identities(endpoints)
	c.cidrIdentities()
	c.selectableIdentities()
	return Resolved{
		Cluster:    o.cluster,
		Identities: c.identityInfos(endpoints),
		IPCache:    c.ipcache(endpoints),
		Endpoints:  c.endpointPolicies(endpoints),
	}, nil
}

// compiler holds the state of one Compile.
type compiler struct {
	policies []Policy
	opts     options
	// owner maps every endpoint and host address to its owner.
	owner map[netip.Addr]string
	// epKey is each endpoint's canonical security label set.
	epKey []string
	// labelID and labelSets: identity of a canonical label set, and back.
	labelID   map[string]Identity
	labelSets map[Identity]labels.Set
	labelIDs  []Identity
	// cidrs are the CIDR identities, by prefix.
	cidrs []IPCacheEntry
	// nodeIPs are the remote nodes' addresses the ipcache maps.
	nodeIPs []netip.Addr
	// selectable is every identity a selector can select, with the labels
	// it is selected by.
	selectable []selectableIdentity
	// selectorCache memoizes fromEndpoints selectors by their string.
	selectorCache map[string][]Identity
}

// selectableIdentity is an identity and the labels selectors see on it.
type selectableIdentity struct {
	id  Identity
	set map[string]string
}

func (c *compiler) validate(endpoints []Endpoint) error {
	var errs []error
	seen := make(map[string]string)
	for _, p := range c.policies {
		src := fmt.Sprintf("%s:%d", p.File, p.Line)
		if first, dup := seen[p.ID()]; dup {
			errs = append(errs, fmt.Errorf("policy %q is defined twice: %s and %s", p.ID(), first, src))
			continue
		}
		seen[p.ID()] = src
	}
	c.owner = make(map[netip.Addr]string)
	claim := func(ip netip.Addr, who string) {
		switch {
		case !ip.IsValid(), ip.IsUnspecified():
			errs = append(errs, fmt.Errorf("%s: invalid address %q", who, ip))
		case ip.Zone() != "":
			errs = append(errs, fmt.Errorf("%s: address %s has a zone", who, ip))
		case ip.Is4In6():
			errs = append(errs, fmt.Errorf("%s: address %s is IPv4-mapped; use %s", who, ip, ip.Unmap()))
		case c.owner[ip] != "":
			errs = append(errs, fmt.Errorf("%s: address %s already belongs to %s", who, ip, c.owner[ip]))
		default:
			c.owner[ip] = who
		}
	}
	for _, ip := range c.opts.hostIPs {
		claim(ip, "host")
	}
	names := make(map[string]bool)
	// Endpoints share label keys and values: check each string once.
	keyErrs, valueErrs := make(map[string][]string), make(map[string][]string)
	for _, ep := range endpoints {
		who := "endpoint " + strconv.Quote(ep.Name)
		switch {
		case ep.Name == "":
			errs = append(errs, fmt.Errorf("an endpoint has no name (addresses %v)", ep.IPs))
		case names[ep.Name]:
			errs = append(errs, fmt.Errorf("%s is listed twice", who))
		}
		names[ep.Name] = true
		bad := false
		for k, v := range ep.Labels {
			ke, ok := keyErrs[k]
			if !ok {
				ke = validation.IsQualifiedName(k)
				keyErrs[k] = ke
			}
			ve, ok := valueErrs[v]
			if !ok {
				ve = validation.IsValidLabelValue(v)
				valueErrs[v] = ve
			}
			bad = bad || len(ke)+len(ve) > 0
		}
		for _, k := range sortedIf(bad, ep.Labels) {
			for _, msg := range keyErrs[k] {
				errs = append(errs, fmt.Errorf("%s: label key %q: %s", who, k, msg))
			}
			for _, msg := range valueErrs[ep.Labels[k]] {
				errs = append(errs, fmt.Errorf("%s: label %s value %q: %s", who, k, ep.Labels[k], msg))
			}
		}
		for _, ip := range ep.IPs {
			claim(ip, who)
		}
		for _, name := range slices.Sorted(maps.Keys(ep.NamedPorts)) {
			np := ep.NamedPorts[name]
			switch {
			case len(name) > 15 || !portName.MatchString(name) || strings.ToLower(name) != name:
				errs = append(errs, fmt.Errorf("%s: named port %q: not a lower-case IANA service name (1-15 letters, digits and single '-', with a letter)", who, name))
			case np.Port == 0:
				errs = append(errs, fmt.Errorf("%s: named port %q: port 0", who, name))
			case !slices.Contains(portProtocols, np.Protocol):
				errs = append(errs, fmt.Errorf("%s: named port %q: protocol %s (TCP, UDP or SCTP)", who, name, np.Protocol))
			}
		}
	}
	// Other nodes' addresses last: one that is also the host's stays the
	// host's; one of an endpoint is an error.
	for _, ip := range c.opts.nodeIPs {
		switch c.owner[ip] {
		case "host", "remote node":
			continue
		}
		claim(ip, "remote node")
		if c.owner[ip] == "remote node" {
			c.nodeIPs = append(c.nodeIPs, ip)
		}
	}
	slices.SortFunc(c.nodeIPs, netip.Addr.Compare)
	return errors.Join(errs...)
}

// sortedIf returns m's keys in order if ok, else nothing.
func sortedIf(ok bool, m map[string]string) []string {
	if !ok {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}

// identities numbers the distinct security label sets of endpoints.
func (c *compiler) identities(endpoints []Endpoint) {
	c.epKey = make([]string, len(endpoints))
	sets := make(map[string]labels.Set)
	security := make(map[string]bool) // IsSecurityLabel, memoized
	for i, ep := range endpoints {
		sec := make(labels.Set, len(ep.Labels))
		for k, v := range ep.Labels {
			ok, seen := security[k]
			if !seen {
				ok = IsSecurityLabel(k)
				security[k] = ok
			}
			if ok {
				sec[k] = v
			}
		}
		key := labelsKeyPrefix + canonicalLabels(sec)
		c.epKey[i] = key
		if _, ok := sets[key]; !ok {
			sets[key] = sec
		}
	}
	keys := slices.Sorted(maps.Keys(sets))
	natural := func(k string) Identity { return hashedIdentity(k, MinLabelIdentity, MaxLabelIdentity) }
	c.labelID = allocate(keys, MinLabelIdentity, MaxLabelIdentity, natural, c.opts.prev)
	c.labelSets = make(map[Identity]labels.Set, len(keys))
	for k, id := range c.labelID {
		c.labelSets[id] = sets[k]
		c.labelIDs = append(c.labelIDs, id)
	}
	slices.Sort(c.labelIDs)
}

// cidrIdentities numbers every prefix the policies name, except default
// routes and exact endpoint or host addresses.
func (c *compiler) cidrIdentities() {
	set := make(map[netip.Prefix]bool)
	for _, p := range c.policies {
		for _, r := range p.Rules {
			for _, pr := range slices.Concat(r.Ingress, r.IngressDeny) {
				for _, cs := range pr.CIDRs {
					for _, pfx := range append([]netip.Prefix{cs.Prefix}, cs.Except...) {
						if pfx.Bits() == 0 || (pfx.IsSingleIP() && c.owner[pfx.Addr()] != "") {
							continue
						}
						set[pfx] = true
					}
				}
			}
		}
	}
	keys := make([]string, 0, len(set))
	byKey := make(map[string]netip.Prefix, len(set))
	for pfx := range set {
		k := cidrKeyPrefix + pfx.String()
		keys = append(keys, k)
		byKey[k] = pfx
	}
	slices.Sort(keys)
	natural := func(k string) Identity { return hashedIdentity(k, MinCIDRIdentity, MaxCIDRIdentity) }
	for k, id := range allocate(keys, MinCIDRIdentity, MaxCIDRIdentity, natural, c.opts.prev) {
		c.cidrs = append(c.cidrs, IPCacheEntry{Prefix: byKey[k], Identity: id})
	}
	slices.SortFunc(c.cidrs, func(a, b IPCacheEntry) int { return comparePrefix(a.Prefix, b.Prefix) })
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func (c *compiler) identityInfos(endpoints []Endpoint) []IdentityInfo {
	var out []IdentityInfo
	for _, id := range slices.Sorted(maps.Keys(reservedNames)) {
		out = append(out, IdentityInfo{ID: id, Reserved: reservedNames[id]})
	}
	names := make(map[Identity][]string)
	for i, ep := range endpoints {
		id := c.labelID[c.epKey[i]]
		names[id] = append(names[id], ep.Name)
	}
	for _, id := range c.labelIDs {
		slices.Sort(names[id])
		out = append(out, IdentityInfo{ID: id, Labels: c.labelSets[id], Endpoints: names[id]})
	}
	for _, e := range c.cidrs {
		out = append(out, IdentityInfo{ID: e.Identity, Prefix: e.Prefix})
	}
	slices.SortFunc(out, func(a, b IdentityInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (c *compiler) ipcache(endpoints []Endpoint) []IPCacheEntry {
	out := []IPCacheEntry{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Identity: IdentityWorldIPv4},
		{Prefix: netip.MustParsePrefix("::/0"), Identity: IdentityWorldIPv6},
	}
	for _, ip := range c.opts.hostIPs {
		out = append(out, IPCacheEntry{Prefix: netip.PrefixFrom(ip, ip.BitLen()), Identity: IdentityHost})
	}
	for _, ip := range c.nodeIPs {
		out = append(out, IPCacheEntry{Prefix: netip.PrefixFrom(ip, ip.BitLen()), Identity: IdentityRemoteNode})
	}
	for i, ep := range endpoints {
		for _, ip := range ep.IPs {
			out = append(out, IPCacheEntry{Prefix: netip.PrefixFrom(ip, ip.BitLen()), Identity: c.labelID[c.epKey[i]]})
		}
	}
	out = append(out, c.cidrs...)
	slices.SortFunc(out, func(a, b IPCacheEntry) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}

// selectableIdentities lists every identity with the labels a selector
// sees on it: label identities their security labels; the reserved ones
// (and CIDR identities, which are world) their reserved label.
func (c *compiler) selectableIdentities() {
	reserved := func(id Identity) selectableIdentity {
		return selectableIdentity{id: id, set: map[string]string{reservedKey(reservedNames[id]): ""}}
	}
	for _, id := range slices.Sorted(maps.Keys(reservedNames)) {
		c.selectable = append(c.selectable, reserved(id))
	}
	for _, id := range c.labelIDs {
		c.selectable = append(c.selectable, selectableIdentity{id: id, set: c.labelSets[id]})
	}
	for _, e := range c.cidrs {
		world := IdentityWorldIPv4
		if e.Prefix.Addr().Is6() {
			world = IdentityWorldIPv6
		}
		c.selectable = append(c.selectable, selectableIdentity{id: e.Identity, set: reserved(world).set})
	}
}

// namedPortsKey is the canonical text of an endpoint's named ports.
func namedPortsKey(ports map[string]NamedPort) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(ports)) {
		fmt.Fprintf(&b, "%s=%d/%d;", name, ports[name].Port, ports[name].Protocol)
	}
	return b.String()
}

func (c *compiler) endpointPolicies(endpoints []Endpoint) []EndpointPolicy {
	byKey := make(map[string]EndpointPolicy)
	var out []EndpointPolicy
	for i, ep := range endpoints {
		if !ep.Local {
			continue
		}
		key := c.epKey[i]
		// Named ports resolve per endpoint: endpoints with the same labels
		// share a policy only when they also name the same ports.
		cacheKey := key + "\x00" + namedPortsKey(ep.NamedPorts)
		pol, ok := byKey[cacheKey]
		if !ok {
			pol = c.resolve(c.labelSets[c.labelID[key]], ep.NamedPorts)
			byKey[cacheKey] = pol
		}
		pol.Name, pol.IPs, pol.Identity = ep.Name, slices.Clone(ep.IPs), c.labelID[key]
		slices.SortFunc(pol.IPs, netip.Addr.Compare)
		out = append(out, pol)
	}
	slices.SortFunc(out, func(a, b EndpointPolicy) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// entryKey is what makes two entries the same entry.
type entryKey struct {
	remote  Identity
	proto   Protocol
	port    uint16
	endPort uint16
	verdict Verdict
}

// entryPorts returns the (protocol, ports) entries one rule's ports give an
// endpoint with namedPorts: every protocol and port when the rule has none
// (an L3 rule); ANY as TCP, UDP and SCTP; a named port as the endpoint's
// port of that name for each protocol whose it is, and nothing for the
// others (as Cilium, which skips a name an endpoint does not have).
func entryPorts(ports []PortRange, namedPorts map[string]NamedPort) []PortRange {
	if len(ports) == 0 {
		return []PortRange{{Protocol: ProtoAny}}
	}
	var out []PortRange
	for _, pr := range ports {
		protos := []Protocol{pr.Protocol}
		if pr.Protocol == ProtoAny {
			protos = portProtocols
		}
		for _, proto := range protos {
			switch {
			case pr.Name == "":
				out = append(out, PortRange{Protocol: proto, Port: pr.Port, EndPort: pr.EndPort})
			default:
				if np, ok := namedPorts[pr.Name]; ok && np.Protocol == proto && np.Port != 0 {
					out = append(out, PortRange{Protocol: proto, Port: np.Port, EndPort: np.Port})
				}
			}
		}
	}
	return out
}

// resolve computes the ingress policy of an endpoint with security labels
// set and named ports namedPorts.
func (c *compiler) resolve(set labels.Set, namedPorts map[string]NamedPort) EndpointPolicy {
	var ep EndpointPolicy
	index := make(map[entryKey]int)
	add := func(remote Identity, pr PortRange, v Verdict, ref RuleRef) {
		k := entryKey{remote: remote, proto: pr.Protocol, port: pr.Port, endPort: pr.EndPort, verdict: v}
		i, ok := index[k]
		if !ok {
			i = len(ep.Entries)
			index[k] = i
			ep.Entries = append(ep.Entries, Entry{Remote: remote, Protocol: pr.Protocol, Port: pr.Port, EndPort: pr.EndPort, Verdict: v})
		}
		if s := ep.Entries[i].Sources; len(s) == 0 || s[len(s)-1] != ref {
			ep.Entries[i].Sources = append(s, ref)
		}
	}
	// fromRequires of every rule that selects the endpoint constrain the
	// fromEndpoints of all of them (Cilium's resolveL4IngressPolicy):
	// those of ingress elements the ingress elements', those of
	// ingressDeny elements the ingressDeny elements'.
	var requires [2][]requirement
	for _, p := range c.policies {
		for _, r := range p.Rules {
			if !r.Subject.Matches(set) {
				continue
			}
			for g, group := range [][]PeerRule{r.Ingress, r.IngressDeny} {
				for _, pr := range group {
					for _, s := range pr.Requires {
						requires[g] = append(requires[g], s.reqs...)
					}
				}
			}
		}
	}
	for _, p := range c.policies {
		for _, r := range p.Rules {
			if !r.Subject.Matches(set) {
				continue
			}
			ep.SelectedBy = append(ep.SelectedBy, RuleRef{Policy: p.ID(), Rule: r.Path, Source: source(p.File, r.Line)})
			ep.Enforced = ep.Enforced || r.DefaultDeny
			for g, group := range []struct {
				rules   []PeerRule
				verdict Verdict
			}{{r.Ingress, Allow}, {r.IngressDeny, Deny}} {
				for _, pr := range group.rules {
					ref := RuleRef{Policy: p.ID(), Rule: pr.Path, Source: source(p.File, pr.Line)}
					ports := entryPorts(pr.Ports, namedPorts)
					if len(requires[g]) > 0 && len(pr.Endpoints) > 0 {
						pr.Endpoints = withRequirements(pr.Endpoints, requires[g])
					}
					for _, remote := range c.peers(pr) {
						for _, port := range ports {
							add(remote, port, group.verdict, ref)
						}
					}
				}
			}
		}
	}
	if ep.Enforced && !c.opts.noHostAllow {
		add(IdentityHost, PortRange{}, Allow, RuleRef{Rule: "allow-localhost"})
	}
	slices.SortFunc(ep.SelectedBy, compareRuleRef)
	for i := range ep.Entries {
		slices.SortFunc(ep.Entries[i].Sources, compareRuleRef)
		ep.Entries[i].Sources = slices.Compact(ep.Entries[i].Sources)
	}
	slices.SortFunc(ep.Entries, compareEntry)
	return ep
}

// withRequirements returns copies of sels with reqs added to each.
func withRequirements(sels []Selector, reqs []requirement) []Selector {
	out := make([]Selector, len(sels))
	for i, s := range sels {
		out[i] = Selector{valid: s.valid, reqs: slices.Concat(s.reqs, reqs)}
	}
	return out
}

// source returns "file:line", or the file alone without a line.
func source(file string, line int) string {
	if line == 0 {
		return file
	}
	return fmt.Sprintf("%s:%d", file, line)
}

func compareRuleRef(a, b RuleRef) int {
	return cmp.Or(cmp.Compare(a.Policy, b.Policy), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Source, b.Source))
}

func compareEntry(a, b Entry) int {
	return cmp.Or(
		cmp.Compare(b.Verdict, a.Verdict), // Deny (2) before Allow (1)
		cmp.Compare(a.Remote, b.Remote),
		cmp.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.EndPort, b.EndPort),
	)
}

// entitySelectors are the selectors Cilium gives each entity (but
// cluster, see peers): they select reserved identities by their label.
var entitySelectors = map[Entity][]string{
	EntityWorld:      {"world", "world-ipv4", "world-ipv6"},
	EntityWorldIPv4:  {"world-ipv4"},
	EntityWorldIPv6:  {"world-ipv6"},
	EntityHost:       {"host"},
	EntityRemoteNode: {"remote-node"},
	EntityInit:       {"init"},
	EntityHealth:     {"health"},
	EntityUnmanaged:  {"unmanaged"},
	EntityIngress:    {"ingress"},
	EntityNone:       {"none"},
}

// reservedSelector selects the identities carrying reserved label name.
func reservedSelector(name string) Selector {
	return Selector{valid: true, reqs: []requirement{{source: sourceReserved, key: name, op: selection.Equals, values: []string{""}}}}
}

// peers returns the sorted identities a peer rule selects; IdentityAny
// alone when it selects every source.
func (c *compiler) peers(r PeerRule) []Identity {
	if !r.HasPeers() {
		if len(r.Ports) > 0 {
			return []Identity{IdentityAny}
		}
		return nil
	}
	set := make(map[Identity]bool)
	selectors := slices.Clone(r.Endpoints)
	for _, e := range r.Entities {
		switch e {
		case EntityAll:
			return []Identity{IdentityAny}
		case EntityCluster:
			// Cilium's cluster: the reserved identities of the cluster
			// and every endpoint of the local cluster.
			for _, name := range []string{"host", "remote-node", "init", "ingress", "health", "unmanaged", "kube-apiserver"} {
				selectors = append(selectors, reservedSelector(name))
			}
			selectors = append(selectors, Selector{valid: true, reqs: []requirement{
				{source: sourceK8s, key: ClusterLabel, op: selection.Equals, values: []string{c.opts.cluster}},
			}})
		default:
			for _, name := range entitySelectors[e] {
				selectors = append(selectors, reservedSelector(name))
			}
		}
	}
	for _, s := range selectors {
		for _, id := range c.selectIdentities(s) {
			set[id] = true
		}
	}
	for _, cs := range r.CIDRs {
		excepted := func(q netip.Prefix) bool {
			for _, e := range cs.Except {
				if e.Bits() <= q.Bits() && e.Contains(q.Addr()) {
					return true
				}
			}
			return false
		}
		if cs.Prefix.Bits() == 0 && !excepted(cs.Prefix) {
			if cs.Prefix.Addr().Is4() {
				set[IdentityWorldIPv4] = true
			} else {
				set[IdentityWorldIPv6] = true
			}
		}
		for _, ce := range c.cidrs {
			q := ce.Prefix
			if cs.Prefix.Bits() <= q.Bits() && cs.Prefix.Contains(q.Addr()) && !excepted(q) {
				set[ce.Identity] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// selectIdentities returns the identities a selector selects.
func (c *compiler) selectIdentities(s Selector) []Identity {
	key := s.String()
	if ids, ok := c.selectorCache[key]; ok {
		return ids
	}
	var ids []Identity
	for _, si := range c.selectable {
		if s.Matches(si.set) {
			ids = append(ids, si.id)
		}
	}
	if c.selectorCache == nil {
		c.selectorCache = make(map[string][]Identity)
	}
	c.selectorCache[key] = ids
	return ids
}
