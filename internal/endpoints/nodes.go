package endpoints

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// NodeAddressesAnnotation lists, comma-separated, addresses a node's traffic
// may come from that Kubernetes does not list in its status.addresses: the
// address of each of its BGP uplinks, for example. Spaces around an address
// are ignored.
const NodeAddressesAnnotation = "roost.io/addresses"

// NodesState is what Kubernetes says about the nodes of the cluster.
type NodesState struct {
	// Synced is true in every state WatchNodes reports; the zero NodesState
	// stands for "not known yet".
	Synced bool
	// Nodes are every node of the cluster, sorted by name. A node's IPs
	// are its status.addresses of type InternalIP and ExternalIP that are
	// IP addresses, and the addresses of its NodeAddressesAnnotation:
	// unmapped, without duplicates, sorted. A node may have none.
	Nodes []Node
	// Err reports the entries of NodeAddressesAnnotation that were left
	// out because they are not IP addresses: one error per node, sorted,
	// joined.
	Err error
}

// Equal reports whether s and o report the same thing (errors compare by
// their text).
func (s NodesState) Equal(o NodesState) bool {
	return s.Synced == o.Synced && sameError(s.Err, o.Err) && slices.EqualFunc(s.Nodes, o.Nodes, equalNode)
}

func equalNode(a, b Node) bool { return a.Name == b.Name && slices.Equal(a.IPs, b.IPs) }

// sameError reports whether a and b are both nil or have the same text.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

// nodeOf returns the Node n stands for; err reports the entries of its
// annotation that were left out.
func nodeOf(n *corev1.Node) (node Node, err error) {
	node.Name = n.Name
	add := func(a netip.Addr) {
		if a = a.Unmap(); !slices.Contains(node.IPs, a) {
			node.IPs = append(node.IPs, a)
		}
	}
	for _, na := range n.Status.Addresses {
		if na.Type != corev1.NodeInternalIP && na.Type != corev1.NodeExternalIP {
			continue
		}
		if a, perr := netip.ParseAddr(na.Address); perr == nil && a.Zone() == "" {
			add(a)
		}
	}
	var bad []string
	if list, ok := n.Annotations[NodeAddressesAnnotation]; ok {
		for entry := range strings.SplitSeq(list, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, perr := netip.ParseAddr(entry)
			switch {
			case perr != nil:
				bad = append(bad, fmt.Sprintf("%q is not an IP address", entry))
			case a.Zone() != "":
				bad = append(bad, fmt.Sprintf("%q has a zone", entry))
			default:
				add(a)
			}
		}
	}
	slices.SortFunc(node.IPs, netip.Addr.Compare)
	if len(bad) > 0 {
		err = fmt.Errorf("node %s: annotation %s: %s (want a comma-separated list of IP addresses)",
			n.Name, NodeAddressesAnnotation, strings.Join(bad, "; "))
	}
	return node, err
}

// nodesStateOf returns the state of the nodes in an informer's store.
func nodesStateOf(objs []any) NodesState {
	s := NodesState{Synced: true}
	var errs []error
	for _, obj := range objs {
		n, ok := obj.(*corev1.Node)
		if !ok {
			continue
		}
		node, err := nodeOf(n)
		if err != nil {
			errs = append(errs, err)
		}
		s.Nodes = append(s.Nodes, node)
	}
	slices.SortFunc(s.Nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(errs, func(a, b error) int { return cmp.Compare(a.Error(), b.Error()) })
	s.Err = errors.Join(errs...)
	return s
}

// stripNode keeps what nodeOf reads of a Node: its name, its annotation
// NodeAddressesAnnotation and its addresses of type InternalIP and
// ExternalIP. It returns a new object.
func stripNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion}}
	if v, ok := n.Annotations[NodeAddressesAnnotation]; ok {
		out.Annotations = map[string]string{NodeAddressesAnnotation: v}
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	return out, nil
}

// nodeChanged reports whether an update can change the state: whether the
// node's addresses or its errors differ. Status updates that only report
// the node's health are not.
func nodeChanged(oldObj, newObj any) bool {
	a, ok1 := oldObj.(*corev1.Node)
	b, ok2 := newObj.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	na, erra := nodeOf(a)
	nb, errb := nodeOf(b)
	return !equalNode(na, nb) || !sameError(erra, errb)
}

// WatchNodes follows every Node of the cluster through cs (the addresses
// of nodes give traffic from them the host or remote-node identity) and
// calls fn with the state they stand for: first once the informer has
// synced, then after every add, update or delete that changes the state.
// fn runs on the goroutine that called WatchNodes, one call at a time;
// while fn runs, further changes are coalesced into one report. resync is
// the informer's resync period (0 for none).
//
// WatchNodes blocks until ctx is done and then returns nil, provided the
// informer had synced. If ctx ends first, it returns an error saying so,
// with the last list or watch error. A list or watch that the API server
// refuses as Forbidden or Unauthorized before the first sync ends
// WatchNodes at once with that error (wrapped, so apierrors.IsForbidden
// works). Other errors are retried by client-go, which logs them through
// klog.
func WatchNodes(ctx context.Context, cs kubernetes.Interface, resync time.Duration, fn func(NodesState)) error {
	inf := coreinformers.NewNodeInformer(cs, resync, cache.Indexers{})
	return storeWatch[NodesState]{
		what:      "watch nodes",
		rbac:      "the loader needs list and watch on nodes",
		transform: stripNode,
		changed:   nodeChanged,
		state:     nodesStateOf,
		equal:     NodesState.Equal,
	}.run(ctx, inf, fn)
}
