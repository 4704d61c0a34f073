package services

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/policy"
)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parser collects the problems of one services file. It walks a yaml.Node
// tree rather than decoding into structs, so that every problem is
// reported with its line and field path, and one bad value does not hide
// the others.
type parser struct {
	source string
	errs   []*policy.FieldError
}

func (p *parser) failf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &policy.FieldError{Source: p.source, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) yamlError(err error) {
	fe := &policy.FieldError{Source: p.source, Msg: err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "YAML: " + m[2]
	}
	p.errs = append(p.errs, fe)
}

// err joins the problems found, in line order.
func (p *parser) err() error {
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
func (p *parser) plain(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		p.failf(n, path, "YAML aliases are not supported; write the value out")
		return false
	}
	return true
}

// object checks that n is a mapping with only the given keys, reports every
// other key, and returns the values of the known ones.
func (p *parser) object(n *yaml.Node, path string, fields ...string) map[string]*yaml.Node {
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
func (p *parser) list(n *yaml.Node, path string) []*yaml.Node {
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
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
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

// integer returns the value of an integer scalar; what says what it must
// be.
func (p *parser) integer(n *yaml.Node, path, what string) (int64, bool) {
	if !p.plain(n, path) {
		return 0, false
	}
	var v int64
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str" && isDigits(n.Value):
		p.failf(n, path, "must be %s: unquote it (%s)", what, n.Value)
	case n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil:
		p.failf(n, path, "must be %s", what)
	default:
		return v, true
	}
	return 0, false
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// boolean returns the value of a true or false scalar.
func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	if !p.plain(n, path) {
		return false, false
	}
	var v bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		p.failf(n, path, "must be true or false")
		return false, false
	}
	return v, true
}

// oneOf returns the value of a string that must be one of values, or def
// for a missing one.
func oneOf[T ~string](p *parser, n *yaml.Node, path string, def T, values ...T) T {
	if n == nil {
		return def
	}
	s, ok := p.str(n, path)
	if !ok {
		return def
	}
	if !slices.Contains(values, T(s)) {
		names := make([]string, len(values))
		for i, v := range values {
			names[i] = string(v)
		}
		p.failf(n, path, "%q must be %s or %s", s, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
		return def
	}
	return T(s)
}
