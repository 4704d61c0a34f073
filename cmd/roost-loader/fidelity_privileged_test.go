package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// The fidelity tests check, with real packets through the real roost-loader
// binary, that roost enforces what Cilium would for the same policy: the
// namespaces of policies and peers, clusterwide policies, the host and
// remote-node entities without hand configuration, and ports and
// protocols. Each builds its own node (a namespace with a private BPF
// filesystem), with pod namespaces behind veths as newNode does, and other
// machines (another node, a peer outside the cluster) behind a veth of
// their own.

// fidelity is one test's node, the namespaces around it and the loader's
// files.
type fidelity struct {
	*node
	endpoints string // the endpoints file's path
	// actors maps each actor to the namespace its traffic comes from:
	// the node itself is hostActor; pods and remotes go by the name they
	// were added with.
	actors map[string]string
}

// hostActor is the actor name of the node itself.
const hostActor = "host"

// newFidelity builds a node namespace with a private BPF filesystem, the
// loader's files (loader.yaml with extraConfig appended; an empty policy
// directory; no endpoints file yet) and the binaries. It starts nothing.
func newFidelity(t *testing.T, extraConfig string) *fidelity {
	t.Helper()
	testenv.Privileged(t)
	testenv.Binary(t, "ping")
	f := &fidelity{node: &node{ns: testenv.NetNS(t, "rfnode")}, actors: map[string]string{}}
	f.actors[hostActor] = f.node.ns
	testenv.Run(t, "ip", "netns", "exec", f.node.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	mnt := t.TempDir()
	testenv.Run(t, "mount", "-t", "bpf", "bpf", mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	dir := t.TempDir()
	f.policyDir = filepath.Join(dir, "policies")
	if err := os.Mkdir(f.policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.endpoints = filepath.Join(dir, "endpoints.yaml")
	f.config = filepath.Join(dir, "loader.yaml")
	f.log = filepath.Join(dir, "loader.log")
	// No hostIPs: the host's addresses must come from its interfaces.
	f.writeFile(t, f.config, fmt.Sprintf("node: node1\nbpffs: %s\npolicyDir: %s\nendpointsFile: %s\nlisten: %s\n%s",
		filepath.Join(mnt, "roost"), f.policyDir, f.endpoints, apiAddr, extraConfig))

	f.bin = t.TempDir()
	out, err := exec.Command("go", "build", "-o", f.bin+"/", ".", "../roostctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		f.kill()
		if t.Failed() {
			out, _ := os.ReadFile(f.log)
			t.Logf("roost-loader log:\n%s", out)
		}
	})
	return f
}

// pod adds a pod namespace with address ip behind a veth of the node, as
// newNode does: a /32 route to it on the node, and its default route via
// gatewayIP, an address of every host-side veth.
func (f *fidelity) pod(t *testing.T, name, ip string) {
	t.Helper()
	ns := testenv.NetNS(t, "rfpod")
	hostIf, podIf := testenv.Name("h"), testenv.Name("p")
	testenv.Veth(t, f.node.ns, hostIf, gatewayIP+"/32", ns, podIf, ip+"/32")
	testenv.Run(t, "ip", "-n", f.node.ns, "route", "add", ip+"/32", "dev", hostIf)
	testenv.Run(t, "ip", "-n", ns, "route", "add", gatewayIP, "dev", podIf, "scope", "link")
	testenv.Run(t, "ip", "-n", ns, "route", "add", "default", "via", gatewayIP)
	f.actors[name] = ns
}

// remote adds a machine outside the node (another node, or a peer outside
// the cluster) on a /24 link of its own: nodeAddr on the node's side, addr
// on the machine's, which routes everything via the node.
func (f *fidelity) remote(t *testing.T, name, nodeAddr, addr string) {
	t.Helper()
	ns := testenv.NetNS(t, "rfrem")
	nodeIf, remIf := testenv.Name("n"), testenv.Name("r")
	testenv.Veth(t, f.node.ns, nodeIf, nodeAddr+"/24", ns, remIf, addr+"/24")
	testenv.Run(t, "ip", "-n", ns, "route", "add", "default", "via", nodeAddr)
	f.actors[name] = ns
}

// serve runs a TCP hello server on each of tcp and a UDP one on each of
// udp, all at the pod's address ip.
func (f *fidelity) serve(t *testing.T, name, ip string, tcp, udp []int) {
	t.Helper()
	for _, p := range tcp {
		testenv.ServeHello(t, f.actors[name], fmt.Sprintf("%s:%d", ip, p))
	}
	for _, p := range udp {
		testenv.ServeHelloUDP(t, f.actors[name], fmt.Sprintf("%s:%d", ip, p))
	}
}

// writePolicy writes a policy file into the policy directory.
func (f *fidelity) writePolicy(t *testing.T, file, text string) {
	t.Helper()
	f.writeFile(t, filepath.Join(f.policyDir, file), text)
}

// status fetches the loader's /v1/status from inside the node's namespace.
func (f *fidelity) status() (loaderapi.Status, error) {
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = testenv.InNetNS(f.node.ns, func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	c := loaderapi.NewClient(apiAddr)
	c.HTTP = &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Status(ctx)
}

// waitApplied waits until the last apply succeeded and each of the named
// endpoints is local and ingress-enforced.
func (f *fidelity) waitApplied(t *testing.T, enforced ...string) loaderapi.Status {
	t.Helper()
	var s loaderapi.Status
	f.waitFor(t, "endpoints enforced: "+strings.Join(enforced, ", "), func() (bool, string) {
		var err error
		if s, err = f.status(); err != nil {
			return false, err.Error()
		}
		if s.LastApply.Result != loaderapi.ResultOK {
			return false, fmt.Sprintf("last apply %s: %s", s.LastApply.Result, s.LastApply.Error)
		}
		for _, name := range enforced {
			i := slices.IndexFunc(s.Endpoints, func(e loaderapi.Endpoint) bool { return e.Name == name })
			if i < 0 || !s.Endpoints[i].Local || !s.Endpoints[i].Enforced {
				return false, fmt.Sprintf("%s not local and enforced: %+v", name, s.Endpoints)
			}
		}
		return true, ""
	})
	return s
}

// A flow is one probe: from an actor to a destination, by TCP (a hello
// connection), UDP (a hello exchange) or ICMP (one echo request), with the
// verdict it must get.
type flow struct {
	from  string // an actor of fidelity.actors
	proto string // "tcp", "udp" or "icmp"
	to    string // host:port; the bare address for icmp
	allow bool
}

func (fl flow) String() string {
	verdict := "dropped"
	if fl.allow {
		verdict = "allowed"
	}
	return fmt.Sprintf("%s -> %s %s (want %s)", fl.from, fl.proto, fl.to, verdict)
}

func tcpFlow(from, to string, allow bool) flow  { return flow{from, "tcp", to, allow} }
func udpFlow(from, to string, allow bool) flow  { return flow{from, "udp", to, allow} }
func icmpFlow(from, to string, allow bool) flow { return flow{from, "icmp", to, allow} }

// Probe timeouts: an allowed flow gets time to pass on a slow machine; a
// flow that must be dropped would pass within milliseconds on these veths
// if it were not.
const (
	allowWait = 3 * time.Second
	dropWait  = 300 * time.Millisecond
)

// probe sends fl once, waiting at most timeout; it returns nil when it
// passed and testenv.ErrDropped when it timed out.
func (f *fidelity) probe(fl flow, timeout time.Duration) error {
	ns, ok := f.actors[fl.from]
	if !ok {
		return fmt.Errorf("no actor %q", fl.from)
	}
	switch fl.proto {
	case "tcp":
		return testenv.ConnectHello(ns, fl.to, timeout)
	case "udp":
		return testenv.ExchangeHelloUDP(ns, fl.to, timeout)
	case "icmp":
		return testenv.Ping(ns, fl.to, timeout)
	}
	return fmt.Errorf("unknown protocol %q", fl.proto)
}

// check probes each flow once and reports those that do not get their
// verdict; on a failure it logs what roostctl says.
func (f *fidelity) check(t *testing.T, step string, flows ...flow) {
	t.Helper()
	failed := false
	for _, fl := range flows {
		timeout := dropWait
		if fl.allow {
			timeout = allowWait
		}
		err := f.probe(fl, timeout)
		switch {
		case fl.allow && err == nil, !fl.allow && errors.Is(err, testenv.ErrDropped):
			continue
		case fl.allow:
			t.Errorf("%s: %s: %v", step, fl, err)
		case err == nil:
			t.Errorf("%s: %s: it passed", step, fl)
		default:
			t.Errorf("%s: %s: %v, not a timeout", step, fl, err)
		}
		failed = true
	}
	if failed {
		f.dump(t)
	}
}

// await probes fl until it gets its verdict (allowed: one probe passes;
// dropped: two in a row time out), for at most 20 s: for a change of the
// loader's inputs to take effect.
func (f *fidelity) await(t *testing.T, step string, fl flow) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	timeouts := 0
	for {
		err := f.probe(fl, 200*time.Millisecond)
		switch {
		case err == nil && fl.allow:
			return
		case err == nil:
			timeouts = 0
		case errors.Is(err, testenv.ErrDropped):
			if timeouts++; !fl.allow && timeouts == 2 {
				return
			}
		default:
			f.dump(t)
			t.Fatalf("%s: %s: %v", step, fl, err)
		}
		if time.Now().After(deadline) {
			f.dump(t)
			t.Fatalf("%s: %s: no such verdict within 20 s", step, fl)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dump logs roostctl's endpoints, policy and drops, to debug a failure.
func (f *fidelity) dump(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{{"endpoints"}, {"identities"}, {"policy"}, {"drops"}} {
		out, err := f.roostctl(args...)
		if err != nil {
			out += "\n" + err.Error()
		}
		t.Logf("roostctl %s:\n%s", strings.Join(args, " "), out)
	}
}

// sourceID is what a drop's source identity must be.
type sourceID struct {
	name string
	ok   func(policy.Identity) bool
}

// Source identities of drops: any, a reserved one, a CIDR identity.
var (
	anyID      = sourceID{"any", func(policy.Identity) bool { return true }}
	hostID     = reservedID(policy.IdentityHost)
	remoteID   = reservedID(policy.IdentityRemoteNode)
	worldIPv4  = reservedID(policy.IdentityWorldIPv4)
	cidrSource = sourceID{"a CIDR identity", policy.Identity.IsCIDR}
)

func reservedID(id policy.Identity) sourceID {
	return sourceID{fmt.Sprintf("reserved %d", id), func(got policy.Identity) bool { return got == id }}
}

// waitDrop waits until roostctl drops shows a packet from src to dst's
// port (0: any) of protocol proto, from source identity id, dropped for
// reason.
func (f *fidelity) waitDrop(t *testing.T, src, dst string, port uint16, proto uint8, id sourceID, reason string) {
	t.Helper()
	what := fmt.Sprintf("a drop %s -> %s:%d proto %d from identity %s, %s", src, dst, port, proto, id.name, reason)
	f.waitFor(t, what, func() (bool, string) {
		out, err := f.roostctl("drops", "-o", "json")
		if err != nil {
			return false, err.Error()
		}
		dec := json.NewDecoder(strings.NewReader(out))
		for {
			var d loaderapi.Drop
			if err := dec.Decode(&d); err != nil {
				return false, out
			}
			if d.Src.String() == src && d.Dst.String() == dst && (port == 0 || d.DstPort == port) && d.Proto == proto &&
				id.ok(policy.Identity(d.SrcIdentity)) && d.Reason == reason {
				return true, ""
			}
		}
	})
}

// TestPrivilegedFidelityNamespaces checks the namespaces of policies and
// peers. A CiliumNetworkPolicy without a namespace is in "default": its
// endpointSelector and its fromEndpoints select only there, so a client in
// namespace other with the same labels is dropped. A policy in namespace
// other that selects peers by a namespace label (from the endpoints file's
// namespaces) admits the pods of the labelled namespace only, and
// relabelling namespaces in the file changes the verdicts.
func TestPrivilegedFidelityNamespaces(t *testing.T) {
	f := newFidelity(t, "")
	const (
		server      = "10.244.1.10" // default, app=server
		client      = "10.244.1.11" // default, app=client
		otherClient = "10.244.1.12" // other, app=client
		blueClient  = "10.244.1.13" // blue (team=a), app=client
		otherServer = "10.244.1.14" // other, app=server
	)
	for name, ip := range map[string]string{"server": server, "client": client, "other-client": otherClient,
		"blue-client": blueClient, "other-server": otherServer} {
		f.pod(t, name, ip)
	}
	f.serve(t, "server", server, []int{8080}, nil)
	f.serve(t, "other-server", otherServer, []int{8080}, nil)
	endpoints := func(namespaces string) string {
		return `endpoints:
- name: server
  ips: [10.244.1.10]
  labels: {app: server}
- name: client
  ips: [10.244.1.11]
  labels: {app: client}
- name: other-client
  namespace: other
  ips: [10.244.1.12]
  labels: {app: client}
- name: blue-client
  namespace: blue
  ips: [10.244.1.13]
  labels: {app: client}
- name: other-server
  namespace: other
  ips: [10.244.1.14]
  labels: {app: server}
namespaces:
` + namespaces
	}
	f.writeFile(t, f.endpoints, endpoints("- name: blue\n  labels: {team: a}\n"))
	// Two policies of the same name, in two namespaces.
	f.writePolicy(t, "default.yaml", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`)
	f.writePolicy(t, "other.yaml", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: other}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: a}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`)
	f.start(t)
	f.waitApplied(t, "server", "other-server")

	srv, otherSrv := server+":8080", otherServer+":8080"
	f.check(t, "blue labelled team=a",
		tcpFlow("client", srv, true),
		tcpFlow("other-client", srv, false), // app=client, but in namespace other
		tcpFlow("blue-client", srv, false),  // app=client, but in namespace blue
		tcpFlow("host", srv, true),          // allow-localhost
		tcpFlow("blue-client", otherSrv, true),
		tcpFlow("other-client", otherSrv, false), // other has no team label
		tcpFlow("client", otherSrv, false),       // nor has default
	)
	f.waitDrop(t, otherClient, server, 8080, 6, anyID, "drop-policy-default")

	f.writeFile(t, f.endpoints, endpoints("- name: blue\n  labels: {team: b}\n- name: default\n  labels: {team: a}\n"))
	f.await(t, "blue relabelled team=b", tcpFlow("blue-client", otherSrv, false))
	f.await(t, "default labelled team=a", tcpFlow("client", otherSrv, true))
	f.check(t, "blue team=b, default team=a",
		tcpFlow("client", srv, true),
		tcpFlow("other-client", srv, false),
		tcpFlow("blue-client", otherSrv, false),
		tcpFlow("client", otherSrv, true),
		tcpFlow("other-client", otherSrv, false),
	)
}

// TestPrivilegedFidelityClusterwide checks a CiliumClusterwideNetworkPolicy:
// it selects its endpoints in every namespace, and its fromEndpoints: [{}]
// admits the pods of every namespace but not a source outside the cluster
// (world), which a CiliumNetworkPolicy in one of the namespaces admits on
// another port, on that namespace's endpoint only.
func TestPrivilegedFidelityClusterwide(t *testing.T) {
	f := newFidelity(t, "")
	const (
		dbAlpha = "10.244.1.10" // alpha, app=db
		dbBeta  = "10.244.1.11" // beta, app=db
		client  = "10.244.1.12" // gamma, app=client
		peer    = "10.0.4.2"    // outside the cluster
	)
	f.pod(t, "db-alpha", dbAlpha)
	f.pod(t, "db-beta", dbBeta)
	f.pod(t, "client", client)
	f.remote(t, "peer", "10.0.4.1", peer)
	f.serve(t, "db-alpha", dbAlpha, []int{5432, 8081}, nil)
	f.serve(t, "db-beta", dbBeta, []int{5432, 8081}, nil)
	f.writeFile(t, f.endpoints, `endpoints:
- name: db-alpha
  namespace: alpha
  ips: [10.244.1.10]
  labels: {app: db}
- name: db-beta
  namespace: beta
  ips: [10.244.1.11]
  labels: {app: db}
- name: client
  namespace: gamma
  ips: [10.244.1.12]
  labels: {app: client}
`)
	f.writePolicy(t, "ccnp.yaml", `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: db-everywhere}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
`)
	f.writePolicy(t, "alpha.yaml", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db-world, namespace: alpha}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEntities: [world]
    toPorts: [{ports: [{port: "8081", protocol: TCP}]}]
`)
	f.start(t)
	f.waitApplied(t, "db-alpha", "db-beta")

	f.check(t, "clusterwide",
		tcpFlow("client", dbAlpha+":5432", true),
		tcpFlow("client", dbBeta+":5432", true),
		tcpFlow("db-beta", dbAlpha+":5432", true),
		tcpFlow("peer", dbAlpha+":5432", false), // world is not an endpoint
		tcpFlow("peer", dbBeta+":5432", false),
		tcpFlow("peer", dbAlpha+":8081", true),    // the CNP in alpha admits world
		tcpFlow("peer", dbBeta+":8081", false),    // but only in alpha
		tcpFlow("client", dbAlpha+":8081", false), // and world is not a pod
	)
	f.waitDrop(t, peer, dbAlpha, 5432, 6, worldIPv4, "drop-policy-default")
}

// TestPrivilegedFidelityEntities checks the entities with nothing
// configured by hand. Another node (listed under nodes in the endpoints
// file) is remote-node: admitted by fromEntities remote-node and cluster,
// not by world nor by a fromCIDR that covers its address; a peer outside
// the cluster is the opposite. With hostIPs empty, the node's own traffic
// (from 169.254.1.1, the host-side veths' address) is host: admitted by
// allow-localhost under a policy that admits nobody, dropped by an
// ingressDeny from host.
func TestPrivilegedFidelityEntities(t *testing.T) {
	f := newFidelity(t, "")
	const (
		web    = "10.244.1.10" // app=web, one port per kind of peer
		quiet  = "10.244.1.11" // app=quiet, admits nobody
		sealed = "10.244.1.12" // app=sealed, admits nobody, denies host
		client = "10.244.1.13" // app=client
		node2  = "10.0.3.2"
		peer   = "10.0.4.2"
	)
	f.pod(t, "web", web)
	f.pod(t, "quiet", quiet)
	f.pod(t, "sealed", sealed)
	f.pod(t, "client", client)
	f.remote(t, "node2", "10.0.3.1", node2)
	f.remote(t, "peer", "10.0.4.1", peer)
	f.serve(t, "web", web, []int{8001, 8002, 8003, 8004}, nil)
	f.serve(t, "quiet", quiet, []int{8080}, nil)
	f.serve(t, "sealed", sealed, []int{8080}, nil)
	f.writeFile(t, f.endpoints, `endpoints:
- name: web
  ips: [10.244.1.10]
  labels: {app: web}
- name: quiet
  ips: [10.244.1.11]
  labels: {app: quiet}
- name: sealed
  ips: [10.244.1.12]
  labels: {app: sealed}
- name: client
  ips: [10.244.1.13]
  labels: {app: client}
nodes:
- name: node2
  ips: [10.0.3.2]
`)
	f.writePolicy(t, "web.yaml", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [remote-node]
    toPorts: [{ports: [{port: "8001", protocol: TCP}]}]
  - fromEntities: [world]
    toPorts: [{ports: [{port: "8002", protocol: TCP}]}]
  - fromCIDR: [10.0.0.0/8]
    toPorts: [{ports: [{port: "8003", protocol: TCP}]}]
  - fromEntities: [cluster]
    toPorts: [{ports: [{port: "8004", protocol: TCP}]}]
`)
	f.writePolicy(t, "host.yaml", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: quiet}
spec:
  endpointSelector: {matchLabels: {app: quiet}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: nobody}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: sealed}
spec:
  endpointSelector: {matchLabels: {app: sealed}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: nobody}}]
  ingressDeny:
  - fromEntities: [host]
`)
	f.start(t)
	s := f.waitApplied(t, "web", "quiet", "sealed")

	t.Run("status", func(t *testing.T) {
		for _, want := range []string{gatewayIP, "10.0.3.1", "10.0.4.1"} {
			if !slices.Contains(s.HostIPs, netip.MustParseAddr(want)) {
				t.Errorf("/v1/status hostIPs %v lack %s, an address of the node's interfaces", s.HostIPs, want)
			}
		}
		for _, not := range []string{web, quiet, sealed, client, node2, peer} {
			if slices.Contains(s.HostIPs, netip.MustParseAddr(not)) {
				t.Errorf("/v1/status hostIPs %v have %s, which is not the node's", s.HostIPs, not)
			}
		}
		want := []loaderapi.Node{{Name: "node2", IPs: []netip.Addr{netip.MustParseAddr(node2)}}}
		if !slices.EqualFunc(s.Nodes, want, func(a, b loaderapi.Node) bool { return a.Name == b.Name && slices.Equal(a.IPs, b.IPs) }) {
			t.Errorf("/v1/status nodes %+v, want %+v", s.Nodes, want)
		}
	})

	t.Run("remote-node, world, cidr, cluster", func(t *testing.T) {
		f.check(t, "web",
			tcpFlow("node2", web+":8001", true),  // remote-node
			tcpFlow("node2", web+":8002", false), // world: never a node
			tcpFlow("node2", web+":8003", false), // a CIDR never selects a node
			tcpFlow("node2", web+":8004", true),  // cluster
			tcpFlow("peer", web+":8001", false),
			tcpFlow("peer", web+":8002", true),
			tcpFlow("peer", web+":8003", true),
			tcpFlow("peer", web+":8004", false),
			tcpFlow("client", web+":8004", true),
			tcpFlow("client", web+":8002", false),
			tcpFlow("client", web+":8003", false), // a CIDR never selects an endpoint
		)
		f.waitDrop(t, node2, web, 8002, 6, remoteID, "drop-policy-default")
		// The peer is in fromCIDR 10.0.0.0/8: a CIDR identity, world-ipv4
		// in Cilium's labels.
		f.waitDrop(t, peer, web, 8004, 6, cidrSource, "drop-policy-default")
	})

	t.Run("host", func(t *testing.T) {
		f.check(t, "host",
			tcpFlow(hostActor, quiet+":8080", true), // allow-localhost
			tcpFlow("node2", quiet+":8080", false),
			tcpFlow("client", quiet+":8080", false),
			tcpFlow(hostActor, sealed+":8080", false), // ingressDeny host
		)
		f.waitDrop(t, gatewayIP, sealed, 8080, 6, hostID, "drop-policy-deny")
	})
}

// TestPrivilegedFidelityPorts checks ports and protocols: port 0 of
// protocol ANY is TCP, UDP and SCTP but not ICMP; an icmps rule admits the
// echo request and nothing else; a named port is resolved from the
// endpoints file's ports of the destination; a rule without toPorts (L3)
// admits TCP, UDP and ICMP from its peers only.
func TestPrivilegedFidelityPorts(t *testing.T) {
	f := newFidelity(t, "")
	const (
		anyPort  = "10.244.1.10" // app=any: port 0, protocol ANY
		echo     = "10.244.1.11" // app=echo: icmps EchoRequest
		named    = "10.244.1.12" // app=named, ports {web: 8080}: port web
		l3       = "10.244.1.13" // app=l3: no toPorts
		client   = "10.244.1.14" // app=client
		stranger = "10.244.1.15" // app=stranger
	)
	for name, ip := range map[string]string{"any": anyPort, "echo": echo, "named": named, "l3": l3} {
		f.pod(t, name, ip)
		f.serve(t, name, ip, []int{8080, 8081}, []int{5353})
	}
	f.pod(t, "client", client)
	f.pod(t, "stranger", stranger)
	f.writeFile(t, f.endpoints, `endpoints:
- name: any
  ips: [10.244.1.10]
  labels: {app: any}
- name: echo
  ips: [10.244.1.11]
  labels: {app: echo}
- name: named
  ips: [10.244.1.12]
  labels: {app: named}
  ports: {web: 8080}
- name: l3
  ips: [10.244.1.13]
  labels: {app: l3}
- name: client
  ips: [10.244.1.14]
  labels: {app: client}
- name: stranger
  ips: [10.244.1.15]
  labels: {app: stranger}
`)
	f.writePolicy(t, "ports.yaml", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: any}
spec:
  endpointSelector: {matchLabels: {app: any}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "0", protocol: ANY}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: echo}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps: [{fields: [{type: EchoRequest, family: IPv4}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: named}
spec:
  endpointSelector: {matchLabels: {app: named}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: web}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l3}
spec:
  endpointSelector: {matchLabels: {app: l3}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
`)
	f.start(t)
	f.waitApplied(t, "any", "echo", "named", "l3")

	f.check(t, "ports",
		tcpFlow("client", anyPort+":8080", true),
		tcpFlow("client", anyPort+":8081", true),
		udpFlow("client", anyPort+":5353", true),
		icmpFlow("client", anyPort, false), // ANY is TCP, UDP and SCTP only

		icmpFlow("client", echo, true),
		tcpFlow("client", echo+":8080", false),
		udpFlow("client", echo+":5353", false),

		tcpFlow("client", named+":8080", true), // web
		tcpFlow("client", named+":8081", false),
		udpFlow("client", named+":5353", false),

		tcpFlow("client", l3+":8080", true),
		udpFlow("client", l3+":5353", true),
		icmpFlow("client", l3, true),

		tcpFlow("stranger", l3+":8080", false),
		udpFlow("stranger", l3+":5353", false),
		icmpFlow("stranger", l3, false),
		tcpFlow("stranger", anyPort+":8080", false),
		icmpFlow("stranger", echo, false),
	)
	f.waitDrop(t, client, anyPort, 0, 1, anyID, "drop-policy-default")
}
