package kubewatch

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/services"
)

// kubeLabelSelector keeps out of the informers' caches what FromKubernetes
// leaves out by label, as kube-proxy's selector does: services (and their
// slices) of another proxy, and the slices of headless services. The
// server applies it; FromKubernetes checks again, since not every client
// does (the fake clientset's watches do not).
const kubeLabelSelector = "!" + LabelServiceProxyName + ",!" + corev1.IsHeadlessService

// ListWatcher lists and watches one kind of object in every namespace.
type ListWatcher interface {
	List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// Clients are where WatchKubernetes reads: Services (core/v1) and
// EndpointSlices (discovery.k8s.io/v1). NewClients makes them on
// client-go's REST client alone, so that a program linking this package
// does not link client-go's clientset (every API group).
type Clients struct {
	Services, EndpointSlices ListWatcher
}

// WatchKubernetes follows the Services and EndpointSlices
// (discovery.k8s.io/v1) of every namespace through c and calls set with
// what FromKubernetes makes of them: first once both informers have
// synced, then after every add, update or delete that changes the result.
// set runs on the goroutine that called WatchKubernetes, one call at a
// time; while it runs, further changes are coalesced into one report.
// resync is the informers' resync period (0 for none).
//
// WatchKubernetes blocks until ctx is done and then returns nil, provided
// both informers had synced. If ctx ends first, it returns an error saying
// so, with the last list or watch error. A list or watch that the API
// server refuses as Forbidden or Unauthorized before the first sync ends
// WatchKubernetes at once with that error (wrapped, so
// apierrors.IsForbidden works): retrying cannot fix RBAC or credentials.
// Other errors are retried by client-go, which logs them through klog.
func WatchKubernetes(ctx context.Context, c Clients, resync time.Duration, set func([]services.Service, []string)) error {
	const (
		what = "watch services"
		rbac = "list and watch on services and on endpointslices (discovery.k8s.io) in all namespaces are needed"
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	guard := k8swatch.NewSyncGuard(cancel)
	dirty := make(chan struct{}, 1)
	poke := func() {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() },
		UpdateFunc: func(oldObj, newObj any) {
			if !isResync(oldObj, newObj) {
				poke()
			}
		},
		DeleteFunc: func(any) { poke() },
	}
	svcInf := cache.NewSharedIndexInformer(selected(c.Services), &corev1.Service{}, resync, cache.Indexers{})
	sliceInf := cache.NewSharedIndexInformer(selected(c.EndpointSlices), &discoveryv1.EndpointSlice{}, resync, cache.Indexers{})
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{svcInf, sliceInf} {
		if err := inf.SetWatchErrorHandlerWithContext(guard.WatchError); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := inf.SetTransform(stripKube); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		synced = append(synced, reg.HasSynced)
	}

	var wg sync.WaitGroup
	wg.Go(func() { svcInf.RunWithContext(ctx) })
	wg.Go(func() { sliceInf.RunWithContext(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return guard.Err(ctx, what, rbac)
	}
	guard.Synced()

	type result struct {
		svcs  []services.Service
		notes []string
	}
	var last result
	for first := true; ; first = false {
		var r result
		r.svcs, r.notes = FromKubernetes(servicesIn(svcInf.GetStore()), slicesIn(sliceInf.GetStore()))
		if first || !reflect.DeepEqual(r, last) {
			last = r
			set(r.svcs, r.notes)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
		}
	}
}

// selected lists and watches through lw with kubeLabelSelector. A lw that
// says it does not support watch-list semantics (client-go's fake
// clientset) gets plain lists and watches.
func selected(lw ListWatcher) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = kubeLabelSelector
			return lw.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = kubeLabelSelector
			return lw.Watch(ctx, o)
		},
	}, lw)
}

// isResync reports whether an update is a resync: the same resource
// version, so nothing changed.
func isResync(oldObj, newObj any) bool {
	a, ok1 := oldObj.(metav1.Object)
	b, ok2 := newObj.(metav1.Object)
	return ok1 && ok2 && a.GetResourceVersion() != "" && a.GetResourceVersion() == b.GetResourceVersion()
}

// stripKube drops what FromKubernetes does not read and can be large:
// managed fields and annotations (kubectl's copy of the last applied
// object). It changes obj in place, which client-go allows.
func stripKube(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		m.SetAnnotations(nil)
	}
	return obj, nil
}

func servicesIn(s cache.Store) []*corev1.Service {
	var out []*corev1.Service
	for _, obj := range s.List() {
		if v, ok := obj.(*corev1.Service); ok {
			out = append(out, v)
		}
	}
	return out
}

func slicesIn(s cache.Store) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, obj := range s.List() {
		if v, ok := obj.(*discoveryv1.EndpointSlice); ok {
			out = append(out, v)
		}
	}
	return out
}
