package yamlfields

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/policy"
)

// read decodes src as f.yaml and passes its top node to fn; it returns
// what fn returns and the problems as Err joins them ("" for none).
func read[T any](t *testing.T, src string, fn func(p *Parser, n *yaml.Node) T) (T, string) {
	t.Helper()
	p := New("f.yaml")
	got := fn(p, p.Decode(strings.NewReader(src), "the test file"))
	err := p.Err()
	if err == nil {
		return got, ""
	}
	return got, err.Error()
}

// check reports a difference from the wanted value or problems.
func check[T any](t *testing.T, got T, gotErr string, want T, wantErr string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("value = %#v, want %#v", got, want)
	}
	if gotErr != wantErr {
		t.Errorf("problems:\n%s\nwant:\n%s", gotErr, wantErr)
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want string // the top node's first key, "<nil>" for none
		err  string
	}{
		{name: "empty", src: "", want: "<nil>"},
		{name: "one document", src: "a: 1\n", want: "a"},
		{name: "syntax error ends the reading", src: "a: 1\nb: [\n", want: "<nil>",
			err: "f.yaml:2: YAML: did not find expected node content"},
		{name: "empty second document", src: "a: 1\n---\n", want: "a"},
		{name: "second document", src: "a: 1\n---\nb: 2\n", want: "a",
			err: "f.yaml:3: a second YAML document; the test file holds one"},
		{name: "syntax error in second document", src: "a: 1\n---\nb: [\n", want: "a",
			err: "f.yaml:3: YAML: did not find expected node content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := read(t, tc.src, func(p *Parser, n *yaml.Node) string {
				if n == nil {
					return "<nil>"
				}
				return n.Content[0].Value
			})
			check(t, got, err, tc.want, tc.err)
		})
	}
}

func TestErrIsFieldErrorsInLineOrder(t *testing.T) {
	p := New("f.yaml")
	p.Failf(&yaml.Node{Line: 3}, "c", "third")
	p.Failf(&yaml.Node{Line: 1}, "a", "first")
	p.Failf(nil, "", "no line")
	p.Failf(&yaml.Node{Line: 1}, "b", "also first")
	if got := len(p.Problems()); got != 4 {
		t.Fatalf("Problems() holds %d, want 4", got)
	}
	err := p.Err()
	want := "f.yaml: no line\nf.yaml:1: a: first\nf.yaml:1: b: also first\nf.yaml:3: c: third"
	if err == nil || err.Error() != want {
		t.Fatalf("Err() = %v, want:\n%s", err, want)
	}
	var fe *policy.FieldError
	if !errors.As(err, &fe) || fe.Source != "f.yaml" || fe.Line != 0 {
		t.Errorf("Err() holds %+v, want a *policy.FieldError", fe)
	}
	if err := New("f.yaml").Err(); err != nil {
		t.Errorf("no problems: Err() = %v", err)
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Join("", "services"), "services"},
		{Join("services[0]", "name"), "services[0].name"},
		{Index("services", 2), "services[2]"},
		{Index(Join("a", "b"), 0), "a.b[0]"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestIsNull(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    *yaml.Node
		want bool
	}{
		{"nil", nil, true},
		{"zero", &yaml.Node{}, true},
		{"null", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}, true},
		{"empty string", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str"}, false},
		{"empty list", &yaml.Node{Kind: yaml.SequenceNode}, false},
	} {
		if got := IsNull(tc.n); got != tc.want {
			t.Errorf("%s: IsNull = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestObject(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // the keys returned, sorted; nil for no map
		err  string
	}{
		{name: "known fields", src: "name: a\nips: []\n", want: []string{"ips", "name"}},
		{name: "empty mapping", src: "{}\n", want: []string{}},
		{name: "not a mapping", src: "- a\n", err: "f.yaml:1: spec: must be a mapping"},
		{name: "unknown field", src: "name: a\nport: 1\n", want: []string{"name"},
			err: "f.yaml:2: spec.port: unknown field (known: name, ips)"},
		{name: "hint for case", src: "Name: a\n", want: []string{},
			err: "f.yaml:1: spec.Name: unknown field: did you mean name? (known: name, ips)"},
		{name: "hint for a missing s", src: "ip: []\n", want: []string{},
			err: "f.yaml:1: spec.ip: unknown field: did you mean ips? (known: name, ips)"},
		{name: "hint for an extra s", src: "names: a\n", want: []string{},
			err: "f.yaml:1: spec.names: unknown field: did you mean name? (known: name, ips)"},
		{name: "duplicate key", src: "name: a\nname: b\n", want: []string{"name"},
			err: "f.yaml:2: spec.name: duplicate key"},
		{name: "key not a string", src: "[a]: 1\nname: a\n", want: []string{"name"},
			err: "f.yaml:1: spec: keys must be strings"},
		{name: "merge key", src: "<<: {name: a}\n", want: []string{},
			err: "f.yaml:1: spec: YAML merge keys (<<) are not supported; write the fields out"},
		{name: "every problem", src: "nmae: a\nname: b\nname: c\n", want: []string{"name"},
			err: "f.yaml:1: spec.nmae: unknown field (known: name, ips)\nf.yaml:3: spec.name: duplicate key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := read(t, tc.src, func(p *Parser, n *yaml.Node) []string {
				m := p.Object(n, "spec", "name", "ips")
				if m == nil {
					return nil
				}
				keys := []string{}
				for k, v := range m {
					if v == nil {
						t.Errorf("key %q has no value", k)
					}
					keys = append(keys, k)
				}
				slices.Sort(keys)
				return keys
			})
			check(t, got, err, tc.want, tc.err)
		})
	}
}

func TestAliasesAreRefused(t *testing.T) {
	readers := map[string]func(p *Parser, n *yaml.Node){
		"Plain":   func(p *Parser, n *yaml.Node) { p.Plain(n, "v") },
		"Object":  func(p *Parser, n *yaml.Node) { p.Object(n, "v") },
		"List":    func(p *Parser, n *yaml.Node) { p.List(n, "v") },
		"Str":     func(p *Parser, n *yaml.Node) { p.Str(n, "v") },
		"Integer": func(p *Parser, n *yaml.Node) { p.Integer(n, "v", "a number") },
		"Boolean": func(p *Parser, n *yaml.Node) { p.Boolean(n, "v") },
		"OneOf":   func(p *Parser, n *yaml.Node) { OneOf(p, n, "v", "a", "a", "b") },
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			// The anchored first item is fine; the alias to it is not.
			_, err := read(t, "- &x a\n- *x\n", func(p *Parser, n *yaml.Node) bool {
				if !p.Plain(n.Content[0], "anchor") {
					t.Error("the anchored item is refused")
				}
				r(p, n.Content[1])
				return true
			})
			check(t, true, err, true, "f.yaml:2: v: YAML aliases are not supported; write the value out")
		})
	}
}

func TestList(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want int // items
		err  string
	}{
		{name: "list", src: "[a, b]\n", want: 2},
		{name: "empty list", src: "[]\n", want: 0},
		{name: "null is empty", src: "null\n", want: 0},
		{name: "missing is empty", src: "", want: 0},
		{name: "not a list", src: "a: 1\n", want: 0, err: "f.yaml:1: v: must be a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := read(t, tc.src, func(p *Parser, n *yaml.Node) int {
				return len(p.List(n, "v"))
			})
			check(t, got, err, tc.want, tc.err)
		})
	}
}

// scalarCase is one case of a scalar reader: a value read (ok), or the
// problems (err) of one that is not.
type scalarCase[T any] struct {
	name string
	src  string
	want T
	ok   bool
	err  string
}

// testScalar runs the cases of the reader fn, which reads the top node at
// path "v".
func testScalar[T any](t *testing.T, cases []scalarCase[T], fn func(p *Parser, n *yaml.Node) (T, bool)) {
	t.Helper()
	type result struct {
		V  T
		OK bool
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := read(t, tc.src, func(p *Parser, n *yaml.Node) result {
				v, ok := fn(p, n)
				return result{v, ok}
			})
			check(t, got, err, result{tc.want, tc.ok}, tc.err)
		})
	}
}

func TestStr(t *testing.T) {
	testScalar(t, []scalarCase[string]{
		{name: "string", src: "db\n", want: "db", ok: true},
		{name: "quoted number", src: `"6379"` + "\n", want: "6379", ok: true},
		{name: "empty string", src: `""` + "\n", want: "", ok: true},
		{name: "number", src: "6379\n", err: `f.yaml:1: v: must be a string: quote it ("6379")`},
		{name: "boolean", src: "true\n", err: `f.yaml:1: v: must be a string: quote it ("true")`},
		{name: "mapping", src: "a: x\n", err: "f.yaml:1: v: must be a string"},
		{name: "null", src: "~\n", err: `f.yaml:1: v: must be a string (write "" for an empty one)`},
		{name: "list", src: "[a]\n", err: "f.yaml:1: v: must be a string"},
	}, func(p *Parser, n *yaml.Node) (string, bool) { return p.Str(n, "v") })
}

func TestInteger(t *testing.T) {
	testScalar(t, []scalarCase[int64]{
		{name: "integer", src: "6379\n", want: 6379, ok: true},
		{name: "negative", src: "-1\n", want: -1, ok: true},
		{name: "quoted", src: `"6379"` + "\n", err: "f.yaml:1: v: must be a port: unquote it (6379)"},
		{name: "name", src: "redis\n", err: "f.yaml:1: v: must be a port"},
		{name: "float", src: "1.5\n", err: "f.yaml:1: v: must be a port"},
		{name: "too large", src: "99999999999999999999\n", err: "f.yaml:1: v: must be a port"},
		{name: "null", src: "~\n", err: "f.yaml:1: v: must be a port"},
	}, func(p *Parser, n *yaml.Node) (int64, bool) { return p.Integer(n, "v", "a port") })
}

func TestBoolean(t *testing.T) {
	testScalar(t, []scalarCase[bool]{
		{name: "true", src: "true\n", want: true, ok: true},
		{name: "false", src: "false\n", want: false, ok: true},
		{name: "quoted", src: `"true"` + "\n", err: "f.yaml:1: v: must be true or false"},
		{name: "yes is a string in YAML 1.2", src: "yes\n", err: "f.yaml:1: v: must be true or false"},
		{name: "number", src: "1\n", err: "f.yaml:1: v: must be true or false"},
	}, func(p *Parser, n *yaml.Node) (bool, bool) { return p.Boolean(n, "v") })
}

type policyName string

func TestOneOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string // "" for a missing value
		want policyName
		err  string
	}{
		{name: "missing is the default", want: "Cluster"},
		{name: "one of them", src: "Local\n", want: "Local"},
		{name: "other", src: "Nearest\n", want: "Cluster",
			err: `f.yaml:1: v: "Nearest" must be Cluster, Local or Topology`},
		{name: "not a string", src: "1\n", want: "Cluster",
			err: `f.yaml:1: v: must be a string: quote it ("1")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := read(t, tc.src, func(p *Parser, n *yaml.Node) policyName {
				return OneOf[policyName](p, n, "v", "Cluster", "Cluster", "Local", "Topology")
			})
			check(t, got, err, tc.want, tc.err)
		})
	}
}
