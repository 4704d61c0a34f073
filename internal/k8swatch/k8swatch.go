// Package k8swatch follows this node's own Node object in Kubernetes and
// reports the PodCIDRs assigned to it.
//
// It runs one client-go informer restricted by a field selector to the one
// Node (metadata.name=<node>), so a node never lists or caches the others,
// and it calls back only once the informer has synced and only when what it
// reports has changed.
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
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
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
}

// Equal reports whether s and o report the same thing (errors compare by
// their text).
func (s NodeState) Equal(o NodeState) bool {
	return s.Synced == o.Synced && s.Exists == o.Exists &&
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

// WatchNode follows the Node named node through cs and calls fn with its
// state: first once the informer has synced (whether or not the Node exists),
// then after every add, update or delete of that Node that changes the
// state. fn runs on the goroutine that called WatchNode, one call at a time;
// while fn runs, further changes are coalesced into one report. resync is
// the informer's resync period (0 for none).
//
// WatchNode blocks until ctx is done and then returns nil, provided the
// informer had synced. If ctx ends first, it returns an error saying so,
// with the last list or watch error. A list or watch that the API server
// refuses as Forbidden or Unauthorized before the first sync ends WatchNode
// at once with that error (wrapped, so apierrors.IsForbidden works): retrying
// cannot fix RBAC or credentials. Other errors are retried by client-go,
// which logs them through klog.
func WatchNode(ctx context.Context, cs kubernetes.Interface, node string, resync time.Duration, fn func(NodeState)) error {
	if node == "" {
		return errors.New("watch node: no node name given")
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watch{node: node, dirty: make(chan struct{}, 1), guard: NewSyncGuard(cancel)}
	inf := coreinformers.NewFilteredNodeInformer(cs, resync, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", node).String()
	})
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

// watch is the state one WatchNode shares with the informer's goroutines.
type watch struct {
	node  string
	dirty chan struct{} // holds one token when the Node may have changed
	guard *SyncGuard
}

// poke notes that obj, if it is our Node, may have changed.
func (w *watch) poke(obj any) {
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
func (w *watch) current(store cache.Store) NodeState {
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

// NewClientset returns a Kubernetes client configured from the kubeconfig
// file at path kubeconfig, or, when kubeconfig is empty, from the in-cluster
// environment (service account token and KUBERNETES_SERVICE_HOST).
func NewClientset(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := NewConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return cs, nil
}

// NewConfig returns the client configuration of a kubeconfig file, or the
// in-cluster configuration when kubeconfig is empty.
func NewConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes client: no kubeconfig given, and in-cluster config failed: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
