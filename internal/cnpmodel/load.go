package cnpmodel

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

const (
	kindCNP  = "CiliumNetworkPolicy"
	kindCCNP = "CiliumClusterwideNetworkPolicy"
)

// Policy is one CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy document as the model reads it.
type Policy struct {
	kind      string
	name      string
	namespace string // "" for a clusterwide policy
	rules     []rule
	prefixes  []netip.Prefix // every CIDR its ingress and ingressDeny rules name (ipcache prefixes)
}

// String returns the policy's kind, namespace and name.
func (p Policy) String() string {
	if p.namespace == "" {
		return p.kind + " " + p.name
	}
	return p.kind + " " + p.namespace + "/" + p.name
}

// rule is one spec of a policy, after ParseToCiliumRule.
type rule struct {
	path        string    // "spec" or "specs[i]"
	subject     *selector // nil for a nodeSelector rule (host policy): it selects no endpoint
	ingress     []element
	ingressDeny []element
	defaultDeny bool // enableDefaultDeny.ingress unset or true
}

// element is one ingress or ingressDeny item: the sources it selects and the traffic it covers.
type element struct {
	path  string
	peers []selector // nil selects nothing
	// endpoints says the peers are fromEndpoints selectors, which the fromRequires of the rules
	// selecting the destination constrain (GetSourceEndpointSelectorsWithRequirements).
	endpoints bool
	requires  []requirement // this item's fromRequires, as ConvertToLabelSelectorRequirementSlice gives them
	l3        bool          // no toPorts and no icmps: every protocol and port
	ports     []portRange
}

// portRange is one protocol's ports from a toPorts or icmps entry.
type portRange struct {
	proto      uint8
	name       string // a named port, looked up in the destination's container ports; "" for a number
	start, end uint16 // end is endPort: a range when end > start
	icmpType   bool   // an icmps type: start is the type, 0 included (never a wildcard)
}

// Protocol numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// Load reads every document of a YAML stream (several documents separated by ---; empty documents skipped). A
// CiliumNetworkPolicy without metadata.namespace lives in defaultNamespace (what `kubectl apply` would do).
// Load does not validate what roost validates; it returns an error only for what the model cannot judge:
// a kind other than cilium.io/v2 CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy, or any field that
// changes ingress verdicts and that the model does not implement (e.g. fromGroups, fromNodes, cidrGroupRef,
// cidrGroupSelector, L7 rules (toPorts[].rules), listener, serverNames, TLS, authentication): the error names the field path.
// egress, egressDeny, labels, description, log and other fields that do not change ingress verdicts are ignored.
//
// Load also refuses, naming the field, what Cilium itself refuses when it parses the policy (so the
// policy would never be enforced): an unknown field under spec, an invalid CIDR, port, protocol,
// ICMP type or family, an unknown entity or selector operator, a rule without endpointSelector or
// nodeSelector or without any rule list, a CiliumNetworkPolicy with nodeSelector, a rule combining
// two kinds of peers, or icmps with toPorts.
func Load(r io.Reader, defaultNamespace string) ([]Policy, error) {
	dec := yaml.NewDecoder(r)
	var pols []Policy
	for doc := 1; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return pols, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		root := &n
		if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
			root = root.Content[0]
		}
		if isNull(root) {
			continue
		}
		l := loader{doc: doc}
		p, err := l.policy(root, defaultNamespace)
		if err != nil {
			return nil, err
		}
		pols = append(pols, p)
	}
}

// loader reads one document.
type loader struct {
	doc         int
	namespace   string // the policy's namespace; "" for a clusterwide policy
	matchesInit bool   // the current rule's endpointSelector has the key reserved:init
	prefixes    []netip.Prefix
}

func (l *loader) errorf(n *yaml.Node, path, format string, args ...any) error {
	if path == "" {
		path = "(top level)"
	}
	return fmt.Errorf("document %d, line %d: %s: %s", l.doc, n.Line, path, fmt.Sprintf(format, args...))
}

func (l *loader) refuse(m fields, path string, names ...string) error {
	for _, name := range names {
		if n, ok := m.get(name); ok {
			return l.errorf(n, join(path, name), "not implemented by the model (it changes ingress verdicts)")
		}
	}
	return nil
}

func (l *loader) policy(root *yaml.Node, defaultNamespace string) (Policy, error) {
	top, err := l.mapping(root, "", nil) // unknown top-level fields (status, …) are ignored
	if err != nil {
		return Policy{}, err
	}
	apiVersion, err := l.scalar(top, "", "apiVersion")
	if err != nil {
		return Policy{}, err
	}
	kind, err := l.scalar(top, "", "kind")
	if err != nil {
		return Policy{}, err
	}
	if apiVersion != "cilium.io/v2" || (kind != kindCNP && kind != kindCCNP) {
		return Policy{}, l.errorf(root, "kind", "%s %q is not a cilium.io/v2 %s or %s", apiVersion, kind, kindCNP, kindCCNP)
	}
	p := Policy{kind: kind}
	if n, ok := top.get("metadata"); ok {
		meta, err := l.mapping(n, "metadata", nil)
		if err != nil {
			return Policy{}, err
		}
		if p.name, err = l.scalar(meta, "metadata", "name"); err != nil {
			return Policy{}, err
		}
		if p.namespace, err = l.scalar(meta, "metadata", "namespace"); err != nil {
			return Policy{}, err
		}
	}
	if p.name == "" {
		return Policy{}, l.errorf(root, "metadata.name", "missing (Cilium refuses a policy without a name)")
	}
	switch {
	case kind == kindCCNP:
		p.namespace = "" // cluster-scoped: a namespace in the manifest is not part of the object
	case p.namespace == "":
		p.namespace = defaultNamespace // kubectl apply; Cilium parses a CNP still without one as a CCNP
	}
	l.namespace = p.namespace

	spec, hasSpec := top.get("spec")
	specs, hasSpecs := top.get("specs")
	if !hasSpec && !hasSpecs {
		return Policy{}, l.errorf(root, "spec", "missing: a policy needs spec or specs")
	}
	if hasSpec {
		r, err := l.rule(spec, "spec")
		if err != nil {
			return Policy{}, err
		}
		p.rules = append(p.rules, r)
	}
	if hasSpecs {
		items, err := l.sequence(specs, "specs")
		if err != nil {
			return Policy{}, err
		}
		for i, item := range items {
			r, err := l.rule(item, fmt.Sprintf("specs[%d]", i))
			if err != nil {
				return Policy{}, err
			}
			p.rules = append(p.rules, r)
		}
	}
	p.prefixes = l.prefixes
	return p, nil
}

func (l *loader) rule(n *yaml.Node, path string) (rule, error) {
	m, err := l.mapping(n, path, []string{
		"endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny",
		"labels", "description", "enableDefaultDeny", "log",
	})
	if err != nil {
		return rule{}, err
	}
	r := rule{path: path, defaultDeny: true}
	l.matchesInit = false

	// Rule.Sanitize: at least one rule list, exactly one of endpointSelector and nodeSelector.
	count := 0
	for _, list := range []string{"ingress", "ingressDeny", "egress", "egressDeny"} {
		if ln, ok := m.get(list); ok {
			items, err := l.sequence(ln, join(path, list))
			if err != nil {
				return rule{}, err
			}
			count += len(items)
		}
	}
	if count == 0 {
		return rule{}, l.errorf(n, path, "Cilium refuses a rule without ingress, ingressDeny, egress or egressDeny")
	}
	esNode, hasES := m.get("endpointSelector")
	nsNode, hasNS := m.get("nodeSelector")
	switch {
	case hasES == hasNS:
		return rule{}, l.errorf(n, path, "Cilium needs exactly one of endpointSelector and nodeSelector")
	case hasNS && l.namespace != "":
		return rule{}, l.errorf(nsNode, join(path, "nodeSelector"), "Cilium refuses nodeSelector in a %s", kindCNP)
	case hasNS:
		if _, err := l.selector(nsNode, join(path, "nodeSelector")); err != nil {
			return rule{}, err
		}
	default:
		raw, err := l.selector(esNode, join(path, "endpointSelector"))
		if err != nil {
			return rule{}, err
		}
		l.matchesInit = raw.hasKey(sourceReserved + "." + reservedInit)
		if l.namespace != "" { // ParseToCiliumRule: a CNP selects only in its namespace
			raw.addMatch(sourceK8s+"."+podNamespaceLabel, l.namespace)
		}
		sel := raw.compile()
		r.subject = &sel
	}

	if dn, ok := m.get("enableDefaultDeny"); ok {
		dd, err := l.mapping(dn, join(path, "enableDefaultDeny"), []string{"ingress", "egress"})
		if err != nil {
			return rule{}, err
		}
		if in, ok := dd.get("ingress"); ok {
			if err := in.Decode(&r.defaultDeny); err != nil {
				return rule{}, l.errorf(in, join(path, "enableDefaultDeny.ingress"), "not a boolean")
			}
		}
	}

	for _, deny := range []bool{false, true} {
		list := "ingress"
		if deny {
			list = "ingressDeny"
		}
		ln, ok := m.get(list)
		if !ok {
			continue
		}
		items, _ := l.sequence(ln, join(path, list))
		for i, item := range items {
			e, err := l.element(item, fmt.Sprintf("%s.%s[%d]", path, list, i), deny)
			if err != nil {
				return rule{}, err
			}
			if deny {
				r.ingressDeny = append(r.ingressDeny, e)
			} else {
				r.ingress = append(r.ingress, e)
			}
		}
	}
	return r, nil
}

// element reads one ingress or ingressDeny item: its peers as Cilium's
// GetSourceEndpointSelectorsWithRequirements returns them, and its ports as mergeIngress covers them.
func (l *loader) element(n *yaml.Node, path string, deny bool) (element, error) {
	known := []string{"fromEndpoints", "fromRequires", "fromCIDR", "fromCIDRSet", "fromEntities", "fromGroups", "fromNodes", "toPorts", "icmps"}
	if !deny {
		known = append(known, "authentication")
	}
	m, err := l.mapping(n, path, known)
	if err != nil {
		return element{}, err
	}
	if err := l.refuse(m, path, "fromGroups", "fromNodes", "authentication"); err != nil {
		return element{}, err
	}
	e := element{path: path}
	if rn, ok := m.get("fromRequires"); ok {
		items, err := l.sequence(rn, join(path, "fromRequires"))
		if err != nil {
			return element{}, err
		}
		for i, item := range items {
			raw, err := l.selector(item, fmt.Sprintf("%s.fromRequires[%d]", path, i))
			if err != nil {
				return element{}, err
			}
			e.requires = append(e.requires, l.requiresSelector(raw).reqs...)
		}
	}

	// Each peer list: its items, and whether it is present (an explicitly empty list selects nothing).
	lists := map[string][]*yaml.Node{}
	var present, nonEmpty []string
	for _, name := range []string{"fromEndpoints", "fromEntities", "fromCIDR", "fromCIDRSet"} {
		ln, ok := m.get(name)
		if !ok {
			continue
		}
		items, err := l.sequence(ln, join(path, name))
		if err != nil {
			return element{}, err
		}
		lists[name] = items
		present = append(present, name)
		if len(items) > 0 {
			nonEmpty = append(nonEmpty, name)
		}
	}
	if len(nonEmpty) > 1 {
		return element{}, l.errorf(n, path, "Cilium refuses combining %s and %s", nonEmpty[0], nonEmpty[1])
	}

	nothing := false
	peers := []selector{}
	for _, name := range present {
		items := lists[name]
		if len(items) == 0 {
			nothing = true
			continue
		}
		for i, item := range items {
			ipath := fmt.Sprintf("%s.%s[%d]", path, name, i)
			sels, err := l.peer(name, item, ipath)
			if err != nil {
				return element{}, err
			}
			peers = append(peers, sels...)
		}
		if name == "fromCIDR" {
			peers = append(peers, worldForCIDRs(items)...)
		}
	}

	ports, hasPorts, err := l.ports(m, path, deny)
	if err != nil {
		return element{}, err
	}
	switch {
	case nothing:
		// Selects nothing at all.
	case !hasPorts:
		if len(peers) > 0 {
			e.peers, e.l3 = peers, true
		}
		e.endpoints = len(lists["fromEndpoints"]) > 0
	default:
		e.endpoints = len(lists["fromEndpoints"]) > 0
		if len(peers) == 0 {
			peers = []selector{{}} // toPorts or icmps without peers: every source
		}
		e.peers, e.ports = peers, ports
	}
	return e, nil
}

// peer returns the selectors of one item of a peer list.
func (l *loader) peer(list string, n *yaml.Node, path string) ([]selector, error) {
	switch list {
	case "fromEndpoints":
		raw, err := l.selector(n, path)
		if err != nil {
			return nil, err
		}
		return []selector{l.peerSelector(raw)}, nil
	case "fromEntities":
		name := ""
		if n.Kind == yaml.ScalarNode {
			name = n.Value
		}
		sels, ok := entitySelectors(name)
		if !ok {
			return nil, l.errorf(n, path, "unknown entity %q", name)
		}
		return sels, nil
	case "fromCIDR":
		s := ""
		if n.Kind == yaml.ScalarNode {
			s = n.Value
		}
		p, err := parseCIDR(s)
		if err != nil {
			return nil, l.errorf(n, path, "%v", err)
		}
		l.prefixes = append(l.prefixes, p)
		return []selector{cidrSelector(p)}, nil
	default: // fromCIDRSet
		return l.cidrRule(n, path)
	}
}

// requiresSelector applies getEndpointSelector (utils.go) with clusterName "" and addK8sPrefix false
// to one fromRequires selector: unlike fromEndpoints, a selector with reserved keys gets the
// namespace too.
func (l *loader) requiresSelector(raw rawSelector) selector {
	nsKey := sourceK8s + "." + podNamespaceLabel
	if !raw.hasKey(nsKey) && !raw.hasKey(sourceAny+"."+podNamespaceLabel) {
		switch {
		case l.namespace == "":
			if !l.matchesInit {
				raw.addExists(nsKey)
			}
		case !raw.hasKeyPrefix(sourceK8s+"."+namespaceLabelsPrefix) && !raw.hasKeyPrefix(sourceAny+"."+namespaceLabelsPrefix):
			raw.addMatch(nsKey, l.namespace)
		}
	}
	return raw.compile()
}

// peerSelector applies getEndpointSelector (pkg/k8s/apis/cilium.io/utils/utils.go) with
// clusterName "" to one fromEndpoints selector.
func (l *loader) peerSelector(raw rawSelector) selector {
	if raw.hasKeyPrefix(sourceReserved + ".") {
		return raw.compile()
	}
	nsKey := sourceK8s + "." + podNamespaceLabel
	if !raw.hasKey(nsKey) && !raw.hasKey(sourceAny+"."+podNamespaceLabel) {
		switch {
		case l.namespace == "":
			if !l.matchesInit {
				raw.addExists(nsKey)
			}
		case !raw.hasKeyPrefix(sourceK8s+"."+namespaceLabelsPrefix) && !raw.hasKeyPrefix(sourceAny+"."+namespaceLabelsPrefix):
			raw.addMatch(nsKey, l.namespace)
		}
	}
	return raw.compile()
}

// parseCIDR reads a fromCIDR entry as Cilium's IPStringToLabel does: a prefix (host bits masked)
// or a bare address (a full-length prefix).
func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %v", s, err)
	}
	return p.Masked(), nil
}

// worldForCIDRs returns the reserved selectors CIDRSlice.GetAsEndpointSelectors adds in dual stack
// when a fromCIDR list holds exactly "0.0.0.0/0" or "::/0" (compared as written). A /0 written
// otherwise ("10.0.0.0/0") selects only sources with a CIDR identity; in Cilium which sources have
// one depends on every prefix its ipcache holds, while the model knows only those in pols.
func worldForCIDRs(items []*yaml.Node) []selector {
	var v4, v6 bool
	for _, n := range items {
		v4 = v4 || n.Value == "0.0.0.0/0"
		v6 = v6 || n.Value == "::/0"
	}
	var sels []selector
	if v4 && v6 {
		sels = append(sels, labelSelector(sourceReserved, reservedWorld))
	}
	if v4 {
		sels = append(sels, labelSelector(sourceReserved, reservedWorldIPv4))
	}
	if v6 {
		sels = append(sels, labelSelector(sourceReserved, reservedWorldIPv6))
	}
	return sels
}

// cidrRule reads one fromCIDRSet item (CIDRRule.sanitize and CIDRRuleSlice.GetAsEndpointSelectors
// in pkg/policy/api).
func (l *loader) cidrRule(n *yaml.Node, path string) ([]selector, error) {
	m, err := l.mapping(n, path, []string{"cidr", "cidrGroupRef", "cidrGroupSelector", "except"})
	if err != nil {
		return nil, err
	}
	if err := l.refuse(m, path, "cidrGroupRef", "cidrGroupSelector"); err != nil {
		return nil, err
	}
	s, err := l.scalar(m, path, "cidr")
	if err != nil {
		return nil, err
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, l.errorf(n, join(path, "cidr"), "%q is not a CIDR", s)
	}
	l.prefixes = append(l.prefixes, p.Masked())
	sel := selector{reqs: []requirement{{source: sourceCIDR, key: cidrKey(p.Masked()), prefix: p.Masked(), op: opExists}}}
	if en, ok := m.get("except"); ok {
		items, err := l.sequence(en, join(path, "except"))
		if err != nil {
			return nil, err
		}
		for i, item := range items {
			e, err := netip.ParsePrefix(item.Value)
			if err != nil || !p.Contains(e.Addr()) {
				return nil, l.errorf(item, fmt.Sprintf("%s.except[%d]", path, i), "%q is not a CIDR inside %s", item.Value, s)
			}
			l.prefixes = append(l.prefixes, e.Masked())
			sel.reqs = append(sel.reqs, requirement{source: sourceCIDR, key: cidrKey(e.Masked()), prefix: e.Masked(), op: opDoesNotExist})
		}
	}
	sels := []selector{sel}
	if strings.HasSuffix(s, "/0") { // the world identity of the family, minus the excepts
		world := reservedWorldIPv4
		if strings.Contains(s, ":") {
			world = reservedWorldIPv6
		}
		w := selector{reqs: append([]requirement{{source: sourceReserved, key: world, op: opExists}}, sel.reqs[1:]...)}
		sels = append(sels, w)
	}
	return sels, nil
}

// ports reads toPorts and icmps; hasPorts reports whether either list has an item.
func (l *loader) ports(m fields, path string, deny bool) (ports []portRange, hasPorts bool, err error) {
	var toPorts, icmps []*yaml.Node
	if n, ok := m.get("toPorts"); ok {
		if toPorts, err = l.sequence(n, join(path, "toPorts")); err != nil {
			return nil, false, err
		}
	}
	if n, ok := m.get("icmps"); ok {
		if icmps, err = l.sequence(n, join(path, "icmps")); err != nil {
			return nil, false, err
		}
	}
	if len(toPorts) > 0 && len(icmps) > 0 {
		return nil, false, l.errorf(m.node, path, "Cilium refuses icmps together with toPorts")
	}
	for i, pr := range toPorts {
		ppath := fmt.Sprintf("%s.toPorts[%d]", path, i)
		known := []string{"ports"}
		if !deny {
			known = append(known, "rules", "listener", "serverNames", "terminatingTLS", "originatingTLS")
		}
		pm, err := l.mapping(pr, ppath, known)
		if err != nil {
			return nil, false, err
		}
		if err := l.refuse(pm, ppath, "rules", "listener", "serverNames", "terminatingTLS", "originatingTLS"); err != nil {
			return nil, false, err
		}
		pn, ok := pm.get("ports")
		if !ok {
			continue
		}
		items, err := l.sequence(pn, join(ppath, "ports"))
		if err != nil {
			return nil, false, err
		}
		for j, item := range items {
			r, err := l.portProtocol(item, fmt.Sprintf("%s.ports[%d]", ppath, j))
			if err != nil {
				return nil, false, err
			}
			ports = append(ports, r...)
		}
	}
	for i, ir := range icmps {
		ipath := fmt.Sprintf("%s.icmps[%d]", path, i)
		im, err := l.mapping(ir, ipath, []string{"fields"})
		if err != nil {
			return nil, false, err
		}
		fn, ok := im.get("fields")
		if !ok {
			continue
		}
		items, err := l.sequence(fn, join(ipath, "fields"))
		if err != nil {
			return nil, false, err
		}
		for j, item := range items {
			r, err := l.icmpField(item, fmt.Sprintf("%s.fields[%d]", ipath, j))
			if err != nil {
				return nil, false, err
			}
			ports = append(ports, r)
		}
	}
	return ports, len(toPorts)+len(icmps) > 0, nil
}

// isSvcName reports whether a port is an IANA service name (pkg/iana).
var isSvcName = func() func(string) bool {
	re := regexp.MustCompile(`^([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*$`)
	return func(s string) bool { return len(s) > 0 && len(s) <= 15 && re.MatchString(s) }
}()

// portProtocol reads one toPorts[].ports[] entry (PortProtocol.sanitize, mergeIngress, createL4Filter).
func (l *loader) portProtocol(n *yaml.Node, path string) ([]portRange, error) {
	m, err := l.mapping(n, path, []string{"port", "endPort", "protocol"})
	if err != nil {
		return nil, err
	}
	port, err := l.scalar(m, path, "port")
	if err != nil {
		return nil, err
	}
	r := portRange{}
	switch {
	case port == "":
		return nil, l.errorf(n, join(path, "port"), "missing (Cilium refuses a port entry without port)")
	case isSvcName(port):
		r.name = strings.ToLower(port)
	default:
		p, err := strconv.ParseUint(port, 0, 16) // base 0 as in Cilium: "010" is 8
		if err != nil {
			return nil, l.errorf(n, join(path, "port"), "%q is neither a port number nor a port name", port)
		}
		r.start = uint16(p)
	}
	if en, ok := m.get("endPort"); ok {
		var end int32
		if err := en.Decode(&end); err != nil {
			return nil, l.errorf(en, join(path, "endPort"), "not a 32-bit integer")
		}
		r.end = uint16(end)
	}
	proto, err := l.scalar(m, path, "protocol")
	if err != nil {
		return nil, err
	}
	var protos []uint8
	switch strings.ToUpper(proto) { // ParseL4Proto accepts any case
	case "", "ANY":
		protos = []uint8{protoTCP, protoUDP, protoSCTP}
	case "TCP":
		protos = []uint8{protoTCP}
	case "UDP":
		protos = []uint8{protoUDP}
	case "SCTP":
		protos = []uint8{protoSCTP}
	default:
		return nil, l.errorf(n, join(path, "protocol"), "invalid protocol %q (Cilium accepts TCP, UDP, SCTP, ANY)", proto)
	}
	var ranges []portRange
	for _, p := range protos {
		r.proto = p
		ranges = append(ranges, r)
	}
	return ranges, nil
}

// ICMP type names (pkg/policy/api/icmp.go).
var (
	icmpV4Types = map[string]string{
		"EchoReply": "0", "DestinationUnreachable": "3", "Redirect": "5", "Echo": "8", "EchoRequest": "8",
		"RouterAdvertisement": "9", "RouterSelection": "10", "TimeExceeded": "11", "ParameterProblem": "12",
		"Timestamp": "13", "TimestampReply": "14", "Photuris": "40", "ExtendedEchoRequest": "42", "ExtendedEchoReply": "43",
	}
	icmpV6Types = map[string]string{
		"DestinationUnreachable": "1", "PacketTooBig": "2", "TimeExceeded": "3", "ParameterProblem": "4",
		"EchoRequest": "128", "EchoReply": "129", "MulticastListenerQuery": "130", "MulticastListenerReport": "131",
		"MulticastListenerDone": "132", "RouterSolicitation": "133", "RouterAdvertisement": "134",
		"NeighborSolicitation": "135", "NeighborAdvertisement": "136", "RedirectMessage": "137",
		"RouterRenumbering": "138", "ICMPNodeInformationQuery": "139", "ICMPNodeInformationResponse": "140",
		"InverseNeighborDiscoverySolicitation": "141", "InverseNeighborDiscoveryAdvertisement": "142",
		"HomeAgentAddressDiscoveryRequest": "144", "HomeAgentAddressDiscoveryReply": "145",
		"MobilePrefixSolicitation": "146", "MobilePrefixAdvertisement": "147",
		"DuplicateAddressRequestCodeSuffix": "157", "DuplicateAddressConfirmationCodeSuffix": "158",
		"ExtendedEchoRequest": "160", "ExtendedEchoReply": "161",
	}
)

// icmpField reads one icmps[].fields[] entry (ICMPField.UnmarshalJSON and PortProtocol, then
// createL4Filter). Cilium v1.18.4 turns type 0 (EchoReply in IPv4) into port 0, which covers every
// type of the family: a bug (cilium/cilium#41304), fixed after v1.18. The model follows the fix
// (type 0 is type 0), so that roost, which does too, errs closed, not open.
func (l *loader) icmpField(n *yaml.Node, path string) (portRange, error) {
	m, err := l.mapping(n, path, []string{"family", "type"})
	if err != nil {
		return portRange{}, err
	}
	family, err := l.scalar(m, path, "family")
	if err != nil {
		return portRange{}, err
	}
	r, names := portRange{proto: protoICMP}, icmpV4Types
	switch family {
	case "", "IPv4":
	case "IPv6":
		r, names = portRange{proto: protoICMPv6}, icmpV6Types
	default:
		return portRange{}, l.errorf(n, join(path, "family"), "wrong family %q (IPv4 or IPv6)", family)
	}
	tn, ok := m.get("type")
	if !ok || tn.Kind != yaml.ScalarNode {
		return portRange{}, l.errorf(n, join(path, "type"), "missing")
	}
	typ := tn.Value
	if tn.Tag == "!!int" { // IntOrString holding an int32
		var v int32
		if err := tn.Decode(&v); err != nil {
			return portRange{}, l.errorf(tn, join(path, "type"), "not a 32-bit integer")
		}
		typ = strconv.Itoa(int(v))
	}
	if v, _ := strconv.Atoi(typ); typ != "0" && v == 0 {
		code, ok := names[typ]
		if !ok {
			return portRange{}, l.errorf(tn, join(path, "type"), "ICMP type %s not found in %s", typ, family)
		}
		typ = code
	}
	p, err := strconv.ParseUint(typ, 0, 8)
	if err != nil {
		return portRange{}, l.errorf(tn, join(path, "type"), "ICMP type %q is not 0-255", tn.Value)
	}
	r.start, r.icmpType = uint16(p), true
	return r, nil
}

// selector reads a label selector, extending its keys to Cilium's "source.key" form.
func (l *loader) selector(n *yaml.Node, path string) (rawSelector, error) {
	m, err := l.mapping(n, path, []string{"matchLabels", "matchExpressions"})
	if err != nil {
		return rawSelector{}, err
	}
	var s rawSelector
	if mn, ok := m.get("matchLabels"); ok {
		labels, err := l.mapping(mn, join(path, "matchLabels"), nil)
		if err != nil {
			return rawSelector{}, err
		}
		for _, kv := range labels.pairs {
			if kv.value.Kind != yaml.ScalarNode {
				return rawSelector{}, l.errorf(kv.value, join(path, "matchLabels."+kv.key), "not a string")
			}
			s.addMatch(extendKey(kv.key), kv.value.Value)
		}
	}
	if en, ok := m.get("matchExpressions"); ok {
		items, err := l.sequence(en, join(path, "matchExpressions"))
		if err != nil {
			return rawSelector{}, err
		}
		for i, item := range items {
			epath := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
			em, err := l.mapping(item, epath, []string{"key", "operator", "values"})
			if err != nil {
				return rawSelector{}, err
			}
			key, err := l.scalar(em, epath, "key")
			if err != nil {
				return rawSelector{}, err
			}
			op, err := l.scalar(em, epath, "operator")
			if err != nil {
				return rawSelector{}, err
			}
			switch op {
			case opIn, opNotIn, opExists, opDoesNotExist:
			default:
				return rawSelector{}, l.errorf(item, join(epath, "operator"), "%q is not a valid label selector operator", op)
			}
			e := rawExpr{key: extendKey(key), op: op}
			if vn, ok := em.get("values"); ok {
				values, err := l.sequence(vn, join(epath, "values"))
				if err != nil {
					return rawSelector{}, err
				}
				for _, v := range values {
					e.values = append(e.values, v.Value)
				}
			}
			s.exprs = append(s.exprs, e)
		}
	}
	return s, nil
}
