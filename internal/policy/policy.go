// Package policy compiles the subset of CiliumNetworkPolicy that roost
// enforces into what the datapath needs: numeric identities, an ipcache
// (source prefix → identity) and, for every local endpoint, an ingress
// verdict table. It is pure: no kernel, no files, no clock.
//
// # Input
//
// Parse reads YAML documents of apiVersion cilium.io/v2, kind
// CiliumNetworkPolicy, with spec and/or specs. Supported per rule:
// endpointSelector, ingress and ingressDeny with fromEndpoints, fromEntities
// (all, world, world-ipv4, world-ipv6, cluster, host), fromCIDR, fromCIDRSet
// (cidr, except) and toPorts[].ports[] (port, endPort, protocol TCP, UDP,
// SCTP or ANY); enableDefaultDeny.ingress; description. metadata may carry
// name, namespace, labels, annotations and description (the last is not a
// Kubernetes field; roost accepts it as a note). Every other field and every
// bad value is an error naming the file, the line and the field path, and
// the whole file is rejected: a policy is never half-enforced. All problems
// of a file are reported at once. Beyond unknown and unsupported fields,
// roost refuses what Cilium refuses (two kinds of peer in one rule, a
// missing endpointSelector or port, an except outside its cidr) and what is
// ambiguous: named ports, lower-case protocols, CIDRs with host bits set,
// "ingress: []" (Cilium ignores it, many read it as deny-all; write
// "ingress: [{}]"), explicit empty peer or toPorts lists (Cilium selects
// nothing with "fromEndpoints: []" but everything without the field), rules
// with neither ingress nor ingressDeny, port 0 with
// an endPort, YAML aliases and merge keys, and the same policy twice.
// fromCIDR also takes a bare address (a /32 or /128), as Cilium does.
//
// CiliumClusterwideNetworkPolicy is rejected: in Cilium its fromEndpoints
// only match Kubernetes pods, which would silently exclude roost's external
// workloads. A CiliumNetworkPolicy without metadata.namespace is roost's
// cluster-wide policy (see Namespaces).
//
// # Namespaces
//
// A policy with metadata.namespace behaves as in Cilium: its
// endpointSelector only selects endpoints whose NamespaceLabel equals the
// policy's namespace, and each fromEndpoints selector gets the same
// requirement unless it names NamespaceLabel itself (with or without the
// k8s: or any: source prefix) or a namespace label
// (io.cilium.k8s.namespace.labels.*). A policy without a namespace (roost reads
// files, not the API server, so nothing defaults it to "default") adds no
// namespace requirement anywhere: it can select external workloads, which
// have no namespace.
//
// # Labels and identities
//
// An endpoint's security labels are its labels minus those Cilium's default
// label filter ignores (pod-template-hash, controller-revision-hash,
// pod-template-generation, kubernetes.io/*, io.kubernetes.* other than the
// namespace, k8s.io*, *beta.kubernetes.io*, statefulset and job indexes,
// annotation*, etcd_node). Selectors and identities only see security
// labels; a selector that names an ignored key is an error, since it could
// never match as written. Endpoint labels carry no source: the k8s: and
// any: prefixes of selector keys are accepted and dropped, reserved: is
// refused (use fromEntities).
//
// Every distinct set of security labels has one Identity, the same for all
// endpoints that carry it, wherever they run. See Identity for how the
// numbers are derived so that they are stable across restarts with no
// stored state.
//
// # Semantics
//
// An endpoint is ingress-enforced when a rule with ingress or ingressDeny
// selects it (unless that rule sets enableDefaultDeny.ingress: false);
// others allow all ingress. Deny entries win over allow entries whether or
// not the endpoint is enforced. A rule without peers but with toPorts allows
// (or denies) those ports from any source; a rule without peers and without
// toPorts ("ingress: [{}]") allows nothing but still enforces. A rule
// without toPorts covers all ports and protocols. fromEndpoints {} selects
// every endpoint (in the policy's namespace, if any); entity cluster is the
// host plus every known endpoint, external workloads included (Cilium's
// external workloads carry the cluster label too); entity all is any source.
// CIDR peers only ever select traffic from outside roost's endpoints and
// host, as in Cilium: see Compile. EndpointPolicy.Decide is the reference
// evaluation the datapath must agree with.
package policy

import (
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// NamespaceLabel is the label that carries a Kubernetes pod's namespace, as
// in Cilium. Endpoint sources set it on pods; external workloads may leave
// it out.
const NamespaceLabel = "io.kubernetes.pod.namespace"

// Policy is one parsed CiliumNetworkPolicy document.
type Policy struct {
	// Name and Namespace come from metadata; Namespace may be empty.
	Name      string
	Namespace string
	// File is the source given to Parse; Line is the document's first line.
	File string
	Line int
	// Rules are spec followed by specs, in file order.
	Rules []Rule
}

// ID returns "namespace/name", or the bare name for a policy without a
// namespace.
func (p Policy) ID() string {
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

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
	// Entities are the fromEntities names.
	Entities []Entity
	// CIDRs are fromCIDR and fromCIDRSet entries.
	CIDRs []CIDRSelector
	// Ports are the toPorts ports; none means every port and protocol.
	Ports []PortRange
}

// HasPeers reports whether the rule names any source at all. A rule
// without peers applies to every source when it has Ports, and to none
// otherwise.
func (r PeerRule) HasPeers() bool {
	return len(r.Endpoints)+len(r.Entities)+len(r.CIDRs) > 0
}

// Selector is a label selector over security labels, built with
// k8s.io/apimachinery's label machinery.
type Selector struct {
	sel labels.Selector
}

// Matches reports whether the selector selects an endpoint with the given
// security labels.
func (s Selector) Matches(set map[string]string) bool {
	if s.sel == nil {
		return false
	}
	return s.sel.Matches(labels.Set(set))
}

// String returns the selector in Kubernetes notation, or "{}" for the
// selector that selects everything.
func (s Selector) String() string {
	if s.sel == nil {
		return "<none>"
	}
	if s.sel.Empty() {
		return "{}"
	}
	return s.sel.String()
}

// Entity is a fromEntities name that roost supports.
type Entity string

// The entities roost supports.
const (
	EntityAll       Entity = "all"
	EntityWorld     Entity = "world"
	EntityWorldIPv4 Entity = "world-ipv4"
	EntityWorldIPv6 Entity = "world-ipv6"
	EntityCluster   Entity = "cluster"
	EntityHost      Entity = "host"
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

// PortRange is one toPorts port: Port to EndPort inclusive. Port 0 (with
// EndPort 0) means every port.
type PortRange struct {
	Protocol Protocol
	Port     uint16
	EndPort  uint16
}
