package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/testenv"
)

// drainFabric is one ToR (FRR, a GRACEFUL_SHUTDOWN receiver, ECMP) under
// two nodes that both announce the VIP 192.0.2.10 and route it to one
// service namespace behind them, and a client behind the ToR:
//
//	client 10.9.0.10 -- tor 10.9.0.1
//	tor 10.0.1.1 -- 10.0.1.2 node1 10.8.1.1 -- 10.8.1.2 svc (192.0.2.10 on lo)
//	tor 10.0.2.1 -- 10.0.2.2 node2 10.8.2.1 -- 10.8.2.2 svc
//
// Either node forwards a flow to the same socket, so the ToR moving a flow
// from one node to the other breaks nothing; a node that stops forwarding
// (maintenance) breaks every flow the ToR still sends it. svc answers
// through node2.
type drainFabric struct {
	client, tor, svc string
	frr              *testenv.FRR
	nodes            [2]*fabric
	procs            [2]*agentProc
	yaml             [2]string
}

const drainVIP = "192.0.2.10"

func newDrainFabric(t *testing.T) *drainFabric {
	t.Helper()
	testenv.Binary(t, "iptables")
	d := &drainFabric{client: testenv.NetNS(t, "dcl"), tor: testenv.NetNS(t, "dtor"), svc: testenv.NetNS(t, "dsvc")}
	testenv.Veth(t, d.client, testenv.Name("c"), "10.9.0.10/24", d.tor, testenv.Name("c"), "10.9.0.1/24")
	testenv.Run(t, "ip", "-n", d.client, "route", "add", "default", "via", "10.9.0.1")
	testenv.Run(t, "ip", "-n", d.svc, "addr", "add", drainVIP+"/32", "dev", "lo")
	svcFile := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(svcFile, []byte("services:\n  - name: web\n    externalIPs: ["+drainVIP+"]\n    ports: [{port: 80}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var peers []testenv.FRRPeer
	for i := range 2 {
		n := i + 1
		node := testenv.NetNS(t, fmt.Sprintf("dn%d", n))
		up := fmt.Sprintf("10.0.%d.2", n)
		testenv.Veth(t, d.tor, testenv.Name("d"), fmt.Sprintf("10.0.%d.1/30", n), node, testenv.Name("u"), up+"/30")
		testenv.Veth(t, node, testenv.Name("s"), fmt.Sprintf("10.8.%d.1/30", n), d.svc, testenv.Name("s"), fmt.Sprintf("10.8.%d.2/30", n))
		testenv.Run(t, "ip", "-n", node, "route", "add", "default", "via", fmt.Sprintf("10.0.%d.1", n))
		testenv.Run(t, "ip", "-n", node, "route", "add", drainVIP+"/32", "via", fmt.Sprintf("10.8.%d.2", n))
		testenv.Run(t, "ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0")
		peers = append(peers, testenv.FRRPeer{Address: netip.MustParseAddr(up), ASN: uint32(65100 + n)})
		f := &fabric{t: t, node: node, bird: testenv.StartBird(t, node, testenv.MinimalConfig)}
		d.nodes[i] = f
		d.yaml[i] = fmt.Sprintf(`node: node%d
asn: %d
routerID: %s
podCIDRs: [10.244.%d.0/24]
peers: [{name: tor, address: 10.0.%d.1, asn: 65000}]
bird: {socket: %s, configDir: %s}
listen: 127.0.0.1:9479
controlSocket: %s
vips: {servicesFile: %s, table: 4244}
drain: {wait: 3s, stateFile: %s}
`, n, 65100+n, up, n, n, f.bird.Socket, f.bird.Dir, f.controlSocket(), svcFile, filepath.Join(t.TempDir(), "drain.json"))
	}
	testenv.Run(t, "ip", "-n", d.svc, "route", "add", "default", "via", "10.8.2.1")
	testenv.Run(t, "ip", "netns", "exec", d.svc, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	// The ToR hashes flows by their ports too, so connections spread.
	testenv.Run(t, "ip", "netns", "exec", d.tor, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1")
	d.frr = testenv.StartFRR(t, d.tor, testenv.FRRConfig{ASN: 65000, RouterID: netip.MustParseAddr("10.9.0.1"), Neighbors: peers, GracefulShutdown: true})
	for i, f := range d.nodes {
		d.procs[i] = f.startAgentProc(d.yaml[i])
	}
	return d
}

// waitVIPVia waits until the ToR routes the VIP through exactly the
// nodes' uplinks given, in BGP and in its kernel.
func (d *drainFabric) waitVIPVia(t *testing.T, nexthops ...string) {
	t.Helper()
	var want []netip.Addr
	for _, a := range nexthops {
		want = append(want, netip.MustParseAddr(a))
	}
	vip := netip.MustParsePrefix(drainVIP + "/32")
	d.frr.WaitFor(t, waitLimit, fmt.Sprintf("the VIP via %v", nexthops), func() (bool, string) {
		kernel, err := d.frr.KernelRoutes()
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(kernel[vip], want), fmt.Sprint(kernel[vip])
	})
}

// forwarded is how many packets node i has forwarded (Ip: ForwDatagrams).
func (d *drainFabric) forwarded(t *testing.T, i int) int {
	t.Helper()
	out := testenv.Run(t, "ip", "netns", "exec", d.nodes[i].node, "cat", "/proc/net/snmp")
	var names, values []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "Ip:" {
			if names == nil {
				names = f
			} else {
				values = f
			}
		}
	}
	if i := slices.Index(names, "ForwDatagrams"); i > 0 && i < len(values) {
		var n int
		fmt.Sscan(values[i], &n)
		return n
	}
	t.Fatalf("no Ip: ForwDatagrams in /proc/net/snmp:\n%s", out)
	return 0
}

// traffic is continuous client traffic to the VIP through the ToR: a new
// connection every 10 ms (each one exchange), and a few long connections
// that exchange a byte every 20 ms; every failure is counted.
type traffic struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func (tr *traffic) fail(err error) {
	tr.failed.Add(1)
	tr.mu.Lock()
	if len(tr.errs) < 5 {
		tr.errs = append(tr.errs, err.Error())
	}
	tr.mu.Unlock()
}

func (d *drainFabric) startTraffic(t *testing.T, long int) *traffic {
	t.Helper()
	tr := &traffic{stop: make(chan struct{})}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			if err := testenv.ConnectHello(d.client, drainVIP+":80", time.Second); err != nil {
				tr.fail(err)
			} else {
				tr.ok.Add(1)
			}
		}
	}()
	for range long {
		var c net.Conn
		if err := testenv.InNetNS(d.client, func() (err error) {
			c, err = net.DialTimeout("tcp4", drainVIP+":81", time.Second)
			return err
		}); err != nil {
			t.Fatalf("long connection: %v", err)
		}
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				select {
				case <-tr.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write([]byte{'x'}); err != nil {
					tr.fail(fmt.Errorf("long connection: %w", err))
					return
				}
				if _, err := r.ReadByte(); err != nil {
					tr.fail(fmt.Errorf("long connection: %w", err))
					return
				}
			}
		}()
	}
	return tr
}

func (tr *traffic) end() (ok, failed int64, errs []string) {
	close(tr.stop)
	tr.wg.Wait()
	return tr.ok.Load(), tr.failed.Load(), tr.errs
}

// TestPrivilegedAgentDrain drains a node that shares a VIP with another,
// under continuous traffic through the ToR: roostctl drain announces the
// VIP (and the PodCIDR) with GRACEFUL_SHUTDOWN, the ToR moves the VIP's
// traffic to the other node, then the routes are withdrawn and the node
// stops forwarding (its maintenance): not one connection fails, short or
// long. The drained state holds across a restart of the agent and of BIRD
// and shows in status and metrics. As a control, undraining the node while
// it still does not forward makes connections fail: the traffic does
// detect a node that is sent flows it cannot carry.
func TestPrivilegedAgentDrain(t *testing.T) {
	d := newDrainFabric(t)
	testenv.ServeHello(t, d.svc, drainVIP+":80")
	testenv.ServeEcho(t, d.svc, drainVIP+":81")
	d.waitVIPVia(t, "10.0.1.2", "10.0.2.2")
	d.frr.WaitEstablished(t, waitLimit, netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.0.2.2"))
	sessionsBefore, err := d.frr.Neighbors()
	if err != nil {
		t.Fatal(err)
	}

	tr := d.startTraffic(t, 8)
	fwd1 := d.forwarded(t, 0)
	time.Sleep(time.Second)
	if n := d.forwarded(t, 0) - fwd1; n == 0 {
		t.Fatal("node1 forwarded nothing before the drain: the traffic does not use it")
	}

	// Drain: GRACEFUL_SHUTDOWN first, seen at the ToR as local
	// preference 0 on node1's path, which leaves the ECMP route.
	p := d.procs[0]
	out, err := p.roostctl("drain", "--no-wait")
	if err != nil || !strings.Contains(out, "draining since") {
		t.Fatalf("roostctl drain --no-wait: %v\n%s", err, out)
	}
	d.frr.WaitFor(t, waitLimit, "node1's VIP path with GRACEFUL_SHUTDOWN", func() (bool, string) {
		paths, err := d.frr.Paths(netip.MustParsePrefix(drainVIP + "/32"))
		if err != nil {
			return false, err.Error()
		}
		for _, ph := range paths {
			if ph.NextHop == netip.MustParseAddr("10.0.1.2") {
				return slices.Contains(ph.Communities, "graceful-shutdown") && ph.LocalPref == 0, fmt.Sprintf("%+v", paths)
			}
		}
		return false, fmt.Sprintf("%+v", paths)
	})
	d.waitVIPVia(t, "10.0.2.2")
	if s := p.status(); s.Drain.State != agentapi.DrainDraining {
		t.Errorf("status while draining: %+v", s.Drain)
	}
	// Then withdrawn, the session up.
	s := p.waitStatus("drained", func(s agentapi.Status) bool { return s.Drain.State == agentapi.DrainDrained })
	if !s.Ready {
		t.Errorf("drained agent not ready: %s", s.ReadyMessage)
	}
	d.frr.WaitFor(t, waitLimit, "node1's routes withdrawn", func() (bool, string) {
		rs, err := d.frr.BGPRoutes()
		if err != nil {
			return false, err.Error()
		}
		_, pod := rs[netip.MustParsePrefix("10.244.1.0/24")]
		vip := rs[netip.MustParsePrefix(drainVIP+"/32")]
		return !pod && slices.Equal(vip, []netip.Addr{netip.MustParseAddr("10.0.2.2")}), fmt.Sprint(rs)
	})
	// Maintenance: node1 forwards nothing any more.
	testenv.Run(t, "ip", "netns", "exec", d.nodes[0].node, "iptables", "-I", "FORWARD", "-j", "DROP")
	time.Sleep(time.Second)
	ok, failed, errs := tr.end()
	t.Logf("during the drain and the maintenance: %d connections ok, %d failed %q", ok, failed, errs)
	if failed != 0 || ok < 100 {
		t.Errorf("%d connections failed (%q), %d ok, during the drain: want 0 failed", failed, errs, ok)
	}
	after, err := d.frr.Neighbors()
	if err != nil {
		t.Fatal(err)
	}
	for a, n := range after {
		if b := sessionsBefore[a]; n.State != "Established" || n.ConnectionsDropped != b.ConnectionsDropped {
			t.Errorf("session of %s reset by the drain: before %+v, now %+v", a, b, n)
		}
	}
	// Status and metrics.
	// HTTP/1.0 over a connection opened in the node's namespace (a
	// client's transport would dial from another thread).
	var mc net.Conn
	if err := testenv.InNetNS(d.nodes[0].node, func() (err error) { mc, err = net.Dial("tcp4", "127.0.0.1:9479"); return err }); err != nil {
		t.Fatal(err)
	}
	mc.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(mc, "GET /metrics HTTP/1.0\r\n\r\n")
	raw, err := io.ReadAll(mc)
	mc.Close()
	if err != nil {
		t.Fatal(err)
	}
	metrics := string(raw)
	if !strings.Contains(metrics, `roost_drain_state{state="drained"} 1`) || !strings.Contains(metrics, `roost_drain_state{state="none"} 0`) {
		t.Errorf("metrics: no drained state:\n%s", grepLines(metrics, "roost_drain_state"))
	}
	if out, err := p.roostctl("status"); err != nil || !strings.Contains(out, "Drain:") || !strings.Contains(out, "drained since") {
		t.Errorf("roostctl status: %v\n%s", err, out)
	}
	// Withdrawn on purpose: not a problem for roostctl routes.
	if out, err := p.roostctl("routes"); err != nil || !strings.Contains(out, "the node is drained") {
		t.Errorf("roostctl routes on a drained node: %v\n%s", err, out)
	}

	// The state survives a restart of the agent, and of BIRD.
	p.kill()
	d.procs[0] = d.nodes[0].startAgentProc(d.yaml[0])
	p = d.procs[0]
	p.waitStatus("drained after the agent's restart", func(s agentapi.Status) bool {
		return s.Ready && s.Drain.State == agentapi.DrainDrained
	})
	d.nodes[0].bird.Kill()
	d.nodes[0].bird.Start("")
	p.waitStatus("ready after BIRD's restart", func(s agentapi.Status) bool { return s.Ready && s.Drain.State == agentapi.DrainDrained })
	d.frr.WaitEstablished(t, waitLimit, netip.MustParseAddr("10.0.1.2"))
	time.Sleep(time.Second) // the session is up: anything announced is in by now
	d.waitVIPVia(t, "10.0.2.2")
	if rs, err := d.frr.BGPRoutes(); err != nil || len(rs) != 2 {
		t.Errorf("after restarts, the ToR holds %v (%v): want node2's PodCIDR and VIP only", rs, err)
	}

	// Control: undrained while it still drops what it should forward,
	// node1 is given flows again, and they fail.
	tr = d.startTraffic(t, 0)
	if out, err := p.roostctl("undrain"); err != nil || !strings.Contains(out, "not drained") {
		t.Fatalf("roostctl undrain: %v\n%s", err, out)
	}
	d.waitVIPVia(t, "10.0.1.2", "10.0.2.2")
	time.Sleep(time.Second)
	_, failed, _ = tr.end()
	if failed == 0 {
		t.Error("no connection failed with node1 undrained and dropping: the traffic would not see a failing drain")
	}
	testenv.Run(t, "ip", "netns", "exec", d.nodes[0].node, "iptables", "-D", "FORWARD", "-j", "DROP")
	if err := testenv.ConnectHello(d.client, drainVIP+":80", time.Second); err != nil && !errors.Is(err, testenv.ErrDropped) {
		t.Errorf("after the maintenance: %v", err)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
