package services

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/roost-net/roost/internal/community"
	"github.com/roost-net/roost/internal/yamlfields"
)

// LoadFile reads the services file at path (see Load). A missing file is
// no services: nil and no error.
func LoadFile(path string) ([]Service, error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("services file: %w", err)
	}
	defer f.Close()
	return Load(f, path)
}

// Load reads a services file:
//
//	services:
//	- name: db                          # a DNS-1035 label
//	  namespace: default                # the default
//	  clusterIPs: [10.96.0.10]          # at most one per family
//	  externalIPs: [192.0.2.10]         # VIPs
//	  loadBalancerIPs: []               # status.loadBalancer.ingress IPs
//	  ports:                            # at least one; name required if more
//	  - {name: redis, port: 6379, targetPort: 6379, protocol: TCP, nodePort: 30079}
//	  externalTrafficPolicy: Cluster    # or Local
//	  internalTrafficPolicy: Cluster    # or Local
//	  sessionAffinity: ClientIP         # default None
//	  sessionAffinityTimeout: 10800     # seconds, 1..86400, ClientIP only
//	  backends:
//	  - {ip: 10.244.1.10, node: node1, ports: {redis: 6379}}
//	  - {ip: 10.244.2.12, node: node2, terminating: true}
//
// A port's protocol defaults to TCP and its targetPort to its port; a
// targetPort may be a port name, which each backend's ports resolve (see
// Resolve). A backend's conditions default as an EndpointSlice's for a
// pod: terminating to false; serving to true, except that a backend given
// ready: false and not terminating is not serving either (a missing
// serving defers to ready); ready to serving and not terminating. So
// terminating: true alone is a draining backend: serving, not ready.
//
// Each service needs a frontend (a cluster, external or load-balancer IP),
// and no frontend address may serve one port and protocol for two
// services, nor a node port two services. externalTrafficPolicy Local
// needs an external or load-balancer IP or a node port;
// sessionAffinityTimeout needs sessionAffinity ClientIP. Addresses are
// unicast, not loopback or link-local, each listed once per service.
//
// name names the file in errors. An empty file (or list) is no services;
// services are returned in file order. If anything is wrong, Load returns
// nothing and an error joining one *policy.FieldError per problem
// ("file:line: path: message"), unknown fields included; a YAML syntax
// error ends the search.
func Load(r io.Reader, name string) ([]Service, error) {
	p := &parser{yamlfields.New(name)}
	svcs := p.file(p.Decode(r, "the services file"))
	if err := p.Err(); err != nil {
		return nil, err
	}
	return svcs, nil
}

// parser reads the objects of a services file, collecting every problem.
type parser struct {
	*yamlfields.Parser
}

// The names Kubernetes gives each kind of name, for messages.
const (
	dns1035Label     = "1-63 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (a DNS-1035 label)"
	dns1123Label     = "1-63 lower-case letters, digits and '-', starting and ending with a letter or digit (a DNS-1123 label)"
	dns1123Subdomain = "at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (a DNS-1123 subdomain)"
	ianaSvcName      = "1-15 lower-case letters, digits and single '-', with a letter, not starting or ending with '-' (an IANA service name, as Kubernetes container ports)"
	portRange        = "1..65535"
)

// port returns a port number, 1..65535.
func (p *parser) port(n *yaml.Node, path string) (uint16, bool) {
	v, ok := p.Integer(n, path, "a port number ("+portRange+")")
	if !ok {
		return 0, false
	}
	if v < 1 || v > 65535 {
		p.Failf(n, path, "%d is not a port (%s)", v, portRange)
		return 0, false
	}
	return uint16(v), true
}

// claim is where a service, a frontend or a node port was first seen.
type claim struct {
	service string // "namespace/name"
	path    string // "services[0]", "services[0].ports[1]"
	line    int
}

func (c claim) String() string {
	return fmt.Sprintf("%s (%s, line %d)", c.service, c.path, c.line)
}

// frontendPort is a frontend address serving one port and protocol.
type frontendPort struct {
	addr  netip.Addr
	proto Protocol
	port  uint16
}

// nodePort is a node port of one protocol.
type nodePort struct {
	proto Protocol
	port  uint16
}

// fileState is what the checks across services remember.
type fileState struct {
	names     map[string]claim
	frontends map[frontendPort]claim
	nodePorts map[nodePort]claim
}

// file reads the top mapping of the services file.
func (p *parser) file(n *yaml.Node) []Service {
	if yamlfields.IsNull(n) {
		return nil
	}
	if n.Kind == yaml.SequenceNode {
		p.Failf(n, "", "the file must be a mapping, `services: [...]`, not a list")
		return nil
	}
	f := p.Object(n, "", "services")
	if f == nil {
		return nil
	}
	st := fileState{names: map[string]claim{}, frontends: map[frontendPort]claim{}, nodePorts: map[nodePort]claim{}}
	var out []Service
	for i, item := range p.List(f["services"], "services") {
		out = append(out, p.service(item, yamlfields.Index("services", i), &st))
	}
	return out
}

// addrItem is a parsed frontend address and where it was written.
type addrItem struct {
	addr netip.Addr
	path string
	node *yaml.Node
}

// portItem is a parsed port and where it was written.
type portItem struct {
	Port
	path         string // "services[0].ports[1]"
	rel          string // "ports[1]"
	nodePortNode *yaml.Node
}

var serviceFields = []string{
	"name", "namespace", "clusterIPs", "externalIPs", "loadBalancerIPs", "ports",
	"externalTrafficPolicy", "internalTrafficPolicy", "sessionAffinity", "sessionAffinityTimeout", "backends",
	"bgpCommunities",
}

// service reads one services entry and checks it against the services
// before it (st).
func (p *parser) service(n *yaml.Node, path string, st *fileState) Service {
	s := Service{Namespace: DefaultNamespace}
	f := p.Object(n, path, serviceFields...)
	if f == nil {
		return s
	}
	self := p.name(&s, n, f, path, st)
	frontends := p.frontends(&s, n, f, path)
	ports := p.ports(n, f["ports"], yamlfields.Join(path, "ports"))
	for _, pt := range ports {
		s.Ports = append(s.Ports, pt.Port)
	}
	p.settings(&s, f, path)
	s.Backends = p.backends(f["backends"], yamlfields.Join(path, "backends"))
	s.BGPCommunities = p.communities(f["bgpCommunities"], yamlfields.Join(path, "bgpCommunities"))
	p.claim(st, self, frontends, ports)
	return s
}

// communities reads the communities roost-agent adds to the service's
// VIPs (as the annotation community.Annotation does from Kubernetes).
func (p *parser) communities(n *yaml.Node, path string) []community.Community {
	var out []community.Community
	for i, v := range p.List(n, path) {
		ip := yamlfields.Index(path, i)
		text, ok := p.Str(v, ip)
		if !ok {
			continue
		}
		c, err := community.Parse(text)
		if err != nil {
			p.Failf(v, ip, "%v", err)
			continue
		}
		out = append(out, c)
	}
	return community.Sorted(out)
}

// name reads the service's name and namespace into s and claims them in
// st; it returns the service's claim.
func (p *parser) name(s *Service, n *yaml.Node, f map[string]*yaml.Node, path string, st *fileState) claim {
	namePath := yamlfields.Join(path, "name")
	nameOK := false
	if v := f["name"]; yamlfields.IsNull(v) {
		p.Failf(n, namePath, "required")
	} else if name, ok := p.Str(v, namePath); ok {
		s.Name = name
		nameOK = true
		if len(validation.IsDNS1035Label(name)) > 0 {
			p.Failf(v, namePath, "%q is not a service name: %s", name, dns1035Label)
		}
	}
	if v, ok := f["namespace"]; ok {
		nsPath := yamlfields.Join(path, "namespace")
		if ns, ok := p.Str(v, nsPath); ok {
			s.Namespace = ns
			if len(validation.IsDNS1123Label(ns)) > 0 {
				p.Failf(v, nsPath, "%q is not a namespace name: %s", ns, dns1123Label)
			}
		} else {
			nameOK = false
		}
	}
	self := claim{service: s.FullName(), path: path, line: n.Line}
	if !nameOK {
		return self
	}
	if first, dup := st.names[s.FullName()]; dup {
		p.Failf(f["name"], namePath, "%s is already %s (line %d)", s.FullName(), first.path, first.line)
	} else {
		st.names[s.FullName()] = self
	}
	return self
}

// frontends reads the service's cluster, external and load-balancer IPs
// into s, and returns them all.
func (p *parser) frontends(s *Service, n *yaml.Node, f map[string]*yaml.Node, path string) []addrItem {
	seen := map[netip.Addr]string{}
	var out []addrItem
	for _, l := range []struct {
		key string
		dst *[]netip.Addr
	}{{"clusterIPs", &s.ClusterIPs}, {"externalIPs", &s.ExternalIPs}, {"loadBalancerIPs", &s.LoadBalancerIPs}} {
		items := p.addrs(f[l.key], path, l.key, seen)
		for _, it := range items {
			*l.dst = append(*l.dst, it.addr)
		}
		if l.key == "clusterIPs" {
			p.onePerFamily(items)
		}
		out = append(out, items...)
	}
	if len(out) == 0 && !p.failedUnder(path, "clusterIPs", "externalIPs", "loadBalancerIPs") {
		p.Failf(n, path, "no frontend: give clusterIPs, externalIPs or loadBalancerIPs")
	}
	return out
}

// settings reads the traffic policies and the session affinity into s,
// whose addresses and ports are read.
func (p *parser) settings(s *Service, f map[string]*yaml.Node, path string) {
	etp := yamlfields.Join(path, "externalTrafficPolicy")
	s.ExternalTrafficPolicy = yamlfields.OneOf(p.Parser, f["externalTrafficPolicy"], etp, TrafficPolicyCluster, TrafficPolicyCluster, TrafficPolicyLocal)
	s.InternalTrafficPolicy = yamlfields.OneOf(p.Parser, f["internalTrafficPolicy"], yamlfields.Join(path, "internalTrafficPolicy"), TrafficPolicyCluster, TrafficPolicyCluster, TrafficPolicyLocal)
	if s.ExternalTrafficPolicy == TrafficPolicyLocal && len(s.ExternalIPs) == 0 && len(s.LoadBalancerIPs) == 0 &&
		!slices.ContainsFunc(s.Ports, func(pt Port) bool { return pt.NodePort != 0 }) &&
		!p.failedUnder(path, "externalIPs", "loadBalancerIPs", "ports") {
		p.Failf(f["externalTrafficPolicy"], etp, "Local needs externalIPs, loadBalancerIPs or a nodePort: it applies to traffic from outside the cluster")
	}
	s.SessionAffinity = yamlfields.OneOf(p.Parser, f["sessionAffinity"], yamlfields.Join(path, "sessionAffinity"), SessionAffinityNone, SessionAffinityNone, SessionAffinityClientIP)
	if s.SessionAffinity == SessionAffinityClientIP {
		s.SessionAffinityTimeout = DefaultSessionAffinityTimeout
	}
	v, ok := f["sessionAffinityTimeout"]
	if !ok {
		return
	}
	tPath := yamlfields.Join(path, "sessionAffinityTimeout")
	maxSecs := int64(MaxSessionAffinityTimeout / time.Second)
	secs, ok := p.Integer(v, tPath, fmt.Sprintf("a number of seconds (1..%d)", maxSecs))
	switch {
	case !ok:
	case secs < 1 || secs > maxSecs:
		p.Failf(v, tPath, "%d is not 1..%d seconds", secs, maxSecs)
	case s.SessionAffinity != SessionAffinityClientIP:
		if !p.failedUnder(path, "sessionAffinity") {
			p.Failf(v, tPath, "only with sessionAffinity: ClientIP")
		}
	default:
		s.SessionAffinityTimeout = time.Duration(secs) * time.Second
	}
}

// claim records the frontend ports and node ports of a service (self),
// failing on those a service before it has.
func (p *parser) claim(st *fileState, self claim, frontends []addrItem, ports []portItem) {
	for _, fe := range frontends {
		p.claimFrontend(st, fe, ports, self)
	}
	for _, pt := range ports {
		if pt.NodePort == 0 {
			continue
		}
		k := nodePort{pt.Protocol, pt.NodePort}
		if first, dup := st.nodePorts[k]; dup {
			p.Failf(pt.nodePortNode, yamlfields.Join(pt.path, "nodePort"), "%s/%d is already the node port of %s", pt.Protocol, pt.NodePort, first)
			continue
		}
		st.nodePorts[k] = claim{service: self.service, path: pt.path, line: pt.nodePortNode.Line}
	}
}

// failedUnder reports whether a problem was found under one of keys of
// the object at path, so that a check that needs them stays quiet.
func (p *parser) failedUnder(path string, keys ...string) bool {
	for _, e := range p.Problems() {
		for _, k := range keys {
			kp := yamlfields.Join(path, k)
			if e.Path == kp || strings.HasPrefix(e.Path, kp+".") || strings.HasPrefix(e.Path, kp+"[") {
				return true
			}
		}
	}
	return false
}

// claimFrontend records the ports fe serves, failing on those an earlier
// service serves on the same address.
func (p *parser) claimFrontend(st *fileState, fe addrItem, ports []portItem, self claim) {
	clashes := map[claim][]string{}
	var order []claim
	for _, pt := range ports {
		k := frontendPort{fe.addr, pt.Protocol, pt.Port.Port}
		first, dup := st.frontends[k]
		if !dup {
			st.frontends[k] = claim{service: self.service, path: fe.path, line: fe.node.Line}
			continue
		}
		if clashes[first] == nil {
			order = append(order, first)
		}
		clashes[first] = append(clashes[first], fmt.Sprintf("%s/%d", pt.Protocol, pt.Port.Port))
	}
	for _, first := range order {
		p.Failf(fe.node, fe.path, "%s %s is already a frontend of %s", fe.addr, strings.Join(clashes[first], ", "), first)
	}
}

// addrs reads the frontend addresses of the service at path under key;
// seen are the frontends the service listed before, by their place in it
// ("clusterIPs[0]").
func (p *parser) addrs(n *yaml.Node, path, key string, seen map[netip.Addr]string) []addrItem {
	var out []addrItem
	for i, v := range p.List(n, yamlfields.Join(path, key)) {
		ap := yamlfields.Index(yamlfields.Join(path, key), i)
		a, ok := p.addr(v, ap, "frontend")
		if !ok {
			continue
		}
		if first, dup := seen[a]; dup {
			p.Failf(v, ap, "%s repeats %s", a, first)
			continue
		}
		seen[a] = yamlfields.Index(key, i)
		out = append(out, addrItem{addr: a, path: ap, node: v})
	}
	return out
}

// addr reads one address of a service; what is "frontend" or "backend".
func (p *parser) addr(n *yaml.Node, path, what string) (netip.Addr, bool) {
	s, ok := p.Str(n, path)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		switch _, perr := netip.ParsePrefix(s); {
		case perr == nil:
			p.Failf(n, path, "%q is a prefix; write an address without a length", s)
		case s == "None":
			p.Failf(n, path, `"None" (a headless service) has nothing to load-balance: leave the service out`)
		default:
			p.Failf(n, path, "%q is not an IP address", s)
		}
		return netip.Addr{}, false
	}
	switch {
	case a.Zone() != "":
		p.Failf(n, path, "%s must not have a zone", a)
		return netip.Addr{}, false
	case a.Is4In6():
		p.Failf(n, path, "%s is IPv4-mapped; write %s", a, a.Unmap())
		return netip.Addr{}, false
	}
	if kind := Unusable(a); kind != "" {
		p.Failf(n, path, "%s is %s, not a %s address", a, kind, what)
		return netip.Addr{}, false
	}
	return a, true
}

// onePerFamily fails on a second cluster IP of a family.
func (p *parser) onePerFamily(items []addrItem) {
	var v4, v6 *addrItem
	for i := range items {
		it := &items[i]
		first := &v6
		if it.addr.Is4() {
			first = &v4
		}
		if *first != nil {
			p.Failf(it.node, it.path, "%s is a second cluster IP of its family (the first is %s); a service has one per family", it.addr, (*first).addr)
			continue
		}
		*first = it
	}
}

var portFields = []string{"name", "port", "targetPort", "nodePort", "protocol"}

// ports reads the ports of a service (n).
func (p *parser) ports(n, v *yaml.Node, path string) []portItem {
	switch {
	case yamlfields.IsNull(v):
		p.Failf(n, path, "required: at least one port")
		return nil
	case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		p.Failf(v, path, "at least one port is required")
		return nil
	}
	items := p.List(v, path)
	var out []portItem
	names := map[string]int{}
	keys := map[nodePort]int{}
	for i, item := range items {
		pp := yamlfields.Index(path, i)
		f := p.Object(item, pp, portFields...)
		if f == nil {
			continue
		}
		pt := portItem{Port: Port{Protocol: TCP}, path: pp, rel: yamlfields.Index("ports", i), nodePortNode: f["nodePort"]}
		ok := true
		namePath := yamlfields.Join(pp, "name")
		if v, has := f["name"]; has {
			if name, sok := p.Str(v, namePath); sok {
				pt.Name = name
				switch {
				case len(validation.IsDNS1123Label(name)) > 0:
					p.Failf(v, namePath, "%q is not a port name: %s", name, dns1123Label)
				case names[name] > 0:
					p.Failf(v, namePath, "%q repeats ports[%d].name", name, names[name]-1)
				default:
					names[name] = i + 1
				}
			}
		}
		if pt.Name == "" && len(items) > 1 && !p.failedUnder(pp, "name") {
			p.Failf(item, namePath, "required when a service has more than one port")
		}
		portPath := yamlfields.Join(pp, "port")
		if v := f["port"]; yamlfields.IsNull(v) {
			p.Failf(item, portPath, "required")
			ok = false
		} else if num, pok := p.port(v, portPath); pok {
			pt.Port.Port = num
		} else {
			ok = false
		}
		if v, has := f["protocol"]; has {
			pt.Protocol = protocolOf(yamlfields.OneOf(p.Parser, v, yamlfields.Join(pp, "protocol"), "TCP", "TCP", "UDP", "SCTP"))
		}
		pt.TargetPort = pt.Port.Port
		if v, has := f["targetPort"]; has {
			pt.TargetPort, pt.TargetPortName = p.targetPort(v, yamlfields.Join(pp, "targetPort"))
		}
		if v, has := f["nodePort"]; has {
			pt.NodePort, _ = p.port(v, yamlfields.Join(pp, "nodePort"))
		}
		if !ok {
			continue
		}
		k := nodePort{pt.Protocol, pt.Port.Port}
		if j, dup := keys[k]; dup {
			p.Failf(item, pp, "%s/%d repeats ports[%d]", pt.Protocol, pt.Port.Port, j)
			continue
		}
		keys[k] = i
		if pt.NodePort != 0 {
			for _, o := range out {
				if o.NodePort == pt.NodePort && o.Protocol == pt.Protocol {
					p.Failf(pt.nodePortNode, yamlfields.Join(pp, "nodePort"), "%s/%d repeats %s.nodePort", pt.Protocol, pt.NodePort, o.rel)
					pt.NodePort = 0
					break
				}
			}
		}
		out = append(out, pt)
	}
	return out
}

func protocolOf(s string) Protocol {
	switch s {
	case "UDP":
		return UDP
	case "SCTP":
		return SCTP
	}
	return TCP
}

// targetPort reads a port number or an IANA service name.
func (p *parser) targetPort(n *yaml.Node, path string) (uint16, string) {
	if !p.Plain(n, path) {
		return 0, ""
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && !isDigits(n.Value) {
		if len(validation.IsValidPortName(n.Value)) > 0 {
			p.Failf(n, path, "%q is not a port name: %s", n.Value, ianaSvcName)
			return 0, ""
		}
		return 0, n.Value
	}
	v, ok := p.Integer(n, path, "a port number ("+portRange+") or a port name")
	if !ok {
		return 0, ""
	}
	if v < 1 || v > 65535 {
		p.Failf(n, path, "%d is not a port (%s)", v, portRange)
		return 0, ""
	}
	return uint16(v), ""
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

var backendFields = []string{"ip", "node", "ready", "serving", "terminating", "ports"}

// backends reads the backends of a service.
func (p *parser) backends(n *yaml.Node, path string) []Backend {
	var out []Backend
	seen := map[netip.Addr]string{}
	for i, item := range p.List(n, path) {
		bp := yamlfields.Index(path, i)
		f := p.Object(item, bp, backendFields...)
		if f == nil {
			continue
		}
		var b Backend
		ipPath := yamlfields.Join(bp, "ip")
		if v := f["ip"]; yamlfields.IsNull(v) {
			p.Failf(item, ipPath, "required")
		} else if a, ok := p.addr(v, ipPath, "backend"); ok {
			if first, dup := seen[a]; dup {
				p.Failf(v, ipPath, "%s repeats %s", a, first)
			} else {
				seen[a] = yamlfields.Index("backends", i)
			}
			b.IP = a
		}
		if v, has := f["node"]; has {
			nPath := yamlfields.Join(bp, "node")
			if name, ok := p.Str(v, nPath); ok {
				if len(validation.IsDNS1123Subdomain(name)) > 0 {
					p.Failf(v, nPath, "%q is not a node name: %s", name, dns1123Subdomain)
				}
				b.Node = name
			}
		}
		cond := func(key string) (value, given bool) {
			v, has := f[key]
			if !has {
				return false, false
			}
			return p.Boolean(v, yamlfields.Join(bp, key))
		}
		ready, readyGiven := cond("ready")
		serving, servingGiven := cond("serving")
		terminating, _ := cond("terminating")
		if !servingGiven {
			serving = !readyGiven || ready || terminating
		}
		if !readyGiven {
			ready = serving && !terminating
		}
		b.Ready, b.Serving, b.Terminating = ready, serving, terminating
		b.Ports = p.namedPorts(f["ports"], yamlfields.Join(bp, "ports"))
		out = append(out, b)
	}
	return out
}

// portSpec is a named port's value: a port number, optionally /TCP, /UDP
// or /SCTP.
var portSpec = regexp.MustCompile(`^([0-9]+)(/(TCP|UDP|SCTP))?$`)

// namedPorts reads a backend's named ports.
func (p *parser) namedPorts(n *yaml.Node, path string) map[string]NamedPort {
	if yamlfields.IsNull(n) || !p.Plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.Failf(n, path, "must be a mapping of port names to numbers (redis: 6379, dns: 53/UDP)")
		return nil
	}
	out := make(map[string]NamedPort)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := p.Str(k, path)
		if !ok {
			continue
		}
		kp := yamlfields.Join(path, name)
		if _, dup := out[name]; dup {
			p.Failf(k, kp, "duplicate port name")
			continue
		}
		if len(validation.IsValidPortName(name)) > 0 {
			p.Failf(k, kp, "%q is not a port name: %s", name, ianaSvcName)
			continue
		}
		if !p.Plain(v, kp) {
			continue
		}
		m := portSpec.FindStringSubmatch(v.Value)
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || m == nil {
			p.Failf(v, kp, "must be a port number (%s), optionally with /TCP, /UDP or /SCTP", portRange)
			continue
		}
		num, err := strconv.ParseUint(m[1], 10, 16)
		if err != nil || num == 0 {
			p.Failf(v, kp, "%s is not a port (%s)", m[1], portRange)
			continue
		}
		out[name] = NamedPort{Port: uint16(num), Protocol: protocolOf(m[3])}
	}
	return out
}
