package endpoints

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/roost-net/roost/internal/k8swatch"
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

// storeWatch is a watch of one informer whose state is computed from the
// informer's store: WatchNamespaces and WatchNodes.
type storeWatch[S any] struct {
	// what names the watch in errors ("watch nodes"); rbac says what access
	// it needs.
	what, rbac string
	// transform strips objects before the informer stores them.
	transform cache.TransformFunc
	// changed reports whether an update from oldObj to newObj can change
	// the state; adds and deletes always can.
	changed func(oldObj, newObj any) bool
	// state returns the state of the objects in the store.
	state func(objs []any) S
	// equal reports whether two states are the same.
	equal func(a, b S) bool
}

// run runs inf until ctx is done, reporting through fn as WatchNamespaces
// documents.
func (w storeWatch[S]) run(ctx context.Context, inf cache.SharedIndexInformer, fn func(S)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	guard := k8swatch.NewSyncGuard(cancel)
	dirty := newWakeup()
	if err := inf.SetWatchErrorHandlerWithContext(guard.WatchError); err != nil {
		return fmt.Errorf("%s: %w", w.what, err)
	}
	if err := inf.SetTransform(w.transform); err != nil {
		return fmt.Errorf("%s: %w", w.what, err)
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { dirty.poke() },
		UpdateFunc: func(oldObj, newObj any) {
			if w.changed(oldObj, newObj) {
				dirty.poke()
			}
		},
		DeleteFunc: func(any) { dirty.poke() },
	})
	if err != nil {
		return fmt.Errorf("%s: %w", w.what, err)
	}

	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return guard.Err(ctx, w.what, w.rbac)
	}
	guard.Synced()

	var last S
	for first := true; ; first = false {
		s := w.state(inf.GetStore().List())
		if first || !w.equal(s, last) {
			last = s
			fn(s)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
		}
	}
}

// wakeup holds one token when something may have changed: pokes coalesce
// until the token is taken.
type wakeup chan struct{}

func newWakeup() wakeup { return make(wakeup, 1) }

// poke notes that something may have changed.
func (w wakeup) poke() {
	select {
	case w <- struct{}{}:
	default:
	}
}
