package endpoints

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/roost-net/roost/internal/policy"
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
	p := &fileParser{source: source}
	dec := yaml.NewDecoder(r)
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		return File{}, nil
	case err != nil:
		p.yamlError(err)
		return File{}, p.err()
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.yamlError(err)
	case !isNull(content(&extra)):
		p.failf(content(&extra), "", "a second YAML document; the endpoints file holds one")
	}
	f := p.file(content(&doc))
	if len(p.errs) > 0 {
		return File{}, p.err()
	}
	return f, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// fileParser collects the problems of one endpoints file.
type fileParser struct {
	source string
	errs   []*policy.FieldError
}

func (p *fileParser) failf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &policy.FieldError{Source: p.source, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *fileParser) yamlError(err error) {
	fe := &policy.FieldError{Source: p.source, Msg: err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "YAML: " + m[2]
	}
	p.errs = append(p.errs, fe)
}

// err joins the problems found, in line order.
func (p *fileParser) err() error {
	slices.SortStableFunc(p.errs, func(a, b *policy.FieldError) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// content returns a document's top node.
func content(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0]
	}
	return doc
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// plain reports whether n is a node the parser reads, failing on aliases.
func (p *fileParser) plain(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		p.failf(n, path, "YAML aliases are not supported; write the value out")
		return false
	}
	return true
}

// object checks that n is a mapping with only the given keys, reports every
// other key, and returns the values of the known ones.
func (p *fileParser) object(n *yaml.Node, path string, fields ...string) map[string]*yaml.Node {
	if !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.failf(n, path, "must be a mapping")
		return nil
	}
	out := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := join(path, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode:
			p.failf(k, path, "keys must be strings")
		case k.Tag == "!!merge":
			p.failf(k, path, "YAML merge keys (<<) are not supported; write the fields out")
		case out[k.Value] != nil:
			p.failf(k, kp, "duplicate key")
		case !slices.Contains(fields, k.Value):
			p.failf(k, kp, "unknown field%s (known: %s)", hint(k.Value, fields), strings.Join(fields, ", "))
		default:
			out[k.Value] = v
		}
	}
	return out
}

// hint suggests the field a misspelt key may have meant.
func hint(key string, fields []string) string {
	for _, f := range fields {
		if strings.EqualFold(f, key) || strings.EqualFold(f, key+"s") || strings.EqualFold(f+"s", key) {
			return fmt.Sprintf(": did you mean %s?", f)
		}
	}
	return ""
}

// list returns the items of a sequence; null is an empty list.
func (p *fileParser) list(n *yaml.Node, path string) []*yaml.Node {
	if isNull(n) || !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.failf(n, path, "must be a list")
		return nil
	}
	return n.Content
}

// str returns the text of a string scalar; a number, boolean or null is
// refused rather than read as text.
func (p *fileParser) str(n *yaml.Node, path string) (string, bool) {
	if !p.plain(n, path) {
		return "", false
	}
	switch {
	case n.Kind != yaml.ScalarNode:
		p.failf(n, path, "must be a string")
	case n.Tag == "!!null":
		p.failf(n, path, `must be a string (write "" for an empty one)`)
	case n.Tag != "!!str":
		p.failf(n, path, "must be a string: quote it (%s)", strconv.Quote(n.Value))
	default:
		return n.Value, true
	}
	return "", false
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
	if isNull(n) {
		return out
	}
	if n.Kind == yaml.SequenceNode {
		p.failf(n, "", "the file must be a mapping, `endpoints: [...]`, not a list")
		return out
	}
	f := p.object(n, "", "endpoints", "namespaces", "nodes")
	if f == nil {
		return out
	}
	names := make(map[string]owner)
	addrs := make(map[netip.Addr]owner)
	for i, item := range p.list(f["endpoints"], "endpoints") {
		out.Endpoints = append(out.Endpoints, p.endpoint(item, index("endpoints", i), i, names, addrs))
	}
	nodeNames := make(map[string]owner)
	for i, item := range p.list(f["nodes"], "nodes") {
		out.Nodes = append(out.Nodes, p.node(item, index("nodes", i), i, nodeNames, addrs))
	}
	nsLines := make(map[string]int)
	for i, item := range p.list(f["namespaces"], "namespaces") {
		name, labels, ok := p.namespace(item, index("namespaces", i), nsLines)
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
	f := p.object(n, path, "name", "labels")
	if f == nil {
		return "", nil, false
	}
	before := len(p.errs)
	name := ""
	namePath := join(path, "name")
	if v := f["name"]; isNull(v) {
		p.failf(n, namePath, "required")
	} else if s, ok := p.str(v, namePath); ok {
		name = s
		for _, msg := range validation.IsDNS1123Label(s) {
			p.failf(v, namePath, "%q is not a namespace name: %s", s, msg)
		}
		if line, dup := lines[s]; dup {
			p.failf(v, namePath, "namespace %q is already described at line %d", s, line)
		}
		lines[s] = v.Line
	}
	labels := map[string]string{}
	p.labels(f["labels"], join(path, "labels"), labels, false)
	return name, labels, len(p.errs) == before
}

// node reads one nodes entry.
func (p *fileParser) node(n *yaml.Node, path string, i int, names map[string]owner, addrs map[netip.Addr]owner) Node {
	var nd Node
	f := p.object(n, path, "name", "ips")
	if f == nil {
		return nd
	}
	namePath := join(path, "name")
	if v := f["name"]; isNull(v) {
		p.failf(n, namePath, "required")
	} else if s, ok := p.str(v, namePath); ok {
		nd.Name = s
		for _, msg := range validation.IsDNS1123Subdomain(s) {
			p.failf(v, namePath, "%q is not a node name: %s", s, msg)
		}
		if o, dup := names[s]; dup {
			p.failf(v, namePath, "%q is already the name of nodes[%d] (line %d)", s, o.index, o.line)
		} else {
			names[s] = owner{list: "nodes", index: i, name: s, line: v.Line}
		}
	}
	nd.IPs = p.addrs(n, f["ips"], join(path, "ips"), owner{list: "nodes", index: i, name: nd.Name, line: n.Line}, addrs)
	return nd
}

func (p *fileParser) endpoint(n *yaml.Node, path string, i int, names map[string]owner, addrs map[netip.Addr]owner) Workload {
	ep := Workload{Labels: map[string]string{}, Namespace: policy.DefaultNamespace}
	f := p.object(n, path, "name", "namespace", "serviceAccount", "ips", "labels", "ports")
	if f == nil {
		return ep
	}
	namePath := join(path, "name")
	if v := f["name"]; isNull(v) {
		p.failf(n, namePath, "required")
	} else if s, ok := p.str(v, namePath); ok {
		ep.Name = s
		switch {
		case len(s) > maxNameLen:
			p.failf(v, namePath, "%q is longer than %d characters", s, maxNameLen)
		case !endpointName.MatchString(s):
			p.failf(v, namePath, "%q must be letters, digits, '.', '_' or '-', starting and ending with a letter or digit (no '/': \"namespace/name\" is how Kubernetes pods are named)", s)
		}
		if o, dup := names[s]; dup {
			p.failf(v, namePath, "%q is already the name of endpoints[%d] (line %d)", s, o.index, o.line)
		} else {
			names[s] = owner{index: i, name: s, line: v.Line}
		}
	}
	ep.IPs = p.addrs(n, f["ips"], join(path, "ips"), owner{list: "endpoints", index: i, name: ep.Name, line: n.Line}, addrs)
	if v, ok := f["namespace"]; ok {
		if s, ok := p.str(v, join(path, "namespace")); ok {
			for _, msg := range validation.IsDNS1123Label(s) {
				p.failf(v, join(path, "namespace"), "%q is not a namespace name: %s", s, msg)
			}
			ep.Namespace = s
		}
	}
	if v, ok := f["serviceAccount"]; ok {
		if s, ok := p.str(v, join(path, "serviceAccount")); ok {
			for _, msg := range validation.IsDNS1123Subdomain(s) {
				p.failf(v, join(path, "serviceAccount"), "%q is not a service account name: %s", s, msg)
			}
			ep.ServiceAccount = s
		}
	}
	p.labels(f["labels"], join(path, "labels"), ep.Labels, true)
	ep.NamedPorts = p.ports(f["ports"], join(path, "ports"))
	return ep
}

// addrs reads the address list of an endpoint or node (o), which must name
// at least one address, none of them claimed by another (addrs).
func (p *fileParser) addrs(n, v *yaml.Node, ipsPath string, o owner, addrs map[netip.Addr]owner) []netip.Addr {
	switch {
	case isNull(v):
		p.failf(n, ipsPath, "required: at least one address")
	case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		p.failf(v, ipsPath, "at least one address is required")
	}
	var out []netip.Addr
	seen := make(map[netip.Addr]int)
	for j, v := range p.list(v, ipsPath) {
		ipPath := index(ipsPath, j)
		s, ok := p.str(v, ipPath)
		if !ok {
			continue
		}
		a, ok := p.addr(v, ipPath, s)
		if !ok {
			continue
		}
		if k, dup := seen[a]; dup {
			p.failf(v, ipPath, "%s repeats %s", a, index(ipsPath, k))
			continue
		}
		seen[a] = j
		if first, dup := addrs[a]; dup {
			p.failf(v, ipPath, "%s is already an address of %s; an address belongs to one endpoint or node", a, first)
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
	if isNull(n) || !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.failf(n, path, "must be a mapping of port names to numbers (redis: 6379, dns: 53/UDP)")
		return nil
	}
	out := make(map[string]policy.NamedPort)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := p.str(k, path)
		if !ok {
			continue
		}
		kp := join(path, name)
		if _, dup := out[name]; dup {
			p.failf(k, kp, "duplicate port name")
			continue
		}
		if len(name) > 15 || !svcName.MatchString(name) {
			p.failf(k, kp, "%q is not a port name: 1-15 lower-case letters, digits and single '-', with a letter (as Kubernetes container ports)", name)
			continue
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			p.failf(v, kp, "must be a port number, optionally with /TCP, /UDP or /SCTP")
			continue
		}
		m := portSpec.FindStringSubmatch(v.Value)
		num, err := strconv.ParseUint(v.Value, 10, 16)
		if m != nil {
			num, err = strconv.ParseUint(m[1], 10, 16)
		}
		if m == nil || err != nil || num == 0 {
			p.failf(v, kp, "%q is not a port number 1-65535, optionally with /TCP, /UDP or /SCTP", v.Value)
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
			p.failf(n, path, "%q is a prefix; write the endpoint's address without a length", s)
		} else {
			p.failf(n, path, "%q is not an IP address", s)
		}
		return netip.Addr{}, false
	}
	switch {
	case a.Zone() != "":
		p.failf(n, path, "%s must not have a zone", a)
	case a.Is4In6():
		p.failf(n, path, "%s is IPv4-mapped; write %s", a, a.Unmap())
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		p.failf(n, path, "%s is not a unicast address a workload can have", a)
	default:
		return a, true
	}
	return netip.Addr{}, false
}

// labels reads a label map into set.
// labels reads a label map into set; for a workload's own labels
// (workload), keys that Cilium derives are refused.
func (p *fileParser) labels(n *yaml.Node, path string, set map[string]string, workload bool) {
	if isNull(n) || !p.plain(n, path) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.failf(n, path, "must be a mapping of label keys to values")
		return
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			p.failf(k, path, "YAML merge keys (<<) are not supported; write the labels out")
			continue
		}
		key, ok := p.str(k, path)
		if !ok {
			continue
		}
		kp := join(path, key)
		if seen[key] {
			p.failf(k, kp, "duplicate key")
			continue
		}
		seen[key] = true
		keyOK := true
		if src, rest, ok := strings.Cut(key, ":"); ok && (src == "k8s" || src == "any" || src == "reserved") {
			p.failf(k, kp, "label keys carry no source here: write %q (the %s: prefix belongs in policy selectors)", rest, src)
			keyOK = false
		} else if workload && key == policy.NamespaceLabel {
			p.failf(k, kp, "is derived from the endpoint's namespace: write namespace: %s instead", v.Value)
			keyOK = false
		} else if workload && strings.HasPrefix(key, policy.DerivedPrefix) {
			p.failf(k, kp, "keys under %s are derived (from namespace, namespaces, serviceAccount and the loader's cluster), not set", policy.DerivedPrefix)
			keyOK = false
		} else {
			for _, msg := range validation.IsQualifiedName(key) {
				p.failf(k, kp, "invalid label key: %s", msg)
				keyOK = false
			}
		}
		val, ok := p.str(v, kp)
		if !ok {
			continue
		}
		valOK := true
		for _, msg := range validation.IsValidLabelValue(val) {
			p.failf(v, kp, "invalid label value %q: %s", val, msg)
			valOK = false
		}
		if keyOK && valOK {
			set[key] = val
		}
	}
}
