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

// LoadFile reads the endpoints file:
//
//	endpoints:
//	- name: db
//	  ips: [10.244.1.10]
//	  labels: {app: protected-db}
//
// source names the file in errors. An empty file (or endpoints: []) is no
// endpoints. Every name is required, unique and at most 253 letters, digits,
// '.', '_' or '-'; every endpoint has at least one address, and an address
// belongs to one endpoint only; label keys and values must be valid
// Kubernetes label keys and values, written as strings. An endpoint may
// carry policy.NamespaceLabel so that namespaced policies select it.
//
// Endpoints come back in file order, with Local false and Labels never nil.
// If anything is wrong, LoadFile returns no endpoints and an error joining
// one *policy.FieldError per problem ("file:line: path: message"), unknown
// fields included; a YAML syntax error ends the search.
func LoadFile(r io.Reader, source string) ([]policy.Endpoint, error) {
	p := &fileParser{source: source}
	dec := yaml.NewDecoder(r)
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		return nil, nil
	case err != nil:
		p.yamlError(err)
		return nil, p.err()
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.yamlError(err)
	case !isNull(content(&extra)):
		p.failf(content(&extra), "", "a second YAML document; the endpoints file holds one")
	}
	eps := p.file(content(&doc))
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	return eps, nil
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

// owner is the endpoint that first claimed a name or an address.
type owner struct {
	index int
	name  string // may be empty
	line  int
}

// String returns `endpoint "db" (endpoints[0], line 3)`, or
// "endpoints[0] (line 3)" for an endpoint without a name.
func (o owner) String() string {
	if o.name == "" {
		return fmt.Sprintf("endpoints[%d] (line %d)", o.index, o.line)
	}
	return fmt.Sprintf("endpoint %q (endpoints[%d], line %d)", o.name, o.index, o.line)
}

// file reads the top mapping of the endpoints file.
func (p *fileParser) file(n *yaml.Node) []policy.Endpoint {
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.SequenceNode {
		p.failf(n, "", "the file must be a mapping, `endpoints: [...]`, not a list")
		return nil
	}
	f := p.object(n, "", "endpoints")
	if f == nil {
		return nil
	}
	names := make(map[string]owner)
	addrs := make(map[netip.Addr]owner)
	var out []policy.Endpoint
	for i, item := range p.list(f["endpoints"], "endpoints") {
		out = append(out, p.endpoint(item, index("endpoints", i), i, names, addrs))
	}
	return out
}

func (p *fileParser) endpoint(n *yaml.Node, path string, i int, names map[string]owner, addrs map[netip.Addr]owner) policy.Endpoint {
	ep := policy.Endpoint{Labels: map[string]string{}}
	f := p.object(n, path, "name", "ips", "labels")
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
	ipsPath := join(path, "ips")
	switch v := f["ips"]; {
	case isNull(v):
		p.failf(n, ipsPath, "required: at least one address")
	case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		p.failf(v, ipsPath, "at least one address is required")
	}
	ips := p.list(f["ips"], ipsPath)
	seen := make(map[netip.Addr]int)
	for j, v := range ips {
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
		if o, dup := addrs[a]; dup {
			p.failf(v, ipPath, "%s is already an address of %s; an address belongs to one endpoint", a, o)
			continue
		}
		addrs[a] = owner{index: i, name: ep.Name, line: v.Line}
		ep.IPs = append(ep.IPs, a)
	}
	p.labels(f["labels"], join(path, "labels"), ep.Labels)
	return ep
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
func (p *fileParser) labels(n *yaml.Node, path string, set map[string]string) {
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
