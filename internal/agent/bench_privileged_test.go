package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdctl"
	"github.com/roost-net/roost/internal/config"
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
	for i, tor := range f.tors {
		tor.WaitFor(b, 5*waitLimit, fmt.Sprintf("tor%d holds %d prefixes", i+1, n), func() (bool, string) {
			ns, err := tor.Neighbors()
			if err != nil {
				return false, err.Error()
			}
			got := ns[f.uplinks[i]].PrefixesReceived
			return got == n, strconv.Itoa(got)
		})
	}
	return f, a, cfg
}

// withPrefixes returns cfg announcing base with its first prefix replaced
// by a new one numbered k: a change of one prefix, as a new PodCIDR is.
func withPrefixes(cfg config.Config, base []netip.Prefix, k int) (config.Config, netip.Prefix) {
	p := prefixSet(len(base)+k, 1)[0]
	cfg.PodCIDRs = append([]netip.Prefix{p}, base[1:]...)
	return cfg, p
}

// BenchmarkPrivilegedApply measures one apply of the agent (render, compare,
// blackholes, temp file, configure check, rename, configure) for a change of
// one prefix, beside BIRD's own "configure" of the same two files (the
// floor: what BIRD spends whoever drives it). The agent loop is idle: apply
// is called directly.
func BenchmarkPrivilegedApply(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			f, a, cfg := benchFabric(b, n)
			base := cfg.PodCIDRs
			ctx := context.Background()
			cfgs := [2]config.Config{}
			cfgs[0], _ = withPrefixes(cfg, base, 0)
			cfgs[1], _ = withPrefixes(cfg, base, 1)

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
				out, err := a.render(RenderInput(c, c.PodCIDRs))
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
			b.Run("bird-check", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if err := c.ConfigureCheck(ctx, files[i%2]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkPrivilegedChangeToToR measures, per change of one prefix, the
// time from the agent receiving the new config (SetConfig, as after a file
// reload or a Node update) to the new prefix appearing in tor1's kernel FIB
// (FRR learnt it by BGP and zebra installed it). Run it with -benchtime=Nx
// (N >= 30); it reports p50 and p99. Changes are spaced by more than the
// debounce so each is applied on its own.
func BenchmarkPrivilegedChangeToToR(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			f, a, cfg := benchFabric(b, n)
			cfg.Debounce = 100 * time.Millisecond
			a.SetConfig(cfg)
			base := cfg.PodCIDRs
			routes := subscribeRoutes(b, f.torNS[0])
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				next, p := withPrefixes(cfg, base, 2+i)
				time.Sleep(cfg.Debounce + 20*time.Millisecond)
				start := time.Now()
				a.SetConfig(next)
				waitRoute(b, routes, p)
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
			b.ReportMetric(float64(len(lat)), "changes")
		})
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

// subscribeRoutes streams route updates of namespace ns.
func subscribeRoutes(b *testing.B, ns string) <-chan netlink.RouteUpdate {
	b.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan netlink.RouteUpdate, 1<<16)
	done := make(chan struct{})
	b.Cleanup(func() { close(done); h.Close() })
	if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: &h}); err != nil {
		b.Fatal(err)
	}
	return ch
}

// waitRoute waits for a new route to p on the stream.
func waitRoute(b *testing.B, ch <-chan netlink.RouteUpdate, p netip.Prefix) {
	b.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case u := <-ch:
			if u.Type == 24 /* RTM_NEWROUTE */ && u.Dst != nil && u.Dst.String() == p.String() {
				return
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
			for i, tor := range f.tors {
				tor.WaitFor(b, 5*waitLimit, fmt.Sprintf("tor%d holds %d prefixes", i+1, n), func() (bool, string) {
					ns, err := tor.Neighbors()
					if err != nil {
						return false, err.Error()
					}
					got := ns[f.uplinks[i]].PrefixesReceived
					return got == n, strconv.Itoa(got)
				})
			}
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
