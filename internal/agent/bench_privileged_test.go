package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdctl"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/routes"
	"github.com/roost-net/roost/internal/testenv"
)

// benchSizes are the numbers of owned prefixes the benchmarks run with.
var benchSizes = []int{1, 10_000}

// prefixSet returns n /24s: 10.64.0.0/24, 10.64.1.0/24, ... from index first.
func prefixSet(first, n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range n {
		k := first + i
		out[i] = netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 64+k/256, k%256))
	}
	return out
}

// benchFabric is a fabric whose ToRs already hold the n prefixes of a
// running agent.
func benchFabric(b *testing.B, n int) (*fabric, *Agent, config.Config) {
	b.Helper()
	f := newFabric(b)
	cfg := f.config()
	cfg.PodCIDRs = prefixSet(0, n)
	a := f.startAgent(cfg)
	// Wait for the whole first apply, blackholes included, so that the
	// benchmark never runs beside it.
	waitStatus(b, a, "first apply", func(s agentapi.Status) bool {
		return s.LastApply.Result == agentapi.ResultOK && len(s.LastApply.Applied) == n
	})
	f.waitPrefixCount(n)
	return f, a, cfg
}

// benchFabricIdle is benchFabric with the agent's loop stopped, so that
// nothing but the benchmark talks to BIRD: the loop would take the
// benchmark's own configures for someone else's and apply again.
func benchFabricIdle(b *testing.B, n int) (*fabric, *Agent, config.Config) {
	f, a, cfg := benchFabric(b, n)
	f.stopAgent()
	return f, a, cfg
}

// waitPrefixCount waits until each ToR has received n prefixes from the node.
func (f *fabric) waitPrefixCount(n int) {
	f.t.Helper()
	for i, tor := range f.tors {
		tor.WaitFor(f.t, 5*waitLimit, fmt.Sprintf("tor%d holds %d prefixes", i+1, n), func() (bool, string) {
			ns, err := tor.Neighbors()
			if err != nil {
				return false, err.Error()
			}
			got := ns[f.uplinks[i]].PrefixesReceived
			return got == n, strconv.Itoa(got)
		})
	}
}

// withPrefixes returns cfg announcing base with its first prefix replaced
// by a new one numbered k: a change of one prefix, as a new PodCIDR is.
func withPrefixes(cfg config.Config, base []netip.Prefix, k int) (config.Config, netip.Prefix) {
	p := prefixSet(len(base)+k, 1)[0]
	cfg.PodCIDRs = append([]netip.Prefix{p}, base[1:]...)
	return cfg, p
}

// BenchmarkPrivilegedApply measures one apply of the agent (render, compare,
// blackholes, the sessions' state, temp file written and fsynced,
// "configure timeout", the sessions' state again, "configure confirm",
// rename and directory fsync, BIRD's state) for a change of one prefix —
// added, then removed again — beside BIRD's own "configure" of the same two
// files (the floor: what BIRD spends whoever drives it). The agent's loop is
// stopped: apply is called directly.
func BenchmarkPrivilegedApply(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			f, a, cfg := benchFabricIdle(b, n)
			ctx := context.Background()
			cfgs := [2]config.Config{cfg, cfg}
			cfgs[1].PodCIDRs = append(prefixSet(n, 1), cfg.PodCIDRs...)

			b.Run("agent", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					a.mu.Lock()
					a.cfg = cfgs[i%2]
					a.mu.Unlock()
					if err := a.apply(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("agent-no-blackholes", func(b *testing.B) {
				holes := a.holes
				a.holes = nil
				defer func() { a.holes = holes }()
				for i := 0; b.Loop(); i++ {
					a.mu.Lock()
					a.cfg = cfgs[i%2]
					a.mu.Unlock()
					if err := a.apply(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			// The floor: the same two configs, rendered once, configured
			// by BIRD in turn.
			var files [2]string
			for i, c := range cfgs {
				out, err := a.render(c.BirdInput(c.PodCIDRs))
				if err != nil {
					b.Fatal(err)
				}
				files[i] = filepath.Join(f.bird.Dir, fmt.Sprintf("floor%d.conf", i))
				if err := os.WriteFile(files[i], out, 0o640); err != nil {
					b.Fatal(err)
				}
			}
			c, err := birdctl.Dial(ctx, f.bird.Socket)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.Run("bird-configure", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if _, err := c.Configure(ctx, birdctl.ConfigureOptions{File: files[i%2]}); err != nil {
						b.Fatal(err)
					}
				}
			})
			// Parts of the agent's apply, for where its time goes: the
			// timed configure and its confirm, one poll of BIRD's state,
			// and writing the file durably (temp file fsynced, renamed,
			// directory fsynced).
			b.Run("part-configure-timeout-confirm", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if _, err := c.Configure(ctx, birdctl.ConfigureOptions{File: files[i%2], Timeout: 30 * time.Second}); err != nil {
						b.Fatal(err)
					}
					if err := c.ConfigureConfirm(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("part-bird-state", func(b *testing.B) {
				for b.Loop() {
					if _, err := a.bird.State(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("part-write-durably", func(b *testing.B) {
				data, err := os.ReadFile(files[0])
				if err != nil {
					b.Fatal(err)
				}
				dst := filepath.Join(f.bird.Dir, "durable.conf")
				for b.Loop() {
					tmp, err := writeTemp(dst, data, cfg.Bird)
					if err != nil {
						b.Fatal(err)
					}
					if err := renameSynced(tmp, dst); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("part-render", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if _, err := a.render(cfgs[i%2].BirdInput(cfgs[i%2].PodCIDRs)); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkPrivilegedChangeToToR measures, per change of one prefix, the
// time from the agent receiving the new config (SetConfig, as after a file
// reload or a Node update) to
//   - wire: the BGP UPDATE announcing the new prefix reaching tor1's
//     interface (captured with a packet socket in tor1's namespace), and
//   - fib: the new prefix appearing in tor1's kernel FIB (FRR's bgpd
//     processed the UPDATE and zebra installed the route).
//
// The difference is FRR's own batching (bgpd's and zebra's work queues
// hold changes for tens of milliseconds). Run it with -benchtime=Nx
// (N >= 30); it reports p50 and p99 of both. Changes are spaced by more
// than the debounce so each is applied on its own.
func BenchmarkPrivilegedChangeToToR(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			f, a, cfg := benchFabric(b, n)
			cfg.Debounce = 100 * time.Millisecond
			a.SetConfig(cfg)
			base := cfg.PodCIDRs
			routes := subscribeRoutes(b, f.torNS[0])
			wire := captureBGP(b, f.torNS[0])
			var fib, onWire []time.Duration
			for i := 0; b.Loop(); i++ {
				next, p := withPrefixes(cfg, base, 2+i)
				time.Sleep(cfg.Debounce + 20*time.Millisecond)
				drainPackets(wire)
				start := time.Now()
				a.SetConfig(next)
				fib = append(fib, waitRoute(b, routes, p).Sub(start))
				onWire = append(onWire, waitUpdate(b, wire, p).Sub(start))
			}
			slices.Sort(fib)
			slices.Sort(onWire)
			b.ReportMetric(ms(percentile(onWire, 50)), "wire-p50-ms")
			b.ReportMetric(ms(percentile(onWire, 99)), "wire-p99-ms")
			b.ReportMetric(ms(percentile(fib, 50)), "fib-p50-ms")
			b.ReportMetric(ms(percentile(fib, 99)), "fib-p99-ms")
			b.ReportMetric(float64(len(fib)), "changes")
		})
	}
}

// packet is one captured frame and when it was read.
type packet struct {
	at   time.Time
	data []byte
}

// captureBGP captures, in namespace ns, every frame carrying TCP port 179.
func captureBGP(b *testing.B, ns string) <-chan packet {
	b.Helper()
	fd := packetSocketIn(b, ns)
	ch := make(chan packet, 1<<14)
	// The kernel stamps each frame on arrival (SO_TIMESTAMPNS), so the
	// time does not depend on when this goroutine gets to read it.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		b.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1<<16)
		oob := make([]byte, 128)
		for {
			n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
			if err != nil {
				close(ch)
				return
			}
			at := time.Now()
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
						ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
						at = time.Unix(ts.Unix())
					}
				}
			}
			if isBGP(buf[:n]) {
				select {
				case ch <- packet{at, slices.Clone(buf[:n])}:
				default:
				}
			}
		}
	}()
	b.Cleanup(func() { unix.Shutdown(fd, unix.SHUT_RDWR); unix.Close(fd) })
	return ch
}

// packetSocketIn opens an AF_PACKET socket inside namespace ns.
func packetSocketIn(b *testing.B, ns string) int {
	b.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		b.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		b.Fatal(err)
	}
	defer netns.Set(orig)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_IP)))
	if err != nil {
		b.Fatal(err)
	}
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// isBGP reports whether an Ethernet frame is IPv4 TCP with port 179.
func isBGP(f []byte) bool {
	if len(f) < 14+20+20 || f[12] != 0x08 || f[13] != 0x00 || f[14+9] != 6 {
		return false
	}
	ihl := int(f[14]&0x0f) * 4
	tcp := f[14+ihl:]
	if len(tcp) < 20 {
		return false
	}
	sport, dport := int(tcp[0])<<8|int(tcp[1]), int(tcp[2])<<8|int(tcp[3])
	return sport == 179 || dport == 179
}

// carries reports whether a BGP frame's payload holds the IPv4 NLRI of p:
// its length, then as many address bytes as the length covers.
func carries(f []byte, p netip.Prefix) bool {
	a := p.Addr().As4()
	return bytes.Contains(f, append([]byte{byte(p.Bits())}, a[:(p.Bits()+7)/8]...))
}

func drainPackets(ch <-chan packet) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// waitUpdate returns when the first frame announcing p was captured.
func waitUpdate(b *testing.B, ch <-chan packet, p netip.Prefix) time.Time {
	b.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case pk, ok := <-ch:
			if !ok {
				b.Fatal("capture ended")
			}
			if carries(pk.data, p) {
				return pk.at
			}
		case <-timeout:
			b.Fatalf("no UPDATE for %s captured", p)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the p-th percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted) + 99) / 100
	return sorted[max(0, min(i, len(sorted))-1)]
}

// routeEvent is one new route seen in a namespace, with the time
// "ip -ts monitor" read it from the kernel.
type routeEvent struct {
	at  time.Time
	dst string
}

// subscribeRoutes streams the routes added in namespace ns. It runs
// "ip -ts monitor route" there: a separate process stamps each event as it
// reads it, so the times do not depend on this process's scheduling.
func subscribeRoutes(b *testing.B, ns string) <-chan routeEvent {
	b.Helper()
	cmd := exec.Command("ip", "-n", ns, "-ts", "monitor", "route")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ch := make(chan routeEvent, 1<<16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// "[2026-11-25T20:28:54.840383] 10.64.0.0/24 nhid 12 via ..."
			stamp, rest, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "["), "] ")
			if !ok || strings.HasPrefix(rest, "Deleted") {
				continue
			}
			at, err := time.ParseInLocation("2006-01-02T15:04:05.000000", stamp, time.Local)
			if err != nil {
				continue
			}
			f := strings.Fields(rest)
			if len(f) > 1 && slices.Contains([]string{"blackhole", "unreachable", "prohibit", "unicast", "local", "broadcast", "throw"}, f[0]) {
				f = f[1:]
			}
			ch <- routeEvent{at: at, dst: f[0]}
		}
	}()
	// The monitor is listening once it reports a route we add.
	testenv.Run(b, "ip", "-n", ns, "route", "add", "blackhole", "192.0.2.0/31")
	waitRoute(b, ch, netip.MustParsePrefix("192.0.2.0/31"))
	return ch
}

// waitRoute returns when a route to p was added.
func waitRoute(b *testing.B, ch <-chan routeEvent, p netip.Prefix) time.Time {
	b.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				b.Fatal("route monitor ended")
			}
			if ev.dst == p.String() {
				return ev.at
			}
		case <-timeout:
			b.Fatalf("%s did not reach the ToR's kernel", p)
		}
	}
}

// BenchmarkPrivilegedAgentRSS runs the roost-agent binary with the static
// source and n prefixes, and reports its resident set once BIRD runs its
// config (rss-MB) and its peak (hwm-MB).
func BenchmarkPrivilegedAgentRSS(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			f := newFabric(b)
			ps := prefixSet(0, n)
			ss := make([]string, len(ps))
			for i, p := range ps {
				ss[i] = p.String()
			}
			p := f.startAgentProc(f.agentYAML(strings.Join(ss, ", ")))
			f.waitPrefixCount(n)
			time.Sleep(3 * time.Second) // a poll or two after the apply
			var rss, hwm float64
			for b.Loop() {
				rss, hwm = procMemory(b, p.agentPID(b))
			}
			b.ReportMetric(rss, "rss-MB")
			b.ReportMetric(hwm, "hwm-MB")
		})
	}
}

// agentPID finds roost-agent's pid: the process ip netns exec became.
func (p *agentProc) agentPID(b testing.TB) int {
	b.Helper()
	return p.cmd.Process.Pid
}

// procMemory reads VmRSS and VmHWM of pid, in MB.
func procMemory(b testing.TB, pid int) (rss, hwm float64) {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// vipSet returns n VIPs (/32) from 100.64.0.0 on, the k-th first.
func vipSet(first, n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range n {
		k := first + i
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(64 + k>>16), byte(k >> 8), byte(k)}), 32)
	}
	return out
}

// BenchmarkPrivilegedVIPChange measures, per VIP added beside n announced
// ones, the time from the request to the kernel (the VIP's blackhole route
// in the agent's VIP table, as vips.Announcer writes it) to the BGP UPDATE
// carrying it on tor1's wire; the same for its withdrawal, and for a VIP
// replacing another in one sync (swap: the new one's UPDATE); and, for
// comparison, the time from the agent
// getting a config with one more owned prefix in its static protocol to
// that prefix's UPDATE (BIRD reconfigured). Both on the same fabric, BIRD
// holding n VIPs and n owned prefixes. Run with -benchtime=Nx (N >= 30).
func BenchmarkPrivilegedVIPChange(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("vips=%d", n), func(b *testing.B) {
			f := newFabric(b)
			cfg := f.config()
			cfg.VIPs = config.VIPs{ServicesFile: "/nonexistent", Table: 4242}
			cfg.PodCIDRs = prefixSet(0, n)
			cfg.Debounce = 100 * time.Millisecond
			a := f.startAgent(cfg)
			waitStatus(b, a, "first apply", func(s agentapi.Status) bool {
				return s.LastApply.Result == agentapi.ResultOK && len(s.LastApply.Applied) == n
			})
			ns, err := netns.GetFromName(f.node)
			if err != nil {
				b.Fatal(err)
			}
			defer ns.Close()
			h, err := netlink.NewHandleAt(ns)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			table := routes.NewBlackholes(h, 4242)
			base := vipSet(0, n)
			if _, err := table.Sync(base); err != nil {
				b.Fatal(err)
			}
			f.waitPrefixCount(2 * n)
			before := f.waitEstablished()
			wire := captureBGP(b, f.torNS[0])
			var kernelPath, staticPath []time.Duration
			var gone, swaps, syncs []time.Duration
			for i := 0; b.Loop(); i++ {
				// A VIP comes, and goes.
				v := vipSet(n+2*i, 1)[0]
				time.Sleep(50 * time.Millisecond) // the last change's UPDATE acknowledged
				drainPackets(wire)
				start := time.Now()
				if _, err := table.Sync(append(slices.Clone(base), v)); err != nil {
					b.Fatal(err)
				}
				syncs = append(syncs, time.Since(start))
				kernelPath = append(kernelPath, waitUpdate(b, wire, v).Sub(start))
				time.Sleep(50 * time.Millisecond)
				drainPackets(wire)
				start = time.Now()
				if _, err := table.Sync(base); err != nil {
					b.Fatal(err)
				}
				gone = append(gone, waitUpdate(b, wire, v).Sub(start))
				// A VIP replaces another (one sync: one added, one
				// withdrawn).
				w := vipSet(n+2*i+1, 1)[0]
				time.Sleep(50 * time.Millisecond)
				drainPackets(wire)
				start = time.Now()
				if _, err := table.Sync(append(slices.Clone(base[1:]), w)); err != nil {
					b.Fatal(err)
				}
				swaps = append(swaps, waitUpdate(b, wire, w).Sub(start))
				base = append(base[1:], w)
				// An owned prefix comes, through BIRD's static protocol.
				next, p := withPrefixes(cfg, cfg.PodCIDRs, 2+i)
				time.Sleep(cfg.Debounce + 20*time.Millisecond)
				drainPackets(wire)
				start = time.Now()
				a.SetConfig(next)
				staticPath = append(staticPath, waitUpdate(b, wire, p).Sub(start))
				cfg = next
			}
			b.StopTimer()
			f.assertNoReset(before)
			slices.Sort(kernelPath)
			slices.Sort(gone)
			slices.Sort(staticPath)
			b.ReportMetric(ms(percentile(kernelPath, 50)), "kernel-p50-ms")
			b.ReportMetric(ms(percentile(kernelPath, 99)), "kernel-p99-ms")
			b.ReportMetric(ms(percentile(gone, 50)), "withdraw-p50-ms")
			b.ReportMetric(ms(percentile(gone, 99)), "withdraw-p99-ms")
			slices.Sort(swaps)
			b.ReportMetric(ms(percentile(swaps, 50)), "swap-p50-ms")
			b.ReportMetric(ms(percentile(swaps, 99)), "swap-p99-ms")
			slices.Sort(syncs)
			b.ReportMetric(ms(percentile(syncs, 50)), "sync-p50-ms")
			b.ReportMetric(ms(percentile(syncs, 99)), "sync-p99-ms")
			b.ReportMetric(ms(percentile(staticPath, 50)), "static-p50-ms")
			b.ReportMetric(ms(percentile(staticPath, 99)), "static-p99-ms")
		})
	}
}
