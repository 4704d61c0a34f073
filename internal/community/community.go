// Package community parses and prints BGP communities: standard ones
// (RFC 1997, "65000:100", two 16-bit halves) and large ones (RFC 8092,
// "4200000000:1:2", three 32-bit parts, for 4-byte AS numbers).
//
// agent.yaml, the services file and the Service annotation
// (Annotation) write them the same way; birdconf prints them as BIRD
// expressions.
package community

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Annotation is the Service annotation that gives the communities of its
// VIPs (besides the agent's own for every VIP): a list separated by commas
// or spaces, each standard or large, e.g. "65000:300, 4200000000:7:1".
const Annotation = "roost.io/bgp-communities"

// Community is one standard or large community.
type Community struct {
	// Large is true for a large community (A:B:C); false for a standard
	// one (A:B, each part at most 65535, C unused).
	Large   bool
	A, B, C uint32
}

// GracefulShutdown is GRACEFUL_SHUTDOWN (65535:0, RFC 8326): a receiver
// lowers the route's preference so that traffic moves away before the
// route is withdrawn.
var GracefulShutdown = Community{A: 65535, B: 0}

// ErrSyntax is wrapped by every error of Parse.
var ErrSyntax = errors.New("not a community (A:B with parts 0-65535, or A:B:C with parts 0-4294967295)")

// Parse reads "A:B" (standard) or "A:B:C" (large), decimal parts only.
func Parse(s string) (Community, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 2 && len(parts) != 3 {
		return Community{}, fmt.Errorf("%q: %w", s, ErrSyntax)
	}
	bits := 16
	if len(parts) == 3 {
		bits = 32
	}
	var v [3]uint32
	for i, p := range parts {
		// Decimal digits only: ParseUint alone would take "+1" or "0x1"
		// in no case, but refuse leading signs and spaces explicitly.
		if p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return Community{}, fmt.Errorf("%q: %w", s, ErrSyntax)
		}
		n, err := strconv.ParseUint(p, 10, bits)
		if err != nil {
			return Community{}, fmt.Errorf("%q: part %q is larger than %d bits: %w", s, p, bits, ErrSyntax)
		}
		v[i] = uint32(n)
	}
	return Community{Large: len(parts) == 3, A: v[0], B: v[1], C: v[2]}, nil
}

// ParseList reads a list separated by commas and/or white space (the
// annotation's form). An empty list is nil.
func ParseList(s string) ([]Community, error) {
	var out []Community
	var errs []error
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		c, err := Parse(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
	}
	return Sorted(out), errors.Join(errs...)
}

// String is the form Parse reads.
func (c Community) String() string {
	if c.Large {
		return fmt.Sprintf("%d:%d:%d", c.A, c.B, c.C)
	}
	return fmt.Sprintf("%d:%d", c.A, c.B)
}

// Bird is the BIRD 2 statement that adds c to a route in a filter.
func (c Community) Bird() string {
	if c.Large {
		return fmt.Sprintf("bgp_large_community.add((%d, %d, %d));", c.A, c.B, c.C)
	}
	return fmt.Sprintf("bgp_community.add((%d, %d));", c.A, c.B)
}

// Compare orders standard before large communities, then by parts.
func Compare(a, b Community) int {
	if a.Large != b.Large {
		if a.Large {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.A, b.A), cmp.Compare(a.B, b.B), cmp.Compare(a.C, b.C))
}

// Sorted returns cs sorted (Compare) with duplicates dropped, in a new
// slice; nil for none.
func Sorted(cs []Community) []Community {
	if len(cs) == 0 {
		return nil
	}
	out := slices.Clone(cs)
	slices.SortFunc(out, Compare)
	return slices.Compact(out)
}

// Join prints cs as Parse and ParseList read them, comma-separated.
func Join(cs []Community) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, ",")
}
