package kubewatch

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/roost-net/roost/internal/k8swatch"
)

// NewClients returns the Services and EndpointSlices clients of cfg, each a
// REST client whose scheme holds its one type (see k8swatch.NodeClient for
// why not a clientset). Lists are bounded by k8swatch.ListTimeout.
func NewClients(cfg *rest.Config) (Clients, error) {
	svcs, err := newResource(cfg, corev1.SchemeGroupVersion, "/api", "services", &corev1.Service{}, &corev1.ServiceList{})
	if err != nil {
		return Clients{}, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	slices, err := newResource(cfg, discoveryv1.SchemeGroupVersion, "/apis", "endpointslices", &discoveryv1.EndpointSlice{}, &discoveryv1.EndpointSliceList{})
	if err != nil {
		return Clients{}, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return Clients{Services: svcs, EndpointSlices: slices}, nil
}

// resource lists and watches one resource of one API group version in
// every namespace.
type resource struct {
	rest    rest.Interface
	params  runtime.ParameterCodec
	name    string
	newList func() runtime.Object
}

func newResource(cfg *rest.Config, gv schema.GroupVersion, apiPath, name string, obj, list runtime.Object) (*resource, error) {
	scheme := runtime.NewScheme()
	scheme.AddKnownTypes(gv, obj, list)
	metav1.AddToGroupVersion(scheme, gv)
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = apiPath
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, err
	}
	return &resource{rest: rc, params: runtime.NewParameterCodec(scheme), name: name,
		newList: func() runtime.Object { return list.DeepCopyObject() }}, nil
}

// List lists the resource within opts.TimeoutSeconds or else
// k8swatch.ListTimeout.
func (r *resource) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	out := r.newList()
	timeout := k8swatch.ListTimeout
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	err := r.rest.Get().Resource(r.name).VersionedParams(&opts, r.params).Timeout(timeout).Do(ctx).Into(out)
	return out, err
}

// Watch watches the resource.
func (r *resource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	req := r.rest.Get().Resource(r.name).VersionedParams(&opts, r.params)
	if opts.TimeoutSeconds != nil {
		req = req.Timeout(time.Duration(*opts.TimeoutSeconds) * time.Second)
	}
	return req.Watch(ctx)
}
