package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/testenv"
)

// waitLimit bounds every wait for convergence: a broken setup fails there,
// a working one takes a few seconds.
const waitLimit = 60 * time.Second

const (
	torASN    = 65000
	gatewayIP = "169.254.1.1"    // every pod's gateway, on each host-side veth
	agentAPI  = "127.0.0.1:9479" // in each node's namespace
	loaderAPI = "127.0.0.1:9480" // in each node's namespace
	redisPort = 6379
	udpPort   = 7000
)

// workload is one pod of the fabric.
type workload struct {
	name, ip, app string
	node          int // index into fabric.nodes
}

// workloads returns the pods, as in the lab (docs/lab.md): db and employee on
// node1, guest and employee2 on node2.
func workloads() []workload {
	return []workload{
		{"db", "10.244.1.10", "protected-db", 0},
		{"employee", "10.244.1.11", "employee", 0},
		{"guest", "10.244.2.10", "guest", 1},
		{"employee2", "10.244.2.11", "employee", 1},
	}
}

// seedPolicy is the lab's seed policy: only app=employee reaches db's TCP
// 6379.
const seedPolicy = `apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "clustermesh-ingress-l4-policy"
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - toPorts:
    - ports:
      - port: "6379"
        protocol: TCP
    fromEndpoints:
      - matchLabels:
          app: employee
`

// udpPolicy also lets app=employee reach db's UDP 7000.
const udpPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: employee-udp
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: employee
    toPorts:
    - ports:
      - port: "7000"
        protocol: UDP
`

// node is one node's namespace and its daemons.
type node struct {
	name    string // node1, node2: the name in the agent's and loader's config
	ns      string
	asn     uint32
	podCIDR netip.Prefix
	uplinks [2]netip.Addr // the node's addresses towards tor1, tor2
	torAddr [2]netip.Addr // the ToRs' addresses on those links
	bird    *testenv.Bird
}

// fabric is two FRR ToRs (AS 65000) and two nodes, each node linked to
// both ToRs and running BIRD, roost-agent and roost-loader, with the pods
// of workloads behind veths. Names come from testenv.Name (rte2tor1…,
// rte2nod1…, rte2pod…), so a running lab is never touched.
type fabric struct {
	bin       string // holds roost-agent, roost-loader, roostctl
	torNS     [2]string
	tors      [2]*testenv.FRR
	nodes     [2]*node
	podNS     map[string]string // workload name → namespace
	policyDir string
	procs     []*proc
}

// proc is a daemon run as a process in a node's namespace.
type proc struct {
	what   string
	log    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	err    error         // cmd's exit status, once exited is closed
}

// buildBinaries builds roost-agent, roost-loader, roost-sync and roostctl
// into a temporary directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// Static, as make build makes them: the deployment test puts them in
	// an image.
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/",
		"../../cmd/roost-agent", "../../cmd/roost-loader", "../../cmd/roost-sync", "../../cmd/roostctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// sysctl sets kernel parameters inside namespace ns.
func sysctl(t *testing.T, ns string, settings ...string) {
	t.Helper()
	testenv.Run(t, "ip", append([]string{"netns", "exec", ns, "sysctl", "-qw"}, settings...)...)
}

// newFabric builds the namespaces, links, addresses and routes of
// the lab's topology (docs/lab.md), without its VMs: node i's link to ToR j is
// 10.0.(2i+j+1).0/30, the ToR .1 and the node .2; each node's default
// route is ECMP over both ToRs; each pod has its address as a /32 on eth0
// and a default route via 169.254.1.1 (scope link), the address of the
// host side of its veth; the node routes the pod's /32 to that veth; pod
// links carry no IPv6.
func newFabric(t *testing.T) *fabric {
	t.Helper()
	f := &fabric{bin: buildBinaries(t), podNS: map[string]string{}}
	for j := range f.torNS {
		f.torNS[j] = testenv.NetNS(t, fmt.Sprintf("e2tor%d", j+1))
	}
	for i := range f.nodes {
		n := &node{
			name:    fmt.Sprintf("node%d", i+1),
			ns:      testenv.NetNS(t, fmt.Sprintf("e2nod%d", i+1)),
			asn:     uint32(65101 + i),
			podCIDR: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i+1)),
		}
		f.nodes[i] = n
		var nexthops []string
		for j := range f.torNS {
			subnet := 2*i + j + 1
			n.torAddr[j] = netip.MustParseAddr(fmt.Sprintf("10.0.%d.1", subnet))
			n.uplinks[j] = netip.MustParseAddr(fmt.Sprintf("10.0.%d.2", subnet))
			up := testenv.Name("u")
			testenv.Veth(t, n.ns, up, n.uplinks[j].String()+"/30", f.torNS[j], testenv.Name("d"), n.torAddr[j].String()+"/30")
			nexthops = append(nexthops, "nexthop", "via", n.torAddr[j].String(), "dev", up)
		}
		testenv.Run(t, "ip", append([]string{"-n", n.ns, "route", "add", "default"}, nexthops...)...)
	}
	for _, ns := range append(f.torNS[:], f.nodes[0].ns, f.nodes[1].ns) {
		// Hash flows by L4 ports so that ECMP spreads them.
		sysctl(t, ns, "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1")
	}
	for _, w := range workloads() {
		n := f.nodes[w.node]
		ns := testenv.NetNS(t, "e2pod")
		f.podNS[w.name] = ns
		sysctl(t, ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		hostIf, podIf := testenv.Name("h"), testenv.Name("p")
		testenv.Veth(t, n.ns, hostIf, gatewayIP+"/32", ns, podIf, w.ip+"/32")
		sysctl(t, n.ns, "net.ipv6.conf."+hostIf+".disable_ipv6=1")
		sysctl(t, ns, "net.ipv6.conf."+podIf+".disable_ipv6=1")
		testenv.Run(t, "ip", "-n", ns, "route", "add", gatewayIP, "dev", podIf, "scope", "link")
		testenv.Run(t, "ip", "-n", ns, "route", "add", "default", "via", gatewayIP, "dev", podIf)
		testenv.Run(t, "ip", "-n", n.ns, "route", "add", w.ip+"/32", "dev", hostIf)
	}
	return f
}

// startToRs starts FRR on both ToRs, each peering with both nodes.
func (f *fabric) startToRs(t *testing.T) {
	t.Helper()
	for j, ns := range f.torNS {
		var peers []testenv.FRRPeer
		for _, n := range f.nodes {
			peers = append(peers, testenv.FRRPeer{Address: n.uplinks[j], ASN: n.asn})
		}
		f.tors[j] = testenv.StartFRR(t, ns, testenv.FRRConfig{ASN: torASN, RouterID: f.nodes[0].torAddr[j], Neighbors: peers})
	}
}

// startNodes starts BIRD, roost-agent and roost-loader on each node. Each
// loader has a private BPF filesystem, mounted on a temporary directory
// and unmounted once the loader is gone; both read one policy directory
// (holding the seed policy) and one endpoints file.
func (f *fabric) startNodes(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	f.policyDir = filepath.Join(dir, "policies")
	if err := os.Mkdir(f.policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.policyDir, "seed.yaml"), seedPolicy)
	var eps strings.Builder
	eps.WriteString("endpoints:\n")
	for _, w := range workloads() {
		fmt.Fprintf(&eps, "  - name: %s\n    ips: [%s]\n    labels: {app: %s}\n", w.name, w.ip, w.app)
	}
	epFile := filepath.Join(dir, "endpoints.yaml")
	writeFile(t, epFile, eps.String())

	for _, n := range f.nodes {
		n.bird = testenv.StartBird(t, n.ns, testenv.MinimalConfig)
		ndir := t.TempDir()
		agentConf := filepath.Join(ndir, "agent.yaml")
		writeFile(t, agentConf, fmt.Sprintf(`node: %s
asn: %d
routerID: %s
podCIDRs: [%s]
peers:
  - {name: tor1, address: %s, asn: %d}
  - {name: tor2, address: %s, asn: %d}
bird: {socket: %s, configDir: %s}
listen: %s
controlSocket: %s
`, n.name, n.asn, n.uplinks[0], n.podCIDR, n.torAddr[0], torASN, n.torAddr[1], torASN, n.bird.Socket, n.bird.Dir, agentAPI,
			filepath.Join(ndir, "agent.sock")))
		f.start(t, n.name+" roost-agent", n.ns, filepath.Join(ndir, "agent.log"),
			filepath.Join(f.bin, "roost-agent"), "--config", agentConf, "--log-level", "debug")

		mnt := t.TempDir()
		testenv.Run(t, "mount", "-t", "bpf", "bpf", mnt)
		t.Cleanup(func() {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", mnt, err, out)
			}
		})
		loaderConf := filepath.Join(ndir, "loader.yaml")
		writeFile(t, loaderConf, fmt.Sprintf("node: %s\nbpffs: %s\npolicyDir: %s\nendpointsFile: %s\nlisten: %s\n",
			n.name, filepath.Join(mnt, "roost"), f.policyDir, epFile, loaderAPI))
		f.start(t, n.name+" roost-loader", n.ns, filepath.Join(ndir, "loader.log"),
			filepath.Join(f.bin, "roost-loader"), "--config", loaderConf)
	}
}

// writeFile writes a file the way configuration management does: a hidden
// temporary file renamed into place.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// start runs argv in namespace ns as startProc does, and watches it: waitFor
// fails when it exits.
func (f *fabric) start(t *testing.T, what, ns, log string, argv ...string) {
	t.Helper()
	f.procs = append(f.procs, startProc(t, what, ns, log, argv...))
}

// startProc runs argv in namespace ns (empty: this one) with its output in
// log, and kills it (SIGKILL to its process group) when the test ends,
// logging its output when the test failed.
func startProc(t *testing.T, what, ns, log string, argv ...string) *proc {
	t.Helper()
	logf, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	argv = testenv.InNS(ns, argv...)
	p := &proc{what: what, log: log, cmd: exec.Command(argv[0], argv[1:]...), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			out, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", p.what, out)
		}
	})
	return p
}

// waitFor polls cond every 100 ms until it holds, and fails t when
// waitLimit passes first or a daemon exits, naming what was awaited and
// the last state cond described.
func (f *fabric) waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		ok, last := cond()
		if ok {
			return
		}
		for _, p := range f.procs {
			select {
			case <-p.exited:
				t.Fatalf("waiting for %s: %s exited: %v", what, p.what, p.err)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", waitLimit, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRoutes waits until each ToR has installed exactly both PodCIDRs in
// its kernel, each via the uplink of the node that owns it.
func (f *fabric) waitRoutes(t *testing.T) {
	t.Helper()
	for j, tor := range f.tors {
		want := map[netip.Prefix][]netip.Addr{}
		for _, n := range f.nodes {
			want[n.podCIDR] = []netip.Addr{n.uplinks[j]}
		}
		f.waitFor(t, fmt.Sprintf("tor%d to install %v", j+1, want), func() (bool, string) {
			got, err := tor.KernelRoutes()
			if err != nil {
				return false, err.Error()
			}
			return maps.EqualFunc(got, want, slices.Equal[[]netip.Addr]), fmt.Sprint(got)
		})
	}
}

// roostctl runs roostctl against node n's loader, in n's namespace.
func (f *fabric) roostctl(n *node, args ...string) (string, error) {
	argv := testenv.InNS(n.ns, append([]string{filepath.Join(f.bin, "roostctl"), "--loader", loaderAPI}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("roostctl %s on %s: %w: %s", strings.Join(args, " "), n.name, err, stderr.String())
	}
	return stdout.String(), nil
}

// waitEndpoints waits until each node's loader reports every workload,
// local exactly when it runs on that node, and db's ingress enforced on
// node1.
func (f *fabric) waitEndpoints(t *testing.T) {
	t.Helper()
	for i, n := range f.nodes {
		f.waitFor(t, n.name+"'s loader to report every endpoint", func() (bool, string) {
			out, err := f.roostctl(n, "endpoints", "-o", "json")
			if err != nil {
				return false, err.Error()
			}
			var eps []loaderapi.Endpoint
			if err := json.Unmarshal([]byte(out), &eps); err != nil {
				return false, fmt.Sprintf("decode %q: %v", out, err)
			}
			for _, w := range workloads() {
				k := slices.IndexFunc(eps, func(e loaderapi.Endpoint) bool { return e.Name == w.name })
				if k < 0 || eps[k].Local != (w.node == i) || (w.name == "db" && i == 0 && !eps[k].Enforced) {
					return false, out
				}
			}
			return true, ""
		})
	}
}

// drops returns what node n's loader reports as dropped.
func (f *fabric) drops(n *node) ([]loaderapi.Drop, error) {
	out, err := f.roostctl(n, "drops", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ds []loaderapi.Drop
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var d loaderapi.Drop
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return ds, nil
		} else if err != nil {
			return nil, fmt.Errorf("decode drops %q: %w", out, err)
		}
		ds = append(ds, d)
	}
}

// waitDrops waits until node n's loader reports at least count drops that
// match, and returns how many it reports.
func (f *fabric) waitDrops(t *testing.T, n *node, what string, count int, match func(loaderapi.Drop) bool) int {
	t.Helper()
	var got int
	f.waitFor(t, fmt.Sprintf("%d drops of %s on %s", count, what, n.name), func() (bool, string) {
		ds, err := f.drops(n)
		if err != nil {
			return false, err.Error()
		}
		got = 0
		for _, d := range ds {
			if match(d) {
				got++
			}
		}
		return got >= count, fmt.Sprintf("%d matching of %+v", got, ds)
	})
	return got
}

// forwarded returns how many IPv4 packets each ToR has forwarded (Ip
// ForwDatagrams of its /proc/net/snmp; its BGP sessions are its own
// traffic, not counted).
func (f *fabric) forwarded(t *testing.T) [2]uint64 {
	t.Helper()
	var fwd [2]uint64
	for j, ns := range f.torNS {
		out := testenv.Run(t, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp")
		n, err := forwDatagrams(out)
		if err != nil {
			t.Fatalf("tor%d: %v", j+1, err)
		}
		fwd[j] = n
	}
	return fwd
}

// forwDatagrams returns the Ip ForwDatagrams counter of a /proc/net/snmp
// text.
func forwDatagrams(snmp string) (uint64, error) {
	var head []string
	sc := bufio.NewScanner(strings.NewReader(snmp))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Ip:" {
			continue
		}
		if head == nil {
			head = fields
			continue
		}
		i := slices.Index(head, "ForwDatagrams")
		if i < 0 || i >= len(fields) {
			break
		}
		return strconv.ParseUint(fields[i], 10, 64)
	}
	return 0, fmt.Errorf("no Ip ForwDatagrams in /proc/net/snmp:\n%s", snmp)
}

// crossed fails t unless the ToRs together forwarded at least least packets in total
// since before, and returns how many each forwarded.
func (f *fabric) crossed(t *testing.T, what string, before [2]uint64, least uint64) [2]uint64 {
	t.Helper()
	after := f.forwarded(t)
	var delta [2]uint64
	for j := range delta {
		delta[j] = after[j] - before[j]
	}
	if delta[0]+delta[1] < least {
		t.Errorf("%s: the ToRs forwarded %d+%d packets, want at least %d in total: the flow did not cross the fabric", what, delta[0], delta[1], least)
	}
	return delta
}

// inNS runs fn on a thread inside namespace ns (see testenv.InNetNS).
func inNS(ns string, fn func() error) error { return testenv.InNetNS(ns, fn) }

// datagram is one UDP datagram a server received.
type datagram struct {
	from    netip.AddrPort
	payload string
}

// serveUDP receives datagrams on addr in namespace ns and passes them on.
func serveUDP(t *testing.T, ns, addr string) <-chan datagram {
	t.Helper()
	var conn *net.UDPConn
	if err := inNS(ns, func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		conn, err = net.ListenUDP("udp4", a)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	got := make(chan datagram, 1024)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case got <- datagram{from: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), payload: string(buf[:n])}:
			default:
			}
		}
	}()
	return got
}

// drain returns the datagrams received and not yet taken from got.
func drain(got <-chan datagram) []datagram {
	var ds []datagram
	for {
		select {
		case d := <-got:
			ds = append(ds, d)
		default:
			return ds
		}
	}
}

// dialUDP opens a UDP socket in namespace ns connected to addr.
func dialUDP(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	if err := inNS(ns, func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		conn, err = net.DialUDP("udp4", nil, a)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestPrivilegedTwoNodesThroughToRs runs the lab's fabric (docs/lab.md) as real
// processes: two FRR ToRs and two nodes, each with BIRD, roost-agent
// announcing its PodCIDR and roost-loader enforcing the seed policy. Once
// both ToRs route both PodCIDRs and both loaders know every endpoint, real
// traffic between the nodes crosses the ToRs (their forwarding counters
// grow) and is enforced on db's node: employee2 reaches db's TCP 6379;
// guest's SYNs to it get no answer and show in node1's drops as
// drop-policy-default; employee2's UDP to db's port 7000 is dropped too,
// until a second policy file allows it, and then arrives.
func TestPrivilegedTwoNodesThroughToRs(t *testing.T) {
	testenv.Privileged(t)
	began := time.Now()
	f := newFabric(t)
	f.startToRs(t)
	f.startNodes(t)
	f.waitRoutes(t)
	f.waitEndpoints(t)
	t.Logf("fabric converged after %v", time.Since(began).Round(time.Millisecond))

	ip := map[string]string{}
	for _, w := range workloads() {
		ip[w.name] = w.ip
	}
	node1 := f.nodes[0]
	dbRedis := net.JoinHostPort(ip["db"], strconv.Itoa(redisPort))
	dbUDP := net.JoinHostPort(ip["db"], strconv.Itoa(udpPort))
	testenv.ServeHello(t, f.podNS["db"], dbRedis)
	udpGot := serveUDP(t, f.podNS["db"], dbUDP)

	t.Run("employee2 to db TCP 6379 is allowed", func(t *testing.T) {
		before := f.forwarded(t)
		if err := testenv.ConnectHello(f.podNS["employee2"], dbRedis, 5*time.Second); err != nil {
			t.Fatalf("employee2 -> db:6379: %v", err)
		}
		// At least the SYN one way and the SYN-ACK back.
		d := f.crossed(t, "employee2 -> db:6379", before, 2)
		t.Logf("forwarded by tor1 %d, tor2 %d", d[0], d[1])
	})

	t.Run("guest to db TCP 6379 is dropped", func(t *testing.T) {
		before := f.forwarded(t)
		if err := testenv.ConnectHello(f.podNS["guest"], dbRedis, time.Second); !errors.Is(err, testenv.ErrDropped) {
			t.Errorf("guest -> db:6379: %v; want no answer (dropped)", err)
		}
		f.crossed(t, "guest -> db:6379", before, 1)
		f.waitDrops(t, node1, "guest -> db:6379", 1, func(d loaderapi.Drop) bool {
			return d.Src.String() == ip["guest"] && d.Dst.String() == ip["db"] && d.DstPort == redisPort &&
				d.Proto == syscall.IPPROTO_TCP && d.Reason == "drop-policy-default" && d.Endpoint == "db"
		})
	})

	t.Run("employee2 to db UDP 7000 is dropped by the seed policy", func(t *testing.T) {
		conn := dialUDP(t, f.podNS["employee2"], dbUDP)
		src := netip.MustParseAddrPort(conn.LocalAddr().String())
		before := f.forwarded(t)
		const sent = 3
		for k := range sent {
			if _, err := fmt.Fprintf(conn, "seed %d", k); err != nil {
				t.Fatal(err)
			}
		}
		// One drop event per packet: once all are reported, none
		// can still arrive.
		f.waitDrops(t, node1, "employee2's UDP to db:7000", sent, func(d loaderapi.Drop) bool {
			return d.Src == src.Addr() && d.SrcPort == src.Port() && d.Dst.String() == ip["db"] && d.DstPort == udpPort &&
				d.Proto == syscall.IPPROTO_UDP && d.Reason == "drop-policy-default" && d.Endpoint == "db"
		})
		f.crossed(t, "employee2 -> db:7000/udp", before, sent)
		for _, d := range drain(udpGot) {
			t.Errorf("db received %q from %v despite the seed policy", d.payload, d.from)
		}
	})

	t.Run("employee2 to db UDP 7000 is allowed by a second policy", func(t *testing.T) {
		writeFile(t, filepath.Join(f.policyDir, "udp.yaml"), udpPolicy)
		conn := dialUDP(t, f.podNS["employee2"], dbUDP)
		src := netip.MustParseAddrPort(conn.LocalAddr().String())
		before := f.forwarded(t)
		// Until the loader has applied the new file, datagrams are
		// dropped: send one every 100 ms until one arrives.
		var got datagram
		f.waitFor(t, "a datagram from employee2 at db:7000", func() (bool, string) {
			if _, err := fmt.Fprint(conn, "allowed"); err != nil {
				return false, err.Error()
			}
			select {
			case got = <-udpGot:
				return true, ""
			case <-time.After(100 * time.Millisecond):
				return false, "nothing arrived"
			}
		})
		if got.from != src || got.payload != "allowed" {
			t.Errorf("db received %q from %v; want %q from employee2 at %v", got.payload, got.from, "allowed", src)
		}
		f.crossed(t, "employee2 -> db:7000/udp", before, 1)

		// The new policy allows app=employee only: guest's UDP is
		// still dropped.
		gconn := dialUDP(t, f.podNS["guest"], dbUDP)
		gsrc := netip.MustParseAddrPort(gconn.LocalAddr().String())
		if _, err := fmt.Fprint(gconn, "guest"); err != nil {
			t.Fatal(err)
		}
		f.waitDrops(t, node1, "guest's UDP to db:7000", 1, func(d loaderapi.Drop) bool {
			return d.Src == gsrc.Addr() && d.SrcPort == gsrc.Port() && d.DstPort == udpPort &&
				d.Proto == syscall.IPPROTO_UDP && d.Reason == "drop-policy-default"
		})
		for _, d := range drain(udpGot) {
			if d.from == gsrc {
				t.Errorf("db received %q from guest at %v", d.payload, d.from)
			}
		}
	})
	t.Logf("whole test took %v", time.Since(began).Round(time.Millisecond))
}
