package socklb

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// BenchmarkPrivilegedConnect measures one TCP connection (connect, read
// the answer, close) from a namespace to a backend there: directly;
// through a cluster IP served by the socket load balancer; and through the
// same cluster IP translated by kube-proxy's iptables mode (nat OUTPUT ->
// KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* -> DNAT, built with
// iptables-nft, the measured service's rule last in KUBE-SERVICES: the
// worst case of its linear match) — at 1,000 and 10,000 services. Each case
// reports p50 and p99 beside the mean. The test moves its goroutine into
// the namespace for every connection, which is most of the time measured
// and the same in every case. The load cases measure connections per
// second with loadWorkers clients at once (measureLoad).
func BenchmarkPrivilegedConnect(b *testing.B) {
	h := newHarness(b)
	backend := netip.AddrPortFrom(backends4[0], backendPort)
	front := netip.AddrPortFrom(front4, 80)
	b.Run("direct", func(b *testing.B) { measureConnect(b, h, backend, backend) })
	b.Run("load/direct", func(b *testing.B) { measureLoad(b, h, backend, backend) })
	for _, n := range []int{1000, 10000} {
		if err := h.lb.Sync(benchEntries(n, backend)); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("socketlb/services=%d", n), func(b *testing.B) { measureConnect(b, h, front, backend) })
		b.Run(fmt.Sprintf("load/socketlb/services=%d", n), func(b *testing.B) { measureLoad(b, h, front, backend) })
	}
	if err := h.lb.Sync(nil); err != nil {
		b.Fatal(err)
	}
	testenv.Binary(b, "iptables-restore")
	// kube-proxy's nodes route the service range (by their default
	// route); the socket load balancer needs no route at all.
	testenv.Run(b, "ip", "-n", h.ns, "route", "add", "10.96.0.0/12", "dev", "lo")
	for _, n := range []int{1000, 10000} {
		restore := exec.Command("ip", "netns", "exec", h.ns, "iptables-restore")
		restore.Stdin = strings.NewReader(kubeProxyRules(benchEntries(n, backend)))
		if out, err := restore.CombinedOutput(); err != nil {
			b.Fatalf("iptables-restore: %v\n%s", err, out)
		}
		b.Run(fmt.Sprintf("iptables/services=%d", n), func(b *testing.B) { measureConnect(b, h, front, backend) })
		b.Run(fmt.Sprintf("load/iptables/services=%d", n), func(b *testing.B) { measureLoad(b, h, front, backend) })
	}
	testenv.Run(b, "ip", "netns", "exec", h.ns, "iptables", "-t", "nat", "-F")
	testenv.Run(b, "ip", "netns", "exec", h.ns, "iptables", "-t", "nat", "-X")
}

// loadWorkers is how many clients connect at once in the load cases.
const loadWorkers = 8

// measureLoad opens b.N connections (connect, read the answer, close)
// from loadWorkers clients at once, each on a thread of its own that stays
// in the namespace (unlike measureConnect, which moves into it for every
// connection), and reports connections per second and each connection's
// p50 and p99.
func measureLoad(b *testing.B, h *harness, addr, backend netip.AddrPort) {
	per := max(b.N/loadWorkers, 1)
	lats := make([][]time.Duration, loadWorkers)
	errs := make(chan error, loadWorkers)
	b.ResetTimer()
	start := time.Now()
	for w := range loadWorkers {
		go func() {
			errs <- testenv.InNetNS(h.ns, func() error {
				lat := make([]time.Duration, 0, per)
				for range per {
					t0 := time.Now()
					c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
					if err != nil {
						return err
					}
					c.SetDeadline(time.Now().Add(5 * time.Second))
					got, err := io.ReadAll(c)
					c.Close()
					if err != nil || string(got) != backend.String() {
						return fmt.Errorf("%s: answered by %q: %v", addr, got, err)
					}
					lat = append(lat, time.Since(t0))
				}
				lats[w] = lat
				return nil
			})
		}()
	}
	for range loadWorkers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lats...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "conn/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// benchEntries returns n frontends on port 80, the measured one (front4)
// last, each with the one backend.
func benchEntries(n int, backend netip.AddrPort) []Entry {
	es := make([]Entry, 0, n)
	for i := range n - 1 {
		addr := netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})
		es = append(es, Entry{Frontend: Frontend{Addr: addr, Port: 80, Proto: TCP}, Backends: []netip.AddrPort{backend}})
	}
	return append(es, Entry{Frontend: Frontend{Addr: front4, Port: 80, Proto: TCP}, Backends: []netip.AddrPort{backend}})
}

// kubeProxyRules is the iptables-restore input of kube-proxy's iptables
// mode for es: one KUBE-SERVICES rule per frontend, jumping to its
// KUBE-SVC chain, which jumps to the KUBE-SEP chain of its one endpoint,
// which DNATs.
func kubeProxyRules(es []Entry) string {
	var sb strings.Builder
	sb.WriteString("*nat\n:KUBE-SERVICES - [0:0]\n")
	for i := range es {
		fmt.Fprintf(&sb, ":KUBE-SVC-%d - [0:0]\n:KUBE-SEP-%d - [0:0]\n", i, i)
	}
	sb.WriteString("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	for i, e := range es {
		fmt.Fprintf(&sb, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"svc %d cluster IP\" -m tcp --dport %d -j KUBE-SVC-%d\n",
			e.Frontend.Addr, i, e.Frontend.Port, i)
		fmt.Fprintf(&sb, "-A KUBE-SVC-%d -j KUBE-SEP-%d\n", i, i)
		fmt.Fprintf(&sb, "-A KUBE-SEP-%d -p tcp -m tcp -j DNAT --to-destination %s\n", i, e.Backends[0])
	}
	sb.WriteString("COMMIT\n")
	return sb.String()
}

// measureConnect connects to addr b.N times, checking that backend
// answers, and reports p50 and p99.
func measureConnect(b *testing.B, h *harness, addr, backend netip.AddrPort) {
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		got, _, err := h.dialTCP(addr)
		lat = append(lat, time.Since(start))
		if err != nil || got != backend.String() {
			b.Fatalf("%s: answered by %q: %v", addr, got, err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
