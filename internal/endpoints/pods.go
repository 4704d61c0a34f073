package endpoints

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/roost-net/roost/internal/policy"
)

// podFieldSelector keeps host-network and terminated pods out of the
// informer's cache. The server applies it; WatchPods filters again, since
// not every client does (the fake clientset does not).
const podFieldSelector = "spec.hostNetwork=false,status.phase!=Succeeded,status.phase!=Failed"

// PodsState is what Kubernetes says about the pods of the whole cluster.
type PodsState struct {
	// Synced is true in every state WatchPods reports; the zero PodsState
	// stands for "not known yet".
	Synced bool
	// Workloads are the pods that are endpoints, sorted by name
	// ("namespace/name"). Their IPs are status.podIPs (status.podIP when
	// podIPs is empty) in order, without duplicates; their Labels are the
	// pod's labels; Namespace and ServiceAccount are the pod's; NamedPorts
	// are the named ports of its containers (a later duplicate name wins,
	// as in Cilium), nil when there are none.
	//
	// Not endpoints: pods on the host network (they are their node to
	// policy), pods with no address yet, and pods that have terminated
	// (phase Succeeded or Failed).
	Workloads []Workload
	// Nodes maps each endpoint's name to its pod's spec.nodeName.
	Nodes map[string]string
	// Err reports the podIPs that were left out because they are not IP
	// addresses, one error each, joined. A pod left with no address is
	// left out.
	Err error
}

// Equal reports whether s and o report the same thing (errors compare by
// their text).
func (s PodsState) Equal(o PodsState) bool {
	return s.Synced == o.Synced && maps.Equal(s.Nodes, o.Nodes) && errText(s.Err) == errText(o.Err) &&
		slices.EqualFunc(s.Workloads, o.Workloads, equalWorkload)
}

func equalWorkload(a, b Workload) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.ServiceAccount == b.ServiceAccount &&
		slices.Equal(a.IPs, b.IPs) && maps.Equal(a.Labels, b.Labels) && maps.Equal(a.NamedPorts, b.NamedPorts)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// podEndpoint returns the workload a pod stands for, and whether it is
// one. err reports addresses left out.
func podEndpoint(p *corev1.Pod) (ep Workload, ok bool, err error) {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return Workload{}, false, nil
	}
	ep.Name = p.Namespace + "/" + p.Name
	raw, field := make([]string, 0, len(p.Status.PodIPs)), "status.podIPs"
	for _, ip := range p.Status.PodIPs {
		raw = append(raw, ip.IP)
	}
	if len(raw) == 0 && p.Status.PodIP != "" {
		raw, field = []string{p.Status.PodIP}, "status.podIP"
	}
	var errs []error
	for i, s := range raw {
		a, perr := netip.ParseAddr(s)
		switch {
		case perr != nil:
			errs = append(errs, fmt.Errorf("pod %s: %s[%d]: %q is not an IP address", ep.Name, field, i, s))
		case !slices.Contains(ep.IPs, a.Unmap()):
			ep.IPs = append(ep.IPs, a.Unmap())
		}
	}
	if len(ep.IPs) == 0 {
		return Workload{}, false, errors.Join(errs...)
	}
	ep.Namespace = p.Namespace
	ep.ServiceAccount = p.Spec.ServiceAccountName
	ep.Labels = maps.Clone(p.Labels)
	if ep.Labels == nil {
		ep.Labels = map[string]string{}
	}
	ep.NamedPorts = containerPorts(p)
	return ep, true, errors.Join(errs...)
}

// containerPorts returns the named ports of a pod's containers, as Cilium
// reads them: names lower-cased, a missing protocol TCP, a later container
// port of the same name winning; ports Cilium would skip (bad name, port 0,
// another protocol) are left out. nil when there are none.
func containerPorts(p *corev1.Pod) map[string]policy.NamedPort {
	var out map[string]policy.NamedPort
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			name := strings.ToLower(cp.Name)
			if name == "" || len(name) > 15 || !svcName.MatchString(name) || cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				continue
			}
			np := policy.NamedPort{Port: uint16(cp.ContainerPort)}
			switch cp.Protocol {
			case "", corev1.ProtocolTCP:
				np.Protocol = policy.ProtoTCP
			case corev1.ProtocolUDP:
				np.Protocol = policy.ProtoUDP
			case corev1.ProtocolSCTP:
				np.Protocol = policy.ProtoSCTP
			default:
				continue
			}
			if out == nil {
				out = make(map[string]policy.NamedPort)
			}
			out[name] = np
		}
	}
	return out
}

// stateOf returns the state the pods stand for.
func stateOf(pods []*corev1.Pod) PodsState {
	s := PodsState{Synced: true, Nodes: make(map[string]string)}
	var errs []error
	for _, p := range pods {
		ep, ok, err := podEndpoint(p)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			s.Workloads = append(s.Workloads, ep)
			s.Nodes[ep.Name] = p.Spec.NodeName
		}
	}
	slices.SortFunc(s.Workloads, func(a, b Workload) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(errs, func(a, b error) int { return cmp.Compare(a.Error(), b.Error()) })
	s.Err = errors.Join(errs...)
	return s
}

// stripPod keeps what podEndpoint reads of a Pod, so that the informer's
// cache of every pod in the cluster stays small. It returns a new object.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       p.Namespace,
			UID:             p.UID,
			ResourceVersion: p.ResourceVersion,
			Labels:          p.Labels,
		},
		Spec: corev1.PodSpec{
			NodeName:           p.Spec.NodeName,
			HostNetwork:        p.Spec.HostNetwork,
			ServiceAccountName: p.Spec.ServiceAccountName,
			Containers:         stripContainers(p.Spec.Containers),
		},
		Status: corev1.PodStatus{
			Phase:  p.Status.Phase,
			PodIP:  p.Status.PodIP,
			PodIPs: p.Status.PodIPs,
		},
	}, nil
}

// stripContainers keeps the named ports of containers, all a policy needs.
func stripContainers(cs []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range cs {
		var ports []corev1.ContainerPort
		for _, cp := range c.Ports {
			if cp.Name != "" {
				ports = append(ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.ContainerPort, Protocol: cp.Protocol})
			}
		}
		if len(ports) > 0 {
			out = append(out, corev1.Container{Name: c.Name, Ports: ports})
		}
	}
	return out
}

// podOf returns the Pod in an informer event, tombstones unwrapped.
func podOf(obj any) (*corev1.Pod, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	p, ok := obj.(*corev1.Pod)
	return p, ok
}

// relevant reports whether a change from old to cur can change the state.
func relevant(old, cur *corev1.Pod) bool {
	a, aok, aerr := podEndpoint(old)
	b, bok, berr := podEndpoint(cur)
	return aok != bok || errText(aerr) != errText(berr) || !equalWorkload(a, b) || old.Spec.NodeName != cur.Spec.NodeName
}

// WatchPods follows every Pod of the cluster through cs (remote pods matter
// too: they give source addresses their identities) and calls fn with the
// state they stand for: first once the informer has synced, then after
// every add, update or delete that changes the state. fn runs on the
// goroutine that called WatchPods, one call at a time; while fn runs,
// further changes are coalesced into one report. resync is the informer's
// resync period (0 for none).
//
// WatchPods blocks until ctx is done and then returns nil, provided the
// informer had synced. If ctx ends first, it returns an error saying so,
// with the last list or watch error. A list or watch that the API server
// refuses as Forbidden or Unauthorized before the first sync ends WatchPods
// at once with that error (wrapped, so apierrors.IsForbidden works):
// retrying cannot fix RBAC or credentials. Other errors are retried by
// client-go, which logs them through klog.
func WatchPods(ctx context.Context, cs kubernetes.Interface, resync time.Duration, fn func(PodsState)) error {
	inf := coreinformers.NewFilteredPodInformer(cs, metav1.NamespaceAll, resync, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = podFieldSelector
	})
	return storeWatch[PodsState]{
		what:      "watch pods",
		rbac:      "the loader needs list and watch on pods in all namespaces",
		transform: stripPod,
		changed: func(oldObj, newObj any) bool {
			old, ok1 := podOf(oldObj)
			p, ok2 := podOf(newObj)
			return !ok1 || !ok2 || relevant(old, p)
		},
		state: podsStateOf,
		equal: PodsState.Equal,
	}.run(ctx, inf, fn)
}

// podsStateOf returns the state of the pods in an informer's store.
func podsStateOf(objs []any) PodsState {
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, obj := range objs {
		if p, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return stateOf(pods)
}
