// Package policy compiles the subset of CiliumNetworkPolicy that roost
// enforces into what the datapath needs: numeric identities, an ipcache
// (source prefix → identity) and, for every local endpoint, an ingress
// verdict table. It is pure: no kernel, no files, no clock. Its semantics
// are Cilium's (v1.18, with its default options); docs/policy.md lists the
// subset and every difference.
//
// # Input
//
// Parse reads YAML documents of apiVersion cilium.io/v2, kind
// CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy, with spec and/or
// specs. Supported per rule: endpointSelector, ingress and ingressDeny with
// fromEndpoints, fromEntities (all, world, world-ipv4, world-ipv6, cluster,
// host, remote-node, and init, health, unmanaged, ingress and none, which
// select nothing in roost), fromCIDR, fromCIDRSet (cidr, except),
// fromRequires (deprecated in Cilium, with its semantics), toPorts
// ports (port number, range or name; protocol TCP, UDP, SCTP or ANY) and
// icmps (type number or name, family IPv4 or IPv6); enableDefaultDeny.ingress;
// description. metadata may carry name, namespace, labels, annotations and
// description (not a Kubernetes field; roost accepts it as a note). What
// the API server would drop from an object (server-set metadata, status, a
// top-level description) is ignored with a warning (Policy.Warnings).
// Every other field and every bad value is an error naming the file, the
// line and the field path, and the whole file is rejected: a policy is
// never half-enforced. All problems of a file are reported at once. Beyond
// unknown and unsupported fields, roost refuses what Cilium refuses (two
// kinds of peer in one rule, toPorts and icmps in one rule, a missing
// endpointSelector or port, an except outside its cidr) and what is
// ambiguous: lower-case protocols, ports with leading zeros, CIDRs with host
// bits set, "ingress: []" (Cilium ignores it, many read it as deny-all;
// write "ingress: [{}]"), explicit empty peer or toPorts lists (Cilium
// selects nothing with "fromEndpoints: []" but everything without the
// field), rules with neither ingress nor ingressDeny, port 0 or a named
// port with an endPort, YAML aliases and merge keys, and the same policy
// twice. fromCIDR also takes a bare address (a /32 or /128), as Cilium
// does. Host policies (nodeSelector) are refused: roost enforces on
// endpoints, not on the node.
//
// # Namespaces
//
// As in Cilium, a CiliumNetworkPolicy lives in one namespace: its
// metadata.namespace, or DefaultNamespace when a file leaves it out. Its
// endpointSelector only selects endpoints of that namespace, and each
// fromEndpoints selector gets the same requirement unless it names
// NamespaceLabel itself (with or without the k8s: or any: source), a
// namespace label (NamespaceLabelsPrefix) or a reserved: label. A
// CiliumClusterwideNetworkPolicy selects endpoints of every namespace, and
// each of its fromEndpoints selectors that does not name NamespaceLabel (or
// a reserved: label) requires that the source have a namespace: it selects
// endpoints, never the host, other nodes or the world.
//
// # Labels and identities
//
// Endpoints carry the labels Cilium derives (EndpointLabels): their own,
// their namespace (NamespaceLabel), their namespace's labels
// (NamespaceLabelsPrefix), their service account and their cluster. An
// endpoint's security labels are those minus what Cilium's default label
// filter ignores (pod-template-hash, controller-revision-hash,
// controller-uid, pod-template-generation, kubernetes.io/*, io.kubernetes.*
// other than the namespace, k8s.io*, *beta.kubernetes.io*, statefulset,
// job and pod indexes, annotation*, etcd_node). Selectors and identities
// only see security labels; a selector that names an ignored key is an
// error, since it could never match as written. Selector keys take Cilium's
// sources: k8s: and any: (or none) match endpoint labels, reserved:
// matches the reserved identities (host, remote-node, world, ...), and any:
// both.
//
// Every distinct set of security labels has one Identity, the same for all
// endpoints that carry it, wherever they run. See Identity for how the
// numbers are derived so that they are stable across restarts with no
// stored state. The node's own addresses are IdentityHost, other nodes'
// IdentityRemoteNode, and every other address not in the ipcache is world.
//
// # Semantics
//
// An endpoint is ingress-enforced when a rule with ingress or ingressDeny
// selects it (unless that rule sets enableDefaultDeny.ingress: false);
// others allow all ingress. Deny entries win over allow entries whether or
// not the endpoint is enforced. A rule without peers but with toPorts or
// icmps allows (or denies) those ports from any source; a rule without peers
// and without ports ("ingress: [{}]") allows nothing but still enforces. A
// rule with peers and without toPorts and icmps covers every protocol and
// port (ICMP, GRE, ...); protocol ANY in toPorts means TCP, UDP and SCTP
// only, port 0 every port of those. Entity cluster is the host, the other
// nodes and every endpoint of the local cluster (WithCluster); entity all
// is any source. CIDR peers only ever select traffic from outside roost's
// endpoints, the host and the nodes, as in Cilium: see Compile.
// EndpointPolicy.Decide is the reference evaluation the datapath must
// agree with.
package policy

import (
	"net/netip"
	"strings"
)

// NamespaceLabel is the label that carries an endpoint's namespace, as in
// Cilium. Every endpoint has one (EndpointLabels).
const NamespaceLabel = "io.kubernetes.pod.namespace"

// The kinds Parse reads.
const (
	KindCNP  = "CiliumNetworkPolicy"
	KindCCNP = "CiliumClusterwideNetworkPolicy"
)

// DefaultNamespace is the namespace of a CiliumNetworkPolicy read from a
// file without metadata.namespace: the namespace `kubectl apply` would
// create it in without -n.
const DefaultNamespace = "default"

// Policy is one parsed CiliumNetworkPolicy or
// CiliumClusterwideNetworkPolicy document.
type Policy struct {
	// Kind is KindCNP or KindCCNP.
	Kind string
	// Name comes from metadata. Namespace is metadata.namespace, or
	// DefaultNamespace, for a CiliumNetworkPolicy, and empty for a
	// CiliumClusterwideNetworkPolicy.
	Name      string
	Namespace string
	// File is the source given to Parse; Line is the document's first line
	// (0 for an object read from the API server).
	File string
	Line int
	// Rules are spec followed by specs, in file order.
	Rules []Rule
	// Warnings are the fields Parse ignored, each as "source:line: path:
	// why": what the API server would have dropped from the object
	// (server-set metadata, status, a top-level description).
	Warnings []string
}

// ID returns "namespace/name" for a CiliumNetworkPolicy and the bare name
// for a CiliumClusterwideNetworkPolicy, which has no namespace.
func (p Policy) ID() string {
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

// Clusterwide reports whether the policy is a CiliumClusterwideNetworkPolicy.
func (p Policy) Clusterwide() bool { return p.Kind == KindCCNP }

// Rule is one element of spec or specs.
type Rule struct {
	// Path is "spec" or "specs[i]"; Line is its line in Policy's file.
	Path string
	Line int
	// Subject is the endpointSelector, namespace requirement included.
	Subject Selector
	// DefaultDeny is enableDefaultDeny.ingress (true unless set false):
	// whether this rule makes the endpoints it selects ingress-enforced.
	DefaultDeny bool
	Ingress     []PeerRule
	IngressDeny []PeerRule
}

// PeerRule is one element of ingress or ingressDeny.
type PeerRule struct {
	// Path is e.g. "spec.ingress[0]"; Line is its line in the file.
	Path string
	Line int
	// Endpoints are the fromEndpoints selectors, namespace included.
	Endpoints []Selector
	// Requires are the fromRequires selectors, namespace included: for an
	// endpoint this rule selects, every fromEndpoints selector of every
	// ingress (Requires of ingressDeny: ingressDeny) element of every rule
	// that selects it must also match them, as in Cilium.
	Requires []Selector
	// Entities are the fromEntities names.
	Entities []Entity
	// CIDRs are fromCIDR and fromCIDRSet entries.
	CIDRs []CIDRSelector
	// Ports are the toPorts ports, or the icmps types (protocol ProtoICMP
	// or ProtoICMPv6, the type as port); none means every port and
	// protocol.
	Ports []PortRange
}

// HasPeers reports whether the rule names any source at all. A rule
// without peers applies to every source when it has Ports, and to none
// otherwise.
func (r PeerRule) HasPeers() bool {
	return len(r.Endpoints)+len(r.Entities)+len(r.CIDRs) > 0
}

// Entity is a fromEntities name that roost supports.
type Entity string

// The entities roost supports. Init, Health, Unmanaged, Ingress and None
// select nothing in roost: it has no endpoints that are initialising, no
// health endpoints, no unmanaged pods and no ingress proxy, so no traffic
// carries those identities (as none carries them under Cilium for the same
// workloads).
const (
	EntityAll        Entity = "all"
	EntityWorld      Entity = "world"
	EntityWorldIPv4  Entity = "world-ipv4"
	EntityWorldIPv6  Entity = "world-ipv6"
	EntityCluster    Entity = "cluster"
	EntityHost       Entity = "host"
	EntityRemoteNode Entity = "remote-node"
	EntityInit       Entity = "init"
	EntityHealth     Entity = "health"
	EntityUnmanaged  Entity = "unmanaged"
	EntityIngress    Entity = "ingress"
	EntityNone       Entity = "none"
)

// CIDRSelector is a fromCIDR or fromCIDRSet entry: Prefix minus Except.
type CIDRSelector struct {
	Prefix netip.Prefix
	Except []netip.Prefix
}

// String returns "10.0.0.0/8" or "10.0.0.0/8 except 10.96.0.0/12,...".
func (c CIDRSelector) String() string {
	if len(c.Except) == 0 {
		return c.Prefix.String()
	}
	ex := make([]string, len(c.Except))
	for i, e := range c.Except {
		ex[i] = e.String()
	}
	return c.Prefix.String() + " except " + strings.Join(ex, ",")
}

// PortRange is one toPorts port: Port to EndPort inclusive, of Protocol
// (ProtoAny: TCP, UDP and SCTP). Port 0 (with EndPort 0) means every port.
// A named port has Name (lower case) and Port 0: it is resolved against
// each selected endpoint's NamedPorts. An icmps type is a PortRange of
// ProtoICMP or ProtoICMPv6 with the type as Port and EndPort.
type PortRange struct {
	Protocol Protocol
	Port     uint16
	EndPort  uint16
	Name     string
}
