package xdplb

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/services"
	"github.com/roost-net/roost/internal/testenv"
)

// fabric is a client behind a router (the ToR) and two nodes, each with a
// pod; the nodes run the uplink load balancer on their interface to the
// router. The router routes the VIPs to a node of the test's choosing, and
// each PodCIDR to its node, as BGP would.
//
//	client 198.51.100.2/24 --- .1 tor 10.0.1.1/30 --- .2 node1 --- pod1 10.244.1.10
//	                              tor 10.0.2.1/30 --- .2 node2 --- pod2 10.244.2.10
type fabric struct {
	client, tor string
	nodes       [2]string
	pods        [2]string
	lbs         [2]*LB
	pins        [2]string
}

var (
	podIPs   = [2]string{"10.244.1.10", "10.244.2.10"}
	nodeIPs  = [2]string{"10.0.1.2", "10.0.2.2"}
	clientIP = "198.51.100.2"
	vip      = "192.0.2.10"
	vipLocal = "192.0.2.11" // externalTrafficPolicy: Local
	// sessionAffinity: ClientIP
	vipSticky = "192.0.2.12"
)

const (
	nodePort = 30080
	// uplink is each node's interface to the router. The test's interface
	// names are made in the root namespace before they move, so none is a
	// common name (eth0) that may be there already.
	uplink = "xlbup"
)

func newFabric(t *testing.T, pinned bool) *fabric {
	t.Helper()
	testenv.Privileged(t)
	f := &fabric{client: testenv.NetNS(t, "xlbc"), tor: testenv.NetNS(t, "xlbt")}
	testenv.Veth(t, f.client, "xlbup", clientIP+"/24", f.tor, "xlbclient", "198.51.100.1/24")
	testenv.Run(t, "ip", "-n", f.client, "route", "add", "default", "via", "198.51.100.1")
	testenv.Run(t, "ip", "netns", "exec", f.tor, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for i := range 2 {
		n := testenv.NetNS(t, fmt.Sprintf("xlbn%d", i+1))
		p := testenv.NetNS(t, fmt.Sprintf("xlbp%d", i+1))
		f.nodes[i], f.pods[i] = n, p
		torIf := fmt.Sprintf("xlbnode%d", i+1)
		testenv.Veth(t, f.tor, torIf, fmt.Sprintf("10.0.%d.1/30", i+1), n, uplink, nodeIPs[i]+"/30")
		// Room for the outer header of encapsulated packets, as on a
		// fabric with jumbo frames.
		testenv.Run(t, "ip", "-n", f.tor, "link", "set", torIf, "mtu", "1600")
		testenv.Run(t, "ip", "-n", n, "link", "set", uplink, "mtu", "1600")
		testenv.Run(t, "ip", "-n", f.tor, "route", "add", fmt.Sprintf("10.244.%d.0/24", i+1), "via", nodeIPs[i])
		testenv.Run(t, "ip", "-n", n, "route", "add", "default", "via", fmt.Sprintf("10.0.%d.1", i+1))
		testenv.Run(t, "ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		// The pod, wired as the lab wires them.
		testenv.Veth(t, n, "xlbpod", "169.254.1.1/32", p, "xlbeth", podIPs[i]+"/32")
		testenv.Run(t, "ip", "-n", p, "route", "add", "169.254.1.1", "dev", "xlbeth", "scope", "link")
		testenv.Run(t, "ip", "-n", p, "route", "add", "default", "via", "169.254.1.1", "dev", "xlbeth")
		testenv.Run(t, "ip", "-n", n, "route", "add", podIPs[i]+"/32", "dev", "xlbpod", "scope", "link")
		serveWho(t, p, podIPs[i]+":8080")
	}
	f.routeVIP(t, vip, 0)
	f.routeVIP(t, vipLocal, 0)
	f.routeVIP(t, vipSticky, 0)
	for i := range 2 {
		f.start(t, i, pinned)
	}
	return f
}

// start loads (or, pinned, opens) node i's load balancer and attaches it.
func (f *fabric) start(t *testing.T, i int, pinned bool) {
	t.Helper()
	cfg := Config{Source4: netip.MustParseAddr(nodeIPs[i])}
	var (
		lb  *LB
		err error
	)
	if pinned {
		if f.pins[i] == "" {
			f.pins[i] = testenv.BPFFS(t)
			t.Cleanup(func() {
				if f.lbs[i] != nil {
					f.lbs[i].Unpin()
				}
			})
		}
		lb, err = Open(f.pins[i], cfg)
	} else {
		lb, err = Load(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	// auto: generic on a veth, whose native XDP_TX would need XDP on the
	// router's end too.
	if err := testenv.InNetNS(f.nodes[i], func() error { return lb.Attach([]string{uplink}, ModeAuto) }); err != nil {
		t.Fatal(err)
	}
	if m := lb.Modes()[uplink]; m != "generic" {
		t.Fatalf("attach mode %q on a veth, want generic", m)
	}
	f.lbs[i] = lb
	f.sync(t, i, f.services())
}

// services are the test's services: db behind the VIP and a node port,
// with a backend on each node; and local behind vipLocal with
// externalTrafficPolicy: Local.
func (f *fabric) services() []services.Service {
	bs := []services.Backend{
		{IP: netip.MustParseAddr(podIPs[0]), Node: "node1", Ready: true, Serving: true},
		{IP: netip.MustParseAddr(podIPs[1]), Node: "node2", Ready: true, Serving: true},
	}
	return []services.Service{
		{Namespace: "default", Name: "db", ExternalIPs: []netip.Addr{netip.MustParseAddr(vip)},
			Ports: []services.Port{
				{Name: "tcp", Protocol: services.TCP, Port: 80, TargetPort: 8080, NodePort: nodePort},
				{Name: "udp", Protocol: services.UDP, Port: 80, TargetPort: 8080, NodePort: nodePort},
			},
			ExternalTrafficPolicy: services.TrafficPolicyCluster, Backends: bs},
		{Namespace: "default", Name: "sticky", ExternalIPs: []netip.Addr{netip.MustParseAddr(vipSticky)},
			Ports:                 []services.Port{{Protocol: services.TCP, Port: 80, TargetPort: 8080}},
			ExternalTrafficPolicy: services.TrafficPolicyCluster, SessionAffinity: services.SessionAffinityClientIP,
			SessionAffinityTimeout: 3 * time.Hour, Backends: bs},
		{Namespace: "default", Name: "local", ExternalIPs: []netip.Addr{netip.MustParseAddr(vipLocal)},
			Ports:                 []services.Port{{Protocol: services.TCP, Port: 80, TargetPort: 8080}},
			ExternalTrafficPolicy: services.TrafficPolicyLocal, Backends: bs},
	}
}

func (f *fabric) sync(t *testing.T, i int, svcs []services.Service) {
	t.Helper()
	es, notes := Entries(svcs, fmt.Sprintf("node%d", i+1), []netip.Addr{netip.MustParseAddr(nodeIPs[i])})
	if len(notes) > 0 {
		t.Fatalf("notes: %v", notes)
	}
	if err := f.lbs[i].Sync(es); err != nil {
		t.Fatal(err)
	}
	if err := f.lbs[i].SetNodes([]netip.Addr{netip.MustParseAddr(nodeIPs[0]), netip.MustParseAddr(nodeIPs[1])}); err != nil {
		t.Fatal(err)
	}
}

// routeVIP makes the router send addr's traffic to node i (0 or 1), as
// an ECMP rehash would.
func (f *fabric) routeVIP(t *testing.T, addr string, i int) {
	t.Helper()
	testenv.Run(t, "ip", "-n", f.tor, "route", "replace", addr+"/32", "via", nodeIPs[i])
}

// serveWho answers every TCP connection and UDP datagram on addr in ns with
// "<pod address> <client address>".
func serveWho(t *testing.T, ns, addr string) {
	t.Helper()
	var (
		ln net.Listener
		pc net.PacketConn
	)
	if err := testenv.InNetNS(ns, func() (err error) {
		if ln, err = net.Listen("tcp4", addr); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					fmt.Fprintf(c, "%s %s\n", addr, c.RemoteAddr())
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(fmt.Sprintf("%s %s\n", addr, from)), from)
		}
	}()
}

// conn is a client connection through the fabric.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, f *fabric, network, addr string, localPort int) (*conn, error) {
	t.Helper()
	var c net.Conn
	err := testenv.InNetNS(f.client, func() (err error) {
		d := net.Dialer{Timeout: 3 * time.Second}
		if localPort != 0 {
			if network == "tcp4" {
				d.LocalAddr = &net.TCPAddr{Port: localPort}
			} else {
				d.LocalAddr = &net.UDPAddr{Port: localPort}
			}
		}
		c, err = d.Dial(network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &conn{c: c, r: bufio.NewReader(c)}, nil
}

// ask sends a line and returns the backend's answer: which pod, and the
// client address it saw.
func (c *conn) ask() (pod, client string, err error) {
	if err := c.c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return "", "", err
	}
	if _, err := fmt.Fprintln(c.c, "who"); err != nil {
		return "", "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	fields := strings.Fields(line)
	if len(fields) != 2 {
		return "", "", fmt.Errorf("answer %q", line)
	}
	return fields[0], fields[1], nil
}

// TestPrivilegedUplinkTraffic sends real TCP and UDP from a client outside
// the fabric to a VIP, a node port, a VIP with sessionAffinity: ClientIP
// and one with externalTrafficPolicy: Local, through a router and two nodes whose uplinks run lb_xdp and
// lb_reply, and checks where the flows land and what the backends see.
func TestPrivilegedUplinkTraffic(t *testing.T) {
	f := newFabric(t, false)
	clientPrefix := clientIP + ":"

	t.Run("VIP over TCP reaches both backends, each seeing the client", func(t *testing.T) {
		seen := map[string]int{}
		for i := range 24 {
			c, err := dial(t, f, "tcp4", vip+":80", 41000+i)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			pod, client, err := c.ask()
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			if !strings.HasPrefix(client, clientPrefix) {
				t.Fatalf("backend %s saw client %s, want %s*", pod, client, clientPrefix)
			}
			if got := c.c.RemoteAddr().String(); got != vip+":80" {
				t.Fatalf("connected to %s", got)
			}
			seen[pod]++
		}
		if len(seen) != 2 {
			t.Fatalf("24 connections through node1 reached %v; want both pods (local and encapsulated)", seen)
		}
		counters, _ := f.lbs[0].Counters()
		if counters["local"] == 0 || counters["encapsulated"] == 0 {
			t.Errorf("node1 counters %v: want local and encapsulated packets", counters)
		}
		counters2, _ := f.lbs[1].Counters()
		if counters2["decapsulated"] == 0 || counters2["reply-translated"] == 0 {
			t.Errorf("node2 counters %v: want decapsulated packets and translated replies", counters2)
		}
	})

	t.Run("VIP over UDP: the answer comes from the VIP", func(t *testing.T) {
		for i := range 8 {
			c, err := dial(t, f, "udp4", vip+":80", 42000+i)
			if err != nil {
				t.Fatal(err)
			}
			// A connected UDP socket takes datagrams from the VIP only.
			if _, client, err := c.ask(); err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			} else if !strings.HasPrefix(client, clientPrefix) {
				t.Fatalf("backend saw %s", client)
			}
		}
	})

	t.Run("node port", func(t *testing.T) {
		seen := map[string]int{}
		for i := range 16 {
			c, err := dial(t, f, "tcp4", fmt.Sprintf("%s:%d", nodeIPs[0], nodePort), 43000+i)
			if err != nil {
				t.Fatal(err)
			}
			pod, _, err := c.ask()
			if err != nil {
				t.Fatal(err)
			}
			seen[pod]++
		}
		if len(seen) != 2 {
			t.Fatalf("node port reached %v, want both pods", seen)
		}
	})

	t.Run("node port over UDP", func(t *testing.T) {
		for i := range 8 {
			c, err := dial(t, f, "udp4", fmt.Sprintf("%s:%d", nodeIPs[0], nodePort), 43100+i)
			if err != nil {
				t.Fatal(err)
			}
			if _, client, err := c.ask(); err != nil || !strings.HasPrefix(client, clientPrefix) {
				t.Fatalf("datagram %d: backend saw %q: %v", i, client, err)
			}
		}
	})

	t.Run("sessionAffinity ClientIP: one backend for all of a client's connections, on either node", func(t *testing.T) {
		first := ""
		for i := range 16 {
			if i == 8 {
				f.routeVIP(t, vipSticky, 1)
				defer f.routeVIP(t, vipSticky, 0)
			}
			c, err := dial(t, f, "tcp4", vipSticky+":80", 47000+i)
			if err != nil {
				t.Fatal(err)
			}
			pod, _, err := c.ask()
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = pod
			}
			if pod != first {
				t.Fatalf("connection %d went to %s, the client's first to %s", i, pod, first)
			}
		}
	})

	t.Run("externalTrafficPolicy Local: only the node's own backend", func(t *testing.T) {
		for i := range 8 {
			c, err := dial(t, f, "tcp4", vipLocal+":80", 44000+i)
			if err != nil {
				t.Fatal(err)
			}
			pod, client, err := c.ask()
			if err != nil {
				t.Fatal(err)
			}
			if pod != podIPs[0]+":8080" || !strings.HasPrefix(client, clientPrefix) {
				t.Fatalf("through node1: pod %s saw %s, want %s seeing the client", pod, client, podIPs[0])
			}
		}
		f.routeVIP(t, vipLocal, 1)
		defer f.routeVIP(t, vipLocal, 0)
		c, err := dial(t, f, "tcp4", vipLocal+":80", 44100)
		if err != nil {
			t.Fatal(err)
		}
		if pod, _, err := c.ask(); err != nil || pod != podIPs[1]+":8080" {
			t.Fatalf("through node2: pod %s, %v; want %s", pod, err, podIPs[1])
		}
	})

	t.Run("ECMP rehash: established connections keep their backend on the other node", func(t *testing.T) {
		var conns []*conn
		first := map[*conn]string{}
		for i := range 12 {
			c, err := dial(t, f, "tcp4", vip+":80", 45000+i)
			if err != nil {
				t.Fatal(err)
			}
			pod, _, err := c.ask()
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			first[c] = pod
		}
		f.routeVIP(t, vip, 1) // node2 has never seen these flows
		defer f.routeVIP(t, vip, 0)
		for i, c := range conns {
			pod, _, err := c.ask()
			if err != nil {
				t.Fatalf("connection %d broke after the rehash: %v", i, err)
			}
			if pod != first[c] {
				t.Fatalf("connection %d answered by %s, then %s", i, first[c], pod)
			}
		}
	})
}

// TestPrivilegedUplinkRestart: connections through a remote and a local
// backend survive the load balancers of both nodes being closed and
// opened again from their pins (a restart, or an upgrade: the links move
// to the new programs).
func TestPrivilegedUplinkRestart(t *testing.T) {
	f := newFabric(t, true)
	var conns []*conn
	for i := range 8 {
		c, err := dial(t, f, "tcp4", vip+":80", 46000+i)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ask(); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i := range 2 {
		f.lbs[i].Close()
	}
	// While no loader runs, the pinned programs keep serving.
	for i, c := range conns {
		if _, _, err := c.ask(); err != nil {
			t.Fatalf("connection %d while no loader runs: %v", i, err)
		}
	}
	for i := range 2 {
		f.start(t, i, true)
	}
	for i, c := range conns {
		if _, _, err := c.ask(); err != nil {
			t.Fatalf("connection %d after the restart: %v", i, err)
		}
	}
	if n, err := f.lbs[0].Conns(); err != nil || n < len(conns) {
		t.Errorf("node1 remembers %d flows (%v), want at least %d", n, err, len(conns))
	}
}
