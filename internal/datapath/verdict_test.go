package datapath

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/roost-net/roost/bpf"
)

func TestNewVerdictTable(t *testing.T) {
	tcp := func(first, last uint16) Rule { return Rule{Proto: ProtoTCP, FirstPort: first, LastPort: last} }
	deny := func(r Rule) Rule { r.Deny = true; return r }
	type probe struct {
		proto uint8
		port  uint16
		want  Verdict
	}
	tests := []struct {
		name   string
		rules  []Rule
		bounds int
		probes []probe
	}{
		{name: "no rules", bounds: 0, probes: []probe{{ProtoTCP, 80, VerdictNone}, {0, 0, VerdictNone}, {255, 65535, VerdictNone}}},
		{name: "one port", rules: []Rule{tcp(80, 80)}, bounds: 2, probes: []probe{
			{ProtoTCP, 79, VerdictNone}, {ProtoTCP, 80, VerdictAllow}, {ProtoTCP, 81, VerdictNone}, {ProtoUDP, 80, VerdictNone}}},
		{name: "range", rules: []Rule{tcp(8000, 8099)}, bounds: 2, probes: []probe{
			{ProtoTCP, 7999, VerdictNone}, {ProtoTCP, 8000, VerdictAllow}, {ProtoTCP, 8099, VerdictAllow}, {ProtoTCP, 8100, VerdictNone}}},
		{name: "last port of the protocol", rules: []Rule{tcp(65535, 65535)}, bounds: 2, probes: []probe{
			{ProtoTCP, 65535, VerdictAllow}, {ProtoTCP + 1, 0, VerdictNone}}},
		{name: "adjacent and overlapping allows merge", rules: []Rule{tcp(80, 89), tcp(90, 99), tcp(85, 95)}, bounds: 2, probes: []probe{
			{ProtoTCP, 80, VerdictAllow}, {ProtoTCP, 99, VerdictAllow}, {ProtoTCP, 100, VerdictNone}}},
		{name: "L3 allow", rules: []Rule{AnyProtocol()}, bounds: 1, probes: []probe{
			{0, 0, VerdictAllow}, {ProtoICMP, 8, VerdictAllow}, {255, 65535, VerdictAllow}}},
		{name: "deny port beats L3 allow", rules: []Rule{AnyProtocol(), deny(tcp(22, 22))}, bounds: 3, probes: []probe{
			{ProtoTCP, 21, VerdictAllow}, {ProtoTCP, 22, VerdictDeny}, {ProtoTCP, 23, VerdictAllow}, {ProtoUDP, 22, VerdictAllow}}},
		{name: "L3 deny beats port allow", rules: []Rule{tcp(443, 443), deny(AnyProtocol())}, bounds: 1, probes: []probe{
			{ProtoTCP, 443, VerdictDeny}, {ProtoUDP, 53, VerdictDeny}}},
		{name: "deny inside allowed range", rules: []Rule{tcp(1000, 2000), deny(tcp(1500, 1599))}, bounds: 4, probes: []probe{
			{ProtoTCP, 1499, VerdictAllow}, {ProtoTCP, 1500, VerdictDeny}, {ProtoTCP, 1599, VerdictDeny}, {ProtoTCP, 1600, VerdictAllow}, {ProtoTCP, 2001, VerdictNone}}},
		{name: "deny only", rules: []Rule{deny(tcp(22, 22))}, bounds: 2, probes: []probe{
			{ProtoTCP, 22, VerdictDeny}, {ProtoTCP, 23, VerdictNone}}},
		{name: "icmp types", rules: []Rule{{Proto: ProtoICMP, FirstPort: 8, LastPort: 8}, {Proto: ProtoICMPv6, FirstPort: 128, LastPort: 128}}, bounds: 4, probes: []probe{
			{ProtoICMP, 8, VerdictAllow}, {ProtoICMP, 0, VerdictNone}, {ProtoICMPv6, 128, VerdictAllow}, {ProtoICMPv6, 129, VerdictNone}}},
		{name: "all ports of one protocol", rules: []Rule{{Proto: 47, FirstPort: 0, LastPort: 65535}}, bounds: 2, probes: []probe{
			{47, 0, VerdictAllow}, {46, 65535, VerdictNone}, {48, 0, VerdictNone}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vt, err := NewVerdictTable(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			if vt.Len() != tc.bounds {
				t.Errorf("%d bounds (%v), want %d", vt.Len(), vt, tc.bounds)
			}
			for _, p := range tc.probes {
				if got := vt.Lookup(p.proto, p.port); got != p.want {
					t.Errorf("Lookup(%d, %d) = %v, want %v (table %v)", p.proto, p.port, got, p.want, vt)
				}
			}
		})
	}
}

func TestNewVerdictTableErrors(t *testing.T) {
	many := make([]Rule, 0, 200)
	for i := range uint16(200) {
		many = append(many, Rule{Proto: ProtoTCP, FirstPort: 2 * i, LastPort: 2 * i})
	}
	tests := []struct {
		name     string
		rules    []Rule
		tooLarge bool
	}{
		{name: "any protocol with ports", rules: []Rule{{Proto: ProtoAny, FirstPort: 80, LastPort: 80}}},
		{name: "first after last", rules: []Rule{{Proto: ProtoTCP, FirstPort: 90, LastPort: 80}}},
		{name: "too many intervals", rules: many, tooLarge: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerdictTable(tc.rules)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrTableTooLarge) != tc.tooLarge {
				t.Errorf("error %v: ErrTableTooLarge %v, want %v", err, !tc.tooLarge, tc.tooLarge)
			}
		})
	}
	// The largest table that fits: MaxBounds bounds exactly.
	fit := make([]Rule, 0, MaxBounds/2)
	for i := range uint16(MaxBounds / 2) {
		fit = append(fit, Rule{Proto: ProtoUDP, FirstPort: 2 * i, LastPort: 2 * i})
	}
	if vt, err := NewVerdictTable(fit); err != nil || vt.Len() != MaxBounds {
		t.Errorf("%d single ports: %d bounds, %v; want %d, nil", len(fit), vt.Len(), err, MaxBounds)
	}
}

// TestVerdictTableMatchesRules compares random tables with the rules'
// meaning (deny over allow over nothing) at random and at edge keys.
func TestVerdictTableMatchesRules(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	protos := []uint8{ProtoAny, ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP}
	for round := range 300 {
		var rules []Rule
		for range 1 + rng.IntN(12) {
			r := Rule{Proto: protos[rng.IntN(len(protos))], Deny: rng.IntN(4) == 0}
			if r.Proto == ProtoAny {
				r.LastPort = 65535
			} else {
				a, b := uint16(rng.IntN(200)), uint16(rng.IntN(200))
				r.FirstPort, r.LastPort = min(a, b), max(a, b)
			}
			rules = append(rules, r)
		}
		vt, err := NewVerdictTable(rules)
		if err != nil {
			t.Fatal(err)
		}
		for _, proto := range []uint8{0, ProtoICMP, ProtoTCP, ProtoUDP, ProtoSCTP, 255} {
			for port := range uint16(202) {
				want := VerdictNone
				for _, r := range rules {
					if (r.Proto == ProtoAny || r.Proto == proto) && port >= r.FirstPort && port <= r.LastPort {
						if r.Deny {
							want = VerdictDeny
						} else if want == VerdictNone {
							want = VerdictAllow
						}
					}
				}
				if got := vt.Lookup(proto, port); got != want {
					t.Fatalf("round %d: rules %+v: Lookup(%d, %d) = %v, want %v (table %v)", round, rules, proto, port, got, want, vt)
				}
			}
		}
		// No two neighbouring bounds carry the same verdict.
		for i := 1; i < len(vt.bounds); i++ {
			if vt.bounds[i]&0xFF == vt.bounds[i-1]&0xFF {
				t.Fatalf("round %d: unmerged bounds %d and %d in %v", round, i-1, i, vt)
			}
		}
	}
}

func TestVerdictTableEncoding(t *testing.T) {
	vt, err := NewVerdictTable([]Rule{AnyProtocol(), {Proto: ProtoTCP, FirstPort: 22, LastPort: 22, Deny: true}})
	if err != nil {
		t.Fatal(err)
	}
	enc := vt.Encode()
	want := bpf.PolicyVerdictTable{Len: 3}
	want.Bounds[0] = 0<<8 | 1
	want.Bounds[1] = (6<<16|22)<<8 | 2
	want.Bounds[2] = (6<<16|23)<<8 | 1
	if *enc != want {
		t.Errorf("Encode = %v..., want %v...", enc.Bounds[:4], want.Bounds[:4])
	}
	back, err := DecodeVerdictTable(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != vt.String() {
		t.Errorf("round trip: %v, want %v", back, vt)
	}
	if got, want := vt.String(), "0/0-6/21 allow, 6/22-6/22 deny, 6/23- allow"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}

	bad := []struct {
		name string
		v    bpf.PolicyVerdictTable
	}{
		{name: "length over capacity", v: bpf.PolicyVerdictTable{Len: uint32(MaxBounds) + 1}},
		{name: "unknown verdict", v: bpf.PolicyVerdictTable{Len: 1, Bounds: [MaxBounds]uint32{3}}},
		{name: "not increasing", v: bpf.PolicyVerdictTable{Len: 2, Bounds: [MaxBounds]uint32{5<<8 | uint32(VerdictAllow), 5<<8 | uint32(VerdictNone)}}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeVerdictTable(&tc.v); err == nil {
				t.Error("no error")
			}
		})
	}
}
