// Package endpoints gathers what roost-loader enforces policy on and with:
// workloads from a file (external workloads, bare-metal pods) and from
// Kubernetes Pods, the nodes of the cluster, the labels of namespaces, and
// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy documents from a
// directory and from the Kubernetes API.
//
// Sources yield Workloads: a workload's own labels, its namespace and its
// service account. Derive turns them into policy.Endpoint values with the
// labels Cilium derives (policy.EndpointLabels) and Local false: whether an
// endpoint runs on this node is the loader's decision, made from the kernel
// route to its address. Names are unique across sources: file workloads
// are named without a '/', pods "namespace/name", and Merge refuses a name
// or an address claimed twice.
//
// Pods that use the host network are not endpoints: they share their
// node's addresses, which the ipcache maps to the host or remote-node
// identity, so policy sees them as that node.
package endpoints

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/roost-net/roost/internal/policy"
)

// Workload is an endpoint as its source knows it, before the labels Cilium
// derives from its namespace, service account and cluster.
type Workload struct {
	// Name is unique among workloads: "namespace/name" for a pod.
	Name string
	// Namespace is the workload's namespace; every workload has one.
	Namespace string
	// ServiceAccount is a pod's service account; may be empty.
	ServiceAccount string
	IPs            []netip.Addr
	// Labels are the workload's own labels.
	Labels map[string]string
	// NamedPorts are its named ports by lower-case name.
	NamedPorts map[string]policy.NamedPort
}

// Node is a node of the cluster and the addresses traffic from it comes
// from.
type Node struct {
	Name string
	IPs  []netip.Addr
}

// Merge combines the workloads of the endpoints file and of Kubernetes into
// one list sorted by name. A name or an address claimed twice, within a
// source or across them, is an error saying which workloads and sources
// claim it; Merge then returns nothing and an error joining every clash.
// The workloads share their fields with the inputs.
func Merge(file, pods []Workload) ([]Workload, error) {
	type claim struct {
		name, source string
	}
	out := make([]Workload, 0, len(file)+len(pods))
	names := make(map[string]string)
	owners := make(map[netip.Addr]claim)
	var errs []error
	add := func(ws []Workload, source string) {
		for _, w := range ws {
			if first, dup := names[w.Name]; dup {
				errs = append(errs, fmt.Errorf("endpoint name %q is claimed twice: from %s and from %s", w.Name, first, source))
				continue
			}
			names[w.Name] = source
			for _, ip := range w.IPs {
				if c, dup := owners[ip]; dup {
					errs = append(errs, fmt.Errorf("address %s is claimed twice: by endpoint %q from %s and by endpoint %q from %s",
						ip, c.name, c.source, w.Name, source))
					continue
				}
				owners[ip] = claim{w.Name, source}
			}
			out = append(out, w)
		}
	}
	add(file, "the endpoints file")
	add(pods, "Kubernetes")
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(out, func(a, b Workload) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Derive returns the endpoints of ws, in order, with the labels Cilium
// gives them: their own, their namespace's (namespaceLabels, by namespace
// name; a namespace without an entry has no labels), their service account
// and cluster. Kubernetes sets the label kubernetes.io/metadata.name to the
// namespace's name on every namespace; Derive adds it where
// namespaceLabels lacks it, so that file workloads carry it too.
func Derive(ws []Workload, namespaceLabels map[string]map[string]string, cluster string) []policy.Endpoint {
	out := make([]policy.Endpoint, len(ws))
	for i, w := range ws {
		ns := namespaceLabels[w.Namespace]
		if _, ok := ns[NamespaceNameLabel]; !ok {
			ns = maps.Clone(ns)
			if ns == nil {
				ns = make(map[string]string, 1)
			}
			ns[NamespaceNameLabel] = w.Namespace
		}
		out[i] = policy.Endpoint{
			Name:       w.Name,
			IPs:        w.IPs,
			Labels:     policy.EndpointLabels(w.Labels, w.Namespace, ns, w.ServiceAccount, cluster),
			NamedPorts: w.NamedPorts,
		}
	}
	return out
}

// NamespaceNameLabel is the label Kubernetes puts on every namespace, with
// the namespace's name.
const NamespaceNameLabel = "kubernetes.io/metadata.name"
