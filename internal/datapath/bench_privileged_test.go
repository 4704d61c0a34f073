package datapath

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/testenv"
)

// fillScale adds n ipcache host entries (half IPv4 from 10.128.0.0, half
// IPv6 from fd00:80::) and n policy entries for endpoint testEndpoint, each
// identity 10000+i allowed by the frontend table (2) and counted at a slot of
// its own while slots last (after the fixture's). It returns the i-th IPv4
// and IPv6 source, for i = n/2 - 1 (the last written).
func fillScale(tb testing.TB, d *testDatapath, n int) (v4, v6 netip.Addr) {
	tb.Helper()
	half := n / 2
	k4 := make([]bpf.PolicyIpcacheHost4, 0, half)
	k6 := make([]bpf.PolicyIpcacheHost6, 0, half)
	vals := make([]bpf.PolicyIpcacheValue, 0, half)
	pk := make([]bpf.PolicyPolicyKey, 0, n)
	pv := make([]bpf.PolicyPolicyValue, 0, n)
	a4 := netip.MustParseAddr("10.128.0.0")
	a6 := netip.MustParseAddr("fd00:80::")
	for i := range half {
		id := uint32(10000 + i)
		k4 = append(k4, bpf.PolicyIpcacheHost4{Addr: a4.As4()})
		k6 = append(k6, bpf.PolicyIpcacheHost6{Addr: a6.As16()})
		vals = append(vals, bpf.PolicyIpcacheValue{Identity: id})
		v4, v6 = a4, a6
		a4, a6 = a4.Next(), a6.Next()
	}
	for i := range n {
		pk = append(pk, bpf.PolicyPolicyKey{Endpoint: testEndpoint, Identity: uint32(10000 + i)})
		counter := uint32(testCounterSlots + 1 + i)
		if counter >= uint32(MaxEntryCounters) {
			counter = 0
		}
		pv = append(pv, bpf.PolicyPolicyValue{Table: 2, Counter: counter})
	}
	for _, batch := range []struct {
		m          *ebpf.Map
		keys, vals any
	}{
		{d.objs.IpcacheHost4, k4, vals},
		{d.objs.IpcacheHost6, k6, vals},
		{d.objs.Policy, pk, pv},
	} {
		if _, err := batch.m.BatchUpdate(batch.keys, batch.vals, nil); err != nil {
			tb.Fatalf("fill %v: %v", batch.m, err)
		}
	}
	return v4, v6
}

// BenchmarkPrivilegedVerdict measures to_endpoint per packet with
// BPF_PROG_TEST_RUN (the kernel runs one packet b.N times and times it) at
// 10 to 100,000 ipcache and policy entries, beside the empty program of the
// same type (the floor). ns/pkt is the kernel's own per-run time.
//
// cache=on is the steady state of a flow: its decision comes from the flow
// cache. cache=off (generation 0) decides every packet through the maps, as
// the first packet of a flow and every packet after a map change do. v4-deny
// soon fills the drop ring buffer, which nobody reads here, so it measures a
// drop whose event is lost (counted as events-lost).
func BenchmarkPrivilegedVerdict(b *testing.B) {
	testenv.Privileged(b)

	bench := func(b *testing.B, prog *ebpf.Program, frame []byte, want int32) {
		b.Helper()
		ret, per, err := prog.Benchmark(frame, b.N, b.ResetTimer)
		if err != nil {
			b.Fatal(err)
		}
		if int32(ret) != want {
			b.Fatalf("returned %d, want %d", int32(ret), want)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
	}

	floor := loadDatapath(b)
	b.Run("empty", func(b *testing.B) {
		bench(b, floor.objs.Empty, tcp("10.0.1.1", "10.0.0.10", 80).frame(), retPass)
	})

	for _, n := range []int{10, 1000, 10000, 100000} {
		d := loadDatapath(b)
		setupFixture(b, d)
		v4, v6 := fillScale(b, d, n)
		// A connection the pod opened, for the reply path.
		out := testPacket{src: podV4, dst: ip("198.51.100.7"), proto: ProtoTCP, sport: 40000, dport: 443, tcpFlags: tcpSYN}
		if ret, err := d.objs.FromEndpoint.Run(&ebpf.RunOptions{Data: out.frame()}); err != nil || int32(ret) != retPass {
			b.Fatalf("open connection: %d, %v", int32(ret), err)
		}
		cases := []struct {
			name string
			pkt  testPacket
			want int32
			ctrl *ebpf.Program
		}{
			{"v4-allow", testPacket{src: v4, dst: podV4, proto: ProtoTCP, sport: 40000, dport: 80, tcpFlags: tcpACK}, retPass, nil},
			{"v6-allow", testPacket{src: v6, dst: podV6, proto: ProtoTCP, sport: 40000, dport: 80, tcpFlags: tcpACK}, retPass, nil},
			{"v4-cidr-allow", tcp("10.0.2.5", "10.0.0.10", 5432), retPass, nil},
			{"v4-world-l4only-allow", tcp("192.0.2.9", "10.0.0.10", 443), retPass, nil},
			{"v4-reply", testPacket{src: ip("198.51.100.7"), dst: podV4, proto: ProtoTCP, sport: 443, dport: 40000, tcpFlags: tcpACK}, retPass, nil},
			{"v4-deny", testPacket{src: v4, dst: podV4, proto: ProtoTCP, sport: 40000, dport: 81, tcpFlags: tcpSYN}, retDrop, nil},
			{"v4-from-endpoint", testPacket{src: podV4, dst: ip("198.51.100.7"), proto: ProtoTCP, sport: 40000, dport: 443, tcpFlags: tcpACK}, retPass, d.objs.FromEndpoint},
		}
		// The flow cache is on after fillScale's bump; generation 0 turns
		// it off, so that every packet is decided through the maps.
		for _, cache := range []string{"on", "off"} {
			gen := uint64(0)
			if cache == "on" {
				if err := d.maps.BumpGeneration(); err != nil {
					b.Fatal(err)
				}
				if err := d.objs.Generation.Get(&gen); err != nil {
					b.Fatal(err)
				}
			}
			if err := d.objs.Generation.Set(gen); err != nil {
				b.Fatal(err)
			}
			for _, c := range cases {
				prog := d.objs.ToEndpoint
				if c.ctrl != nil {
					prog = c.ctrl
				}
				b.Run(fmt.Sprintf("entries=%d/cache=%s/%s", n, cache, c.name), func(b *testing.B) {
					bench(b, prog, c.pkt.frame(), c.want)
				})
			}
		}
		d.objs.Close()
	}
}
