package syncd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/yamlfields"
)

// LoadFile reads the workloads file at path (see ParseFile). A missing file
// is an empty one; one that cannot be read is an error.
func LoadFile(path string) ([]Workload, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("workloads file: %w", err)
	}
	defer f.Close()
	return ParseFile(f, path)
}

// ParseFile reads a workloads file:
//
//	workloads:
//	  - name: vm1                  # DNS subdomain, required
//	    namespace: default         # DNS label; default "default"
//	    ips: [10.0.9.10, "fd00:0:9::10"]
//	    labels: {app: employee}
//
// source names the file in problems. An empty file (or list) is no
// workloads. A workload's namespace and name are unique in the file, and an
// address belongs to one workload; label keys and values are Kubernetes
// label keys and values, written as strings, none under io.cilium.k8s.;
// at most MaxIPs addresses and MaxLabels labels.
//
// If anything is wrong, ParseFile returns nothing and an error joining one
// *policy.FieldError per problem ("file:line: path: message"), unknown
// fields included; a YAML syntax error ends the search.
func ParseFile(r io.Reader, source string) ([]Workload, error) {
	p := &fileParser{Parser: yamlfields.New(source)}
	ws := p.file(p.Decode(r, "the workloads file"))
	if err := p.Err(); err != nil {
		return nil, err
	}
	return ws, nil
}

// fileParser reads the workloads of a file, collecting every problem.
type fileParser struct {
	*yamlfields.Parser
}

// claim is the workload that first claimed a name or an address.
type claim struct {
	index int
	id    string // may be "" while its name is unknown
	line  int
}

func (c claim) String() string {
	if c.id == "" {
		return fmt.Sprintf("workloads[%d] (line %d)", c.index, c.line)
	}
	return fmt.Sprintf("workload %s (workloads[%d], line %d)", c.id, c.index, c.line)
}

// file reads the top mapping.
func (p *fileParser) file(n *yaml.Node) []Workload {
	if yamlfields.IsNull(n) {
		return nil
	}
	if n.Kind == yaml.SequenceNode {
		p.Failf(n, "", "the file must be a mapping, `workloads: [...]`, not a list")
		return nil
	}
	f := p.Object(n, "", "workloads")
	if f == nil {
		return nil
	}
	ids := map[string]claim{}
	addrs := map[netip.Addr]claim{}
	var out []Workload
	for i, item := range p.List(f["workloads"], "workloads") {
		out = append(out, p.workload(item, yamlfields.Index("workloads", i), i, ids, addrs))
	}
	return out
}

// workload reads one entry of workloads.
func (p *fileParser) workload(n *yaml.Node, path string, i int, ids map[string]claim, addrs map[netip.Addr]claim) Workload {
	w := Workload{Namespace: DefaultNamespace, Labels: map[string]string{}}
	f := p.Object(n, path, "name", "namespace", "ips", "labels")
	if f == nil {
		return w
	}
	namePath, nsPath := yamlfields.Join(path, "name"), yamlfields.Join(path, "namespace")
	if v, ok := f["namespace"]; ok {
		if s, ok := p.Str(v, nsPath); ok {
			w.Namespace = s
			for _, msg := range namespaceProblems(s) {
				p.Failf(v, nsPath, "%s", msg)
			}
		}
	}
	if v := f["name"]; yamlfields.IsNull(v) {
		p.Failf(n, namePath, "required")
	} else if s, ok := p.Str(v, namePath); ok {
		w.Name = s
		for _, msg := range nameProblems(s) {
			p.Failf(v, namePath, "%s", msg)
		}
		if c, dup := ids[w.ID()]; dup {
			p.Failf(v, namePath, "%s is already the name of workloads[%d] (line %d)", w.ID(), c.index, c.line)
		} else {
			ids[w.ID()] = claim{index: i, id: w.ID(), line: v.Line}
		}
	}
	id := ""
	if w.Name != "" {
		id = w.ID()
	}
	w.IPs = p.addrs(n, f["ips"], yamlfields.Join(path, "ips"), claim{index: i, id: id, line: n.Line}, addrs)
	p.labels(f["labels"], yamlfields.Join(path, "labels"), w.Labels)
	return w
}

// addrs reads a workload's addresses (at least one), none claimed by
// another workload, and returns them sorted.
func (p *fileParser) addrs(n, v *yaml.Node, path string, c claim, addrs map[netip.Addr]claim) []netip.Addr {
	switch {
	case yamlfields.IsNull(v):
		p.Failf(n, path, "required: at least one address")
	case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		p.Failf(v, path, "at least one address is required")
	case v.Kind == yaml.SequenceNode && len(v.Content) > MaxIPs:
		p.Failf(v, path, "%d addresses; at most %d", len(v.Content), MaxIPs)
	}
	var out []netip.Addr
	seen := map[netip.Addr]int{}
	for j, item := range p.List(v, path) {
		ipPath := yamlfields.Index(path, j)
		s, ok := p.Str(item, ipPath)
		if !ok {
			continue
		}
		a, err := parseAddr(s)
		if err != nil {
			p.Failf(item, ipPath, "%v", err)
			continue
		}
		if k, dup := seen[a]; dup {
			p.Failf(item, ipPath, "%s repeats %s", a, yamlfields.Index(path, k))
			continue
		}
		seen[a] = j
		if first, dup := addrs[a]; dup {
			p.Failf(item, ipPath, "%s is already an address of %s; an address belongs to one workload", a, first)
			continue
		}
		c.line = item.Line
		addrs[a] = c
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// labels reads a workload's own labels into set.
func (p *fileParser) labels(n *yaml.Node, path string, set map[string]string) {
	if n != nil && n.Kind == yaml.MappingNode && len(n.Content)/2 > MaxLabels {
		p.Failf(n, path, "%d labels; at most %d", len(n.Content)/2, MaxLabels)
	}
	for _, l := range p.Labels(n, path) {
		keyMsgs := labelKeyProblems(l.Key)
		for _, msg := range keyMsgs {
			p.Failf(l.KeyNode, l.Path, "%s", msg)
		}
		valMsgs := labelValueProblems(l.Value)
		for _, msg := range valMsgs {
			p.Failf(l.ValueNode, l.Path, "%s", msg)
		}
		if len(keyMsgs) == 0 && len(valMsgs) == 0 {
			set[l.Key] = l.Value
		}
	}
}
