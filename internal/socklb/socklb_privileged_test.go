package socklb

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// harness is a socket load balancer attached to a cgroup of the test's own,
// with the test process in that cgroup (sockets of other processes are
// never touched), and a network namespace whose loopback holds the
// backends' addresses, each served by an answerer that says which address
// it was reached on.
type harness struct {
	lb     *LB
	ns     string
	cgroup string
}

// Addresses in the test's namespace. The frontends are on no interface:
// only the translation at connect() makes them reachable.
var (
	backends4 = []netip.Addr{netip.MustParseAddr("10.250.1.1"), netip.MustParseAddr("10.250.1.2"), netip.MustParseAddr("10.250.1.3")}
	backends6 = []netip.Addr{netip.MustParseAddr("fd00:250::1"), netip.MustParseAddr("fd00:250::2")}
	front4    = netip.MustParseAddr("10.96.250.10")
	front6    = netip.MustParseAddr("fd00:96::250:10")
)

const backendPort = 8080

func newHarness(t testing.TB) *harness {
	t.Helper()
	testenv.Privileged(t)
	root, err := CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	lb, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	cg := testenv.Cgroup(t, root)
	if err := lb.Attach(cg); err != nil {
		t.Fatal(err)
	}

	ns := testenv.NetNS(t, "sock")
	testenv.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	for _, a := range backends4 {
		testenv.Run(t, "ip", "-n", ns, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	for _, a := range backends6 {
		testenv.Run(t, "ip", "-n", ns, "addr", "add", a.String()+"/128", "dev", "lo")
	}
	for _, a := range append(append([]netip.Addr{}, backends4...), backends6...) {
		serveWhoAmI(t, ns, netip.AddrPortFrom(a, backendPort))
	}
	return &harness{lb: lb, ns: ns, cgroup: cg}
}

// serveWhoAmI answers every TCP connection and UDP datagram to addr in ns
// with addr itself, until the test ends.
func serveWhoAmI(t testing.TB, ns string, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	if err := testenv.InNetNS(ns, func() (err error) {
		if ln, err = net.Listen("tcp", addr.String()); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", addr.String())
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
			io.WriteString(c, addr.String())
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(addr.String()), from)
		}
	}()
}

// dialTCP connects from the test's namespace to addr and returns which
// backend answered and what getpeername says the peer is.
func (h *harness) dialTCP(addr netip.AddrPort) (backend, peer string, err error) {
	var c net.Conn
	if err := testenv.InNetNS(h.ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr.String(), 2*time.Second)
		return err
	}); err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), c.RemoteAddr().String(), err
}

// connectedUDP sends a datagram on a connected UDP socket and returns the
// backend that answered and the socket's peer.
func (h *harness) connectedUDP(addr netip.AddrPort) (backend, peer string, err error) {
	var c net.Conn
	if err := testenv.InNetNS(h.ns, func() (err error) {
		c, err = net.Dial("udp", addr.String())
		return err
	}); err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		return "", "", err
	}
	buf := make([]byte, 128)
	n, err := c.Read(buf)
	return string(buf[:n]), c.RemoteAddr().String(), err
}

// unconnectedUDP sends a datagram with sendto() on an unconnected socket
// and returns the backend that answered and the address recvfrom() says
// the answer came from.
func (h *harness) unconnectedUDP(addr netip.AddrPort) (backend, from string, err error) {
	network := "udp4"
	if addr.Addr().Is6() {
		network = "udp6"
	}
	var pc net.PacketConn
	if err := testenv.InNetNS(h.ns, func() (err error) {
		pc, err = net.ListenPacket(network, ":0")
		return err
	}); err != nil {
		return "", "", err
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := pc.WriteTo([]byte("hi"), net.UDPAddrFromAddrPort(addr)); err != nil {
		return "", "", err
	}
	buf := make([]byte, 128)
	n, src, err := pc.ReadFrom(buf)
	if err != nil {
		return "", "", err
	}
	return string(buf[:n]), src.String(), nil
}

func addrPorts(as []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range as {
		out = append(out, netip.AddrPortFrom(a, backendPort))
	}
	return out
}

func TestPrivilegedSocketLB(t *testing.T) {
	h := newHarness(t)
	const port = 80
	entries := []Entry{
		{Frontend: Frontend{Addr: front4, Port: port, Proto: TCP}, Backends: addrPorts(backends4[:2])},
		{Frontend: Frontend{Addr: front4, Port: port, Proto: UDP}, Backends: addrPorts(backends4[:2])},
		{Frontend: Frontend{Addr: front6, Port: port, Proto: TCP}, Backends: addrPorts(backends6)},
		{Frontend: Frontend{Addr: front6, Port: port, Proto: UDP}, Backends: addrPorts(backends6)},
	}
	if err := h.lb.Sync(entries); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		front netip.Addr
		call  func(netip.AddrPort) (string, string, error)
		want  []netip.Addr
	}{
		{"tcp4", front4, h.dialTCP, backends4[:2]},
		{"udp4-connected", front4, h.connectedUDP, backends4[:2]},
		{"udp4-sendto", front4, h.unconnectedUDP, backends4[:2]},
		{"tcp6", front6, h.dialTCP, backends6},
		{"udp6-connected", front6, h.connectedUDP, backends6},
		{"udp6-sendto", front6, h.unconnectedUDP, backends6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			front := netip.AddrPortFrom(tc.front, port)
			hits := map[string]int{}
			for range 100 {
				backend, peer, err := tc.call(front)
				if err != nil {
					t.Fatalf("%s: %v", front, err)
				}
				if peer != front.String() {
					t.Fatalf("the socket says its peer is %s, want the frontend %s", peer, front)
				}
				hits[backend]++
			}
			// Random choice: each of 2 backends gets at least one of 100
			// connections but with probability 1 - 2^-99.
			for _, b := range addrPorts(tc.want) {
				if hits[b.String()] == 0 {
					t.Errorf("backend %s never chosen: %v", b, hits)
				}
			}
			if len(hits) != len(tc.want) {
				t.Errorf("answered by %v, want only %v", hits, tc.want)
			}
		})
	}

	// A port that is not a frontend's, and a backend's own address, are
	// left alone.
	direct := netip.AddrPortFrom(backends4[2], backendPort)
	if backend, peer, err := h.dialTCP(direct); err != nil || backend != direct.String() || peer != direct.String() {
		t.Errorf("direct connection to %s: answered by %q, peer %q, %v", direct, backend, peer, err)
	}

	// Backends change: the terminating one (backends4[0]) leaves the set,
	// a new one comes; no new connection reaches the one that left.
	entries[0].Backends = addrPorts(backends4[1:])
	if err := h.lb.Sync(entries); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		backend, _, err := h.dialTCP(netip.AddrPortFrom(front4, port))
		if err != nil {
			t.Fatal(err)
		}
		if backend == netip.AddrPortFrom(backends4[0], backendPort).String() {
			t.Fatalf("a new connection reached %s, which left the backends", backend)
		}
	}

	// No backend: refused, as kube-proxy's REJECT does.
	entries[0].Backends = nil
	if err := h.lb.Sync(entries); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.dialTCP(netip.AddrPortFrom(front4, port)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("frontend without backends: %v, want connection refused", err)
	}

	// Removed: the address is no frontend any more (it is on no
	// interface: unreachable, or a timeout).
	if err := h.lb.Sync(entries[1:]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.dialTCP(netip.AddrPortFrom(front4, port)); err == nil || errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("removed frontend: %v, want it no longer served", err)
	}

	stats, err := h.lb.FrontendStats()
	if err != nil {
		t.Fatal(err)
	}
	// tcp6 and udp6 got 100 connections each (and tcp4, udp4 served
	// the rest before tcp4 left).
	if got := stats[entries[2].Frontend]; got != 100 {
		t.Errorf("frontend %s counted %d connections, want 100", entries[2].Frontend, got)
	}
	if got := stats[entries[3].Frontend]; got != 200 {
		t.Errorf("frontend %s counted %d sends, want 200 (connected and unconnected)", entries[3].Frontend, got)
	}
	counts, err := h.lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if counts["translated"] < 600 || counts["reverse-translated"] == 0 || counts["no-backend"] == 0 || counts["pass"] == 0 {
		t.Errorf("counters %v: want at least 600 translated, and some reverse-translated, no-backend, pass", counts)
	}
}

func TestPrivilegedSocketLBAffinity(t *testing.T) {
	h := newHarness(t)
	const port = 81
	front := netip.AddrPortFrom(front4, port)
	entry := Entry{Frontend: Frontend{Addr: front4, Port: port, Proto: TCP}, Backends: addrPorts(backends4), Affinity: time.Hour}
	if err := h.lb.Sync([]Entry{entry}); err != nil {
		t.Fatal(err)
	}
	first, _, err := h.dialTCP(front)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		backend, _, err := h.dialTCP(front)
		if err != nil {
			t.Fatal(err)
		}
		if backend != first {
			t.Fatalf("with affinity, a connection from the same client went to %s after %s", backend, first)
		}
	}
	// The remembered backend leaves: the client moves to another, and
	// stays there.
	var rest []netip.AddrPort
	for _, b := range entry.Backends {
		if b.String() != first {
			rest = append(rest, b)
		}
	}
	entry.Backends = rest
	if err := h.lb.Sync([]Entry{entry}); err != nil {
		t.Fatal(err)
	}
	second, _, err := h.dialTCP(front)
	if err != nil || second == first {
		t.Fatalf("after %s left: answered by %s, %v", first, second, err)
	}
	for range 20 {
		if backend, _, err := h.dialTCP(front); err != nil || backend != second {
			t.Fatalf("with affinity, moved to %s, then %s (%v)", second, backend, err)
		}
	}
	counts, err := h.lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if counts["translated-affinity"] < 69 {
		t.Errorf("counters %v: want at least 69 connections kept by affinity", counts)
	}
}

// TestPrivilegedSocketLBRestart: with pins (Open), closing the LB, as a
// loader that exits or is upgraded does, leaves the programs attached and
// serving; the next Open adopts the maps (frontends, backends, affinities)
// and Attach moves the pinned links to its programs. A connection made
// before keeps working throughout. Unpin then detaches everything.
func TestPrivilegedSocketLBRestart(t *testing.T) {
	h := newHarness(t)
	h.lb.Close() // the harness's unpinned LB; this test pins its own
	pins := filepath.Join(testenv.BPFFS(t), "sock")
	lb, err := Open(pins)
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.Attach(h.cgroup); err != nil {
		t.Fatal(err)
	}
	const port = 82
	front := netip.AddrPortFrom(front4, port)
	entries := []Entry{
		{Frontend: Frontend{Addr: front4, Port: port, Proto: TCP}, Backends: addrPorts(backends4), Affinity: time.Hour},
		{Frontend: Frontend{Addr: front6, Port: port, Proto: UDP}, Backends: addrPorts(backends6)},
	}
	if err := lb.Sync(entries); err != nil {
		t.Fatal(err)
	}
	first, _, err := h.dialTCP(front)
	if err != nil {
		t.Fatal(err)
	}
	echo := h.echoConn(t, netip.AddrPortFrom(backends4[0], backendPort+1))

	if err := lb.Close(); err != nil { // the loader exits
		t.Fatal(err)
	}
	if got, _, err := h.dialTCP(front); err != nil || got != first {
		t.Errorf("while no loader runs: answered by %q (%v), want %s (affinity)", got, err, first)
	}
	echo()

	lb, err = Open(pins) // the next loader
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	if len(lb.cur) != 2 || !slicesEqual(lb.cur[entries[0].Frontend].Backends, entries[0].Backends) || lb.cur[entries[0].Frontend].Affinity != time.Hour {
		t.Errorf("adopted %v, want %v", lb.cur, entries)
	}
	if err := lb.Attach(h.cgroup); err != nil {
		t.Fatal(err)
	}
	if err := lb.Sync(entries); err != nil {
		t.Fatal(err)
	}
	if got, _, err := h.dialTCP(front); err != nil || got != first {
		t.Errorf("after the restart: answered by %q (%v), want %s (affinity)", got, err, first)
	}
	if _, _, err := h.unconnectedUDP(netip.AddrPortFrom(front6, port)); err != nil {
		t.Errorf("udp6 after the restart: %v", err)
	}
	echo()

	// A frontend added after the restart gets an id of its own.
	entries = append(entries, Entry{Frontend: Frontend{Addr: front4, Port: port + 1, Proto: TCP}, Backends: addrPorts(backends4[2:])})
	if err := lb.Sync(entries); err != nil {
		t.Fatal(err)
	}
	if got, _, err := h.dialTCP(netip.AddrPortFrom(front4, port+1)); err != nil || got != addrPorts(backends4[2:])[0].String() {
		t.Errorf("frontend added after the restart: answered by %q (%v)", got, err)
	}

	if err := lb.Unpin(); err != nil {
		t.Fatal(err)
	}
	lb.Close()
	if _, _, err := h.dialTCP(front); err == nil {
		t.Errorf("after Unpin and Close the frontend is still served")
	}
	if _, err := os.Stat(pins); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pins left: %v", err)
	}
}

func slicesEqual(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// echoConn opens a TCP connection from the test's namespace to an echo
// server it starts at addr, and returns a function that checks the
// connection still carries data.
func (h *harness) echoConn(t *testing.T, addr netip.AddrPort) func() {
	t.Helper()
	testenv.ServeEcho(t, h.ns, addr.String())
	var c net.Conn
	if err := testenv.InNetNS(h.ns, func() (err error) {
		c, err = net.Dial("tcp", addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func() {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatalf("established connection: %v", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("established connection: read %q, %v", buf, err)
		}
	}
}

// TestPrivilegedSocketLBFromHost: a process of the host itself (the test,
// in the root network namespace) is served like a pod's: a frontend leads to
// a backend on the host's loopback.
func TestPrivilegedSocketLBFromHost(t *testing.T) {
	h := newHarness(t)
	var ln net.Listener
	ln, err := net.Listen("tcp4", "127.0.0.1:0") // the root namespace's loopback
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	backend := netip.MustParseAddrPort(ln.Addr().String())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, backend.String())
			c.Close()
		}
	}()
	// The frontend is a loopback address too: were it not translated, the
	// SYN would stay on this host rather than follow the host's routes.
	hostFront := netip.MustParseAddr("127.0.0.250")
	front := netip.AddrPortFrom(hostFront, 83)
	if err := h.lb.Sync([]Entry{{Frontend: Frontend{Addr: hostFront, Port: 83, Proto: TCP}, Backends: []netip.AddrPort{backend}}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp4", front.String(), 2*time.Second)
	if err != nil {
		t.Fatalf("host -> %s: %v", front, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != backend.String() || c.RemoteAddr().String() != front.String() {
		t.Errorf("host -> %s: answered %q (%v), peer %s", front, b, err, c.RemoteAddr())
	}
}
