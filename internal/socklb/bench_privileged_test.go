package socklb

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkPrivilegedConnect measures one TCP connection (connect, read
// the answer, close) from a namespace to a backend there: directly, and
// through a cluster IP with 1,000 and 10,000 frontends in the maps. The
// socket load balancer adds one hash lookup per connect(), so the cost
// should not grow with the number of services.
func BenchmarkPrivilegedConnect(b *testing.B) {
	h := newHarness(b)
	backend := netip.AddrPortFrom(backends4[0], backendPort)
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := h.dialTCP(backend); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{1000, 10000} {
		entries := make([]Entry, 0, n)
		for i := range n {
			// 10.97.0.0/16 holds the others; the measured one is front4.
			addr := netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})
			if i == 0 {
				addr = front4
			}
			entries = append(entries, Entry{Frontend: Frontend{addr, 80, TCP}, Backends: []netip.AddrPort{backend}})
		}
		if err := h.lb.Sync(entries); err != nil {
			b.Fatal(err)
		}
		front := netip.AddrPortFrom(front4, 80)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			for b.Loop() {
				got, _, err := h.dialTCP(front)
				if err != nil || got != backend.String() {
					b.Fatalf("%s: answered by %q: %v", front, got, err)
				}
			}
		})
	}
}
