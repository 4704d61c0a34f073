package agent

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/routes"
	"github.com/roost-net/roost/internal/testenv"
)

// waitLimit bounds every wait on the fabric: a broken setup fails there,
// a working one takes a few seconds.
const waitLimit = 60 * time.Second

// fabric is one node in its own namespace with two uplinks, to two FRR ToRs
// in theirs (AS 65000), and a real BIRD in the node's namespace. Names come
// from testenv.Name, so a running lab is never touched.
type fabric struct {
	t       testing.TB
	node    string
	torNS   [2]string
	tors    [2]*testenv.FRR
	uplinks [2]netip.Addr // the node's addresses towards tor1, tor2
	torAddr [2]netip.Addr
	upIf    [2]string // the node's interfaces towards tor1, tor2
	bird    *testenv.Bird
	ctlSock string // the agent process's control socket
	// stopAgent ends the loop of the agent startAgent started (its
	// Agent stays usable for direct calls).
	stopAgent func()
}

func newFabric(t testing.TB) *fabric { return newFabricWith(t, testenv.FRRConfig{}) }

// newFabricWith is newFabric with the ToRs' FRR set up as tor says
// (BFD); its ASN, router id and neighbors are the fabric's.
func newFabricWith(t testing.TB, tor testenv.FRRConfig) *fabric {
	t.Helper()
	return newFabricASN(t, tor, 65101)
}

// newFabricASN is newFabricWith for a node of AS nodeASN.
func newFabricASN(t testing.TB, tor testenv.FRRConfig, nodeASN uint32) *fabric {
	t.Helper()
	testenv.Privileged(t)
	f := &fabric{t: t, node: testenv.NetNS(t, "node")}
	for i := range 2 {
		f.torNS[i] = testenv.NetNS(t, fmt.Sprintf("tor%d", i+1))
		f.torAddr[i] = netip.MustParseAddr(fmt.Sprintf("10.0.%d.1", i+1))
		f.uplinks[i] = netip.MustParseAddr(fmt.Sprintf("10.0.%d.2", i+1))
		f.upIf[i] = testenv.Name("u")
		testenv.Veth(t, f.node, f.upIf[i], f.uplinks[i].String()+"/30",
			f.torNS[i], testenv.Name("d"), f.torAddr[i].String()+"/30")
	}
	for i := range 2 {
		cfg := tor
		cfg.ASN, cfg.RouterID = 65000, f.torAddr[i]
		cfg.Neighbors = []testenv.FRRPeer{{Address: f.uplinks[i], ASN: nodeASN}}
		f.tors[i] = testenv.StartFRR(t, f.torNS[i], cfg)
	}
	f.bird = testenv.StartBird(t, f.node, testenv.MinimalConfig)
	return f
}

// config is the agent config for this fabric, announcing prefixes.
func (f *fabric) config(prefixes ...string) config.Config {
	c := config.Default()
	c.Node, c.ASN, c.RouterID = "node1", 65101, f.uplinks[0]
	c.Peers = []config.Peer{
		{Name: "tor1", Address: f.torAddr[0], ASN: 65000},
		{Name: "tor2", Address: f.torAddr[1], ASN: 65000},
	}
	c.Bird.Socket, c.Bird.ConfigDir = f.bird.Socket, f.bird.Dir
	c.Bird.LogFile = config.DefaultLogFile(f.bird.Socket) // as Load sets it
	c.Debounce = 0
	for _, p := range prefixes {
		c.PodCIDRs = append(c.PodCIDRs, netip.MustParsePrefix(p))
	}
	return c
}

// blackholes returns a blackhole manager for the node's namespace.
func (f *fabric) blackholes() *routes.Blackholes {
	f.t.Helper()
	ns, err := netns.GetFromName(f.node)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(h.Close)
	return routes.NewBlackholes(h, 0)
}

// startAgent runs the real agent loop in the test process against the
// fabric's BIRD, with kernel blackholes in the node's namespace.
func (f *fabric) startAgent(cfg config.Config, opts ...func(*Options)) *Agent {
	f.t.Helper()
	bird := NewBirdClient(cfg.Bird.Socket)
	o := Options{Config: cfg, Bird: bird, Blackholes: f.blackholes(), PollInterval: 200 * time.Millisecond}
	for _, fn := range opts {
		fn(&o)
	}
	a := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	f.stopAgent = func() { once.Do(func() { cancel(); <-done }) }
	f.t.Cleanup(func() {
		f.stopAgent()
		bird.Close()
	})
	return a
}

// waitAnnounced waits until each ToR holds exactly prefixes, each via the
// node's uplink to that ToR, and has installed them in its kernel.
func (f *fabric) waitAnnounced(prefixes ...string) {
	f.t.Helper()
	for i, tor := range f.tors {
		want := map[netip.Prefix][]netip.Addr{}
		for _, p := range prefixes {
			want[netip.MustParsePrefix(p)] = []netip.Addr{f.uplinks[i]}
		}
		tor.WaitFor(f.t, waitLimit, fmt.Sprintf("tor%d holds exactly %v", i+1, prefixes), func() (bool, string) {
			got, err := tor.BGPRoutes()
			if err != nil {
				return false, err.Error()
			}
			kernel, err := tor.KernelRoutes()
			if err != nil {
				return false, err.Error()
			}
			ok := maps.EqualFunc(got, want, slices.Equal[[]netip.Addr]) && maps.EqualFunc(kernel, want, slices.Equal[[]netip.Addr])
			return ok, fmt.Sprintf("bgp %v kernel %v", got, kernel)
		})
	}
}

// sessions records each ToR's view of its session to the node.
type sessions [2]testenv.FRRNeighbor

func (f *fabric) sessions() sessions {
	f.t.Helper()
	var s sessions
	for i, tor := range f.tors {
		ns, err := tor.Neighbors()
		if err != nil {
			f.t.Fatal(err)
		}
		s[i] = ns[f.uplinks[i]]
	}
	return s
}

// waitEstablished waits for both sessions.
func (f *fabric) waitEstablished() sessions {
	f.t.Helper()
	for i, tor := range f.tors {
		tor.WaitEstablished(f.t, waitLimit, f.uplinks[i])
	}
	return f.sessions()
}

// assertNoReset fails unless every session is still the one in before:
// established as often, never dropped, and up at least as long.
func (f *fabric) assertNoReset(before sessions) {
	f.t.Helper()
	now := f.sessions()
	for i := range now {
		b, n := before[i], now[i]
		if n.State != "Established" || n.ConnectionsEstablished != b.ConnectionsEstablished ||
			n.ConnectionsDropped != b.ConnectionsDropped || n.Uptime < b.Uptime {
			f.t.Errorf("tor%d session was reset: before %+v, now %+v", i+1, b, n)
		}
	}
}

// nodeImportsNothing checks that BIRD holds no route learnt from a peer
// and the node's kernel has no route from BIRD.
func (f *fabric) nodeImportsNothing() {
	f.t.Helper()
	for _, proto := range []string{"bgp_tor1", "bgp_tor2"} {
		out := testenv.Run(f.t, "birdc", "-s", f.bird.Socket, "show", "route", "protocol", proto, "count")
		// "N of M routes ..." counts the routes of proto among all: N
		// must be 0 on every line.
		if !regexp.MustCompile(`(?m)^0 of \d+ routes`).MatchString(out) || regexp.MustCompile(`(?m)^[1-9]\d* of`).MatchString(out) {
			f.t.Errorf("BIRD holds routes from %s:\n%s", proto, out)
		}
	}
	kernel, err := exec.Command("ip", "-n", f.node, "route", "show", "proto", "bird").CombinedOutput()
	if err != nil || strings.TrimSpace(string(kernel)) != "" {
		f.t.Errorf("node kernel has BIRD routes: %s %v", kernel, err)
	}
}

// kernelBlackholes lists the node's blackhole routes of roost's protocol.
func (f *fabric) kernelBlackholes() string {
	f.t.Helper()
	out := testenv.Run(f.t, "ip", "-n", f.node, "route", "show", "proto", fmt.Sprint(int(routes.Protocol)))
	return strings.TrimSpace(out)
}
