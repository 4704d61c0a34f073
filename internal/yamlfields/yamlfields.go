// Package yamlfields reads a hand-written YAML file strictly, node by node,
// and reports every problem at once, each at its file, line and field path.
//
// A Parser walks the yaml.v3 node tree rather than decoding into structs,
// so that one bad value does not hide the others. It refuses unknown keys
// (suggesting the field a misspelt one may have meant), duplicate keys,
// aliases, merge keys (<<), and scalars of the wrong kind: a number where a
// string belongs must be quoted, a quoted number where a number belongs
// unquoted. Each problem is a *policy.FieldError, "file:line: path:
// message", as the policy parser reports them; paths are built with Join
// and Index ("services[0].ports[1].name").
//
// A reader of one kind of file embeds a *Parser and adds methods for its
// own objects:
//
//	p := &fileParser{yamlfields.New(source)}
//	f := p.file(p.Decode(r, "the endpoints file"))
//	if err := p.Err(); err != nil {
//		return File{}, err
//	}
package yamlfields

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/policy"
)

// Parser collects the problems of one file. Its methods that read a node
// report whether they could; when they cannot, they have recorded why.
type Parser struct {
	source string
	errs   []*policy.FieldError
}

// New returns a Parser for the file that source names in problems.
func New(source string) *Parser {
	return &Parser{source: source}
}

// Failf records a problem at n's line (0 for a nil n) and path.
func (p *Parser) Failf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &policy.FieldError{Source: p.source, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Problems returns the problems recorded so far, in the order found until
// Err sorts them. The caller must not change them.
func (p *Parser) Problems() []*policy.FieldError {
	return p.errs
}

// Err returns the problems found, sorted by line, joined with errors.Join;
// nil if there are none.
func (p *Parser) Err() error {
	slices.SortStableFunc(p.errs, func(a, b *policy.FieldError) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Decode reads the one YAML document of r and returns its top node, or nil
// for an empty input. A syntax error is a problem ("YAML: …", at its line
// when yaml.v3 gives one); one in the first document ends the reading and
// Decode returns nil. A second document is a problem too, "a second YAML
// document; <what> holds one", but the first is still returned.
func (p *Parser) Decode(r io.Reader, what string) *yaml.Node {
	dec := yaml.NewDecoder(r)
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		p.yamlError(err)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.yamlError(err)
	case !IsNull(content(&extra)):
		p.Failf(content(&extra), "", "a second YAML document; %s holds one", what)
	}
	return content(&doc)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError records an error of yaml.v3, at its line if it names one.
func (p *Parser) yamlError(err error) {
	fe := &policy.FieldError{Source: p.source, Msg: err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "YAML: " + m[2]
	}
	p.errs = append(p.errs, fe)
}

// content returns a document's top node.
func content(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0]
	}
	return doc
}

// IsNull reports whether n is missing (nil), empty or a null scalar.
func IsNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// Join returns the path of key in the object at path: "a.b", or "b" at
// the top ("").
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Index returns the path of item i of the list at path: "a[1]".
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// Plain reports whether n is a node the parser reads, failing on aliases.
func (p *Parser) Plain(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		p.Failf(n, path, "YAML aliases are not supported; write the value out")
		return false
	}
	return true
}

// Object checks that n is a mapping with only the given keys, reports
// every other key, and returns the values of the known ones (nil if n is
// not a mapping).
func (p *Parser) Object(n *yaml.Node, path string, fields ...string) map[string]*yaml.Node {
	if !p.Plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.Failf(n, path, "must be a mapping")
		return nil
	}
	out := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := Join(path, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode:
			p.Failf(k, path, "keys must be strings")
		case k.Tag == "!!merge":
			p.Failf(k, path, "YAML merge keys (<<) are not supported; write the fields out")
		case out[k.Value] != nil:
			p.Failf(k, kp, "duplicate key")
		case !slices.Contains(fields, k.Value):
			p.Failf(k, kp, "unknown field%s (known: %s)", hint(k.Value, fields), strings.Join(fields, ", "))
		default:
			out[k.Value] = v
		}
	}
	return out
}

// Label is one entry of a label map that Labels read.
type Label struct {
	// Key and Value are the texts; Path is the entry's field path.
	Key, Value, Path string
	// KeyNode and ValueNode locate them, for problems of their own.
	KeyNode, ValueNode *yaml.Node
}

// Labels returns the entries of a mapping of label keys to values, in
// order; null is an empty map. It reports aliases, merge keys, keys and
// values that are not strings (those entries are left out) and keys given
// twice (the later entries are left out). What makes a key or a value
// valid is the caller's to check.
func (p *Parser) Labels(n *yaml.Node, path string) []Label {
	if IsNull(n) || !p.Plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.Failf(n, path, "must be a mapping of label keys to values")
		return nil
	}
	var out []Label
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			p.Failf(k, path, "YAML merge keys (<<) are not supported; write the labels out")
			continue
		}
		key, ok := p.Str(k, path)
		if !ok {
			continue
		}
		kp := Join(path, key)
		if seen[key] {
			p.Failf(k, kp, "duplicate key")
			continue
		}
		seen[key] = true
		val, ok := p.Str(v, kp)
		if !ok {
			continue
		}
		out = append(out, Label{Key: key, Value: val, Path: kp, KeyNode: k, ValueNode: v})
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

// List returns the items of a sequence; null is an empty list.
func (p *Parser) List(n *yaml.Node, path string) []*yaml.Node {
	if IsNull(n) || !p.Plain(n, path) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.Failf(n, path, "must be a list")
		return nil
	}
	return n.Content
}

// Str returns the text of a string scalar; a number, boolean or null is
// refused rather than read as text.
func (p *Parser) Str(n *yaml.Node, path string) (string, bool) {
	if !p.Plain(n, path) {
		return "", false
	}
	switch {
	case n.Kind != yaml.ScalarNode:
		p.Failf(n, path, "must be a string")
	case n.Tag == "!!null":
		p.Failf(n, path, `must be a string (write "" for an empty one)`)
	case n.Tag != "!!str":
		p.Failf(n, path, "must be a string: quote it (%s)", strconv.Quote(n.Value))
	default:
		return n.Value, true
	}
	return "", false
}

// Integer returns the value of an integer scalar; what says what it must
// be ("a port number"). A quoted number is refused.
func (p *Parser) Integer(n *yaml.Node, path, what string) (int64, bool) {
	if !p.Plain(n, path) {
		return 0, false
	}
	var v int64
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str" && isDigits(n.Value):
		p.Failf(n, path, "must be %s: unquote it (%s)", what, n.Value)
	case n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil:
		p.Failf(n, path, "must be %s", what)
	default:
		return v, true
	}
	return 0, false
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// Boolean returns the value of a true or false scalar.
func (p *Parser) Boolean(n *yaml.Node, path string) (bool, bool) {
	if !p.Plain(n, path) {
		return false, false
	}
	var v bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		p.Failf(n, path, "must be true or false")
		return false, false
	}
	return v, true
}

// OneOf returns the value of a string that must be one of values (two or
// more), or def for a missing (nil) or wrong one.
func OneOf[T ~string](p *Parser, n *yaml.Node, path string, def T, values ...T) T {
	if n == nil {
		return def
	}
	s, ok := p.Str(n, path)
	if !ok {
		return def
	}
	if !slices.Contains(values, T(s)) {
		names := make([]string, len(values))
		for i, v := range values {
			names[i] = string(v)
		}
		p.Failf(n, path, "%q must be %s or %s", s, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
		return def
	}
	return T(s)
}
