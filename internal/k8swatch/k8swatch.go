// Package k8swatch follows this node's own Node object in Kubernetes and
// reports the PodCIDRs assigned to it.
//
// It runs one client-go informer restricted by a field selector to the one
// Node (metadata.name=<node>), so a node never lists or caches the others,
// and it calls back only once the informer has synced and only when what it
// reports has changed. It talks to the API server through NodeClient, which
// knows Nodes and nothing else: roost-agent links this package whether or
// not Kubernetes is enabled, and client-go's full clientset would register
// every API group when the agent starts.
package k8swatch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// NodeState is what Kubernetes says about this node.
type NodeState struct {
	// Synced is true in every state WatchNode reports; the zero NodeState
	// stands for "not known yet".
	Synced bool
	// Exists reports whether the Node object exists.
	Exists bool
	// PodCIDRs are the valid prefixes of spec.podCIDRs, or of
	// spec.podCIDR when spec.podCIDRs is empty; sorted, without
	// duplicates. Empty until the node IPAM assigns them.
	PodCIDRs []netip.Prefix
	// Err reports the entries that were left out of PodCIDRs because they
	// are not valid network prefixes, one error each, joined. A valid
	// entry is reported even when another is not.
	Err error
	// ExcludeVIPs is true when the Node has the label ExcludeVIPsLabel set
	// to "true": the node announces no VIPs.
	ExcludeVIPs bool
}

// ExcludeVIPsLabel, set to "true" on a Node, keeps it from announcing the
// services' VIPs (it still announces its PodCIDRs).
const ExcludeVIPsLabel = "roost.io/exclude-vips"

// Equal reports whether s and o report the same thing (errors compare by
// their text).
func (s NodeState) Equal(o NodeState) bool {
	return s.Synced == o.Synced && s.Exists == o.Exists && s.ExcludeVIPs == o.ExcludeVIPs &&
		slices.Equal(s.PodCIDRs, o.PodCIDRs) && errText(s.Err) == errText(o.Err)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// stateOf returns the state a Node object (nil: none) stands for.
func stateOf(n *corev1.Node) NodeState {
	s := NodeState{Synced: true, Exists: n != nil}
	if n == nil {
		return s
	}
	s.ExcludeVIPs = n.Labels[ExcludeVIPsLabel] == "true"
	cidrs, field := n.Spec.PodCIDRs, "spec.podCIDRs"
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs, field = []string{n.Spec.PodCIDR}, "spec.podCIDR"
	}
	var errs []error
	for i, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("node %s: %s[%d]: %w", n.Name, field, i, err))
		case p != p.Masked():
			errs = append(errs, fmt.Errorf("node %s: %s[%d]: %s has host bits set (the network is %s)", n.Name, field, i, p, p.Masked()))
		default:
			s.PodCIDRs = append(s.PodCIDRs, p)
		}
	}
	slices.SortFunc(s.PodCIDRs, netip.Prefix.Compare)
	s.PodCIDRs = slices.Compact(s.PodCIDRs)
	s.Err = errors.Join(errs...)
	return s
}

// Nodes lists and watches Node objects: a NodeClient, or, in tests, the
// Nodes client of client-go's fake clientset.
type Nodes interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// WatchNode follows the Node named node through nodes and calls fn with its
// state: first once the informer has synced (whether or not the Node exists),
// then after every add, update or delete of that Node that changes the
// state. fn runs on the goroutine that called WatchNode, one call at a time;
// while fn runs, further changes are coalesced into one report. resync is
// the informer's resync period (0 for none).
//
// The informer streams its first list over a watch where client-go does so,
// unless nodes has a method IsWatchListSemanticsUnSupported that returns
// true, as client-go's fakes do.
//
// WatchNode blocks until ctx is done and then returns nil, provided the
// informer had synced. If ctx ends first, it returns an error saying so,
// with the last list or watch error. A list or watch that the API server
// refuses as Forbidden or Unauthorized before the first sync ends WatchNode
// at once with that error (wrapped, so apierrors.IsForbidden works): retrying
// cannot fix RBAC or credentials. Other errors are retried by client-go,
// which logs them through klog.
func WatchNode(ctx context.Context, nodes Nodes, node string, resync time.Duration, fn func(NodeState)) error {
	if node == "" {
		return errors.New("watch node: no node name given")
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &nodeWatch{node: node, dirty: make(chan struct{}, 1), guard: NewSyncGuard(cancel)}
	inf := cache.NewSharedIndexInformerWithOptions(newNodeListWatch(nodes, node), &corev1.Node{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync})
	if err := inf.SetWatchErrorHandlerWithContext(w.guard.WatchError); err != nil {
		cancel()
		return fmt.Errorf("watch node %s: %w", node, err)
	}
	// The field selector should keep other Nodes out, but not every client
	// applies it (the fake clientset does not): filter by name as well.
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.poke,
		UpdateFunc: func(_, obj any) { w.poke(obj) },
		DeleteFunc: w.poke,
	}); err != nil {
		cancel()
		return fmt.Errorf("watch node %s: %w", node, err)
	}

	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return w.guard.Err(ctx, "watch node "+node, "the agent needs get, list and watch on nodes")
	}
	w.guard.Synced()

	var last NodeState
	for {
		s := w.current(inf.GetStore())
		if !s.Equal(last) {
			last = s
			fn(s)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.dirty:
		}
	}
}

// newNodeListWatch returns the informer's lists and watches of the Node
// named node through nodes.
func newNodeListWatch(nodes Nodes, node string) cache.ListerWatcher {
	sel := fields.OneTermEqualSelector("metadata.name", node).String()
	only := func(o metav1.ListOptions) metav1.ListOptions {
		o.FieldSelector = sel
		return o
	}
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return nodes.List(ctx, only(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return nodes.Watch(ctx, only(o))
		},
	}, nodes)
}

// nodeWatch is the state one WatchNode shares with the informer's goroutines.
type nodeWatch struct {
	node  string
	dirty chan struct{} // holds one token when the Node may have changed
	guard *SyncGuard
}

// poke notes that obj, if it is our Node, may have changed.
func (w *nodeWatch) poke(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if n, ok := obj.(*corev1.Node); !ok || n.Name != w.node {
		return
	}
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// current returns the state of the Node as the informer's store has it.
func (w *nodeWatch) current(store cache.Store) NodeState {
	obj, exists, err := store.GetByKey(w.node)
	if err != nil {
		// The store is a map; this cannot happen, but say so if it does.
		return NodeState{Synced: true, Err: fmt.Errorf("node %s: read informer cache: %w", w.node, err)}
	}
	n, _ := obj.(*corev1.Node)
	if !exists || n == nil {
		return stateOf(nil)
	}
	return stateOf(n)
}
