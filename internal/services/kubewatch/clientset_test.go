package kubewatch

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/watchlist"
)

// lwFuncs is a ListWatcher made of two functions.
type lwFuncs struct {
	list  func(context.Context, metav1.ListOptions) (runtime.Object, error)
	watch func(context.Context, metav1.ListOptions) (watch.Interface, error)
	// unsupported: the client has no watch-list semantics (the fake).
	unsupported bool
}

func (f lwFuncs) IsWatchListSemanticsUnSupported() bool { return f.unsupported }

func (f lwFuncs) List(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	return f.list(ctx, o)
}

func (f lwFuncs) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return f.watch(ctx, o)
}

// clientsOf reads through a clientset (the unit tests' fake one).
func clientsOf(cs kubernetes.Interface) Clients {
	svcs, slices := cs.CoreV1().Services(""), cs.DiscoveryV1().EndpointSlices("")
	return Clients{
		Services: lwFuncs{
			list:        func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return svcs.List(ctx, o) },
			watch:       svcs.Watch,
			unsupported: watchlist.DoesClientNotSupportWatchListSemantics(cs),
		},
		EndpointSlices: lwFuncs{
			list:        func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return slices.List(ctx, o) },
			watch:       slices.Watch,
			unsupported: watchlist.DoesClientNotSupportWatchListSemantics(cs),
		},
	}
}
