package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// identitiesOf compiles endpoints without policies and returns each
// endpoint's identity by name.
func identitiesOf(tb testing.TB, eps []Endpoint, opts ...Option) (map[string]Identity, Resolved) {
	tb.Helper()
	res, err := Compile(nil, eps, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]Identity)
	for _, id := range res.Identities {
		for _, name := range id.Endpoints {
			out[name] = id.ID
		}
	}
	return out, res
}

// TestIdentityValues pins the hash: changing it renumbers every identity
// on every node at upgrade, which must be a deliberate decision.
func TestIdentityValues(t *testing.T) {
	tests := []struct {
		labels map[string]string
		want   Identity
	}{
		{lbl("app", "employee"), 581514342},
		{lbl("app", "employee", "pod-template-hash", "abc"), 581514342},
		{lbl("app", "protected-db"), 1046076533},
		{lbl(), hashedIdentity("labels:", MinLabelIdentity, MaxLabelIdentity)},
	}
	for _, tt := range tests {
		got, _ := identitiesOf(t, []Endpoint{{Name: "x", Labels: tt.labels}})
		if got["x"] != tt.want {
			t.Errorf("identity of %v = %d, want %d", tt.labels, got["x"], tt.want)
		}
	}
	if got := hashedIdentity("cidr:10.0.0.0/8", MinCIDRIdentity, MaxCIDRIdentity); got != 3440139813 {
		t.Errorf("CIDR identity of 10.0.0.0/8 = %d, want 3440139813", got)
	}
}

// TestIdentityStable checks that identities depend on security labels
// only: not on endpoint order, names, addresses, non-security labels or
// what other endpoints exist.
func TestIdentityStable(t *testing.T) {
	var eps []Endpoint
	for i := range 200 {
		eps = append(eps, Endpoint{
			Name:   fmt.Sprintf("ep%d", i),
			IPs:    addrs(fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)),
			Labels: lbl("app", fmt.Sprintf("app%d", i%50), "tier", fmt.Sprintf("t%d", i%3), "pod-template-hash", fmt.Sprintf("h%d", i)),
		})
	}
	base, _ := identitiesOf(t, eps)

	reversed := slices.Clone(eps)
	slices.Reverse(reversed)
	again, _ := identitiesOf(t, reversed)
	if diff := cmp.Diff(base, again); diff != "" {
		t.Errorf("identities depend on endpoint order (-want +got):\n%s", diff)
	}

	// A subset, with other names and addresses, keeps the same numbers.
	alone, _ := identitiesOf(t, []Endpoint{{Name: "other", IPs: addrs("192.0.2.1"), Labels: eps[7].Labels}})
	if alone["other"] != base["ep7"] {
		t.Errorf("ep7's labels alone get %d, among others %d", alone["other"], base["ep7"])
	}

	// Same security labels, same identity; different, different.
	byLabels := make(map[string]Identity)
	for i, ep := range eps {
		key := canonicalLabels(SecurityLabels(ep.Labels))
		id := base[ep.Name]
		if prev, ok := byLabels[key]; ok && prev != id {
			t.Errorf("%s: labels %s got %d and %d", ep.Name, key, prev, id)
		}
		byLabels[key] = id
		if !id.IsLabels() || id.IsCIDR() {
			t.Errorf("ep%d: identity %d out of the label range", i, id)
		}
	}
	if n := len(slices.Compact(slices.Sorted(maps.Values(byLabels)))); n != len(byLabels) {
		t.Errorf("%d label sets share %d identities", len(byLabels), n)
	}
	if len(byLabels) != 150 {
		t.Errorf("got %d label sets, want 150 (lcm of 50 and 3)", len(byLabels))
	}
}

// TestAllocate checks collision resolution with a hash that collides on
// purpose.
func TestAllocate(t *testing.T) {
	natural := func(k string) Identity {
		return map[string]Identity{"a": 10, "b": 10, "c": 11, "d": 19, "e": 19, "f": 19}[k]
	}
	tests := []struct {
		name string
		keys []string
		prev map[string]Identity
		want map[string]Identity
	}{
		{
			name: "no collision",
			keys: []string{"a", "c", "d"},
			want: map[string]Identity{"a": 10, "c": 11, "d": 19},
		},
		{
			name: "smaller key keeps the slot, the loser skips a natural slot",
			keys: []string{"a", "b", "c"},
			want: map[string]Identity{"a": 10, "b": 12, "c": 11},
		},
		{
			name: "probing wraps at the top of the range",
			keys: []string{"d", "e", "f"},
			want: map[string]Identity{"d": 19, "e": 20, "f": 10},
		},
		{
			name: "previous owner keeps its number",
			keys: []string{"a", "b"},
			prev: map[string]Identity{"b": 10},
			want: map[string]Identity{"a": 11, "b": 10},
		},
		{
			name: "previous numbers out of range or taken are ignored",
			keys: []string{"a", "c"},
			prev: map[string]Identity{"a": 99, "c": 10, "gone": 11},
			want: map[string]Identity{"a": 11, "c": 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := allocate(tt.keys, 10, 20, natural, tt.prev)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("allocate (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWithPrevious uses a real SHA-256 collision between app=w13261 and
// app=w52971: without the previous table the newcomer, being lexically
// smaller, takes the number; with it, the existing label set keeps it.
func TestWithPrevious(t *testing.T) {
	const shared = Identity(587510766)
	old := Endpoint{Name: "old", IPs: addrs("10.0.0.1"), Labels: lbl("app", "w52971")}
	newcomer := Endpoint{Name: "new", IPs: addrs("10.0.0.2"), Labels: lbl("app", "w13261")}

	first, prev := identitiesOf(t, []Endpoint{old})
	if first["old"] != shared {
		t.Fatalf("app=w52971 alone got %d, want %d", first["old"], shared)
	}
	fresh, _ := identitiesOf(t, []Endpoint{old, newcomer})
	if fresh["new"] != shared || fresh["old"] != shared+1 {
		t.Errorf("without previous: new %d, old %d; want %d, %d", fresh["new"], fresh["old"], shared, shared+1)
	}
	kept, _ := identitiesOf(t, []Endpoint{old, newcomer}, WithPrevious(prev))
	if kept["old"] != shared || kept["new"] != shared+1 {
		t.Errorf("with previous: old %d, new %d; want %d, %d", kept["old"], kept["new"], shared, shared+1)
	}
}

// TestWithPreviousCIDR checks that CIDR identities are kept too, and that
// previous identities of the wrong kind are not reused.
func TestWithPreviousCIDR(t *testing.T) {
	pols := mustParse(t, "testdata/policies/cidr.yaml")
	res, err := Compile(pols, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Pretend 10.0.0.0/8 had another number, and a label set a CIDR's.
	prev := Resolved{Identities: []IdentityInfo{
		{ID: MinCIDRIdentity + 7, Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{ID: MinCIDRIdentity + 8, Labels: lbl("app", "x")},
	}}
	again, err := Compile(pols, []Endpoint{{Name: "x", Labels: lbl("app", "x")}}, WithPrevious(prev))
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Lookup(netip.MustParseAddr("10.200.0.1")); got != MinCIDRIdentity+7 {
		t.Errorf("10.0.0.0/8 got %d, want the previous %d", got, MinCIDRIdentity+7)
	}
	if got := res.Lookup(netip.MustParseAddr("10.200.0.1")); got != 3440139813 {
		t.Errorf("10.0.0.0/8 without previous got %d", got)
	}
	for _, id := range again.Identities {
		if id.Labels["app"] == "x" && !id.ID.IsLabels() {
			t.Errorf("label set got CIDR identity %d from the previous table", id.ID)
		}
	}
}
