package xdplb

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/maglev"
	"github.com/roost-net/roost/internal/testenv"
)

// XDP return codes.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ad(s string) netip.Addr     { return netip.MustParseAddr(s) }

var (
	src4 = ad("10.0.0.1")
	src6 = ad("fd00:0:0:1::1")
)

// loadLB loads the programs unpinned with entries synced.
func loadLB(t testing.TB, entries []Entry) *LB {
	t.Helper()
	testenv.Privileged(t)
	lb, err := Load(Config{Source4: src4, Source6: src6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	if err := lb.Sync(entries); err != nil {
		t.Fatal(err)
	}
	// The nodes that encapsulate in the tables' packets.
	if err := lb.SetNodes([]netip.Addr{ad("10.0.3.2"), ad("fd00:0:0:3::2")}); err != nil {
		t.Fatal(err)
	}
	return lb
}

// run runs lb_xdp on in and returns the action and the packet out.
func run(t testing.TB, prog *ebpf.Program, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+256)
	opts := ebpf.RunOptions{Data: in, DataOut: out}
	ret, err := prog.Run(&opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

func local(a string) Backend  { return Backend{Addr: ap(a), Local: true, Active: true} }
func remote(a string) Backend { return Backend{Addr: ap(a), Active: true} }

func tableEntries() []Entry {
	return []Entry{
		{Frontend: Frontend{Addr: ad("192.0.2.20"), Port: 80, Proto: TCP}, VIP: true, Backends: []Backend{local("10.244.1.10:8080")}},
		{Frontend: Frontend{Addr: ad("192.0.2.20"), Port: 53, Proto: UDP}, VIP: true, Backends: []Backend{local("10.244.1.11:5353")}},
		{Frontend: Frontend{Addr: ad("192.0.2.21"), Port: 80, Proto: TCP}, VIP: true, Backends: []Backend{remote("10.244.2.10:8080")}},
		{Frontend: Frontend{Addr: ad("192.0.2.22"), Port: 80, Proto: TCP}, VIP: true, Backends: []Backend{{Addr: ap("10.244.1.12:8080"), Local: true}}},
		{Frontend: Frontend{Addr: ad("10.0.1.2"), Port: 30080, Proto: TCP}, Backends: []Backend{remote("10.244.2.10:8080")}},
		{Frontend: Frontend{Addr: ad("0.0.0.0"), Port: 30081, Proto: TCP}, Backends: []Backend{local("10.244.1.10:8080")}},
		{Frontend: Frontend{Addr: ad("2001:db8::20"), Port: 80, Proto: TCP}, VIP: true, Backends: []Backend{local("[fd00:244:1::10]:8080")}},
		{Frontend: Frontend{Addr: ad("2001:db8::21"), Port: 80, Proto: UDP}, VIP: true, Backends: []Backend{remote("[fd00:244:2::10]:8080")}},
	}
}

// TestPrivilegedXDPTable runs lb_xdp with BPF_PROG_TEST_RUN on a packet
// for every path it has and checks the action and the packet out, headers
// and checksums.
func TestPrivilegedXDPTable(t *testing.T) {
	lb := loadLB(t, tableEntries())
	prog, _ := lb.Programs()
	client := ap("198.51.100.7:40000")
	client6 := ap("[2001:db8:ff::7]:40000")
	swapped := func(d decoded) decoded { d.ethDst, d.ethSrc = macRouter, macNode; return d }
	plain := func(d decoded) decoded { d.ethDst, d.ethSrc = macNode, macRouter; return d }
	for _, tc := range []struct {
		name   string
		in     pkt
		action uint32
		want   decoded // zero: the packet must come out unchanged
		reason string
	}{
		{name: "not a frontend: node address, port 22", in: pkt{src: client, dst: ap("10.0.1.2:22"), proto: TCP},
			action: xdpPass, reason: "pass"},
		{name: "VIP, port without a frontend", in: pkt{src: client, dst: ap("192.0.2.20:81"), proto: TCP},
			action: xdpDrop, reason: "not-served"},
		{name: "VIP, UDP where only TCP is served", in: pkt{src: client, dst: ap("192.0.2.21:80"), proto: UDP},
			action: xdpDrop, reason: "not-served"},
		{name: "VIP, first fragment", in: pkt{src: client, dst: ap("192.0.2.20:80"), proto: TCP, flags: 0x2000},
			action: xdpDrop, reason: "not-served"},
		{name: "VIP, later fragment", in: pkt{src: client, dst: ap("192.0.2.20:80"), proto: UDP, flags: 0x0010},
			action: xdpDrop, reason: "not-served"},
		{name: "TCP to a local backend: DNAT", in: pkt{src: client, dst: ap("192.0.2.20:80"), proto: TCP, tcpFlags: 0x02},
			action: xdpPass, want: plain(decoded{src: client, dst: ap("10.244.1.10:8080"), proto: TCP}), reason: "local"},
		{name: "UDP to a local backend: DNAT", in: pkt{src: client, dst: ap("192.0.2.20:53"), proto: UDP},
			action: xdpPass, want: plain(decoded{src: client, dst: ap("10.244.1.11:5353"), proto: UDP}), reason: "local"},
		{name: "UDP without checksum to a local backend", in: pkt{src: ap("198.51.100.8:1234"), dst: ap("192.0.2.20:53"), proto: UDP, udpNoCsum: true},
			action: xdpPass, want: plain(decoded{src: ap("198.51.100.8:1234"), dst: ap("10.244.1.11:5353"), proto: UDP}), reason: "local"},
		{name: "TCP to a remote backend: IPIP back to the router", in: pkt{src: client, dst: ap("192.0.2.21:80"), proto: TCP, tcpFlags: 0x02},
			action: xdpTX, want: swapped(decoded{outer: &outerHdr{src4, ad("10.244.2.10")}, src: client, dst: ap("192.0.2.21:80"), proto: TCP}), reason: "encapsulated"},
		{name: "NodePort to a remote backend", in: pkt{src: client, dst: ap("10.0.1.2:30080"), proto: TCP},
			action: xdpTX, want: swapped(decoded{outer: &outerHdr{src4, ad("10.244.2.10")}, src: client, dst: ap("10.0.1.2:30080"), proto: TCP}), reason: "encapsulated"},
		{name: "no active backend (terminating only)", in: pkt{src: client, dst: ap("192.0.2.22:80"), proto: TCP},
			action: xdpDrop, reason: "no-backend"},
		{name: "IPIP to a local backend: decapsulated, DNAT", in: pkt{src: client, dst: ap("192.0.2.20:80"), proto: TCP, outer: &outerHdr{ad("10.0.3.2"), ad("10.244.1.10")}},
			action: xdpPass, want: plain(decoded{src: client, dst: ap("10.244.1.10:8080"), proto: TCP}), reason: "decapsulated"},
		{name: "IPIP to a node port of another node's address", in: pkt{src: client, dst: ap("10.0.3.2:30081"), proto: TCP, outer: &outerHdr{ad("10.0.3.2"), ad("10.244.1.10")}},
			action: xdpPass, want: plain(decoded{src: client, dst: ap("10.244.1.10:8080"), proto: TCP}), reason: "decapsulated"},
		{name: "IPIP from no node of the cluster (inner source spoofed past the fabric's checks)", in: pkt{src: client, dst: ap("192.0.2.20:80"), proto: TCP, outer: &outerHdr{ad("198.51.100.66"), ad("10.244.1.10")}},
			action: xdpDrop, reason: "decap-untrusted"},
		{name: "IPv6-in-IPv6 from no node of the cluster", in: pkt{src: client6, dst: ap("[2001:db8::20]:80"), proto: TCP, outer: &outerHdr{ad("2001:db8:ff::66"), ad("fd00:244:1::10")}},
			action: xdpDrop, reason: "decap-untrusted"},
		{name: "IPIP to an address that is no local backend", in: pkt{src: client, dst: ap("192.0.2.20:80"), proto: TCP, outer: &outerHdr{ad("10.0.3.2"), ad("10.244.1.99")}},
			action: xdpDrop, reason: "decap-unknown-backend"},
		{name: "IPIP of another tunnel", in: pkt{src: client, dst: ap("10.9.9.9:80"), proto: TCP, outer: &outerHdr{ad("10.0.3.2"), ad("10.0.1.2")}},
			action: xdpPass, reason: "pass"},
		{name: "IPv6 TCP to a local backend: DNAT", in: pkt{src: client6, dst: ap("[2001:db8::20]:80"), proto: TCP},
			action: xdpPass, want: plain(decoded{src: client6, dst: ap("[fd00:244:1::10]:8080"), proto: TCP}), reason: "local"},
		{name: "IPv6 UDP to a remote backend: IPv6-in-IPv6", in: pkt{src: client6, dst: ap("[2001:db8::21]:80"), proto: UDP},
			action: xdpTX, want: swapped(decoded{outer: &outerHdr{src6, ad("fd00:244:2::10")}, src: client6, dst: ap("[2001:db8::21]:80"), proto: UDP}), reason: "encapsulated"},
		{name: "IPv6-in-IPv6 to a local backend", in: pkt{src: client6, dst: ap("[2001:db8::20]:80"), proto: TCP, outer: &outerHdr{ad("fd00:0:0:3::2"), ad("fd00:244:1::10")}},
			action: xdpPass, want: plain(decoded{src: client6, dst: ap("[fd00:244:1::10]:8080"), proto: TCP}), reason: "decapsulated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := lb.Counters()
			if err != nil {
				t.Fatal(err)
			}
			in := tc.in.bytes()
			ret, out := run(t, prog, in)
			if ret != tc.action {
				t.Fatalf("action %d, want %d", ret, tc.action)
			}
			after, err := lb.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if after[tc.reason] != before[tc.reason]+1 {
				t.Errorf("counter %q went from %d to %d; counters %v", tc.reason, before[tc.reason], after[tc.reason], after)
			}
			if tc.want == (decoded{}) {
				if !bytes.Equal(out, in) {
					t.Fatalf("packet changed:\n in % x\nout % x", in, out)
				}
				return
			}
			got := decode(t, out)
			if got.String() != tc.want.String() || got.ethDst != tc.want.ethDst || got.ethSrc != tc.want.ethSrc {
				t.Fatalf("out %s (eth %x <- %x), want %s (eth %x <- %x)", got, got.ethDst, got.ethSrc, tc.want, tc.want.ethDst, tc.want.ethSrc)
			}
		})
	}
}

// TestPrivilegedReplyTable runs lb_reply on the replies of flows lb_xdp
// translated: their source becomes the frontend again, checksums right;
// other packets leave unchanged.
func TestPrivilegedReplyTable(t *testing.T) {
	lb := loadLB(t, tableEntries())
	prog, _ := lb.Programs()
	for _, in := range []pkt{
		{src: ap("198.51.100.7:40001"), dst: ap("192.0.2.20:80"), proto: TCP},
		{src: ap("198.51.100.7:40002"), dst: ap("192.0.2.20:53"), proto: UDP},
		{src: ap("198.51.100.7:40003"), dst: ap("192.0.2.20:53"), proto: UDP, udpNoCsum: true},
		{src: ap("[2001:db8:ff::7]:40004"), dst: ap("[2001:db8::20]:80"), proto: TCP},
	} {
		if ret, _ := run(t, prog, in.bytes()); ret != xdpPass {
			t.Fatalf("%s: action %d", in.dst, ret)
		}
	}
	for _, tc := range []struct {
		name string
		in   pkt
		want netip.AddrPort // zero: unchanged
	}{
		{"TCP reply", pkt{src: ap("10.244.1.10:8080"), dst: ap("198.51.100.7:40001"), proto: TCP}, ap("192.0.2.20:80")},
		{"UDP reply", pkt{src: ap("10.244.1.11:5353"), dst: ap("198.51.100.7:40002"), proto: UDP}, ap("192.0.2.20:53")},
		{"UDP reply without checksum", pkt{src: ap("10.244.1.11:5353"), dst: ap("198.51.100.7:40003"), proto: UDP, udpNoCsum: true}, ap("192.0.2.20:53")},
		{"IPv6 TCP reply", pkt{src: ap("[fd00:244:1::10]:8080"), dst: ap("[2001:db8:ff::7]:40004"), proto: TCP}, ap("[2001:db8::20]:80")},
		{"other flow of the backend", pkt{src: ap("10.244.1.10:8080"), dst: ap("198.51.100.7:40999"), proto: TCP}, netip.AddrPort{}},
		{"other traffic", pkt{src: ap("10.244.1.50:22"), dst: ap("198.51.100.7:40001"), proto: TCP}, netip.AddrPort{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in.bytes()
			out := make([]byte, len(in))
			opts := ebpf.RunOptions{Data: in, DataOut: out}
			ret, err := lb.objs.LbReply.Run(&opts)
			if err != nil {
				t.Fatal(err)
			}
			if ret != 0xffffffff { // TCX_NEXT
				t.Fatalf("return %d, want TCX_NEXT", int32(ret))
			}
			if !tc.want.IsValid() {
				if !bytes.Equal(opts.DataOut, in) {
					t.Fatal("packet changed")
				}
				return
			}
			got := decode(t, opts.DataOut)
			if got.src != tc.want || got.dst != tc.in.dst {
				t.Fatalf("out %s, want %s -> %s", got, tc.want, tc.in.dst)
			}
		})
	}
}

// chosen runs a flow through lb_xdp and returns the backend address it
// went to (DNAT destination, or outer destination).
func chosen(t testing.TB, prog *ebpf.Program, p pkt) netip.Addr {
	t.Helper()
	ret, out := run(t, prog, p.bytes())
	tt, ok := t.(*testing.T)
	if !ok {
		t.Fatal("chosen needs a *testing.T")
	}
	d := decode(tt, out)
	switch ret {
	case xdpPass:
		return d.dst.Addr()
	case xdpTX:
		return d.outer.dst
	}
	t.Fatalf("%s: action %d", p.src, ret)
	return netip.Addr{}
}

// TestPrivilegedSameBackendEveryNode loads two "nodes" whose frontend has
// the same backends, learnt in another order and local to each node in
// turn: every flow goes to the same backend on both.
func TestPrivilegedSameBackendEveryNode(t *testing.T) {
	vip := Frontend{Addr: ad("192.0.2.30"), Port: 443, Proto: TCP}
	var onA, onB []Backend
	for i := range 10 {
		a := fmt.Sprintf("10.244.%d.%d:8443", 1+i%2, 10+i)
		onA = append(onA, Backend{Addr: ap(a), Local: i%2 == 0, Active: true})
		onB = append(onB, Backend{Addr: ap(a), Local: i%2 == 1, Active: true})
	}
	slices.Reverse(onB)
	a := loadLB(t, []Entry{{Frontend: vip, VIP: true, Backends: onA}})
	b := loadLB(t, []Entry{{Frontend: vip, VIP: true, Backends: onB}})
	pa, _ := a.Programs()
	pb, _ := b.Programs()
	used := map[netip.Addr]int{}
	for i := range 500 {
		p := pkt{src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), uint16(30000+i)), dst: netip.AddrPortFrom(vip.Addr, vip.Port), proto: TCP}
		x, y := chosen(t, pa, p), chosen(t, pb, p)
		if x != y {
			t.Fatalf("flow %s: node A chose %s, node B %s", p.src, x, y)
		}
		used[x]++
	}
	if len(used) != 10 {
		t.Errorf("500 flows used %d of 10 backends: %v", len(used), used)
	}
}

// TestPrivilegedConnTable: a flow keeps its backend while that backend
// drains (terminating: out of the Maglev table, still in lb_backends), new
// flows never get it, and once it is gone the flow is balanced again.
func TestPrivilegedConnTable(t *testing.T) {
	vip := Frontend{Addr: ad("192.0.2.40"), Port: 80, Proto: TCP}
	var bs []Backend
	for i := range 4 {
		bs = append(bs, local(fmt.Sprintf("10.244.1.%d:80", 20+i)))
	}
	lb := loadLB(t, []Entry{{Frontend: vip, VIP: true, Backends: bs}})
	prog, _ := lb.Programs()
	flow := func(i int) pkt {
		return pkt{src: netip.AddrPortFrom(ad("198.51.100.9"), uint16(20000+i)), dst: netip.AddrPortFrom(vip.Addr, vip.Port), proto: TCP}
	}
	// Flows to every backend.
	first := map[int]netip.Addr{}
	for i := range 64 {
		first[i] = chosen(t, prog, flow(i))
	}
	drained := first[0]
	for i := range bs {
		if bs[i].Addr.Addr() == drained {
			bs[i].Active = false
		}
	}
	if err := lb.Sync([]Entry{{Frontend: vip, VIP: true, Backends: bs}}); err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		if got := chosen(t, prog, flow(i)); got != first[i] {
			t.Fatalf("flow %d moved from %s to %s while %s drains", i, first[i], got, drained)
		}
	}
	for i := 1000; i < 1200; i++ {
		if got := chosen(t, prog, flow(i)); got == drained {
			t.Fatalf("new flow %d went to draining backend %s", i, drained)
		}
	}
	st, err := lb.FrontendStats()
	if err != nil {
		t.Fatal(err)
	}
	if s := st[vip]; s.Conns != 64+200 || s.Packets != 64*2+200 {
		t.Errorf("stats %+v, want 264 connections over 328 packets", s)
	}
	bs = slices.DeleteFunc(bs, func(b Backend) bool { return b.Addr.Addr() == drained })
	if err := lb.Sync([]Entry{{Frontend: vip, VIP: true, Backends: bs}}); err != nil {
		t.Fatal(err)
	}
	if got := chosen(t, prog, flow(0)); got == drained {
		t.Fatalf("flow 0 still goes to %s, which left", drained)
	}
	for i := range 64 {
		if first[i] != drained {
			if got := chosen(t, prog, flow(i)); got != first[i] {
				t.Fatalf("flow %d moved from %s to %s when another backend left", i, first[i], got)
			}
		}
	}
}

// TestPrivilegedSyncErrors: bad entries are refused and change nothing.
func TestPrivilegedSyncErrors(t *testing.T) {
	lb := loadLB(t, tableEntries())
	for _, tc := range []struct {
		e    Entry
		want string
	}{
		{Entry{Frontend: Frontend{Addr: ad("192.0.2.1"), Port: 0, Proto: TCP}}, "port 0"},
		{Entry{Frontend: Frontend{Addr: ad("192.0.2.1"), Port: 80, Proto: 132}}, "neither TCP nor UDP"},
		{Entry{Frontend: Frontend{Addr: ad("192.0.2.1"), Port: 80, Proto: TCP}, Backends: []Backend{remote("[fd00::1]:80")}}, "other address family"},
		{Entry{Frontend: Frontend{Addr: ad("192.0.2.1"), Port: 80, Proto: TCP}, Backends: []Backend{remote("10.1.1.1:80"), local("10.1.1.1:81")}}, "twice"},
	} {
		err := lb.Sync([]Entry{tc.e})
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("Sync(%v): %v, want an error with %q", tc.e, err, tc.want)
		}
	}
	if len(lb.cur) != len(tableEntries()) {
		t.Errorf("%d frontends after refused syncs, want %d", len(lb.cur), len(tableEntries()))
	}
	if _, err := Load(Config{MaglevSize: 1000}); err == nil || !errors.Is(err, maglev.ErrBadSize) {
		t.Errorf("Load with table size 1000: %v", err)
	}
}

// TestPrivilegedConns counts the flows of lb_conns across several batches.
func TestPrivilegedConns(t *testing.T) {
	lb := loadLB(t, nil)
	if got, err := lb.Conns(); err != nil || got != 0 {
		t.Fatalf("Conns of an empty table = %d, %v", got, err)
	}
	const n = 2*connBatch + 17
	keys := make([]bpf.LbFlow, n)
	vals := make([]bpf.LbConn, n)
	for i := range keys {
		keys[i].Sport = uint16(i)
		keys[i].Dport = uint16(i >> 16)
		keys[i].Proto = TCP
	}
	if _, err := lb.objs.LbConns.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := lb.Conns(); err != nil || got != n {
		t.Errorf("Conns = %d, %v; want %d", got, err, n)
	}
}
