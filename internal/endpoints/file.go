package endpoints

import (
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/yamlfields"
)

// maxNameLen bounds an endpoint name, as Kubernetes bounds object names.
const maxNameLen = 253

// endpointName is what a file endpoint may be called: letters, digits, '.',
// '_' and '-', starting and ending with a letter or digit. No '/': that is
// how pod names ("namespace/name") look.
var endpointName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// File is what the endpoints file says.
type File struct {
	// Endpoints are the workloads, in file order; Labels never nil.
	Endpoints []Workload
	// Nodes are the cluster's nodes, in file order (the local node may be
	// among them).
	Nodes []Node
	// Namespaces are the labels of the namespaces the file describes, by
	// name.
	Namespaces map[string]map[string]string
}

// LoadFile reads the endpoints file:
//
//	endpoints:
//	- name: db
//	  namespace: prod                # default: default
//	  ips: [10.244.1.10]
//	  labels: {app: protected-db}
//	  serviceAccount: db             # optional
//	  ports: {redis: 6379, dns: 53/UDP}   # named ports, TCP unless /UDP or /SCTP
//	namespaces:                      # optional: namespaces' labels
//	- name: prod
//	  labels: {team: data}
//	nodes:                           # the cluster's nodes (remote-node identity)
//	- name: node2
//	  ips: [10.0.3.2, 10.0.4.2]
//
// source names the file in errors. An empty file (or empty lists) is
// nothing. Every endpoint name is required, unique and at most 253 letters,
// digits, '.', '_' or '-'; every endpoint and node has at least one
// address, and an address belongs to one endpoint or node only; label keys
// and values must be valid Kubernetes label keys and values, written as
// strings, and may not be keys Cilium derives (io.cilium.k8s.*,
// io.kubernetes.pod.namespace: write namespace instead). Namespace and node
// names are DNS labels and subdomains.
//
// If anything is wrong, LoadFile returns nothing and an error joining one
// *policy.FieldError per problem ("file:line: path: message"), unknown
// fields included; a YAML syntax error ends the search.
func LoadFile(r io.Reader, source string) (File, error) {
	p := &fileParser{yamlfields.New(source)}
	f := p.file(p.Decode(r, "the endpoints file"))
	if err := p.Err(); err != nil {
		return File{}, err
	}
	return f, nil
}

// fileParser reads the objects of an endpoints file, collecting every
// problem.
type fileParser struct {
	*yamlfields.Parser
}

// owner is the endpoint or node that first claimed a name or an address.
type owner struct {
	list  string // "endpoints" or "nodes"
	index int
	name  string // may be empty
	line  int
}

// String returns `endpoint "db" (endpoints[0], line 3)`, or
// "endpoints[0] (line 3)" for an endpoint without a name; likewise for
// nodes.
func (o owner) String() string {
	if o.list == "" {
		o.list = "endpoints"
	}
	if o.name == "" {
		return fmt.Sprintf("%s[%d] (line %d)", o.list, o.index, o.line)
	}
	return fmt.Sprintf("%s %q (%s[%d], line %d)", strings.TrimSuffix(o.list, "s"), o.name, o.list, o.index, o.line)
}

// file reads the top mapping of the endpoints file.
func (p *fileParser) file(n *yaml.Node) File {
	var out File
	if yamlfields.IsNull(n) {
		return out
	}
	if n.Kind == yaml.SequenceNode {
		p.Failf(n, "", "the file must be a mapping, `endpoints: [...]`, not a list")
		return out
	}
	f := p.Object(n, "", "endpoints", "namespaces", "nodes")
	if f == nil {
		return out
	}
	names := make(map[string]owner)
	addrs := make(map[netip.Addr]owner)
	for i, item := range p.List(f["endpoints"], "endpoints") {
		out.Endpoints = append(out.Endpoints, p.endpoint(item, yamlfields.Index("endpoints", i), i, names, addrs))
	}
	nodeNames := make(map[string]owner)
	for i, item := range p.List(f["nodes"], "nodes") {
		out.Nodes = append(out.Nodes, p.node(item, yamlfields.Index("nodes", i), i, nodeNames, addrs))
	}
	nsLines := make(map[string]int)
	for i, item := range p.List(f["namespaces"], "namespaces") {
		name, labels, ok := p.namespace(item, yamlfields.Index("namespaces", i), nsLines)
		if ok {
			if out.Namespaces == nil {
				out.Namespaces = make(map[string]map[string]string)
			}
			out.Namespaces[name] = labels
		}
	}
	return out
}

// namespace reads one namespaces entry.
func (p *fileParser) namespace(n *yaml.Node, path string, lines map[string]int) (string, map[string]string, bool) {
	f := p.Object(n, path, "name", "labels")
	if f == nil {
		return "", nil, false
	}
	before := len(p.Problems())
	name := ""
	namePath := yamlfields.Join(path, "name")
	if v := f["name"]; yamlfields.IsNull(v) {
		p.Failf(n, namePath, "required")
	} else if s, ok := p.Str(v, namePath); ok {
		name = s
		for _, msg := range validation.IsDNS1123Label(s) {
			p.Failf(v, namePath, "%q is not a namespace name: %s", s, msg)
		}
		if line, dup := lines[s]; dup {
			p.Failf(v, namePath, "namespace %q is already described at line %d", s, line)
		}
		lines[s] = v.Line
	}
	labels := map[string]string{}
	p.labels(f["labels"], yamlfields.Join(path, "labels"), labels, false)
	return name, labels, len(p.Problems()) == before
}

// node reads one nodes entry.
func (p *fileParser) node(n *yaml.Node, path string, i int, names map[string]owner, addrs map[netip.Addr]owner) Node {
	var nd Node
	f := p.Object(n, path, "name", "ips")
	if f == nil {
		return nd
	}
	namePath := yamlfields.Join(path, "name")
	if v := f["name"]; yamlfields.IsNull(v) {
		p.Failf(n, namePath, "required")
	} else if s, ok := p.Str(v, namePath); ok {
		nd.Name = s
		for _, msg := range validation.IsDNS1123Subdomain(s) {
			p.Failf(v, namePath, "%q is not a node name: %s", s, msg)
		}
		if o, dup := names[s]; dup {
			p.Failf(v, namePath, "%q is already the name of nodes[%d] (line %d)", s, o.index, o.line)
		} else {
			names[s] = owner{list: "nodes", index: i, name: s, line: v.Line}
		}
	}
	nd.IPs = p.addrs(n, f["ips"], yamlfields.Join(path, "ips"), owner{list: "nodes", index: i, name: nd.Name, line: n.Line}, addrs)
	return nd
}

func (p *fileParser) endpoint(n *yaml.Node, path string, i int, names map[string]owner, addrs map[netip.Addr]owner) Workload {
	ep := Workload{Labels: map[string]string{}, Namespace: policy.DefaultNamespace}
	f := p.Object(n, path, "name", "namespace", "serviceAccount", "ips", "labels", "ports")
	if f == nil {
		return ep
	}
	namePath := yamlfields.Join(path, "name")
	if v := f["name"]; yamlfields.IsNull(v) {
		p.Failf(n, namePath, "required")
	} else if s, ok := p.Str(v, namePath); ok {
		ep.Name = s
		switch {
		case len(s) > maxNameLen:
			p.Failf(v, namePath, "%q is longer than %d characters", s, maxNameLen)
		case !endpointName.MatchString(s):
			p.Failf(v, namePath, "%q must be letters, digits, '.', '_' or '-', starting and ending with a letter or digit (no '/': \"namespace/name\" is how Kubernetes pods are named)", s)
		}
		if o, dup := names[s]; dup {
			p.Failf(v, namePath, "%q is already the name of endpoints[%d] (line %d)", s, o.index, o.line)
		} else {
			names[s] = owner{index: i, name: s, line: v.Line}
		}
	}
	ep.IPs = p.addrs(n, f["ips"], yamlfields.Join(path, "ips"), owner{list: "endpoints", index: i, name: ep.Name, line: n.Line}, addrs)
	if v, ok := f["namespace"]; ok {
		if s, ok := p.Str(v, yamlfields.Join(path, "namespace")); ok {
			for _, msg := range validation.IsDNS1123Label(s) {
				p.Failf(v, yamlfields.Join(path, "namespace"), "%q is not a namespace name: %s", s, msg)
			}
			ep.Namespace = s
		}
	}
	if v, ok := f["serviceAccount"]; ok {
		if s, ok := p.Str(v, yamlfields.Join(path, "serviceAccount")); ok {
			for _, msg := range validation.IsDNS1123Subdomain(s) {
				p.Failf(v, yamlfields.Join(path, "serviceAccount"), "%q is not a service account name: %s", s, msg)
			}
			ep.ServiceAccount = s
		}
	}
	p.labels(f["labels"], yamlfields.Join(path, "labels"), ep.Labels, true)
	ep.NamedPorts = p.ports(f["ports"], yamlfields.Join(path, "ports"))
	return ep
}

// addrs reads the address list of an endpoint or node (o), which must name
// at least one address, none of them claimed by another (addrs).
func (p *fileParser) addrs(n, v *yaml.Node, ipsPath string, o owner, addrs map[netip.Addr]owner) []netip.Addr {
	switch {
	case yamlfields.IsNull(v):
		p.Failf(n, ipsPath, "required: at least one address")
	case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		p.Failf(v, ipsPath, "at least one address is required")
	}
	var out []netip.Addr
	seen := make(map[netip.Addr]int)
	for j, v := range p.List(v, ipsPath) {
		ipPath := yamlfields.Index(ipsPath, j)
		s, ok := p.Str(v, ipPath)
		if !ok {
			continue
		}
		a, ok := p.addr(v, ipPath, s)
		if !ok {
			continue
		}
		if k, dup := seen[a]; dup {
			p.Failf(v, ipPath, "%s repeats %s", a, yamlfields.Index(ipsPath, k))
			continue
		}
		seen[a] = j
		if first, dup := addrs[a]; dup {
			p.Failf(v, ipPath, "%s is already an address of %s; an address belongs to one endpoint or node", a, first)
			continue
		}
		o.line = v.Line
		addrs[a] = o
		out = append(out, a)
	}
	return out
}

// portSpec is a named port's value: a port number, optionally /TCP, /UDP
// or /SCTP.
var portSpec = regexp.MustCompile(`^([1-9][0-9]{0,4})(/(TCP|UDP|SCTP))?$`)

// svcName is an IANA service name, what a named port is called.
var svcName = regexp.MustCompile(`^([a-z0-9]-?)*[a-z](-?[a-z0-9])*$`)

// ports reads an endpoint's named ports.
func (p *fileParser) ports(n *yaml.Node, path string) map[string]policy.NamedPort {
	if yamlfields.IsNull(n) || !p.Plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.Failf(n, path, "must be a mapping of port names to numbers (redis: 6379, dns: 53/UDP)")
		return nil
	}
	out := make(map[string]policy.NamedPort)
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
		if len(name) > 15 || !svcName.MatchString(name) {
			p.Failf(k, kp, "%q is not a port name: 1-15 lower-case letters, digits and single '-', with a letter (as Kubernetes container ports)", name)
			continue
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			p.Failf(v, kp, "must be a port number, optionally with /TCP, /UDP or /SCTP")
			continue
		}
		m := portSpec.FindStringSubmatch(v.Value)
		num, err := strconv.ParseUint(v.Value, 10, 16)
		if m != nil {
			num, err = strconv.ParseUint(m[1], 10, 16)
		}
		if m == nil || err != nil || num == 0 {
			p.Failf(v, kp, "%q is not a port number 1-65535, optionally with /TCP, /UDP or /SCTP", v.Value)
			continue
		}
		np := policy.NamedPort{Port: uint16(num), Protocol: policy.ProtoTCP}
		switch m[3] {
		case "UDP":
			np.Protocol = policy.ProtoUDP
		case "SCTP":
			np.Protocol = policy.ProtoSCTP
		}
		out[name] = np
	}
	return out
}

// addr parses one endpoint address.
func (p *fileParser) addr(n *yaml.Node, path, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if _, perr := netip.ParsePrefix(s); perr == nil {
			p.Failf(n, path, "%q is a prefix; write the endpoint's address without a length", s)
		} else {
			p.Failf(n, path, "%q is not an IP address", s)
		}
		return netip.Addr{}, false
	}
	switch {
	case a.Zone() != "":
		p.Failf(n, path, "%s must not have a zone", a)
	case a.Is4In6():
		p.Failf(n, path, "%s is IPv4-mapped; write %s", a, a.Unmap())
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		p.Failf(n, path, "%s is not a unicast address a workload can have", a)
	default:
		return a, true
	}
	return netip.Addr{}, false
}

// labels reads a label map into set; for a workload's own labels
// (workload), keys that Cilium derives are refused.
func (p *fileParser) labels(n *yaml.Node, path string, set map[string]string, workload bool) {
	for _, l := range p.Labels(n, path) {
		k, kp := l.KeyNode, l.Path
		keyOK := true
		if src, rest, ok := strings.Cut(l.Key, ":"); ok && (src == "k8s" || src == "any" || src == "reserved") {
			p.Failf(k, kp, "label keys carry no source here: write %q (the %s: prefix belongs in policy selectors)", rest, src)
			keyOK = false
		} else if workload && l.Key == policy.NamespaceLabel {
			p.Failf(k, kp, "is derived from the endpoint's namespace: write namespace: %s instead", l.Value)
			keyOK = false
		} else if workload && strings.HasPrefix(l.Key, policy.DerivedPrefix) {
			p.Failf(k, kp, "keys under %s are derived (from namespace, namespaces, serviceAccount and the loader's cluster), not set", policy.DerivedPrefix)
			keyOK = false
		} else {
			for _, msg := range validation.IsQualifiedName(l.Key) {
				p.Failf(k, kp, "invalid label key: %s", msg)
				keyOK = false
			}
		}
		valOK := true
		for _, msg := range validation.IsValidLabelValue(l.Value) {
			p.Failf(l.ValueNode, kp, "invalid label value %q: %s", l.Value, msg)
			valOK = false
		}
		if keyOK && valOK {
			set[l.Key] = l.Value
		}
	}
}
