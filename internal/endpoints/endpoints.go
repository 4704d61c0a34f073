// Package endpoints gathers what roost-loader enforces policy on and with:
// endpoints from a file (external workloads, bare-metal pods) and from
// Kubernetes Pods, and CiliumNetworkPolicy files from a directory.
//
// Every source yields policy.Endpoint values with Local false: whether an
// endpoint runs on this node is the loader's decision, made from the kernel
// route to its address. Names are unique across sources: file endpoints are
// named without a '/', pods "namespace/name", and Merge refuses a name or an
// address claimed twice.
//
// Pods that use the host network are not endpoints: they share the node's
// addresses, which the ipcache maps to the host identity, so policy sees
// them as the host.
package endpoints

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/roost-net/roost/internal/policy"
)

// Merge combines the endpoints of the endpoints file and of Kubernetes into
// one list sorted by name. A name or an address claimed twice, within a
// source or across them, is an error saying which endpoints and sources
// claim it; Merge then returns no endpoints and an error joining every
// clash. The endpoints share their IPs and Labels with the inputs.
func Merge(file, pods []policy.Endpoint) ([]policy.Endpoint, error) {
	type claim struct {
		name, source string
	}
	out := make([]policy.Endpoint, 0, len(file)+len(pods))
	names := make(map[string]string)
	owners := make(map[netip.Addr]claim)
	var errs []error
	add := func(eps []policy.Endpoint, source string) {
		for _, ep := range eps {
			if first, dup := names[ep.Name]; dup {
				errs = append(errs, fmt.Errorf("endpoint name %q is claimed twice: from %s and from %s", ep.Name, first, source))
				continue
			}
			names[ep.Name] = source
			for _, ip := range ep.IPs {
				if c, dup := owners[ip]; dup {
					errs = append(errs, fmt.Errorf("address %s is claimed twice: by endpoint %q from %s and by endpoint %q from %s",
						ip, c.name, c.source, ep.Name, source))
					continue
				}
				owners[ip] = claim{ep.Name, source}
			}
			out = append(out, ep)
		}
	}
	add(file, "the endpoints file")
	add(pods, "Kubernetes")
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(out, func(a, b policy.Endpoint) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}
