package k8swatch

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// NodeClient lists and watches the Node objects of core/v1, and nothing
// else. Unlike a kubernetes.Clientset, whose package registers every API
// group in client-go's scheme when the program starts, it links only the
// core/v1 types, and builds a scheme with only Node and NodeList in it when
// it is made: a program that links it but does not use Kubernetes pays
// little for it.
type NodeClient struct {
	rest   rest.Interface
	params runtime.ParameterCodec
}

// NewNodeClient returns a NodeClient configured from the kubeconfig file at
// path kubeconfig, or, when kubeconfig is empty, from the in-cluster
// environment (service account token and KUBERNETES_SERVICE_HOST).
func NewNodeClient(kubeconfig string) (*NodeClient, error) {
	cfg, err := NewConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	c, err := NewNodeClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return c, nil
}

// NewNodeClientForConfig returns a NodeClient that uses cfg. It leaves cfg
// alone.
func NewNodeClientForConfig(cfg *rest.Config) (*NodeClient, error) {
	scheme := runtime.NewScheme()
	scheme.AddKnownTypes(corev1.SchemeGroupVersion, &corev1.Node{}, &corev1.NodeList{})
	// ListOptions, WatchEvent and Status, as the API server sends them.
	metav1.AddToGroupVersion(scheme, corev1.SchemeGroupVersion)

	c := rest.CopyConfig(cfg)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.APIPath = "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, err
	}
	return &NodeClient{rest: rc, params: runtime.NewParameterCodec(scheme)}, nil
}

// ListTimeout bounds a List whose options set no timeout: an API server
// that accepts the connection and never answers must not hold the
// informer, and the agent, forever.
const ListTimeout = 30 * time.Second

// List returns the Nodes that opts select, within opts.TimeoutSeconds or
// else ListTimeout.
func (c *NodeClient) List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	list := &corev1.NodeList{}
	timeout := timeoutOf(opts)
	if timeout == 0 {
		timeout = ListTimeout
	}
	err := c.rest.Get().
		Resource("nodes").
		VersionedParams(&opts, c.params).
		Timeout(timeout).
		Do(ctx).
		Into(list)
	return list, err
}

// Watch watches the Nodes that opts select.
func (c *NodeClient) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rest.Get().
		Resource("nodes").
		VersionedParams(&opts, c.params).
		Timeout(timeoutOf(opts)).
		Watch(ctx)
}

// timeoutOf returns the request timeout opts ask for (0: none).
func timeoutOf(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
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
