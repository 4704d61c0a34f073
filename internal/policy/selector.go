package policy

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/selection"
)

// Label sources, as Cilium writes them before a selector key ("k8s:app").
// Endpoint labels are all of source k8s; reserved identities (host, world,
// ...) carry one label of source reserved. A selector key without a source
// is of source any, which matches labels of every source.
const (
	sourceAny      = "any"
	sourceK8s      = "k8s"
	sourceReserved = "reserved"
)

// reservedKey is how a label set holds a reserved label: endpoint label
// keys cannot contain ':', so this never clashes with one.
func reservedKey(name string) string { return sourceReserved + ":" + name }

// requirement is one term of a Selector: a label key of a source, an
// operator and its values, with Kubernetes' semantics (NotIn and
// DoesNotExist hold when the key is absent).
type requirement struct {
	source string
	key    string
	op     selection.Operator
	values []string
}

// lookup returns the value of the label the requirement is about.
func (r requirement) lookup(set map[string]string) (string, bool) {
	switch r.source {
	case sourceK8s:
		v, ok := set[r.key]
		return v, ok
	case sourceReserved:
		v, ok := set[reservedKey(r.key)]
		return v, ok
	default:
		if v, ok := set[r.key]; ok {
			return v, true
		}
		v, ok := set[reservedKey(r.key)]
		return v, ok
	}
}

func (r requirement) matches(set map[string]string) bool {
	v, ok := r.lookup(set)
	switch r.op {
	case selection.Equals, selection.In:
		return ok && slices.Contains(r.values, v)
	case selection.NotIn:
		return !ok || !slices.Contains(r.values, v)
	case selection.Exists:
		return ok
	case selection.DoesNotExist:
		return !ok
	}
	return false
}

func (r requirement) String() string {
	key := r.key
	if r.source != sourceAny {
		key = r.source + ":" + key
	}
	switch r.op {
	case selection.Equals:
		return key + "=" + r.values[0]
	case selection.Exists:
		return key
	case selection.DoesNotExist:
		return "!" + key
	case selection.In:
		return key + " in (" + strings.Join(r.values, ",") + ")"
	case selection.NotIn:
		return key + " notin (" + strings.Join(r.values, ",") + ")"
	}
	return key + " " + string(r.op) + " (" + strings.Join(r.values, ",") + ")"
}

// Selector is a label selector over the security labels of identities, as
// Cilium evaluates it: each key has a source (any, k8s or reserved), and
// every requirement must hold. The zero Selector selects nothing; a
// Selector without requirements selects every identity.
type Selector struct {
	reqs  []requirement
	valid bool
}

// Matches reports whether the selector selects an identity with the given
// labels: security labels under their keys, and reserved labels (of the
// host, the world, ...) under "reserved:<name>".
func (s Selector) Matches(set map[string]string) bool {
	if !s.valid {
		return false
	}
	for _, r := range s.reqs {
		if !r.matches(set) {
			return false
		}
	}
	return true
}

// String returns the selector's requirements, sorted and comma-separated,
// "{}" for the selector that selects everything and "<none>" for the zero
// Selector. Two selectors with the same string select the same identities.
func (s Selector) String() string {
	if !s.valid {
		return "<none>"
	}
	if len(s.reqs) == 0 {
		return "{}"
	}
	parts := make([]string, len(s.reqs))
	for i, r := range s.reqs {
		parts[i] = r.String()
	}
	slices.Sort(parts)
	return strings.Join(slices.Compact(parts), ",")
}

// hasKey reports whether a requirement names key with source k8s or any.
func (s Selector) hasKey(key string) bool {
	return slices.ContainsFunc(s.reqs, func(r requirement) bool {
		return r.key == key && r.source != sourceReserved
	})
}

// hasKeyPrefix reports whether a requirement of source k8s or any names a
// key starting with prefix.
func (s Selector) hasKeyPrefix(prefix string) bool {
	return slices.ContainsFunc(s.reqs, func(r requirement) bool {
		return strings.HasPrefix(r.key, prefix) && r.source != sourceReserved
	})
}

// hasReserved reports whether a requirement is of source reserved, and,
// with a name, whether one names that reserved label.
func (s Selector) hasReserved(name string) bool {
	return slices.ContainsFunc(s.reqs, func(r requirement) bool {
		return r.source == sourceReserved && (name == "" || r.key == name)
	})
}

// with returns a copy of s with r added; an Equals requirement replaces
// any Equals requirement on the same key and source, as Cilium's AddMatch
// overwrites matchLabels.
func (s Selector) with(r requirement) Selector {
	reqs := make([]requirement, 0, len(s.reqs)+1)
	for _, o := range s.reqs {
		if r.op == selection.Equals && o.op == selection.Equals && o.key == r.key && o.source == r.source {
			continue
		}
		reqs = append(reqs, o)
	}
	return Selector{reqs: append(reqs, r), valid: true}
}
