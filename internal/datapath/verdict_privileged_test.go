package datapath

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/roost-net/roost/internal/testenv"
)

// The fixture: endpoint 100 behind lo (ifindex 1) with addresses 10.0.0.10
// and fd00::10, and a policy that exercises each kind of rule.
const (
	testEndpoint = 100

	idFrontend Identity = 1000 // allowed: tcp/80, tcp/8000-8099, udp/53, sctp/3868, echo
	idAdmin    Identity = 1001 // allowed: everything but tcp/22 (ingressDeny)
	idBlocked  Identity = 1002 // ingressDeny: everything
	idCIDR     Identity = 2000 // fromCIDR 10.0.2.0/24, fd00:2::/64 ...
	idExcept   Identity = 2001 // ... except 10.0.2.128/25, fd00:2:0:0:8000::/65
	idNoTable  Identity = 3000 // policy entry pointing at a table never written
)

var (
	podV4 = netip.MustParseAddr("10.0.0.10")
	podV6 = netip.MustParseAddr("fd00::10")
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// tables: index -> rules. Wildcard (L4-only) rules are folded into each
// specific entry, as the policy compiler must.
var (
	wildcardRules = []Rule{{Proto: ProtoTCP, FirstPort: 443, LastPort: 443}}
	fixtureTables = map[uint32][]Rule{
		1: wildcardRules,
		2: append(slices.Clone(wildcardRules),
			Rule{Proto: ProtoTCP, FirstPort: 80, LastPort: 80},
			Rule{Proto: ProtoTCP, FirstPort: 8000, LastPort: 8099},
			Rule{Proto: ProtoUDP, FirstPort: 53, LastPort: 53},
			Rule{Proto: ProtoSCTP, FirstPort: 3868, LastPort: 3868},
			Rule{Proto: ProtoICMP, FirstPort: 8, LastPort: 8},
			Rule{Proto: ProtoICMPv6, FirstPort: 128, LastPort: 128}),
		3: append(slices.Clone(wildcardRules), AnyProtocol(),
			Rule{Proto: ProtoTCP, FirstPort: 22, LastPort: 22, Deny: true}),
		4: append(slices.Clone(wildcardRules), Rule{Proto: ProtoAny, LastPort: 65535, Deny: true}),
		5: append(slices.Clone(wildcardRules), AnyProtocol()),
	}
	// fixturePolicy: the entries, each counted at a slot of its own.
	fixturePolicy = map[Identity]PolicyEntry{
		IdentityAny: {Table: 1, Counter: 1}, idFrontend: {Table: 2, Counter: 2}, idAdmin: {Table: 3, Counter: 3},
		idBlocked: {Table: 4, Counter: 4}, idCIDR: {Table: 5, Counter: 5}, idNoTable: {Table: 7, Counter: 7},
	}
	fixtureIPCache = map[string]Identity{
		"10.0.1.1/32": idFrontend, "fd00:1::1/128": idFrontend,
		"10.0.1.2/32": idAdmin, "fd00:1::2/128": idAdmin,
		"10.0.1.3/32": idBlocked, "fd00:1::3/128": idBlocked,
		"10.0.1.4/32": IdentityUnknown,
		"10.0.2.0/24": idCIDR, "fd00:2::/64": idCIDR,
		"10.0.2.128/25": idExcept, "fd00:2:0:0:8000::/65": idExcept,
		"10.0.3.1/32":  idNoTable,
		"10.0.0.10/32": 5000, "fd00::10/128": 5000, // the pod itself
	}
)

func setupFixture(t testing.TB, d *testDatapath) {
	t.Helper()
	for idx, rules := range fixtureTables {
		vt, err := NewVerdictTable(rules)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.maps.SetVerdictTable(idx, vt); err != nil {
			t.Fatal(err)
		}
	}
	for id, e := range fixturePolicy {
		if err := d.maps.ResetEntryCounter(e.Counter); err != nil {
			t.Fatal(err)
		}
		if err := d.maps.SetPolicy(testEndpoint, id, e); err != nil {
			t.Fatal(err)
		}
	}
	for p, id := range fixtureIPCache {
		if err := d.maps.SetIdentity(netip.MustParsePrefix(p), id); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.maps.SetEndpoint(testIfindex, Endpoint{ID: testEndpoint, EnforceIngress: true}); err != nil {
		t.Fatal(err)
	}
}

func tcp(src, dst string, dport uint16) testPacket {
	return testPacket{src: ip(src), dst: ip(dst), proto: ProtoTCP, sport: 40000, dport: dport, tcpFlags: tcpSYN}
}

func udp(src, dst string, dport uint16) testPacket {
	return testPacket{src: ip(src), dst: ip(dst), proto: ProtoUDP, sport: 40000, dport: dport}
}

func truncate(b []byte, n int) []byte { return b[:n] }

// TestPrivilegedVerdicts runs single packets through to_endpoint and checks
// the verdict, the counter and the drop event of every verdict path.
func TestPrivilegedVerdicts(t *testing.T) {
	testenv.Privileged(t)
	d := loadDatapath(t)
	setupFixture(t, d)

	nineDstOpts := []uint8{60, 60, 60, 60, 60, 60, 60, 60, 60}
	ipv4BadIHL := tcp("10.0.1.1", "10.0.0.10", 80).frame()
	ipv4BadIHL[14] = 0x44
	ipv4BadVersion := tcp("10.0.1.1", "10.0.0.10", 80).frame()
	ipv4BadVersion[14] = 0x65
	ipv4ShortTotLen := tcp("10.0.1.1", "10.0.0.10", 80).frame()
	ipv4ShortTotLen[16], ipv4ShortTotLen[17] = 0, 19
	ipv4LongIHL := tcp("10.0.1.1", "10.0.0.10", 80).frame()
	ipv4LongIHL[14] = 0x4F                      // 60-byte header ...
	ipv4LongIHL[16], ipv4LongIHL[17] = 0, 60+20 // ... that the total length allows
	tinyFirstFrag := testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoTCP, sport: 40000, dport: 80,
		frag: true, fragID: 9, moreFrags: true}.frame()

	tests := []struct {
		name     string
		pkt      testPacket
		frame    []byte    // instead of pkt.frame(); pkt then says what parses
		endpoint *Endpoint // instead of the fixture's
		noEP     bool      // no endpoint entry at all
		reason   Reason
		identity Identity // source identity in the drop event
		event    *DropEvent
	}{
		// Allowed, denied, L4-only, deny precedence.
		{name: "v4 allowed port", pkt: tcp("10.0.1.1", "10.0.0.10", 80), reason: ReasonPassPolicy},
		{name: "v4 port range first", pkt: tcp("10.0.1.1", "10.0.0.10", 8000), reason: ReasonPassPolicy},
		{name: "v4 port range last", pkt: tcp("10.0.1.1", "10.0.0.10", 8099), reason: ReasonPassPolicy},
		{name: "v4 port after range", pkt: tcp("10.0.1.1", "10.0.0.10", 8100), reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "v4 port before range", pkt: tcp("10.0.1.1", "10.0.0.10", 7999), reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "v4 allowed port wrong protocol", pkt: udp("10.0.1.1", "10.0.0.10", 80), reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "udp allowed", pkt: udp("10.0.1.1", "10.0.0.10", 53), reason: ReasonPassPolicy},
		{name: "sctp allowed", pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoSCTP, sport: 3868, dport: 3868}, reason: ReasonPassPolicy},
		{name: "sctp other port denied", pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoSCTP, sport: 3868, dport: 3869}, reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "icmp echo allowed by type", pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoICMP, icmpType: 8, icmpID: 7}, reason: ReasonPassPolicy},
		{name: "icmp timestamp denied", pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoICMP, icmpType: 13}, reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "L4-only rule for identity with own rules", pkt: tcp("10.0.1.1", "10.0.0.10", 443), reason: ReasonPassPolicy},
		{name: "L4-only rule for world", pkt: tcp("192.0.2.9", "10.0.0.10", 443), reason: ReasonPassPolicy},
		{name: "world default deny", pkt: tcp("192.0.2.9", "10.0.0.10", 80), reason: ReasonDropPolicyDefault, identity: IdentityWorld},
		{name: "unknown identity gets L4-only rules", pkt: tcp("10.0.1.4", "10.0.0.10", 443), reason: ReasonPassPolicy},
		{name: "unknown identity default deny", pkt: tcp("10.0.1.4", "10.0.0.10", 80), reason: ReasonDropPolicyDefault, identity: IdentityUnknown},
		{name: "deny port beats L3 allow", pkt: tcp("10.0.1.2", "10.0.0.10", 22), reason: ReasonDropPolicyDeny, identity: idAdmin},
		{name: "L3 allow other port", pkt: tcp("10.0.1.2", "10.0.0.10", 23), reason: ReasonPassPolicy},
		{name: "L3 allow denied port other protocol", pkt: udp("10.0.1.2", "10.0.0.10", 22), reason: ReasonPassPolicy},
		{name: "deny all beats L4-only allow", pkt: tcp("10.0.1.3", "10.0.0.10", 443), reason: ReasonDropPolicyDeny, identity: idBlocked},
		{name: "table never written denies", pkt: tcp("10.0.3.1", "10.0.0.10", 443), reason: ReasonDropPolicyDefault, identity: idNoTable},

		// CIDR with except.
		{name: "cidr allowed", pkt: tcp("10.0.2.5", "10.0.0.10", 5432), reason: ReasonPassPolicy},
		{name: "cidr except denied", pkt: tcp("10.0.2.200", "10.0.0.10", 5432), reason: ReasonDropPolicyDefault, identity: idExcept},
		{name: "cidr except gets L4-only rules", pkt: tcp("10.0.2.200", "10.0.0.10", 443), reason: ReasonPassPolicy},
		{name: "v6 cidr allowed", pkt: tcp("fd00:2::5", "fd00::10", 5432), reason: ReasonPassPolicy},
		{name: "v6 cidr except denied", pkt: tcp("fd00:2:0:0:8000::1", "fd00::10", 5432), reason: ReasonDropPolicyDefault, identity: idExcept},

		// IPv6.
		{name: "v6 allowed port", pkt: tcp("fd00:1::1", "fd00::10", 80), reason: ReasonPassPolicy},
		{name: "v6 default deny", pkt: tcp("fd00:1::1", "fd00::10", 81), reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "v6 deny precedence", pkt: tcp("fd00:1::2", "fd00::10", 22), reason: ReasonDropPolicyDeny, identity: idAdmin},
		{name: "v6 world", pkt: tcp("2001:db8::1", "fd00::10", 80), reason: ReasonDropPolicyDefault, identity: IdentityWorld},
		{name: "icmpv6 echo allowed", pkt: testPacket{src: ip("fd00:1::1"), dst: podV6, proto: ProtoICMPv6, icmpType: 128, icmpID: 9}, reason: ReasonPassPolicy},
		{name: "v6 extension headers walked", pkt: testPacket{src: ip("fd00:1::1"), dst: podV6, proto: ProtoTCP, sport: 1, dport: 80, ext: []uint8{0, 60, 43, 51}}, reason: ReasonPassPolicy},
		{name: "v6 port after extension header", pkt: testPacket{src: ip("fd00:1::1"), dst: podV6, proto: ProtoTCP, sport: 1, dport: 81, ext: []uint8{0}}, reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "v6 too many extension headers", frame: testPacket{src: ip("fd00:2::5"), dst: podV6, proto: ProtoTCP, dport: 80, ext: nineDstOpts}.frame(), pkt: testPacket{src: ip("fd00:2::5"), dst: podV6}, reason: ReasonDropExtHeaders},
		{name: "v6 other protocol L3 allowed", pkt: testPacket{src: ip("fd00:2::5"), dst: podV6, proto: 47}, reason: ReasonPassPolicy},
		{name: "v6 other protocol needs L3 rule", pkt: testPacket{src: ip("fd00:1::1"), dst: podV6, proto: 47}, reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "v6 no next header", pkt: testPacket{src: ip("fd00:1::1"), dst: podV6, proto: 59}, reason: ReasonDropPolicyDefault, identity: idFrontend},
		{name: "v6 neighbor solicitation", pkt: testPacket{src: ip("fe80::1"), dst: ip("ff02::1:ff00:10"), proto: ProtoICMPv6, icmpType: 135, hopLimit: 255}, reason: ReasonPassNDP},
		{name: "v6 neighbor advertisement", pkt: testPacket{src: ip("fe80::1"), dst: podV6, proto: ProtoICMPv6, icmpType: 136, hopLimit: 255}, reason: ReasonPassNDP},
		{name: "v6 routed neighbor solicitation", pkt: testPacket{src: ip("fe80::1"), dst: podV6, proto: ProtoICMPv6, icmpType: 135, hopLimit: 64}, reason: ReasonDropPolicyDefault, identity: IdentityWorld},
		{name: "v6 router advertisement is policy", pkt: testPacket{src: ip("fe80::1"), dst: podV6, proto: ProtoICMPv6, icmpType: 134, hopLimit: 255}, reason: ReasonDropPolicyDefault, identity: IdentityWorld},

		// Fragments without their first fragment (see TestPrivilegedFragments for sequences).
		{name: "later fragment with L3 allow", pkt: testPacket{src: ip("10.0.2.5"), dst: podV4, proto: ProtoTCP, frag: true, fragID: 1, fragOffset: 100, payload: make([]byte, 16)}, reason: ReasonPassPolicy},
		{name: "later fragment port rules only", pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoTCP, frag: true, fragID: 2, fragOffset: 100, payload: make([]byte, 16)}, reason: ReasonDropFragment, identity: idFrontend},
		{name: "later fragment L3 allow with a denied port", pkt: testPacket{src: ip("10.0.1.2"), dst: podV4, proto: ProtoTCP, frag: true, fragID: 3, fragOffset: 100, payload: make([]byte, 16)}, reason: ReasonDropFragment, identity: idAdmin},
		{name: "later fragment L3 allow no denied port of protocol", pkt: testPacket{src: ip("10.0.1.2"), dst: podV4, proto: ProtoUDP, frag: true, fragID: 4, fragOffset: 100, payload: make([]byte, 16)}, reason: ReasonPassPolicy},
		{name: "later fragment denied identity", pkt: testPacket{src: ip("10.0.1.3"), dst: podV4, proto: ProtoUDP, frag: true, fragID: 5, fragOffset: 100, payload: make([]byte, 16)}, reason: ReasonDropPolicyDeny, identity: idBlocked},
		{name: "v6 later fragment with L3 allow", pkt: testPacket{src: ip("fd00:2::5"), dst: podV6, proto: ProtoUDP, frag: true, fragID: 6, fragOffset: 100, payload: make([]byte, 16)}, reason: ReasonPassPolicy},
		{name: "v6 later fragment port rules only", pkt: testPacket{src: ip("fd00:1::1"), dst: podV6, proto: ProtoUDP, frag: true, fragID: 7, fragOffset: 100, payload: make([]byte, 16)}, reason: ReasonDropFragment, identity: idFrontend},
		{name: "first fragment too short for tcp header", frame: truncate(tinyFirstFrag, len(tinyFirstFrag)-8), pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoTCP}, reason: ReasonDropMalformed},

		// Not IP, malformed, unknown endpoint, not enforced.
		{name: "arp passes", frame: rawFrame(0x0806, make([]byte, 28)), reason: ReasonPassNonIP},
		{name: "lldp passes", frame: rawFrame(0x88CC, make([]byte, 28)), reason: ReasonPassNonIP},
		{name: "vlan tagged dropped", frame: rawFrame(0x8100, append([]byte{0, 5, 8, 0}, tcp("10.0.1.1", "10.0.0.10", 80).ip()...)), reason: ReasonDropVLAN},
		{name: "qinq tagged dropped", frame: rawFrame(0x88A8, make([]byte, 40)), reason: ReasonDropVLAN},
		// BPF_PROG_TEST_RUN refuses frames shorter than their L3 header,
		// so truncation is tested from the L4 header on.
		{name: "ipv4 options beyond the packet", frame: ipv4LongIHL, pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoTCP}, reason: ReasonDropMalformed},
		{name: "ipv4 no tcp header", frame: truncate(tcp("10.0.1.1", "10.0.0.10", 80).frame(), 14+20), pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoTCP}, reason: ReasonDropMalformed},
		{name: "ipv4 ihl below 5", frame: ipv4BadIHL, reason: ReasonDropMalformed},
		{name: "ipv4 version 6", frame: ipv4BadVersion, reason: ReasonDropMalformed},
		{name: "ipv4 total length below header", frame: ipv4ShortTotLen, reason: ReasonDropMalformed},
		{name: "tcp truncated header", frame: truncate(tcp("10.0.1.1", "10.0.0.10", 80).frame(), 14+20+10), pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoTCP}, reason: ReasonDropMalformed},
		{name: "ipv6 no udp header", frame: truncate(udp("fd00:1::1", "fd00::10", 53).frame(), 14+40+4), pkt: testPacket{src: ip("fd00:1::1"), dst: podV6, proto: ProtoUDP}, reason: ReasonDropMalformed},
		{name: "icmp truncated header", frame: truncate(testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoICMP, icmpType: 8}.frame(), 14+20+4), pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoICMP}, reason: ReasonDropMalformed},
		{name: "ipv6 truncated extension header", frame: truncate(testPacket{src: ip("fd00:1::1"), dst: podV6, proto: ProtoTCP, ext: []uint8{0}}.frame(), 14+40+1), pkt: testPacket{src: ip("fd00:1::1"), dst: podV6}, reason: ReasonDropMalformed},
		{name: "unknown endpoint", pkt: tcp("10.0.1.1", "10.0.0.10", 80), noEP: true, reason: ReasonDropUnknownEndpoint},
		{name: "unknown endpoint non-ip", frame: rawFrame(0x0806, make([]byte, 28)), noEP: true, reason: ReasonDropUnknownEndpoint},
		{name: "not enforced", pkt: tcp("192.0.2.9", "10.0.0.10", 80), endpoint: &Endpoint{ID: testEndpoint}, reason: ReasonPassNotEnforced},
		{name: "not enforced malformed", frame: ipv4BadIHL, endpoint: &Endpoint{ID: testEndpoint}, reason: ReasonPassNotEnforced},
		{name: "not enforced vlan", frame: rawFrame(0x8100, make([]byte, 40)), endpoint: &Endpoint{ID: testEndpoint}, reason: ReasonPassNotEnforced},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := Endpoint{ID: testEndpoint, EnforceIngress: true}
			if tc.endpoint != nil {
				ep = *tc.endpoint
			}
			if tc.noEP {
				if err := d.maps.DeleteEndpoint(testIfindex); err != nil {
					t.Fatal(err)
				}
			} else if err := d.maps.SetEndpoint(testIfindex, ep); err != nil {
				t.Fatal(err)
			}
			frame := tc.frame
			if frame == nil {
				frame = tc.pkt.frame()
			}
			// The drop event carries what the parser learned: tc.pkt
			// (for a raw frame, only its parsed part), tc.identity.
			var want *DropEvent
			if tc.reason.Dropped() {
				want = &DropEvent{Endpoint: testEndpoint, Ifindex: testIfindex}
				if tc.pkt.src.IsValid() {
					want = dropOf(tc.pkt, testEndpoint, tc.identity)
				}
				if tc.noEP {
					want.Endpoint = 0
				}
			}
			// The first run decides through the maps and fills the flow
			// cache; the second must decide the same from the cache.
			for _, run := range []string{"first", "again"} {
				t.Run(run, func(t *testing.T) {
					d.run(t, d.objs.ToEndpoint, frame).expect(t, frame, tc.reason, want)
				})
			}
		})
	}
}

// TestPrivilegedTableSearch checks the kernel's binary search against
// VerdictTable.Lookup, for tables of every interesting size up to the
// largest, at each bound's first port and the port before it.
func TestPrivilegedTableSearch(t *testing.T) {
	testenv.Privileged(t)
	d := loadDatapath(t)
	setupFixture(t, d)
	// Tables of k single TCP ports from 1000 on, cycling allow, deny and
	// no rule: about one bound per port; the largest ends at MaxBounds.
	table := func(k int) VerdictTable {
		var rules []Rule
		for i := range k {
			port := uint16(1000 + i)
			switch i % 3 {
			case 0:
				rules = append(rules, Rule{Proto: ProtoTCP, FirstPort: port, LastPort: port})
			case 1:
				rules = append(rules, Rule{Proto: ProtoTCP, FirstPort: port, LastPort: port, Deny: true})
			}
		}
		vt, _ := NewVerdictTable(rules) // too large: Len() 0
		return vt
	}
	largest := 1
	for table(largest+1).Len() > 0 {
		largest++
	}
	if table(largest).Len() < MaxBounds-1 {
		t.Fatalf("largest table has %d bounds", table(largest).Len())
	}
	tables := []VerdictTable{allowAllTable(t)}
	for _, k := range []int{1, 2, 4, 5, 6, 7, 8, 15, 16, 17, 64, 127, 128, 129, largest} {
		tables = append(tables, table(k))
	}
	var spaced []Rule // MaxBounds exactly: allowed ports 1000, 1002, ...
	for i := range uint16(MaxBounds / 2) {
		spaced = append(spaced, Rule{Proto: ProtoTCP, FirstPort: 1000 + 2*i, LastPort: 1000 + 2*i})
	}
	full, err := NewVerdictTable(spaced)
	if err != nil || full.Len() != MaxBounds {
		t.Fatalf("full table: %d bounds, %v", full.Len(), err)
	}
	tables = append(tables, full)
	for i, vt := range tables {
		t.Run(fmt.Sprintf("%d/%d bounds", i, vt.Len()), func(t *testing.T) {
			if err := d.maps.SetVerdictTable(2, vt); err != nil {
				t.Fatal(err)
			}
			probes := []uint16{0, 999, 65535}
			for _, b := range vt.bounds {
				if start := b >> 8; start>>16 == uint32(ProtoTCP) {
					probes = append(probes, uint16(start), uint16(start)-1)
				}
			}
			for _, p := range probes {
				reason := map[Verdict]Reason{VerdictAllow: ReasonPassPolicy, VerdictDeny: ReasonDropPolicyDeny, VerdictNone: ReasonDropPolicyDefault}[vt.Lookup(ProtoTCP, p)]
				pkt := tcp("10.0.1.1", "10.0.0.10", p)
				frame := pkt.frame()
				var want *DropEvent
				if reason.Dropped() {
					want = dropOf(pkt, testEndpoint, idFrontend)
				}
				r := d.run(t, d.objs.ToEndpoint, frame)
				if _, ok := r.reasons[reason]; !ok {
					t.Errorf("%d bounds, port %d: counted %v, want %v", vt.Len(), p, r.reasons, reason)
					continue
				}
				r.expect(t, frame, reason, want)
			}
		})
	}
	// Restore the fixture's table.
	vt, err := NewVerdictTable(fixtureTables[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := d.maps.SetVerdictTable(2, vt); err != nil {
		t.Fatal(err)
	}
}
