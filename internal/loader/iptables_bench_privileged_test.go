package loader

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// trafficWorkers is how many goroutines open connections at once, each on
// its own thread in the employee pod's namespace: one per core of the
// 2-core machines here, enough to keep both busy.
const trafficWorkers = 2

// trafficTimeout bounds every connection of the traffic benchmark; a
// connection that takes longer fails the benchmark.
const trafficTimeout = 2 * time.Second

// BenchmarkPrivilegedTrafficVsIptables sends real TCP through the lab with
// no policy (mode=none), with roost's eBPF policy (mode=ebpf) and with the
// same rules in iptables (mode=iptables), at 1,000 and 10,000 rules. Each
// iteration is one connection from the employee pod to db:6379: connect,
// write one byte, read its echo, close (the server in db echoes the byte
// and closes first). trafficWorkers goroutines share the b.N connections;
// it reports connections per second over all of them and the p50 and p99
// latency of connect plus the one-byte round trip (close not included).
//
// "rules=N" is N rules that each allow one source address to db:6379, the
// employee's rule last, N-1 before it for remote endpoints at 10.245.x.y:
//
//   - ebpf: one CiliumNetworkPolicy selecting app=protected-db with N
//     ingress rules, each fromEndpoints app=client-i (the employee's:
//     app=employee) to TCP 6379; N-1 remote endpoints with those labels, so
//     N identities and N+1 policy entries for db (the host is allowed too).
//   - iptables: in the node namespace's FORWARD chain (the node forwards
//     between pods), an ESTABLISHED,RELATED accept first as any real ruleset
//     has, then N rules "-s ADDR/32 -d 10.244.1.10/32 -p tcp --dport 6379
//     -j ACCEPT", the employee's last, then a DROP of the rest to db. Only
//     the SYN of a connection walks the chain; the rest of its packets match
//     conntrack at the first rule. iptables is the nf_tables backend here.
//
// Every sub-benchmark builds its own lab, so eBPF runs with no iptables or
// nftables rule and iptables with no program attached. Before measuring it
// checks that, and that guest cannot reach db:6379 while the employee can;
// after, that the eBPF policy passed the packets, or that each SYN, and
// only the SYN, reached the employee's iptables rule. Connections stay
// inside the lab's namespaces. Use -benchtime=Nx with N up to about 20,000
// (the employee's ephemeral ports, within TIME_WAIT).
func BenchmarkPrivilegedTrafficVsIptables(b *testing.B) {
	b.Run("mode=none", func(b *testing.B) {
		b.Run("rules=0", func(b *testing.B) { benchTraffic(b, "none", 0) })
	})
	for _, mode := range []string{"ebpf", "iptables"} {
		b.Run("mode="+mode, func(b *testing.B) {
			for _, n := range []int{1_000, 10_000} {
				b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) { benchTraffic(b, mode, n) })
			}
		})
	}
}

// benchTraffic sets up a lab with n rules in mode and measures connections
// from the employee pod to db:6379.
func benchTraffic(b *testing.B, mode string, n int) {
	l := newLab(b)
	db, emp, guest := l.pods["db"], l.pods["employee"], l.pods["guest"]
	serveOneByte(b, db.ns, dbRedis)
	var ld *Loader
	switch mode {
	case "none":
	case "ebpf":
		var err error
		ld, err = Open(Options{BPFFS: l.bpffs, NetNS: "/var/run/netns/" + l.node})
		if err != nil {
			b.Fatal(err)
		}
		defer ld.Close()
		res, err := clientPolicy(l, n)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := ld.Apply(res)
		if err != nil {
			b.Fatal(err)
		}
		// The clients, the host, and the entry for any other source
		// (the empty table, which counts default denials).
		if rep.Counts.PolicySet != n+2 {
			b.Fatalf("apply wrote %d policy entries, want %d (%d clients, the host and any)", rep.Counts.PolicySet, n+2, n)
		}
	case "iptables":
		cmd := exec.Command("ip", "netns", "exec", l.node, "iptables-restore")
		cmd.Stdin = strings.NewReader(clientIptables(db.ip, emp.ip, n))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("iptables-restore: %v\n%s", err, out)
		}
	default:
		b.Fatalf("unknown mode %q", mode)
	}
	// Only the mode's own filter runs.
	if rules := nftRuleset(b, l.node); (rules != "") != (mode == "iptables") {
		b.Fatalf("mode %s: nftables ruleset of the node namespace:\n%.2000s", mode, rules)
	}
	for _, pd := range []*pod{db, emp} {
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			if ids := tcxPrograms(b, l.node, pd.ifindex, at); (len(ids) > 0) != (mode == "ebpf") {
				b.Fatalf("mode %s: programs %v at %v of %s's interface", mode, ids, at, pd.name)
			}
		}
	}

	if err := oneConn(emp.ns, dbRedis, trafficTimeout); err != nil {
		b.Fatalf("employee -> db:6379 before measuring: %v", err)
	}
	err := oneConn(guest.ns, dbRedis, 300*time.Millisecond)
	if blocked := timedOut(err); blocked != (mode != "none") {
		b.Fatalf("guest -> db:6379 with mode %s: %v; want it to time out exactly when a policy is in place", mode, err)
	}
	before := 0
	if mode == "iptables" {
		before = iptablesPackets(b, l.node, emp.ip)
	}

	runtime.GC() // of the set-up's garbage (10,000 rules compiled), not during the traffic
	lat, elapsed, err := driveConns(b, emp.ns, dbRedis)
	if err != nil {
		b.Fatal(err)
	}
	switch mode {
	case "ebpf":
		counters, err := ld.Counters()
		if err != nil {
			b.Fatal(err)
		}
		if got := counters[datapath.ReasonPassPolicy].Packets; got < uint64(len(lat)) {
			b.Fatalf("eBPF passed %d packets by policy for %d connections", got, len(lat))
		}
	case "iptables":
		// Each SYN, and nothing else (but a rare retransmitted SYN),
		// walks the chain down to the employee's rule.
		if got := iptablesPackets(b, l.node, emp.ip) - before; got < len(lat) || got > len(lat)+len(lat)/10 {
			b.Fatalf("the employee's iptables rule matched %d packets for %d connections, want one per connection", got, len(lat))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "conn/s")
	b.ReportMetric(float64(percentile(lat, 50).Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(percentile(lat, 99).Nanoseconds())/1e3, "p99-us")
}

// driveConns opens b.N connections from namespace ns to addr, shared by
// trafficWorkers workers, and returns the latency of each and the time all
// of them took.
func driveConns(b *testing.B, ns, addr string) ([]time.Duration, time.Duration, error) {
	type result struct {
		lat []time.Duration
		err error
	}
	jobs := make(chan struct{})
	results := make(chan result, trafficWorkers)
	for range trafficWorkers {
		go func() {
			var r result
			// The worker's thread stays in ns, so every socket it opens
			// is the employee pod's.
			r.err = inNS(ns, func() error {
				var first error
				for range jobs {
					if first != nil {
						continue // drain, so that the feeder never blocks
					}
					d, err := dialEcho(addr, trafficTimeout)
					if err != nil {
						first = err
						continue
					}
					r.lat = append(r.lat, d)
				}
				return first
			})
			results <- r
		}()
	}
	start := time.Now()
	for b.Loop() {
		jobs <- struct{}{}
	}
	close(jobs)
	var lat []time.Duration
	var errs []error
	for range trafficWorkers {
		r := <-results
		lat = append(lat, r.lat...)
		errs = append(errs, r.err)
	}
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, 0, fmt.Errorf("%s -> %s: %w", ns, addr, err)
	}
	return lat, elapsed, nil
}

// dialEcho opens a connection to addr in the calling thread's namespace,
// writes one byte, reads it back and closes, all within timeout, and returns
// the time from the start of connect to the byte's return.
func dialEcho(addr string, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp4", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(t0.Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := c.Write([]byte{'r'}); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	var buf [1]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	d := time.Since(t0)
	if buf[0] != 'r' {
		return 0, fmt.Errorf("echo %q, want %q", buf[0], 'r')
	}
	return d, nil
}

// oneConn runs dialEcho from namespace ns; a dropped SYN makes it time out.
func oneConn(ns, addr string, timeout time.Duration) error {
	return inNS(ns, func() error {
		_, err := dialEcho(addr, timeout)
		return err
	})
}

// timedOut reports whether err is a timeout, as when a SYN is dropped.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serveOneByte listens on addr in namespace ns; for each connection it
// reads one byte, writes it back and closes.
func serveOneByte(tb testing.TB, ns, addr string) {
	tb.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var buf [1]byte
				if err := c.SetDeadline(time.Now().Add(trafficTimeout)); err != nil {
					return
				}
				if _, err := io.ReadFull(c, buf[:]); err != nil {
					return
				}
				_, _ = c.Write(buf[:])
			}()
		}
	}()
}

// clientAddr is the address of the i-th remote client, in 10.245.0.0/16.
func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)})
}

// clientPolicy compiles the eBPF side of n rules: a policy for db with one
// ingress rule per client and the employee's last, and the lab's pods plus
// n-1 remote clients as endpoints.
func clientPolicy(l *lab, n int) (policy.Resolved, error) {
	var y strings.Builder
	y.WriteString(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: db-clients
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
`)
	var remote []policy.Endpoint
	for i := range n {
		app := "employee"
		if i < n-1 {
			app = fmt.Sprintf("client-%d", i)
			remote = append(remote, policy.Endpoint{
				Name: app, IPs: []netip.Addr{clientAddr(i)}, Labels: podLabels("app", app),
			})
		}
		fmt.Fprintf(&y, `  - fromEndpoints:
    - matchLabels:
        app: %s
    toPorts:
    - ports:
      - port: "6379"
        protocol: TCP
`, app)
	}
	pols, err := policy.Parse(strings.NewReader(y.String()), "db-clients.yaml")
	if err != nil {
		return policy.Resolved{}, err
	}
	return policy.Compile(pols, l.endpoints(remote...))
}

// clientIptables returns the iptables-restore input of n rules: the
// filter table with the FORWARD chain described at
// BenchmarkPrivilegedTrafficVsIptables.
func clientIptables(db, employee netip.Addr, n int) string {
	var s strings.Builder
	s.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	s.WriteString("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
	for i := range n {
		src := employee
		if i < n-1 {
			src = clientAddr(i)
		}
		fmt.Fprintf(&s, "-A FORWARD -s %s/32 -d %s/32 -p tcp -m tcp --dport 6379 -j ACCEPT\n", src, db)
	}
	fmt.Fprintf(&s, "-A FORWARD -d %s/32 -j DROP\nCOMMIT\n", db)
	return s.String()
}

// iptablesPackets returns the packet counter of the FORWARD rule for
// source src in namespace ns.
func iptablesPackets(tb testing.TB, ns string, src netip.Addr) int {
	tb.Helper()
	out := testenv.Run(tb, "ip", "netns", "exec", ns, "iptables-save", "-c", "-t", "filter")
	re := regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A FORWARD -s ` + regexp.QuoteMeta(src.String()) + `/32 `)
	m := re.FindStringSubmatch(out)
	if m == nil {
		tb.Fatalf("no FORWARD rule for %s in:\n%.2000s", src, out)
	}
	p, err := strconv.Atoi(m[1])
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// nftRuleset returns every nftables rule of namespace ns (iptables-nft
// rules included), empty when there is none.
func nftRuleset(tb testing.TB, ns string) string {
	tb.Helper()
	return strings.TrimSpace(testenv.Run(tb, "ip", "netns", "exec", ns, "nft", "list", "ruleset"))
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}
