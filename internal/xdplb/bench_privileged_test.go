package xdplb

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/internal/testenv"
)

// BenchmarkPrivilegedXDP measures lb_xdp per packet with BPF_PROG_TEST_RUN
// at 100 VIP frontends of 100 backends each (half on this node), default
// Maglev size, beside lb_pass, an empty XDP program.
//
// The kernel runs a test-run packet over and over on the same buffer, and
// lb_xdp rewrites its packets (DNAT, encapsulation): a repeat would see
// the rewritten packet and take another path. So every measured run is one
// BPF_PROG_TEST_RUN of one fresh packet (repeat 1), timed by the kernel;
// that time includes the kernel's timer reads around the program, which
// the empty program's time (measured the same way) shows. ns/pkt is the
// kernel's time per run; over-empty-ns is that minus the empty program's.
//
//   - hit-local, hit-remote: a flow the connection table holds, whose
//     backend is on this node (DNAT, XDP_PASS) or on another
//     (encapsulation, XDP_TX).
//   - miss: every packet a new flow: connection table miss, Maglev lookup,
//     connection table insert.
//   - not-frontend: a packet to a node address that is no frontend.
func BenchmarkPrivilegedXDP(b *testing.B) {
	testenv.Privileged(b)
	var entries []Entry
	for s := range 100 {
		e := Entry{Frontend: Frontend{Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(s)}), Port: 80, Proto: TCP}, VIP: true}
		for i := range 100 {
			e.Backends = append(e.Backends, Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(1 + i%2), byte(i)}), 8080),
				Local: i%2 == 0, Active: true})
		}
		entries = append(entries, e)
	}
	// 192.0.2.99's last backend is its own address, for the steady-state
	// runs below.
	entries[99].Backends[99] = Backend{Addr: netip.MustParseAddrPort("192.0.2.99:80"), Local: true, Active: true}
	lb, err := Load(Config{Source4: netip.MustParseAddr("10.0.1.2")})
	if err != nil {
		b.Fatal(err)
	}
	defer lb.Close()
	if err := lb.Sync(entries); err != nil {
		b.Fatal(err)
	}
	prog, empty := lb.Programs()
	frame := func(src netip.AddrPort, dst string) []byte {
		return pkt{src: src, dst: netip.MustParseAddrPort(dst), proto: TCP, tcpFlags: 0x10}.bytes()
	}
	// Flows whose backend is local, and remote.
	var local, remote []byte
	for i := 0; local == nil || remote == nil; i++ {
		f := frame(netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(10000+i)), "192.0.2.50:80")
		ret, _, err := prog.Benchmark(f, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		switch {
		case ret == xdpPass && local == nil:
			local = f
		case ret == xdpTX && remote == nil:
			remote = f
		}
	}
	// one runs p on f once and returns the kernel's time.
	one := func(b *testing.B, p *ebpf.Program, f []byte, want uint32) time.Duration {
		ret, d, err := p.Benchmark(f, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != want {
			b.Fatalf("returned %d, want %d", ret, want)
		}
		return d
	}
	var emptyNs float64
	measure := func(b *testing.B, run func(i int) time.Duration) {
		var total time.Duration
		for i := 0; b.Loop(); i++ {
			total += run(i)
		}
		ns := float64(total.Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns, "ns/pkt")
		if emptyNs > 0 {
			b.ReportMetric(ns-emptyNs, "over-empty-ns")
		}
	}
	notFrontend := frame(netip.MustParseAddrPort("198.51.100.7:1"), "10.0.1.2:22")
	b.Run("empty", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			total += one(b, empty, local, xdpPass)
		}
		emptyNs = float64(total.Nanoseconds()) / float64(b.N)
		b.ReportMetric(emptyNs, "ns/pkt")
	})
	b.Run("hit-local", func(b *testing.B) { measure(b, func(int) time.Duration { return one(b, prog, local, xdpPass) }) })
	b.Run("hit-remote", func(b *testing.B) { measure(b, func(int) time.Duration { return one(b, prog, remote, xdpTX) }) })
	b.Run("miss", func(b *testing.B) {
		f := frame(netip.MustParseAddrPort("198.51.100.7:1"), "192.0.2.51:80")
		measure(b, func(i int) time.Duration {
			// A new client address and port each time (checksums do
			// not matter to the cost).
			binary.BigEndian.PutUint32(f[14+12:], 0xc6000000|uint32(i>>16))
			binary.BigEndian.PutUint16(f[14+20:], uint16(i))
			ret, d, err := prog.Benchmark(f, 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			if ret != xdpPass && ret != xdpTX {
				b.Fatalf("returned %d", ret)
			}
			return d
		})
	})
	b.Run("not-frontend", func(b *testing.B) { measure(b, func(int) time.Duration { return one(b, prog, notFrontend, xdpPass) }) })

	// Steady state: the kernel repeats one packet b.N times, caches warm,
	// as a busy uplink runs. Only paths that leave the packet as it was can
	// be repeated: not-frontend, and a connection-table hit to a local
	// backend whose address and port are the frontend's own (the DNAT
	// rewrites every field to the value it had, doing all its work).
	self := frame(netip.AddrPort{}, "192.0.2.99:80")
	for i := 0; ; i++ {
		if i == 100000 {
			b.Fatal("no flow of 192.0.2.99 goes to its own address")
		}
		f := frame(netip.AddrPortFrom(netip.MustParseAddr("198.51.100.8"), uint16(1000+i)), "192.0.2.99:80")
		out := make([]byte, len(f)+256)
		opts := ebpf.RunOptions{Data: f, DataOut: out}
		if ret, err := prog.Run(&opts); err != nil || ret != xdpPass {
			continue
		}
		if string(opts.DataOut) == string(f) {
			self = f
			break
		}
	}
	steady := func(b *testing.B, p *ebpf.Program, f []byte) {
		ret, per, err := p.Benchmark(f, b.N, b.ResetTimer)
		if err != nil {
			b.Fatal(err)
		}
		if ret != xdpPass {
			b.Fatalf("returned %d", ret)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
	}
	b.Run("steady/empty", func(b *testing.B) { steady(b, empty, self) })
	b.Run("steady/not-frontend", func(b *testing.B) { steady(b, prog, notFrontend) })
	b.Run("steady/hit-local", func(b *testing.B) { steady(b, prog, self) })
	if testing.Verbose() {
		n, _ := lb.Conns()
		fmt.Printf("flows in the connection table: %d\n", n)
	}
}
