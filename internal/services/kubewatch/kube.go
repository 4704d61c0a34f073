package kubewatch

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/roost-net/roost/internal/community"
	"github.com/roost-net/roost/internal/services"
)

// UnnamedPort is the key under which a backend from Kubernetes holds the
// endpoint port of its service's one unnamed port (see FromKubernetes).
// It is not a valid port name, so it cannot clash with one.
const UnnamedPort = "(unnamed)"

// LabelServiceProxyName marks a Service that another proxy serves;
// kube-proxy, and so FromKubernetes, leave it alone.
const LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// FromKubernetes converts Services and their EndpointSlices into services
// as kube-proxy reads them, and returns notes on what it left out and why,
// sorted. The services are sorted by name.
//
// Left out without a note, as kube-proxy leaves them: ExternalName
// services, headless services (clusterIP None) and services without a
// cluster IP, services labelled LabelServiceProxyName, and load-balancer
// ingress IPs whose ipMode is Proxy (traffic to them must go through the
// load balancer). Left out with a note: frontend and backend addresses
// that are not unicast addresses a socket can reach (loopback,
// link-local, multicast, unspecified), ports of an unknown protocol, a
// service left with no port or frontend, and a frontend address that
// would serve a port and protocol another service already serves there:
// the older service (by creation time, then name) keeps it.
//
// A service's frontends are spec.clusterIPs (spec.clusterIP when that is
// empty), spec.externalIPs and status.loadBalancer.ingress[].ip. Its
// settings default as the API server defaults them: traffic policies
// Cluster, sessionAffinity None, and a ClientIP timeout of
// DefaultSessionAffinityTimeout.
//
// Backends come from every EndpointSlice of the service's namespace
// labelled kubernetes.io/service-name with its name, in slice name order;
// FQDN slices are skipped. An endpoint is its first address (the others
// are fungible, as the API says), its nodeName and its conditions: a nil
// ready or serving is true, a nil terminating false, as the EndpointSlice
// API documents them. An address in two slices is one backend: the first
// slice's conditions and node, the ports of both (the first slice's win).
//
// Target ports: the EndpointSlice controller resolves each service port's
// targetPort (a number, or a container port name looked up per pod) and
// writes the result into the slice as a port named after the service
// port, not the container port. So, as in kube-proxy, spec targetPort is
// not read: every Port gets TargetPortName = its own name (UnnamedPort
// when it has none) and TargetPort 0, and every Backend's Ports hold its
// slice's ports by name, so that Resolve finds the endpoint port of each
// service port. An endpoint whose slice lacks that port gets none of the
// port's traffic, as in kube-proxy.
func FromKubernetes(svcs []*corev1.Service, epSlices []*discoveryv1.EndpointSlice) ([]services.Service, []string) {
	type svcKey struct{ ns, name string }
	bySvc := map[svcKey][]*discoveryv1.EndpointSlice{}
	for _, sl := range epSlices {
		if sl == nil {
			continue
		}
		if name := sl.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := svcKey{sl.Namespace, name}
			bySvc[k] = append(bySvc[k], sl)
		}
	}
	ordered := slices.DeleteFunc(slices.Clone(svcs), func(s *corev1.Service) bool { return s == nil })
	slices.SortFunc(ordered, func(a, b *corev1.Service) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	claims := services.NewClaims()
	var (
		out   []services.Service
		notes []string
	)
	for _, ks := range ordered {
		s, ok, sn := serviceOf(ks)
		notes = append(notes, sn...)
		if !ok {
			continue
		}
		var bn []string
		s.Backends, bn = backendsOf(s.FullName(), bySvc[svcKey{ks.Namespace, ks.Name}])
		notes = append(notes, bn...)
		notes = append(notes, claims.Claim(&s)...)
		if len(s.Frontends()) == 0 {
			notes = append(notes, fmt.Sprintf("service %s: left out: no frontend left", s.FullName()))
			continue
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b services.Service) int { return cmp.Compare(a.FullName(), b.FullName()) })
	slices.Sort(notes)
	return out, notes
}

// serviceOf returns the service ks stands for, without backends, and
// whether there is one; notes say what was left out.
func serviceOf(ks *corev1.Service) (services.Service, bool, []string) {
	spec := ks.Spec
	if _, other := ks.Labels[LabelServiceProxyName]; other || spec.Type == corev1.ServiceTypeExternalName {
		return services.Service{}, false, nil
	}
	ips := spec.ClusterIPs
	if len(ips) == 0 && spec.ClusterIP != "" {
		ips = []string{spec.ClusterIP}
	}
	if len(ips) == 0 || ips[0] == corev1.ClusterIPNone {
		return services.Service{}, false, nil
	}
	s := services.Service{
		Namespace:             ks.Namespace,
		Name:                  ks.Name,
		ExternalTrafficPolicy: services.TrafficPolicyCluster,
		InternalTrafficPolicy: services.TrafficPolicyCluster,
		SessionAffinity:       services.SessionAffinityNone,
	}
	var notes []string
	note := func(format string, args ...any) {
		notes = append(notes, fmt.Sprintf("service %s: ", s.FullName())+fmt.Sprintf(format, args...))
	}
	frontend := func(field, text string) (netip.Addr, bool) {
		a, problem := parseUnicast(text)
		if problem != "" {
			note("%s: %s; left out", field, problem)
		}
		return a, problem == ""
	}
	for i, text := range ips {
		if a, ok := frontend(fmt.Sprintf("spec.clusterIPs[%d]", i), text); ok {
			s.ClusterIPs = append(s.ClusterIPs, a)
		}
	}
	for i, text := range spec.ExternalIPs {
		if a, ok := frontend(fmt.Sprintf("spec.externalIPs[%d]", i), text); ok {
			s.ExternalIPs = append(s.ExternalIPs, a)
		}
	}
	for i, ing := range ks.Status.LoadBalancer.Ingress {
		if ing.IP == "" || (ing.IPMode != nil && *ing.IPMode == corev1.LoadBalancerIPModeProxy) {
			continue
		}
		if a, ok := frontend(fmt.Sprintf("status.loadBalancer.ingress[%d].ip", i), ing.IP); ok {
			s.LoadBalancerIPs = append(s.LoadBalancerIPs, a)
		}
	}
	if text, ok := ks.Annotations[community.Annotation]; ok {
		// All or nothing: a VIP announced with half of what its owner
		// asked for would be a surprise.
		if cs, err := community.ParseList(text); err != nil {
			note("annotation %s: %s; none of its communities is used", community.Annotation, strings.ReplaceAll(err.Error(), "\n", "; "))
		} else {
			s.BGPCommunities = cs
		}
	}
	for i, sp := range spec.Ports {
		p := services.Port{Name: sp.Name, Protocol: services.TCP, TargetPortName: cmp.Or(sp.Name, UnnamedPort)}
		switch sp.Protocol {
		case "", corev1.ProtocolTCP:
		case corev1.ProtocolUDP:
			p.Protocol = services.UDP
		case corev1.ProtocolSCTP:
			p.Protocol = services.SCTP
		default:
			note("spec.ports[%d]: protocol %q is not TCP, UDP or SCTP; left out", i, sp.Protocol)
			continue
		}
		if sp.Port < 1 || sp.Port > 65535 {
			note("spec.ports[%d]: %d is not a port (%s); left out", i, sp.Port, "1..65535")
			continue
		}
		p.Port = uint16(sp.Port)
		if slices.ContainsFunc(s.Ports, func(o services.Port) bool { return o.Port == p.Port && o.Protocol == p.Protocol }) {
			note("spec.ports[%d]: %s/%d repeats an earlier port; left out", i, p.Protocol, p.Port)
			continue
		}
		if sp.NodePort >= 1 && sp.NodePort <= 65535 {
			p.NodePort = uint16(sp.NodePort)
		}
		s.Ports = append(s.Ports, p)
	}
	if len(s.Ports) == 0 {
		note("left out: no port")
		return services.Service{}, false, notes
	}
	if spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		s.ExternalTrafficPolicy = services.TrafficPolicyLocal
	}
	if p := spec.InternalTrafficPolicy; p != nil && *p == corev1.ServiceInternalTrafficPolicyLocal {
		s.InternalTrafficPolicy = services.TrafficPolicyLocal
	}
	if spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		s.SessionAffinity, s.SessionAffinityTimeout = services.SessionAffinityClientIP, services.DefaultSessionAffinityTimeout
		if c := spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			t := time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
			if t >= time.Second && t <= services.MaxSessionAffinityTimeout {
				s.SessionAffinityTimeout = t
			} else {
				note("sessionAffinityConfig.clientIP.timeoutSeconds: %d is not 1..%d; %d used",
					*c.ClientIP.TimeoutSeconds, int(services.MaxSessionAffinityTimeout/time.Second), int(services.DefaultSessionAffinityTimeout/time.Second))
			}
		}
	}
	return s, true, notes
}

// backendsOf returns the backends of the service named name in its
// EndpointSlices, and notes on the addresses left out.
func backendsOf(name string, sls []*discoveryv1.EndpointSlice) ([]services.Backend, []string) {
	sls = slices.Clone(sls)
	slices.SortFunc(sls, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	var (
		out   []services.Backend
		notes []string
	)
	at := map[netip.Addr]int{} // index in out
	for _, sl := range sls {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		ports := slicePorts(sl.Ports)
		for i, ep := range sl.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			a, problem := parseUnicast(ep.Addresses[0])
			if problem == "" && a.Is4() != (sl.AddressType == discoveryv1.AddressTypeIPv4) {
				problem = fmt.Sprintf("%s is not of the slice's addressType %s", a, sl.AddressType)
			}
			if problem != "" {
				notes = append(notes, fmt.Sprintf("service %s: EndpointSlice %s: endpoints[%d]: %s; left out", name, sl.Name, i, problem))
				continue
			}
			if j, dup := at[a]; dup {
				for k, v := range ports {
					if _, has := out[j].Ports[k]; !has {
						if out[j].Ports == nil {
							out[j].Ports = map[string]services.NamedPort{}
						}
						out[j].Ports[k] = v
					}
				}
				continue
			}
			c := ep.Conditions
			b := services.Backend{
				IP:          a,
				Ready:       c.Ready == nil || *c.Ready,
				Serving:     c.Serving == nil || *c.Serving,
				Terminating: c.Terminating != nil && *c.Terminating,
				Ports:       maps.Clone(ports),
			}
			if ep.NodeName != nil {
				b.Node = *ep.NodeName
			}
			at[a] = len(out)
			out = append(out, b)
		}
	}
	return out, notes
}

// slicePorts returns an EndpointSlice's ports by name (UnnamedPort for
// the unnamed one); ports without a number, or of an unknown protocol,
// are left out (no service port can resolve to them). nil when none is
// left.
func slicePorts(eps []discoveryv1.EndpointPort) map[string]services.NamedPort {
	var out map[string]services.NamedPort
	for _, ep := range eps {
		if ep.Port == nil || *ep.Port < 1 || *ep.Port > 65535 {
			continue
		}
		np := services.NamedPort{Port: uint16(*ep.Port), Protocol: services.TCP}
		if ep.Protocol != nil {
			switch *ep.Protocol {
			case corev1.ProtocolTCP:
			case corev1.ProtocolUDP:
				np.Protocol = services.UDP
			case corev1.ProtocolSCTP:
				np.Protocol = services.SCTP
			default:
				continue
			}
		}
		name := UnnamedPort
		if ep.Name != nil && *ep.Name != "" {
			name = *ep.Name
		}
		if out == nil {
			out = map[string]services.NamedPort{}
		}
		out[name] = np
	}
	return out
}

// parseUnicast parses text as an address a socket can be load-balanced to
// or from: unicast, not loopback or link-local, without a zone; an
// IPv4-mapped address is unmapped. problem says what is wrong, "" if
// nothing.
func parseUnicast(text string) (a netip.Addr, problem string) {
	a, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Addr{}, fmt.Sprintf("%q is not an IP address", text)
	}
	a = a.Unmap()
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Sprintf("%s has a zone", a)
	}
	if kind := services.Unusable(a); kind != "" {
		return netip.Addr{}, fmt.Sprintf("%s is %s", a, kind)
	}
	return a, ""
}
