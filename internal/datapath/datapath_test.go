package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/roost-net/roost/bpf"
)

func TestReasons(t *testing.T) {
	for r, name := range reasonNames {
		if r.String() != name {
			t.Errorf("%d: String() = %q, want %q", r, r.String(), name)
		}
		if int(r) >= numReasons {
			t.Errorf("%v = %d: beyond the counters map (%d)", r, r, numReasons)
		}
		wantDropped := name[:5] == "drop-"
		if r.Dropped() != wantDropped {
			t.Errorf("%v.Dropped() = %v, want %v", r, r.Dropped(), wantDropped)
		}
	}
	if got := Reason(99).String(); got != "reason-99" {
		t.Errorf("unknown reason: %q", got)
	}
}

// TestSpecMatchesGoTypes checks the committed object against the Go types
// that encode its map entries: a stale generation shows here first.
func TestSpecMatchesGoTypes(t *testing.T) {
	spec, err := bpf.LoadPolicy()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		key, value any
	}{
		{bpf.PolicyMapEndpoints, uint32(0), bpf.PolicyEndpointInfo{}},
		{bpf.PolicyMapIpcacheHost4, bpf.PolicyIpcacheHost4{}, bpf.PolicyIpcacheValue{}},
		{bpf.PolicyMapIpcacheHost6, bpf.PolicyIpcacheHost6{}, bpf.PolicyIpcacheValue{}},
		{bpf.PolicyMapIpcacheLpm4, bpf.PolicyIpcacheLpm4{}, bpf.PolicyIpcacheValue{}},
		{bpf.PolicyMapIpcacheLpm6, bpf.PolicyIpcacheLpm6{}, bpf.PolicyIpcacheValue{}},
		{bpf.PolicyMapPolicy, bpf.PolicyPolicyKey{}, bpf.PolicyPolicyValue{}},
		{bpf.PolicyMapVerdicts, uint32(0), bpf.PolicyVerdictTable{}},
		{bpf.PolicyMapConntrack, bpf.PolicyCtKey{}, bpf.PolicyCtValue{}},
		{bpf.PolicyMapFragments, bpf.PolicyFragKey{}, bpf.PolicyFragValue{}},
		{bpf.PolicyMapCounters, uint32(0), bpf.PolicyCounter{}},
		{bpf.PolicyMapPolicyCounters, uint32(0), bpf.PolicyPolicyCounter{}},
		{bpf.PolicyMapFlowCache, uint32(0), bpf.PolicyFlowEntry{}},
	}
	for _, tc := range tests {
		m := spec.Maps[tc.name]
		if m == nil {
			t.Errorf("no map %s", tc.name)
			continue
		}
		if k, v := binary.Size(tc.key), binary.Size(tc.value); int(m.KeySize) != k || int(m.ValueSize) != v {
			t.Errorf("%s: key %d value %d bytes, Go types %d and %d", tc.name, m.KeySize, m.ValueSize, k, v)
		}
	}
	if n := spec.Maps[bpf.PolicyMapCounters].MaxEntries; int(n) != numReasons {
		t.Errorf("counters: %d entries, want %d", n, numReasons)
	}
	if n := spec.Maps[bpf.PolicyMapPolicyCounters].MaxEntries; int(n) != MaxEntryCounters {
		t.Errorf("policy_counters: %d entries, want %d", n, MaxEntryCounters)
	}
	if n := len(bpf.PolicyPolicyCounter{}.Verdicts); n != int(VerdictDeny)+1 {
		t.Errorf("policy_counter: %d verdict slots, want one per verdict (%d)", n, VerdictDeny+1)
	}
	if n := spec.Maps[bpf.PolicyMapFlowCache].MaxEntries; n != uint32(bpf.PolicyFlowCacheLimitsFLOW_CACHE_SLOTS) || n&(n-1) != 0 {
		t.Errorf("flow_cache: %d entries, want FLOW_CACHE_SLOTS, a power of two", n)
	}
}

func TestIPCacheKey(t *testing.T) {
	tests := []struct {
		prefix string
		which  ipcacheMap
		key    any
	}{
		{"10.0.0.1/32", ipcacheHost4, bpf.PolicyIpcacheHost4{Addr: [4]uint8{10, 0, 0, 1}}},
		{"10.0.2.7/24", ipcacheLPM4, bpf.PolicyIpcacheLpm4{Prefixlen: 24, Addr: [4]uint8{10, 0, 2, 0}}},
		{"0.0.0.0/0", ipcacheLPM4, bpf.PolicyIpcacheLpm4{}},
		{"fd00::1/128", ipcacheHost6, bpf.PolicyIpcacheHost6{Addr: netip.MustParseAddr("fd00::1").As16()}},
		{"fd00:2::ff/64", ipcacheLPM6, bpf.PolicyIpcacheLpm6{Prefixlen: 64, Addr: netip.MustParseAddr("fd00:2::").As16()}},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			which, key, err := ipcacheKey(netip.MustParsePrefix(tc.prefix))
			if err != nil {
				t.Fatal(err)
			}
			if which != tc.which || key != tc.key {
				t.Errorf("got %v %+v, want %v %+v", which, key, tc.which, tc.key)
			}
		})
	}
	for _, bad := range []netip.Prefix{{}, netip.MustParsePrefix("::ffff:10.0.0.1/128")} {
		if _, _, err := ipcacheKey(bad); err == nil {
			t.Errorf("ipcacheKey(%v): no error", bad)
		}
	}
}

func TestParseDropEvent(t *testing.T) {
	raw := func(e bpf.PolicyDropEvent) []byte {
		b, err := binary.Append(nil, binary.NativeEndian, e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v4 := bpf.PolicyDropEvent{Time: 5e9, SrcIdentity: 1000, Endpoint: 100, Ifindex: 7, Len: 60,
		Sport: 40000, Dport: 81, Proto: 6, Family: 4, Reason: uint8(ReasonDropPolicyDefault)}
	copy(v4.Src[:], []byte{10, 0, 1, 1})
	copy(v4.Dst[:], []byte{10, 0, 0, 10})
	v6 := bpf.PolicyDropEvent{Proto: 58, Family: 6, IcmpType: 128, Sport: 9, Dport: 9, Reason: uint8(ReasonDropPolicyDeny)}
	v6.Src = netip.MustParseAddr("fd00:1::1").As16()
	v6.Dst = netip.MustParseAddr("fd00::10").As16()
	tests := []struct {
		name string
		raw  []byte
		want DropEvent
		bad  bool
	}{
		{name: "ipv4", raw: raw(v4), want: DropEvent{Time: 5 * time.Second, Src: netip.MustParseAddr("10.0.1.1"), Dst: netip.MustParseAddr("10.0.0.10"),
			SrcPort: 40000, DstPort: 81, Proto: 6, SrcIdentity: 1000, Endpoint: 100, Ifindex: 7, Len: 60, Reason: ReasonDropPolicyDefault}},
		{name: "ipv6 echo", raw: raw(v6), want: DropEvent{Src: netip.MustParseAddr("fd00:1::1"), Dst: netip.MustParseAddr("fd00::10"),
			SrcPort: 9, DstPort: 9, Proto: 58, ICMPType: 128, Reason: ReasonDropPolicyDeny}},
		{name: "not ip", raw: raw(bpf.PolicyDropEvent{Reason: uint8(ReasonDropVLAN), Ifindex: 3}), want: DropEvent{Reason: ReasonDropVLAN, Ifindex: 3}},
		{name: "short", raw: raw(v4)[:40], bad: true},
		{name: "unknown family", raw: raw(bpf.PolicyDropEvent{Family: 5}), bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDropEvent(tc.raw)
			if (err != nil) != tc.bad {
				t.Fatalf("error %v, want error %v", err, tc.bad)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); !tc.bad && diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestConnEncoding(t *testing.T) {
	conns := []Conn{
		{Endpoint: 100, Local: netip.MustParseAddrPort("10.0.0.10:40000"), Peer: netip.MustParseAddrPort("198.51.100.7:443"),
			Proto: ProtoTCP, Expires: time.Hour, Flags: CTEstablished | CTTxFIN},
		{Endpoint: 7, Local: netip.MustParseAddrPort("[fd00::10]:5"), Peer: netip.MustParseAddrPort("[2001:db8::1]:5"), Proto: ProtoICMPv6},
	}
	for _, c := range conns {
		k, v := encodeConn(c)
		got, err := decodeConn(k, v)
		if err != nil {
			t.Fatal(err)
		}
		if got != c {
			t.Errorf("round trip: %+v, want %+v", got, c)
		}
	}
	// Ports are stored as in the packet: network byte order.
	k, _ := encodeConn(conns[0])
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], k.EpPort)
	if binary.BigEndian.Uint16(b[:]) != 40000 || k.Family != 4 || k.EpAddr != [16]uint8{10, 0, 0, 10} {
		t.Errorf("key %+v: want port 40000 in network order, family 4, address in the first 4 bytes", k)
	}
	if _, err := decodeConn(bpf.PolicyCtKey{Family: 9}, bpf.PolicyCtValue{}); err == nil {
		t.Error("unknown family: no error")
	}
	if got := (CTEstablished | CTClosed).String(); got != "established|closed" {
		t.Errorf("flags: %q", got)
	}
	if got := CTFlags(0).String(); got != "-" {
		t.Errorf("no flags: %q", got)
	}
}
