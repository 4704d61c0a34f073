package loader

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// The lab: a "node" namespace routing for three "pod" namespaces, each
// behind a veth whose host side is in the node (a /32 route per pod, as
// Calico and Cilium set them up; the pods reach the node through
// 169.254.1.1, an address of every host-side veth), and an "external"
// namespace on a /24 of the node.
//
//	db        10.244.1.10   app=protected-db
//	employee  10.244.1.11   app=employee
//	guest     10.244.1.12   app=guest
//	external  192.168.77.2  (world), node 192.168.77.1
type lab struct {
	node, ext string
	bpffs     string
	pods      map[string]*pod
}

type pod struct {
	name, ns, hostIf string
	ip               netip.Addr
	labels           map[string]string
	ifindex          int
}

var labPods = []struct {
	name, ip, app string
}{
	{"db", "10.244.1.10", "protected-db"},
	{"employee", "10.244.1.11", "employee"},
	{"guest", "10.244.1.12", "guest"},
}

const (
	extIP     = "192.168.77.2"
	gatewayIP = "169.254.1.1"
)

func newLab(t testing.TB) *lab {
	t.Helper()
	testenv.Privileged(t)
	l := &lab{node: testenv.NetNS(t, "lnode"), ext: testenv.NetNS(t, "lext"), pods: map[string]*pod{}}
	testenv.Run(t, "ip", "netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for _, p := range labPods {
		pd := &pod{name: p.name, ns: testenv.NetNS(t, "lpod"), hostIf: testenv.Name("h"),
			ip: netip.MustParseAddr(p.ip), labels: map[string]string{"app": p.app}}
		podIf := testenv.Name("p")
		testenv.Veth(t, l.node, pd.hostIf, gatewayIP+"/32", pd.ns, podIf, p.ip+"/32")
		testenv.Run(t, "ip", "-n", l.node, "route", "add", p.ip+"/32", "dev", pd.hostIf)
		testenv.Run(t, "ip", "-n", pd.ns, "route", "add", gatewayIP, "dev", podIf, "scope", "link")
		testenv.Run(t, "ip", "-n", pd.ns, "route", "add", "default", "via", gatewayIP)
		pd.ifindex = ifindexIn(t, l.node, pd.hostIf)
		l.pods[p.name] = pd
	}
	extIf, nodeIf := testenv.Name("x"), testenv.Name("n")
	testenv.Veth(t, l.node, nodeIf, "192.168.77.1/24", l.ext, extIf, extIP+"/24")
	testenv.Run(t, "ip", "-n", l.ext, "route", "add", "default", "via", "192.168.77.1")
	// A remote node's PodCIDR, reached through a gateway.
	testenv.Run(t, "ip", "-n", l.node, "route", "add", "10.244.2.0/24", "via", extIP)
	l.bpffs = filepath.Join(testenv.BPFFS(t), "roost")
	return l
}

func ifindexIn(t testing.TB, ns, ifname string) int {
	t.Helper()
	var idx int
	if err := inNS(ns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		idx = ifc.Index
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return idx
}

// inNS runs f on a thread inside namespace ns (see testenv.InNetNS).
func inNS(ns string, f func() error) error { return testenv.InNetNS(ns, f) }

// endpoints returns the lab's pods as endpoints, all local, plus extra.
func (l *lab) endpoints(extra ...policy.Endpoint) []policy.Endpoint {
	var eps []policy.Endpoint
	for _, p := range labPods {
		pd := l.pods[p.name]
		eps = append(eps, policy.Endpoint{Name: pd.name, IPs: []netip.Addr{pd.ip}, Labels: policy.EndpointLabels(pd.labels, policy.DefaultNamespace, nil, "", policy.DefaultCluster), Local: true})
	}
	return append(eps, extra...)
}

// open opens a loader on the lab's pins, acting in the node namespace,
// and closes it at the end of the test unless the test did.
func (l *lab) open(t *testing.T, mode AttachMode) *Loader {
	t.Helper()
	return l.openWith(t, Options{Attach: mode})
}

// openWith is open with more options (BPFFS, NetNS and Log are the lab's).
func (l *lab) openWith(t *testing.T, o Options) *Loader {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	log.SetOutput(testWriter{t})
	o.BPFFS, o.NetNS, o.Log = l.bpffs, "/var/run/netns/"+l.node, log
	ld, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if ld.lock != nil {
			ld.Close()
		}
	})
	return ld
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// apply applies res and fails the test on error.
func apply(t *testing.T, ld *Loader, res policy.Resolved) Report {
	t.Helper()
	rep, err := ld.Apply(res)
	if err != nil {
		t.Fatalf("apply: %v\nreport: %+v", err, rep)
	}
	return rep
}

// server accepts TCP connections on one address in a namespace, echoes
// every line, and counts accepted connections by source address.
type server struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted map[netip.Addr]int
}

func serveTCP(t *testing.T, ns, addr string) *server {
	t.Helper()
	s := &server{accepted: map[netip.Addr]int{}}
	if err := inNS(ns, func() (err error) {
		s.ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			s.mu.Lock()
			s.accepted[src]++
			s.mu.Unlock()
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintln(c, sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

// dial connects from namespace ns to addr.
func dial(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNS(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	return c, err
}

// connects reports whether a TCP connection from ns to addr opens, and
// exchanges one line over it.
func connects(t *testing.T, ns, addr string) bool {
	t.Helper()
	c, err := dial(ns, addr, 3*time.Second)
	if err != nil {
		t.Logf("%s -> %s: %v", ns, addr, err)
		return false
	}
	defer c.Close()
	if err := roundTrip(c, "hello"); err != nil {
		t.Errorf("%s -> %s: connected, but: %v", ns, addr, err)
		return false
	}
	return true
}

// dropped reports whether a TCP connection from ns to addr times out, as
// it does when the SYN is dropped (a refused one fails at once, and the
// test then fails: the address would be wrong).
func dropped(t *testing.T, ns, addr string) bool {
	t.Helper()
	c, err := dial(ns, addr, 400*time.Millisecond)
	if err == nil {
		c.Close()
		return false
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s -> %s: %v; want a timeout", ns, addr, err)
	}
	return true
}

// roundTrip writes a line and reads its echo.
func roundTrip(c net.Conn, line string) error {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(c, line); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echo %q, want %q", got, line)
	}
	return nil
}

// drops collects the drop events of a loader until the test ends.
type drops struct {
	mu  sync.Mutex
	evs []datapath.DropEvent
}

func readDrops(t *testing.T, ld *Loader) *drops {
	d := &drops{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ld.ReadDrops(ctx, func(ev datapath.DropEvent) {
			d.mu.Lock()
			d.evs = append(d.evs, ev)
			d.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("ReadDrops: %v, want context.Canceled", err)
		}
	})
	return d
}

// waitFor returns the first event matching ok, waiting up to 5 s for it.
func (d *drops) waitFor(ok func(datapath.DropEvent) bool) (datapath.DropEvent, bool) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		d.mu.Lock()
		i := slices.IndexFunc(d.evs, ok)
		var ev datapath.DropEvent
		if i >= 0 {
			ev = d.evs[i]
		}
		d.mu.Unlock()
		if i >= 0 {
			return ev, true
		}
	}
	return datapath.DropEvent{}, false
}

// tcxPrograms returns the ids of the programs at a TCX hook of ifindex in
// namespace ns, in the order they run.
func tcxPrograms(t testing.TB, ns string, ifindex int, at ebpf.AttachType) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	if err := inNS(ns, func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// mapIDs returns the kernel ids of the loader's pinned maps by name.
func mapIDs(t *testing.T, ld *Loader) map[string]ebpf.MapID {
	t.Helper()
	out := map[string]ebpf.MapID{}
	for name, m := range map[string]*ebpf.Map{
		"endpoints": ld.objs.Endpoints, "policy": ld.objs.Policy, "verdicts": ld.objs.Verdicts,
		"ipcache_host4": ld.objs.IpcacheHost4, "ipcache_lpm4": ld.objs.IpcacheLpm4,
		"conntrack": ld.objs.Conntrack, "counters": ld.objs.Counters, "drops": ld.objs.Drops,
	} {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		out[name] = id
	}
	return out
}
