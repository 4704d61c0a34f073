package endpoints

import (
	"context"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// NamespacesState is what Kubernetes says about the namespaces of the
// cluster.
type NamespacesState struct {
	// Synced is true in every state WatchNamespaces reports; the zero
	// NamespacesState stands for "not known yet".
	Synced bool
	// Labels maps the name of every namespace to its labels, an empty map
	// for a namespace without labels (never nil).
	Labels map[string]map[string]string
}

// Equal reports whether s and o report the same thing. A nil map equals an
// empty one.
func (s NamespacesState) Equal(o NamespacesState) bool {
	return s.Synced == o.Synced && maps.EqualFunc(s.Labels, o.Labels, maps.Equal[map[string]string])
}

// namespacesStateOf returns the state of the namespaces in an informer's
// store.
func namespacesStateOf(objs []any) NamespacesState {
	s := NamespacesState{Synced: true, Labels: make(map[string]map[string]string, len(objs))}
	for _, obj := range objs {
		if ns, ok := obj.(*corev1.Namespace); ok {
			l := maps.Clone(ns.Labels)
			if l == nil {
				l = map[string]string{}
			}
			s.Labels[ns.Name] = l
		}
	}
	return s
}

// stripNamespace keeps the name and labels of a Namespace. It returns a new
// object.
func stripNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:            ns.Name,
		UID:             ns.UID,
		ResourceVersion: ns.ResourceVersion,
		Labels:          ns.Labels,
	}}, nil
}

// namespaceLabelsChanged reports whether an update can change the state:
// whether the labels differ.
func namespaceLabelsChanged(oldObj, newObj any) bool {
	a, ok1 := oldObj.(*corev1.Namespace)
	b, ok2 := newObj.(*corev1.Namespace)
	return !ok1 || !ok2 || !maps.Equal(a.Labels, b.Labels)
}

// WatchNamespaces follows every Namespace of the cluster through cs and
// calls fn with their labels: first once the informer has synced, then
// after every add, update or delete that changes them. fn runs on the
// goroutine that called WatchNamespaces, one call at a time; while fn runs,
// further changes are coalesced into one report. resync is the informer's
// resync period (0 for none).
//
// WatchNamespaces blocks until ctx is done and then returns nil, provided
// the informer had synced. If ctx ends first, it returns an error saying so,
// with the last list or watch error. A list or watch that the API server
// refuses as Forbidden or Unauthorized before the first sync ends
// WatchNamespaces at once with that error (wrapped, so apierrors.IsForbidden
// works). Other errors are retried by client-go, which logs them through
// klog.
func WatchNamespaces(ctx context.Context, cs kubernetes.Interface, resync time.Duration, fn func(NamespacesState)) error {
	inf := coreinformers.NewNamespaceInformer(cs, resync, cache.Indexers{})
	return storeWatch[NamespacesState]{
		what:      "watch namespaces",
		rbac:      "the loader needs list and watch on namespaces",
		transform: stripNamespace,
		changed:   namespaceLabelsChanged,
		state:     namespacesStateOf,
		equal:     NamespacesState.Equal,
	}.run(ctx, inf, fn)
}
