package kubewatch

import (
	"github.com/roost-net/roost/internal/services"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/roost-net/roost/internal/community"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// kubeService returns a ClusterIP Service default/name with clusterIPs
// and ports "name:port/PROTO->target" (name and /PROTO optional).
func kubeService(name string, clusterIPs []string, ports ...string) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1000, 0))},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIPs: clusterIPs},
	}
	if len(clusterIPs) > 0 {
		s.Spec.ClusterIP = clusterIPs[0]
	}
	for _, p := range ports {
		var sp corev1.ServicePort
		if n, rest, ok := strings.Cut(p, ":"); ok {
			sp.Name, p = n, rest
		}
		p, target, _ := strings.Cut(p, "->")
		p, proto, _ := strings.Cut(p, "/")
		sp.Protocol = corev1.Protocol(proto)
		sp.Port = int32(atoi(p))
		sp.TargetPort = intstr.Parse(target)
		s.Spec.Ports = append(s.Spec.Ports, sp)
	}
	return s
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// slice returns an EndpointSlice default/name of service svc, with ports
// "name=port/PROTO" (name= and /PROTO optional) and endpoints.
func slice(name, svc string, typ discoveryv1.AddressType, ports []string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: typ,
		Endpoints:   eps,
	}
	for _, p := range ports {
		var ep discoveryv1.EndpointPort
		if n, rest, ok := strings.Cut(p, "="); ok {
			ep.Name, p = &n, rest
		}
		p, proto, _ := strings.Cut(p, "/")
		num := int32(atoi(p))
		ep.Port = &num
		if proto != "" {
			pr := corev1.Protocol(proto)
			ep.Protocol = &pr
		}
		sl.Ports = append(sl.Ports, ep)
	}
	return sl
}

// endpoint returns an endpoint at addr on node; conds are "ready",
// "serving", "terminating", each optionally prefixed with "!" for false;
// a condition not named is nil.
func endpoint(addr, node string, conds ...string) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: []string{addr}}
	if node != "" {
		ep.NodeName = &node
	}
	for _, c := range conds {
		v := !strings.HasPrefix(c, "!")
		switch strings.TrimPrefix(c, "!") {
		case "ready":
			ep.Conditions.Ready = &v
		case "serving":
			ep.Conditions.Serving = &v
		case "terminating":
			ep.Conditions.Terminating = &v
		}
	}
	return ep
}

func TestFromKubernetes(t *testing.T) {
	v4, v6, fqdn := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN
	tests := []struct {
		name   string
		svcs   []*corev1.Service
		slices []*discoveryv1.EndpointSlice
		want   string // Describe, then "note: ..." lines
	}{
		{
			name: "one unnamed port: the slice's port, not spec targetPort; conditions",
			svcs: []*corev1.Service{kubeService("web", []string{"10.96.0.10"}, "80->8080")},
			slices: []*discoveryv1.EndpointSlice{slice("web-abc", "web", v4, []string{"8081"},
				endpoint("10.244.1.10", "node1", "ready", "serving", "!terminating"),
				endpoint("10.244.2.12", "node2", "!ready", "serving", "terminating"),
				endpoint("10.244.3.1", "", "!ready", "!serving", "terminating"),
			)},
			want: `
  default/web
    clusterIP 10.96.0.10:80/TCP -> 10.244.1.10:8081 on node1, 10.244.2.12:8081 on node2 (not ready, serving, terminating), 10.244.3.1:8081 (not ready, not serving, terminating)`,
		},
		{
			name: "nil conditions as the API documents them: ready and serving true, terminating false",
			svcs: []*corev1.Service{kubeService("web", []string{"10.96.0.10"}, "80->8080")},
			slices: []*discoveryv1.EndpointSlice{slice("web-abc", "web", v4, []string{"8080"},
				endpoint("10.244.1.10", ""),
				endpoint("10.244.1.11", "", "!ready"),
				endpoint("10.244.1.12", "", "terminating"),
			)},
			want: `
  default/web
    clusterIP 10.96.0.10:80/TCP -> 10.244.1.10:8080, 10.244.1.11:8080 (not ready, serving), 10.244.1.12:8080 (ready, serving, terminating)`,
		},
		{
			name: "named ports: slice ports carry the service port's name, resolved per slice",
			svcs: []*corev1.Service{kubeService("web", []string{"10.96.0.10"}, "http:80->web", "dns:53/UDP->dns", "metrics:9090->9090")},
			slices: []*discoveryv1.EndpointSlice{
				slice("web-b", "web", v4, []string{"http=8081", "dns=5353/UDP"}, endpoint("10.244.2.2", "node2")),
				slice("web-a", "web", v4, []string{"http=8080", "dns=53/UDP", "metrics=9090"}, endpoint("10.244.1.1", "node1")),
			},
			want: `
  default/web
    clusterIP 10.96.0.10:80/TCP http -> 10.244.1.1:8080 on node1, 10.244.2.2:8081 on node2
    clusterIP 10.96.0.10:53/UDP dns -> 10.244.1.1:53 on node1, 10.244.2.2:5353 on node2
    clusterIP 10.96.0.10:9090/TCP metrics -> 10.244.1.1:9090 on node1, 10.244.2.2 on node2 (no TCP port "metrics")`,
		},
		{
			name: "a slice port of another protocol does not resolve",
			svcs: []*corev1.Service{kubeService("dns", []string{"10.96.0.10"}, "dns:53/UDP->53")},
			slices: []*discoveryv1.EndpointSlice{
				slice("dns-a", "dns", v4, []string{"dns=53/TCP"}, endpoint("10.244.1.1", "")),
			},
			want: `
  default/dns
    clusterIP 10.96.0.10:53/UDP dns -> 10.244.1.1 (no UDP port "dns")`,
		},
		{
			name: "an address in two slices is one backend: the first slice's conditions, the ports of both",
			svcs: []*corev1.Service{kubeService("web", []string{"10.96.0.10"}, "http:80->80", "metrics:9090->9090")},
			slices: []*discoveryv1.EndpointSlice{
				slice("web-b", "web", v4, []string{"http=8888", "metrics=9090"}, endpoint("10.244.1.1", "node1", "!ready", "terminating")),
				slice("web-a", "web", v4, []string{"http=80"}, endpoint("10.244.1.1", "node1")),
			},
			want: `
  default/web
    clusterIP 10.96.0.10:80/TCP http -> 10.244.1.1:80 on node1
    clusterIP 10.96.0.10:9090/TCP metrics -> 10.244.1.1:9090 on node1`,
		},
		{
			name: "slices of other services, of other namespaces, unlabelled, FQDN: not taken",
			svcs: []*corev1.Service{kubeService("web", []string{"10.96.0.10"}, "80->80")},
			slices: func() []*discoveryv1.EndpointSlice {
				other := slice("web-x", "web", v4, []string{"80"}, endpoint("10.244.9.1", ""))
				other.Namespace = "prod"
				unlabelled := slice("web-y", "web", v4, []string{"80"}, endpoint("10.244.9.2", ""))
				unlabelled.Labels = nil
				return []*discoveryv1.EndpointSlice{
					slice("db-a", "db", v4, []string{"80"}, endpoint("10.244.9.3", "")),
					other, unlabelled,
					slice("web-f", "web", fqdn, []string{"80"}, endpoint("example.com", "")),
				}
			}(),
			want: `
  default/web
    clusterIP 10.96.0.10:80/TCP -> none`,
		},
		{
			name: "dual stack: each family's frontend leads to that family's slices",
			svcs: []*corev1.Service{kubeService("web", []string{"10.96.0.10", "fd00:96::10"}, "80->80")},
			slices: []*discoveryv1.EndpointSlice{
				slice("web-4", "web", v4, []string{"80"}, endpoint("10.244.1.1", "")),
				slice("web-6", "web", v6, []string{"80"}, endpoint("fd00:244::1", "")),
			},
			want: `
  default/web
    clusterIP 10.96.0.10:80/TCP -> 10.244.1.1:80
    clusterIP [fd00:96::10]:80/TCP -> [fd00:244::1]:80`,
		},
		{
			name: "a LoadBalancer service: external and ingress IPs (not ipMode Proxy, not hostnames), node ports, policies, affinity",
			svcs: func() []*corev1.Service {
				s := kubeService("lb", []string{"10.96.0.20"}, "http:80->80")
				s.Spec.Type = corev1.ServiceTypeLoadBalancer
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.ExternalIPs = []string{"192.0.2.10"}
				proxy, vip := corev1.LoadBalancerIPModeProxy, corev1.LoadBalancerIPModeVIP
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
					{IP: "198.51.100.1"}, {IP: "198.51.100.2", IPMode: &vip}, {IP: "198.51.100.3", IPMode: &proxy}, {Hostname: "lb.example.com"},
					{IP: "192.0.2.10"}, // also an external IP: served once
				}
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				local := corev1.ServiceInternalTrafficPolicyLocal
				s.Spec.InternalTrafficPolicy = &local
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				secs := int32(600)
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &secs}}
				return []*corev1.Service{s}
			}(),
			want: `
  default/lb (externalTrafficPolicy Local, internalTrafficPolicy Local, sessionAffinity ClientIP 10m0s)
    clusterIP 10.96.0.20:80/TCP http -> none
    externalIP 192.0.2.10:80/TCP http -> none
    loadBalancerIP 198.51.100.1:80/TCP http -> none
    loadBalancerIP 198.51.100.2:80/TCP http -> none
    nodePort *:30080/TCP http -> none`,
		},
		{
			name: "ClientIP without a timeout: the default",
			svcs: func() []*corev1.Service {
				s := kubeService("web", []string{"10.96.0.10"}, "80->80")
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				return []*corev1.Service{s}
			}(),
			want: `
  default/web (sessionAffinity ClientIP 3h0m0s)
    clusterIP 10.96.0.10:80/TCP -> none`,
		},
		{
			name: "headless, ExternalName and another proxy's services: left out quietly",
			svcs: func() []*corev1.Service {
				headless := kubeService("headless", []string{"None"}, "80->80")
				ext := kubeService("ext", nil)
				ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
				other := kubeService("other", []string{"10.96.0.30"}, "80->80")
				other.Labels = map[string]string{LabelServiceProxyName: "someone-else"}
				return []*corev1.Service{headless, ext, other}
			}(),
			want: `
  none`,
		},
		{
			name: "communities from the annotation; a bad list is left out whole",
			svcs: func() []*corev1.Service {
				good := kubeService("web", []string{"10.96.0.10"}, "80->8080")
				good.Annotations = map[string]string{community.Annotation: "65000:300, 4200000000:7:1 65000:300"}
				bad := kubeService("db", []string{"10.96.0.11"}, "80->8080")
				bad.Annotations = map[string]string{community.Annotation: "65000:301 65536:1"}
				return []*corev1.Service{good, bad}
			}(),
			want: `
  default/db
    clusterIP 10.96.0.11:80/TCP -> none
  default/web (bgpCommunities 65000:300,4200000000:7:1)
    clusterIP 10.96.0.10:80/TCP -> none
note: service default/db: annotation roost.io/bgp-communities: "65536:1": part "65536" is larger than 16 bits: not a community (A:B with parts 0-65535, or A:B:C with parts 0-4294967295); none of its communities is used`,
		},
		{
			name: "bad frontend and backend addresses, unknown protocols: left out with notes",
			svcs: func() []*corev1.Service {
				s := kubeService("web", []string{"10.96.0.10"}, "http:80->80", "x:81/ICMP->81")
				s.Spec.ExternalIPs = []string{"127.0.0.1", "bogus", "::ffff:192.0.2.7"}
				bad := kubeService("bad", []string{"10.96.0.11"}, "80->80")
				bad.Spec.ClusterIPs = []string{"169.254.0.1"}
				return []*corev1.Service{s, bad}
			}(),
			slices: []*discoveryv1.EndpointSlice{slice("web-a", "web", v4, []string{"http=80"},
				endpoint("10.244.1.1", ""), endpoint("0.0.0.0", ""), endpoint("fd00::1", ""))},
			want: `
  default/web
    clusterIP 10.96.0.10:80/TCP http -> 10.244.1.1:80
    externalIP 192.0.2.7:80/TCP http -> 10.244.1.1:80
note: service default/bad: left out: no frontend left
note: service default/bad: spec.clusterIPs[0]: 169.254.0.1 is link-local; left out
note: service default/web: EndpointSlice web-a: endpoints[1]: 0.0.0.0 is unspecified; left out
note: service default/web: EndpointSlice web-a: endpoints[2]: fd00::1 is not of the slice's addressType IPv4; left out
note: service default/web: spec.externalIPs[0]: 127.0.0.1 is loopback; left out
note: service default/web: spec.externalIPs[1]: "bogus" is not an IP address; left out
note: service default/web: spec.ports[1]: protocol "ICMP" is not TCP, UDP or SCTP; left out`,
		},
		{
			name: "a shared frontend port: the older service keeps it, the other loses that address",
			svcs: func() []*corev1.Service {
				newer := kubeService("a-newer", []string{"10.96.0.11"}, "80->80")
				newer.CreationTimestamp = metav1.NewTime(time.Unix(2000, 0))
				newer.Spec.ExternalIPs = []string{"192.0.2.10", "192.0.2.11"}
				older := kubeService("z-older", []string{"10.96.0.12"}, "http:80->80", "https:443->443")
				older.Spec.ExternalIPs = []string{"192.0.2.10"}
				shares := kubeService("shares", []string{"10.96.0.13"}, "53/UDP->53")
				shares.Spec.ExternalIPs = []string{"192.0.2.10"} // another port: no clash
				return []*corev1.Service{newer, older, shares}
			}(),
			want: `
  default/a-newer
    clusterIP 10.96.0.11:80/TCP -> none
    externalIP 192.0.2.11:80/TCP -> none
  default/shares
    clusterIP 10.96.0.13:53/UDP -> none
    externalIP 192.0.2.10:53/UDP -> none
  default/z-older
    clusterIP 10.96.0.12:80/TCP http -> none
    clusterIP 10.96.0.12:443/TCP https -> none
    externalIP 192.0.2.10:80/TCP http -> none
    externalIP 192.0.2.10:443/TCP https -> none
note: service default/a-newer: externalIP 192.0.2.10 left out: 192.0.2.10 TCP/80 is already a frontend of default/z-older`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svcs, notes := FromKubernetes(tt.svcs, tt.slices)
			got := services.Describe(svcs)
			for _, n := range notes {
				got += "note: " + n + "\n"
			}
			want := "services:" + tt.want + "\n"
			if got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			again, notes2 := FromKubernetes(tt.svcs, tt.slices)
			if services.Describe(again) != services.Describe(svcs) || strings.Join(notes2, "\n") != strings.Join(notes, "\n") {
				t.Error("a second conversion differs")
			}
		})
	}
}

// TestFromKubernetesModel checks what Describe does not show: the port
// model that Resolve reads, and that the input is left alone.
func TestFromKubernetesModel(t *testing.T) {
	svc := kubeService("web", []string{"10.96.0.10"}, "80->8080")
	sl := slice("web-a", "web", discoveryv1.AddressTypeIPv4, []string{"8080"}, endpoint("::ffff:10.244.1.1", "node1"))
	svcs, notes := FromKubernetes([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{sl})
	if len(svcs) != 1 || len(notes) != 0 {
		t.Fatalf("got %+v, notes %q", svcs, notes)
	}
	s := svcs[0]
	if p := s.Ports[0]; p.TargetPort != 0 || p.TargetPortName != UnnamedPort || p.Protocol != services.TCP || p.Port != 80 {
		t.Errorf("port = %+v, want targetPortName %q", p, UnnamedPort)
	}
	b := s.Backends[0]
	if b.IP.String() != "10.244.1.1" || b.Node != "node1" || b.Ports[UnnamedPort] != (services.NamedPort{Port: 8080, Protocol: services.TCP}) {
		t.Errorf("backend = %+v", b)
	}
	if s.ExternalTrafficPolicy != services.TrafficPolicyCluster || s.InternalTrafficPolicy != services.TrafficPolicyCluster ||
		s.SessionAffinity != services.SessionAffinityNone || s.SessionAffinityTimeout != 0 {
		t.Errorf("settings = %+v", s)
	}
	if sl.Endpoints[0].Addresses[0] != "::ffff:10.244.1.1" || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Error("FromKubernetes changed its input")
	}
}
