package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// The global view's tests run loaders of two clusters against a real etcd
// (Debian's, on the test namespace's loopback, relayed into each node's
// namespace at the same address):
//
//   - node A, cluster c1: its endpoints file lists db only. Its employee
//     and guest pods are, as far as it knows, pods of cluster c2: they
//     send the traffic c2's pods would.
//   - node B, cluster c2: its endpoints file lists employee and guest with
//     those addresses, and its loader publishes them as cluster:c2.
//   - a roost-sync stand-in, a globalview.Publisher of origin sync:vms in
//     the test, registers node A's vm namespace (192.168.50.10) as
//     app=employee.
const (
	outsideIP = "192.168.50.10"
	clusterA  = "c1"
	clusterB  = "c2"
	c1File    = "endpoints:\n  - {name: db, ips: [" + dbIP + "], labels: {app: protected-db}}\n"
	c2File    = "endpoints:\n  - {name: employee, ips: [" + employeeIP + "], labels: {app: employee}}\n" +
		"  - {name: guest, ips: [" + guestIP + "], labels: {app: guest}}\n"
	// entitiesPolicy opens db's 7000 to the world and 7001 to the
	// remote nodes.
	entitiesPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: entities
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - fromEntities: [world]
    toPorts:
    - ports: [{port: "7000", protocol: TCP}]
  - fromEntities: [remote-node]
    toPorts:
    - ports: [{port: "7001", protocol: TCP}]
`
	// publishTTL is every test loader's globalView.publishTTL.
	publishTTL = 3 * time.Second
)

// globalNode is a node of a global view test, and the etcd it follows.
type globalNode struct {
	*node
	name   string
	etcd   *testenv.Etcd
	epFile string // its endpoints file
}

// newGlobalNode returns a node named name of cluster whose loader follows
// etcd e, with eps as its endpoints file; not started.
func newGlobalNode(t testing.TB, e *testenv.Etcd, cluster, name, eps string) *globalNode {
	t.Helper()
	n := &globalNode{node: newNode(t), name: name, etcd: e}
	for _, ep := range e.Endpoints {
		testenv.ForwardLoopback(t, n.ns, strings.TrimPrefix(ep, "http://"))
	}
	cfg, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(cfg), "\n") {
		if f, ok := strings.CutPrefix(line, "endpointsFile: "); ok {
			n.epFile = f
		}
	}
	n.writeFile(t, n.epFile, eps)
	n.writeFile(t, n.config, strings.Replace(string(cfg), "node: node1\n", "node: "+name+"\n", 1)+fmt.Sprintf(`cluster: %s
globalView:
  etcd:
    endpoints: [%s]
    dialTimeout: 1s
    requestTimeout: 1s
  publishTTL: %s
`, cluster, strings.Join(e.Endpoints, ", "), publishTTL))
	return n
}

// httpClient returns a client whose connections are made inside the
// node's namespace.
func (n *globalNode) httpClient() *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = testenv.InNetNS(n.ns, func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// status returns the loader's /v1/status, asked from inside its namespace.
func (n *globalNode) status() (loaderapi.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := loaderapi.NewClient(apiAddr)
	c.HTTP = n.httpClient()
	return c.Status(ctx)
}

// readyz returns the loader's /readyz answer.
func (n *globalNode) readyz() (code int, body string, err error) {
	resp, err := n.httpClient().Get("http://" + apiAddr + loaderapi.PathReadyz)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// waitEndpoint waits until the loader lists (or, with !present, no longer
// lists) the endpoint named name, and returns it.
func (n *globalNode) waitEndpoint(t testing.TB, name string, present bool) loaderapi.Endpoint {
	t.Helper()
	var ep loaderapi.Endpoint
	n.waitFor(t, fmt.Sprintf("%s lists %s: %v", n.name, name, present), func() (bool, string) {
		s, err := n.status()
		if err != nil {
			return false, err.Error()
		}
		i := slices.IndexFunc(s.Endpoints, func(e loaderapi.Endpoint) bool { return e.Name == name })
		if i >= 0 {
			ep = s.Endpoints[i]
		}
		return (i >= 0) == present && s.LastApply.Result == loaderapi.ResultOK, fmt.Sprintf("%+v %+v", s.LastApply, s.GlobalView)
	})
	return ep
}

// waitConnected waits until the loader reports etcd answering (or not).
func (n *globalNode) waitConnected(t *testing.T, connected bool) loaderapi.Status {
	t.Helper()
	var s loaderapi.Status
	n.waitFor(t, fmt.Sprintf("%s global view connected: %v", n.name, connected), func() (bool, string) {
		var err error
		if s, err = n.status(); err != nil {
			return false, err.Error()
		}
		return s.GlobalView != nil && s.GlobalView.Connected == connected, fmt.Sprintf("%+v", s.GlobalView)
	})
	return s
}

// syncer is the test's stand-in for roost-sync: a publisher of origin
// sync:vms.
type syncer struct {
	pub    *globalview.Publisher
	cancel context.CancelFunc
	done   chan struct{}
}

func startSyncer(t testing.TB, e *testenv.Etcd) *syncer {
	t.Helper()
	cfg := globalview.Default()
	cfg.Endpoints = e.Endpoints
	c, err := globalview.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := globalview.NewPublisher(c, globalview.SyncOrigin("vms"), globalview.PublisherOptions{ID: "test", TTL: publishTTL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &syncer{pub: pub, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = pub.Run(ctx)
	}()
	t.Cleanup(func() {
		s.cancel()
		<-s.done
		c.Close()
	})
	return s
}

// register publishes the vm as app=employee, or nothing.
func (s *syncer) register(t *testing.T, vm bool) {
	t.Helper()
	var eps []globalview.Endpoint
	if vm {
		labels := policy.EndpointLabels(map[string]string{"app": "employee"}, "default",
			map[string]string{"kubernetes.io/metadata.name": "default"}, "", "")
		delete(labels, policy.ClusterLabel)
		eps = append(eps, globalview.Endpoint{Origin: globalview.SyncOrigin("vms"), Namespace: "default", Name: "vm",
			IPs: []netip.Addr{netip.MustParseAddr(outsideIP)}, Labels: labels})
	}
	if _, err := s.pub.Set(eps, nil); err != nil {
		t.Fatal(err)
	}
}

// addVM adds node A's vm namespace, routed like its pods.
func addVM(t *testing.T, n *node) string { return addOutside(t, n, "rlvm", outsideIP) }

// addOutside adds a namespace (named after prefix) holding ip behind node
// n, routed like its pods: what sends as ip, as far as n's datapath can
// tell.
func addOutside(t *testing.T, n *node, prefix, ip string) string {
	t.Helper()
	ns := testenv.NetNS(t, prefix)
	hostIf, vmIf := testenv.Name("h"), testenv.Name("p")
	testenv.Veth(t, n.ns, hostIf, gatewayIP+"/32", ns, vmIf, ip+"/32")
	testenv.Run(t, "ip", "-n", n.ns, "route", "add", ip+"/32", "dev", hostIf)
	testenv.Run(t, "ip", "-n", ns, "route", "add", gatewayIP, "dev", vmIf, "scope", "link")
	testenv.Run(t, "ip", "-n", ns, "route", "add", "default", "via", gatewayIP)
	return ns
}

// probe says whether a TCP connection from ns reaches db's 6379, and fails
// the test on any answer but a connection or a drop.
func probe(t *testing.T, ns string) bool { return probeTo(t, ns, dbRedis) }

// probeTo says whether a TCP connection from ns reaches addr.
func probeTo(t *testing.T, ns, addr string) bool {
	t.Helper()
	err := testenv.ConnectHello(ns, addr, 500*time.Millisecond)
	if err != nil && !errors.Is(err, testenv.ErrDropped) {
		t.Fatalf("%s -> %s: %v", ns, addr, err)
	}
	return err == nil
}

// waitReach polls a connection from ns to db's 6379 until it is allowed
// (or dropped), for up to 20 s, and returns how long that took.
func waitReach(t *testing.T, what, ns string, allowed bool) time.Duration {
	return waitReachTo(t, what, ns, dbRedis, allowed)
}

// waitReachTo is waitReach to addr.
func waitReachTo(t *testing.T, what, ns, addr string, allowed bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !probeTo(t, ns, addr) == allowed {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%s: still %v after %v", what, !allowed, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// twoClusters starts an etcd of members, node A's and node B's loaders,
// node A's vm namespace, db's server and the syncer stand-in, and waits
// until node A enforces with c2's endpoints.
func twoClusters(t *testing.T, members int) (e *testenv.Etcd, a, b *globalNode, vm string, sync *syncer) {
	t.Helper()
	e = testenv.StartEtcd(t, members)
	a = newGlobalNode(t, e, clusterA, "node-a", c1File)
	b = newGlobalNode(t, e, clusterB, "node-b", c2File)
	vm = addVM(t, a.node)
	testenv.ServeHello(t, a.db, dbRedis)
	sync = startSyncer(t, e)
	b.start(t)
	a.start(t)
	a.waitEnforced(t)
	a.waitEndpoint(t, "cluster:c2/default/employee", true)
	return e, a, b, vm, sync
}

// TestPrivilegedLoaderGlobalView runs one policy across two clusters and an
// outside workload with real loaders, real etcd and real traffic: node A
// (cluster c1) admits c2's employee and the registered vm to db, not c2's
// guest; identities are the same numbers on both clusters' loaders; a vm
// deregistered is dropped; c2's nodes, once published, are remote-node on
// node A, not the world; node B's loader killed, c2's endpoints stay until
// their lease expires and are gone after it.
func TestPrivilegedLoaderGlobalView(t *testing.T) {
	_, a, b, vm, sync := twoClusters(t, 1)

	t.Run("cross-cluster", func(t *testing.T) {
		if !probe(t, a.employee) {
			t.Error("c2's employee -> db:6379 dropped; want allowed")
		}
		if probe(t, a.guest) {
			t.Error("c2's guest -> db:6379 allowed; want dropped")
		}
		if probe(t, vm) {
			t.Error("the unregistered vm -> db:6379 allowed; want dropped")
		}
		out, err := a.roostctl("endpoints")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"cluster:c2/default/employee  cluster:c2", "global view: connected", "cluster:c2=2",
			"publisher of cluster:c1"} {
			if !strings.Contains(out, want) {
				t.Errorf("roostctl endpoints lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("identities agree across clusters", func(t *testing.T) {
		// Each loader computes every identity from labels: a c2 pod has
		// the same number on c1's node as on its own, and so has c1's db.
		b.waitEndpoint(t, "cluster:c1/default/db", true)
		sa, err := a.status()
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.status()
		if err != nil {
			t.Fatal(err)
		}
		id := func(s loaderapi.Status, name string) uint32 {
			i := slices.IndexFunc(s.Endpoints, func(e loaderapi.Endpoint) bool { return e.Name == name })
			if i < 0 {
				t.Fatalf("%s: no endpoint %s", s.Node, name)
			}
			return s.Endpoints[i].Identity
		}
		for _, p := range [][2]string{{"cluster:c2/default/employee", "employee"}, {"cluster:c2/default/guest", "guest"}} {
			if ia, ib := id(sa, p[0]), id(sb, p[1]); ia != ib || ia == 0 {
				t.Errorf("identity of c2's %s: %d on node A, %d on node B", p[1], ia, ib)
			}
		}
		if ia, ib := id(sa, "db"), id(sb, "cluster:c1/default/db"); ia != ib || ia == 0 {
			t.Errorf("identity of c1's db: %d on node A, %d on node B", ia, ib)
		}
	})

	t.Run("outside workload", func(t *testing.T) {
		sync.register(t, true)
		t.Logf("vm registered: allowed after %v", waitReach(t, "vm registered", vm, true).Round(time.Millisecond))
		if ep := a.waitEndpoint(t, "sync:vms/default/vm", true); ep.Origin != "sync:vms" {
			t.Errorf("vm's origin %q", ep.Origin)
		}
		sync.register(t, false)
		t.Logf("vm deregistered: dropped after %v", waitReach(t, "vm deregistered", vm, false).Round(time.Millisecond))
		if !probe(t, a.employee) {
			t.Error("employee dropped after the vm left")
		}
	})

	t.Run("other clusters' nodes are remote-node", func(t *testing.T) {
		// As Cilium's ClusterMesh gives every connected cluster's nodes
		// remote-node: a rule for the world does not admit them once c2
		// publishes them, and one for remote-node does.
		const nodeBIP = "192.168.50.20"
		nodeB := addOutside(t, a.node, "rlnb", nodeBIP)
		world, remoteNode := dbIP+":7000", dbIP+":7001"
		testenv.ServeHello(t, a.db, world)
		testenv.ServeHello(t, a.db, remoteNode)
		a.writeFile(t, filepath.Join(a.policyDir, "entities.yaml"), entitiesPolicy)
		waitReachTo(t, "node B's address, unknown, is the world's", nodeB, world, true)
		if probeTo(t, nodeB, remoteNode) {
			t.Error("node B's address, unknown, reaches the remote-node port")
		}
		b.writeFile(t, b.epFile, c2File+"nodes:\n  - {name: node-b, ips: ["+nodeBIP+"]}\n")
		took := waitReachTo(t, "node B published: remote-node", nodeB, remoteNode, true)
		t.Logf("node B's address remote-node on node A %v after c2 published it", took.Round(time.Millisecond))
		if probeTo(t, nodeB, world) {
			t.Error("c2's node reaches the port of fromEntities: [world]; Cilium gives it remote-node")
		}
		s, err := a.status()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(s.Nodes, func(n loaderapi.Node) bool { return n.Name == "node-b" && n.Origin == "cluster:c2" }) ||
			s.GlobalView.Nodes["cluster:c2"] != 1 {
			t.Errorf("node A's status: nodes %+v, global view %+v; want node-b of cluster:c2", s.Nodes, s.GlobalView)
		}
	})

	t.Run("publisher killed", func(t *testing.T) {
		// No standby: c2's endpoints stay until their lease (publishTTL)
		// expires, and are gone soon after.
		b.kill()
		killed := time.Now()
		time.Sleep(publishTTL / 3)
		if !probe(t, a.employee) {
			t.Errorf("c2's employee dropped %v after its publisher died; want kept until the lease (%v) expires", time.Since(killed), publishTTL)
		}
		waitReach(t, "c2's endpoints expired", a.employee, false)
		// The lease was last kept alive at most a third of it before the
		// kill.
		if took := time.Since(killed); took < 2*publishTTL/3 {
			t.Errorf("c2's endpoints gone %v after the kill, before their lease of %v could expire", took, publishTTL)
		}
		took := time.Since(killed)
		t.Logf("c2's employee dropped %v after its publisher was killed (lease %v)", took.Round(time.Millisecond), publishTTL)
		a.waitEndpoint(t, "cluster:c2/default/employee", false)
		if probe(t, a.guest) {
			t.Error("c2's guest allowed once unknown")
		}
	})
}

// partition drops, inside ns, every packet to etcd's client ports (the
// relays on ns's loopback): a partition between that node and etcd, as
// netem's 100% loss would make one (this kernel has no sch_netem). The
// returned function heals it.
func partition(t *testing.T, ns string, e *testenv.Etcd) (heal func()) {
	t.Helper()
	var rules [][]string
	for _, ep := range e.Endpoints {
		_, port, _ := strings.Cut(strings.TrimPrefix(ep, "http://"), ":")
		rules = append(rules, []string{"OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", port, "-j", "DROP"})
	}
	for _, r := range rules {
		testenv.Run(t, "ip", append([]string{"netns", "exec", ns, "iptables", "-I"}, r...)...)
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		for _, r := range rules {
			testenv.Run(t, "ip", append([]string{"netns", "exec", ns, "iptables", "-D"}, r...)...)
		}
	}
	t.Cleanup(heal)
	return heal
}

// TestPrivilegedLoaderGlobalViewFailures takes etcd away from a loader in
// every way but one at a time, on a 3-member etcd: a member lost (changes
// still arrive), a partition between the loader and etcd (it keeps
// enforcing its last view, reports it, and catches up when healed), every
// member down (the same, and a loader restarted meanwhile applies nothing
// until etcd answers, while its pinned programs keep enforcing), and two
// clusters and a syncer writing at once.
func TestPrivilegedLoaderGlobalViewFailures(t *testing.T) {
	e, a, b, vm, sync := twoClusters(t, 3)

	// enforced checks the policy on the view with the vm registered or
	// not.
	enforced := func(t *testing.T, step string, vmIn bool) {
		t.Helper()
		if !probe(t, a.employee) {
			t.Errorf("%s: c2's employee -> db:6379 dropped", step)
		}
		if probe(t, a.guest) {
			t.Errorf("%s: c2's guest -> db:6379 allowed", step)
		}
		if got := probe(t, vm); got != vmIn {
			t.Errorf("%s: vm -> db:6379 allowed %v, want %v", step, got, vmIn)
		}
	}

	t.Run("member lost", func(t *testing.T) {
		e.Members[0].Kill()
		sync.register(t, true)
		waitReach(t, "vm registered with a member lost", vm, true)
		a.waitEndpoint(t, "sync:vms/default/vm", true)
		if s, err := a.status(); err != nil || !s.GlobalView.Connected {
			t.Errorf("with 2 of 3 members: %+v, %v", s.GlobalView, err)
		}
		enforced(t, "member lost", true)
		e.Members[0].Start()
	})

	t.Run("partition", func(t *testing.T) {
		heal := partition(t, a.ns, e)
		s := a.waitConnected(t, false)
		t.Logf("partitioned: %s", s.GlobalView.LastError)
		code, body, err := a.readyz()
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "etcd does not answer") {
			t.Errorf("readyz while partitioned: %d %q %v", code, body, err)
		}
		// The vm leaves while node A cannot hear it: node A keeps its
		// last view, stale but never empty.
		sync.register(t, false)
		time.Sleep(time.Second)
		enforced(t, "partitioned", true)
		heal()
		a.waitConnected(t, true)
		t.Logf("healed: vm dropped after %v", waitReach(t, "caught up after the partition", vm, false).Round(time.Millisecond))
		enforced(t, "healed", false)
		a.waitFor(t, "ready again", func() (bool, string) {
			code, body, err := a.readyz()
			return err == nil && code == http.StatusOK, fmt.Sprint(code, body, err)
		})
	})

	t.Run("etcd down", func(t *testing.T) {
		sync.register(t, true)
		waitReach(t, "vm registered", vm, true)
		for _, m := range e.Members {
			m.Stop()
		}
		a.waitConnected(t, false)
		enforced(t, "etcd down", true)

		// A loader restarted now has no view: it applies nothing and is
		// not ready, and the programs it pinned go on enforcing.
		a.kill()
		a.start(t)
		a.waitFor(t, "waiting for the first view", func() (bool, string) {
			s, err := a.status()
			if err != nil {
				return false, err.Error()
			}
			return s.LastApply.Result == loaderapi.ResultWaiting && !s.Ready && strings.Contains(s.LastApply.Error, "global view"), fmt.Sprintf("%+v", s.LastApply)
		})
		enforced(t, "etcd down, loader restarted", true)

		e.Start()
		a.waitConnected(t, true)
		a.waitEndpoint(t, "sync:vms/default/vm", true)
		enforced(t, "etcd back", true)
		sync.register(t, false)
		waitReach(t, "vm deregistered after etcd came back", vm, false)
		enforced(t, "etcd back, vm gone", false)
	})

	t.Run("writers at once", func(t *testing.T) {
		// Cluster c2 gains a pod (node A's vm address, as c2's employee)
		// while the syncer registers it as a vm too: node A must see one
		// claim from each origin, skip both, and say so.
		b.writeFile(t, strings.Replace(b.config, "loader.yaml", "endpoints.yaml", 1),
			c2File+"  - {name: employee-2, ips: ["+outsideIP+"], labels: {app: employee}}\n")
		sync.register(t, true)
		a.waitFor(t, "conflict reported", func() (bool, string) {
			s, err := a.status()
			if err != nil {
				return false, err.Error()
			}
			return s.GlobalView != nil && len(s.GlobalView.Conflicts) == 2, fmt.Sprintf("%+v", s.GlobalView)
		})
		if probe(t, vm) {
			t.Error("an address claimed by two origins is allowed")
		}
		enforced(t, "conflict", false)
		// The syncer lets go: c2's claim stands alone and is enforced.
		sync.register(t, false)
		waitReach(t, "c2's employee-2", vm, true)
		a.waitEndpoint(t, "cluster:c2/default/employee-2", true)
	})
}

// TestPrivilegedLoaderGlobalViewKubernetes checks what a loader in
// Kubernetes mode publishes, against a real API server and a real etcd:
// its cluster's pods, with the labels Cilium derives (their namespace's
// included) and their node; a pod deleted leaves the view.
func TestPrivilegedLoaderGlobalViewKubernetes(t *testing.T) {
	k := testenv.StartKube(t)
	dyn, err := dynamic.NewForConfig(k.Config)
	if err != nil {
		t.Fatal(err)
	}
	(&kubeLab{k: k, dyn: dyn}).installCRDs(t)
	cs := k.Client
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod", Labels: map[string]string{"team": "data"}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createKubeNode(t, cs, "node1", "10.0.3.1")
	createKubePod(t, cs, "prod", "db", dbIP, map[string]string{"app": "protected-db"}, nil)
	createKubePod(t, cs, "prod", "api", employeeIP, map[string]string{"app": "employee"}, nil)

	e := testenv.StartEtcd(t, 1)
	n := newGlobalNode(t, e, clusterA, "node1", "endpoints: []\n")
	server, err := url.Parse(k.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	testenv.ForwardLoopback(t, n.ns, server.Host)
	cfg, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	n.writeFile(t, n.config, string(cfg)+fmt.Sprintf("kubernetes:\n  enabled: true\n  kubeconfig: %s\n", k.Kubeconfig))

	// What etcd holds, as any loader's subscriber sees it.
	ccfg := globalview.Default()
	ccfg.Endpoints = e.Endpoints
	c, err := globalview.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	views := make(chan globalview.View, 100)
	sub := globalview.NewSubscriber(c, globalview.SubscriberOptions{}, func(v globalview.View) {
		select {
		case views <- v:
		default:
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = sub.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitView := func(what string, cond func(globalview.View) bool) globalview.View {
		t.Helper()
		deadline := time.After(30 * time.Second)
		var last globalview.View
		for {
			select {
			case v := <-views:
				if last = v; cond(v) {
					return v
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %s; last view passed on %+v", what, last.Endpoints)
			}
		}
	}

	n.start(t)
	v := waitView("prod/db, prod/api and node1 published", func(v globalview.View) bool { return len(v.Endpoints) == 2 && len(v.Nodes) == 1 })
	db, ok := v.Endpoints["cluster:c1/prod/db"]
	if !ok {
		t.Fatalf("view %+v lacks cluster:c1/prod/db", v.Endpoints)
	}
	for k, want := range map[string]string{"app": "protected-db", policy.ClusterLabel: clusterA, policy.NamespaceLabel: "prod",
		policy.NamespaceLabelsPrefix + "team": "data"} {
		if db.Labels[k] != want {
			t.Errorf("published db label %s=%q, want %q (all: %v)", k, db.Labels[k], want, db.Labels)
		}
	}
	if db.Node != "node1" || fmt.Sprint(db.IPs) != "["+dbIP+"]" {
		t.Errorf("published db: node %q, IPs %v", db.Node, db.IPs)
	}
	// The cluster's Node objects too: the other clusters' remote nodes.
	if nd, ok := v.Nodes["cluster:c1/_nodes/node1"]; !ok || fmt.Sprint(nd.IPs) != "[10.0.3.1]" {
		t.Errorf("published nodes %+v, want node1 with 10.0.3.1", v.Nodes)
	}
	n.waitFor(t, "the loader's own view", func() (bool, string) {
		s, err := n.status()
		if err != nil {
			return false, err.Error()
		}
		g := s.GlobalView
		return g != nil && g.Publisher != nil && g.Publisher.Leader && g.Own == 2 && g.Applied >= v.Revision, fmt.Sprintf("%+v", g)
	})
	// No kubelet confirms a graceful deletion here: delete at once.
	if err := cs.CoreV1().Pods("prod").Delete(t.Context(), "api", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitView("prod/api gone", func(v globalview.View) bool {
		_, api := v.Endpoints["cluster:c1/prod/api"]
		return !api && len(v.Endpoints) == 1
	})
}
