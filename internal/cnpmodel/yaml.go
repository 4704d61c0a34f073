package cnpmodel

import (
	"slices"

	"gopkg.in/yaml.v3"
)

// fields is a YAML mapping whose null values have been dropped (as the API server drops them).
type fields struct {
	node  *yaml.Node
	pairs []pair
}

type pair struct {
	key   string
	value *yaml.Node
}

func (f fields) get(key string) (*yaml.Node, bool) {
	for _, p := range f.pairs {
		if p.key == key {
			return p.value, true
		}
	}
	return nil, false
}

// mapping reads a mapping; with known non-nil, a key not in known is an error.
func (l *loader) mapping(n *yaml.Node, path string, known []string) (fields, error) {
	n = deref(n)
	f := fields{node: n}
	if isNull(n) {
		return f, nil
	}
	if n.Kind != yaml.MappingNode {
		return f, l.errorf(n, path, "not a mapping")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if known != nil && !slices.Contains(known, k.Value) {
			return f, l.errorf(k, join(path, k.Value), "unknown field")
		}
		if seen[k.Value] {
			return f, l.errorf(k, join(path, k.Value), "duplicate key")
		}
		seen[k.Value] = true
		if !isNull(v) {
			f.pairs = append(f.pairs, pair{k.Value, v})
		}
	}
	return f, nil
}

func (l *loader) sequence(n *yaml.Node, path string) ([]*yaml.Node, error) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		return nil, l.errorf(n, path, "not a list")
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = deref(c)
	}
	return items, nil
}

// scalar returns a scalar field's text, "" when absent.
func (l *loader) scalar(m fields, path, key string) (string, error) {
	n, ok := m.get(key)
	if !ok {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", l.errorf(n, join(path, key), "not a scalar")
	}
	return n.Value, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}
