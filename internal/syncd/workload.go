package syncd

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/policy"
)

// Sources of a workload.
const (
	// SourceFile is the workloads file.
	SourceFile = "file"
	// SourceAPI is the HTTP API (PUT /v1/workloads/{namespace}/{name}).
	SourceAPI = "api"
)

// Limits of one workload. They keep its value in etcd well below the
// global view's 32 KiB per endpoint: 64 labels of the longest key (317
// bytes) and value (63) and 64 addresses encode to under 28 KiB.
const (
	MaxIPs    = 64
	MaxLabels = 64
)

// DefaultNamespace is a file workload's namespace when it names none.
const DefaultNamespace = "default"

// namespaceNameLabel is the label Kubernetes puts on every namespace, with
// its name; policies select namespaces by it.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// Workload is an outside workload: a VM or a bare-metal host.
type Workload struct {
	// Namespace is a DNS label: the policies of this namespace select
	// the workload.
	Namespace string
	// Name is a DNS subdomain, unique in the namespace.
	Name string
	// IPs are its addresses: at least one, sorted, none twice.
	IPs []netip.Addr
	// Labels are its own labels (none under io.cilium.k8s.); never nil.
	Labels map[string]string
}

// ID returns "namespace/name".
func (w Workload) ID() string { return w.Namespace + "/" + w.Name }

// equal reports whether w and o are the same workload with the same
// addresses and labels.
func (w Workload) equal(o Workload) bool {
	return w.Namespace == o.Namespace && w.Name == o.Name && slices.Equal(w.IPs, o.IPs) && maps.Equal(w.Labels, o.Labels)
}

// Endpoint returns w as origin publishes it: its labels derived as Cilium
// derives a pod's (policy.EndpointLabels, its namespace labelled
// kubernetes.io/metadata.name=<namespace>, no service account), with
// io.cilium.k8s.policy.cluster only when cluster is set.
func (w Workload) Endpoint(origin globalview.Origin, cluster string) globalview.Endpoint {
	labels := policy.EndpointLabels(w.Labels, w.Namespace, map[string]string{namespaceNameLabel: w.Namespace}, "", cluster)
	if cluster == "" {
		delete(labels, policy.ClusterLabel)
	}
	return globalview.Endpoint{Origin: origin, Namespace: w.Namespace, Name: w.Name, IPs: slices.Clone(w.IPs), Labels: labels}
}

// namespaceProblems returns what is wrong with a namespace.
func namespaceProblems(s string) []string {
	var out []string
	for _, msg := range validation.IsDNS1123Label(s) {
		out = append(out, fmt.Sprintf("%q is not a namespace name: %s", s, msg))
	}
	return out
}

// nameProblems returns what is wrong with a workload name.
func nameProblems(s string) []string {
	var out []string
	for _, msg := range validation.IsDNS1123Subdomain(s) {
		out = append(out, fmt.Sprintf("%q is not a workload name: %s", s, msg))
	}
	return out
}

// parseAddr parses one workload address: a unicast IPv4 or IPv6 address
// without a zone or a prefix length.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if _, perr := netip.ParsePrefix(s); perr == nil {
			return netip.Addr{}, fmt.Errorf("%q is a prefix; write the workload's address without a length", s)
		}
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	switch {
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%s must not have a zone", a)
	case a.Is4In6():
		return netip.Addr{}, fmt.Errorf("%s is IPv4-mapped; write %s", a, a.Unmap())
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, fmt.Errorf("%s is not a unicast address a workload can have", a)
	}
	return a, nil
}

// labelKeyProblems returns what is wrong with a workload's own label key.
func labelKeyProblems(key string) []string {
	if src, rest, ok := strings.Cut(key, ":"); ok && (src == "k8s" || src == "any" || src == "reserved") {
		return []string{fmt.Sprintf("label keys carry no source here: write %q (the %s: prefix belongs in policy selectors)", rest, src)}
	}
	if key == policy.NamespaceLabel {
		return []string{"is derived from the workload's namespace: set the namespace instead"}
	}
	if strings.HasPrefix(key, policy.DerivedPrefix) {
		return []string{fmt.Sprintf("keys under %s are derived (from the namespace and the syncer's cluster), not set", policy.DerivedPrefix)}
	}
	var out []string
	for _, msg := range validation.IsQualifiedName(key) {
		out = append(out, "invalid label key: "+msg)
	}
	return out
}

// labelValueProblems returns what is wrong with a label value.
func labelValueProblems(v string) []string {
	var out []string
	for _, msg := range validation.IsValidLabelValue(v) {
		out = append(out, fmt.Sprintf("invalid label value %q: %s", v, msg))
	}
	return out
}
