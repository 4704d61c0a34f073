package policyd

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/loaderconfig"
	"github.com/roost-net/roost/internal/policy"
)

// viewOf returns a view of eps, keyed as the subscriber keys them.
func viewOf(rev int64, eps ...globalview.Endpoint) globalview.View {
	v := globalview.View{Revision: rev, Endpoints: map[string]globalview.Endpoint{}}
	for _, e := range eps {
		v.Endpoints[e.ID()] = e
	}
	return v
}

func viewEndpoint(origin globalview.Origin, ns, name, app string, ips ...string) globalview.Endpoint {
	e := globalview.Endpoint{Origin: origin, Namespace: ns, Name: name}
	for _, ip := range ips {
		e.IPs = append(e.IPs, netip.MustParseAddr(ip))
	}
	cluster := origin.Name
	if origin.Kind == globalview.KindSync {
		cluster = ""
	}
	e.Labels = policy.EndpointLabels(map[string]string{"app": app}, ns, map[string]string{"kubernetes.io/metadata.name": ns}, "", cluster)
	if cluster == "" {
		delete(e.Labels, policy.ClusterLabel)
	}
	return e
}

func TestMergeView(t *testing.T) {
	own, c2, vms := globalview.ClusterOrigin("dc1"), globalview.ClusterOrigin("dc2"), globalview.SyncOrigin("vms")
	v := viewOf(7,
		viewEndpoint(own, "default", "db", "protected-db", "10.244.1.10"),         // this cluster's: the local sources stand for it
		viewEndpoint(c2, "default", "employee3", "employee", "10.244.3.11"),       // enforced
		viewEndpoint(c2, "default", "thief", "employee", "10.244.1.10"),           // claims a local address
		viewEndpoint(vms, "default", "vm2", "employee", "10.0.10.10", "fd00::10"), // enforced
		viewEndpoint(vms, "default", "twin-a", "employee", "10.0.11.1"),           // both claim 10.0.11.1
		viewEndpoint(c2, "prod", "twin-b", "guest", "10.0.11.1", "10.0.11.2"),     // (and both are skipped)
	)
	local := map[netip.Addr]string{netip.MustParseAddr("10.244.1.10"): `the local endpoint "local-db"'s`}
	m := mergeView(&v, own, local)
	var names []string
	for _, e := range m.endpoints {
		names = append(names, e.Name)
	}
	if want := []string{"cluster:dc2/default/employee3", "sync:vms/default/vm2"}; !slices.Equal(names, want) {
		t.Errorf("enforced %q, want %q", names, want)
	}
	if diff := cmp.Diff(map[string]int{"cluster:dc2": 1, "sync:vms": 1}, m.counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if m.own != 1 || m.origins["sync:vms/default/vm2"] != "sync:vms" {
		t.Errorf("own %d, origins %v", m.own, m.origins)
	}
	want := []string{
		`cluster:dc2/default/thief skipped: 10.244.1.10 is the local endpoint "local-db"'s`,
		`cluster:dc2/prod/twin-b skipped: 10.0.11.1 is also claimed by sync:vms/default/twin-a`,
		`sync:vms/default/twin-a skipped: 10.0.11.1 is also claimed by cluster:dc2/prod/twin-b`,
	}
	if diff := cmp.Diff(want, m.conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	// Every node merges alike: the same view gives the same result.
	if again := mergeView(&v, own, local); !cmp.Equal(again, m, cmp.AllowUnexported(viewMerge{}), cmpAddr) {
		t.Error("merge is not deterministic")
	}
}

// recordingPublisher records the sets given to Publish.
type recordingPublisher struct {
	mu    sync.Mutex
	sets  [][]globalview.Endpoint
	nodes [][]globalview.Node
}

func (r *recordingPublisher) publish(eps []globalview.Endpoint, nodes []globalview.Node) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, eps)
	r.nodes = append(r.nodes, nodes)
	return nil
}

func viewNode(origin globalview.Origin, name string, ips ...string) globalview.Node {
	n := globalview.Node{Origin: origin, Name: name}
	for _, ip := range ips {
		n.IPs = append(n.IPs, netip.MustParseAddr(ip))
	}
	return n
}

// TestMergeViewNodes checks which other clusters' nodes become
// remote-node: not this cluster's, not one holding an address of an
// endpoint or of this cluster's nodes, not two claiming one address.
func TestMergeViewNodes(t *testing.T) {
	own, c2, c3 := globalview.ClusterOrigin("dc1"), globalview.ClusterOrigin("dc2"), globalview.ClusterOrigin("dc3")
	v := viewOf(7)
	v.Nodes = map[string]globalview.Node{}
	for _, n := range []globalview.Node{
		viewNode(own, "node1", "10.0.1.2"),               // this cluster's: its local sources stand for it
		viewNode(c2, "node3", "10.0.5.2", "fd00:0:5::2"), // remote-node
		viewNode(c2, "node4", "10.0.7.2", "10.244.1.10"), // holds a local endpoint's address
		viewNode(c3, "node5", "10.0.9.2"),                // both claim 10.0.9.2
		viewNode(c2, "node6", "10.0.9.2"),
	} {
		v.Nodes[n.ID()] = n
	}
	taken := map[netip.Addr]string{netip.MustParseAddr("10.244.1.10"): `the local endpoint "local-db"'s`}
	var m viewMerge
	m.mergeViewNodes(&v, own, taken)
	want := []loaderapi.Node{{Name: "node3", Origin: "cluster:dc2", IPs: []netip.Addr{netip.MustParseAddr("10.0.5.2"), netip.MustParseAddr("fd00:0:5::2")}}}
	if diff := cmp.Diff(want, m.nodes, cmpAddr); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"cluster:dc2": 1}, m.nodeCounts); diff != "" {
		t.Errorf("node counts (-want +got):\n%s", diff)
	}
	wantConflicts := []string{
		`cluster:dc2/_nodes/node4 skipped: 10.244.1.10 is the local endpoint "local-db"'s`,
		`cluster:dc2/_nodes/node6 skipped: 10.0.9.2 is also claimed by cluster:dc3/_nodes/node5`,
		`cluster:dc3/_nodes/node5 skipped: 10.0.9.2 is also claimed by cluster:dc2/_nodes/node6`,
	}
	if diff := cmp.Diff(wantConflicts, m.conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
}

// TestGlobalView checks that a loader with a global view waits for its
// first view, enforces the view's endpoints of other origins with their
// labels, shows their origins, publishes its local endpoints only when
// they change, and keeps the last view when none comes.
func TestGlobalView(t *testing.T) {
	var inErr error
	enf := &fakeEnforcer{}
	pub := &recordingPublisher{}
	cfg := loaderconfig.Config{Node: "node1", Cluster: "dc1", GlobalView: loaderconfig.GlobalView{Enabled: true, Publish: true, SyncTimeout: time.Minute}}
	d := New(Options{Config: cfg, Enforcer: enf, Inputs: testInputs(&inErr), GlobalView: GlobalView{Publish: pub.publish}})
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if s := d.Status(); s.Ready || s.LastApply.Result != loaderapi.ResultWaiting || !strings.Contains(s.LastApply.Error, "global view") {
		t.Fatalf("before the first view: %+v", s.LastApply)
	}
	if len(enf.applied) != 0 || len(pub.sets) != 0 {
		t.Fatal("applied or published before the first view")
	}

	v := viewOf(3,
		viewEndpoint(globalview.ClusterOrigin("dc1"), "default", "stale", "employee", "10.244.1.99"),
		viewEndpoint(globalview.ClusterOrigin("dc2"), "default", "employee3", "employee", "10.244.3.11"),
		viewEndpoint(globalview.ClusterOrigin("dc2"), "default", "guest3", "guest", "10.244.4.10"),
		viewEndpoint(globalview.SyncOrigin("vms"), "default", "vm2", "employee", "10.0.10.10"),
	)
	v.Nodes = map[string]globalview.Node{}
	for _, n := range []globalview.Node{
		viewNode(globalview.ClusterOrigin("dc2"), "node3", "10.0.5.2"),
		viewNode(globalview.ClusterOrigin("dc2"), "node9", "10.0.3.2"), // this cluster's node2's address
		viewNode(globalview.ClusterOrigin("dc1"), "node7", "10.0.7.7"), // this cluster's own: not taken from the view
	} {
		v.Nodes[n.ID()] = n
	}
	d.SetView(v)
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	s := d.Status()
	if !s.Ready {
		t.Fatalf("not ready: %+v", s.LastApply)
	}
	origins := map[string]string{}
	ids := map[string]uint32{}
	for _, e := range s.Endpoints {
		origins[e.Name] = e.Origin
		ids[e.Name] = e.Identity
	}
	wantOrigins := map[string]string{"local-db": "file", "employee": "file",
		"cluster:dc2/default/employee3": "cluster:dc2", "cluster:dc2/default/guest3": "cluster:dc2", "sync:vms/default/vm2": "sync:vms"}
	if diff := cmp.Diff(wantOrigins, origins); diff != "" {
		t.Errorf("origins (-want +got):\n%s", diff)
	}
	// The db admits employees of every cluster and the VM, not the guest.
	res := enf.applied[len(enf.applied)-1]
	db := res.Endpoints[slices.IndexFunc(res.Endpoints, func(e policy.EndpointPolicy) bool { return e.Name == "local-db" })]
	for ip, want := range map[string]policy.Verdict{"10.244.3.11": policy.Allow, "10.0.10.10": policy.Allow,
		"10.244.4.10": policy.Deny, "10.244.1.99": policy.Deny} {
		if got := db.Decide(res.Lookup(netip.MustParseAddr(ip)), policy.ProtoTCP, 6379); got != want {
			t.Errorf("%s → db:6379 = %v, want %v", ip, got, want)
		}
	}
	// Another cluster's node is remote-node, as to Cilium's ClusterMesh;
	// a node of this cluster's own origin in the view is not taken, nor
	// one holding this cluster's node's address (that stays its).
	for ip, want := range map[string]policy.Identity{"10.0.5.2": policy.IdentityRemoteNode, "10.0.7.7": policy.IdentityWorldIPv4,
		"10.0.3.2": policy.IdentityRemoteNode} {
		if got := res.Lookup(netip.MustParseAddr(ip)); got != want {
			t.Errorf("identity of %s = %v, want %v", ip, got, want)
		}
	}
	if !slices.ContainsFunc(s.Nodes, func(n loaderapi.Node) bool { return n.Name == "node3" && n.Origin == "cluster:dc2" }) {
		t.Errorf("status nodes %+v lack dc2's node3", s.Nodes)
	}
	if !slices.ContainsFunc(s.GlobalView.Conflicts, func(c string) bool {
		return strings.HasPrefix(c, `cluster:dc2/_nodes/node9 skipped: 10.0.3.2 is this cluster's node "node2"'s`)
	}) {
		t.Errorf("conflicts %q lack node9's", s.GlobalView.Conflicts)
	}
	// Identities are label-derived: the employee of dc2 has the identity
	// an employee of dc2 has everywhere, apart from the local one's.
	if ids["cluster:dc2/default/employee3"] == ids["employee"] || ids["cluster:dc2/default/employee3"] == 0 {
		t.Errorf("identities: %v", ids)
	}
	g := s.GlobalView
	if g == nil || g.Revision != 3 || g.Own != 1 || g.Origins["cluster:dc2"] != 2 || g.Origins["sync:vms"] != 1 || g.Nodes["cluster:dc2"] != 1 {
		t.Errorf("global view status = %+v", g)
	}

	// Published: the local endpoints, under this cluster's origin, once.
	if len(pub.sets) != 1 || len(pub.sets[0]) != 2 {
		t.Fatalf("published %v", pub.sets)
	}
	// and the cluster's nodes, this one's included.
	wantNodes := []globalview.Node{viewNode(globalview.ClusterOrigin("dc1"), "node1", "10.0.2.2"),
		viewNode(globalview.ClusterOrigin("dc1"), "node2", "10.0.3.2", "10.0.4.2")}
	if diff := cmp.Diff(wantNodes, pub.nodes[0], cmpAddr); diff != "" {
		t.Errorf("published nodes (-want +got):\n%s", diff)
	}
	for _, e := range pub.sets[0] {
		if e.Origin != globalview.ClusterOrigin("dc1") || e.Namespace != "default" || e.Labels[policy.ClusterLabel] != "dc1" {
			t.Errorf("published %+v", e)
		}
		if err := e.Validate(); err != nil {
			t.Error(err)
		}
	}
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if len(pub.sets) != 1 {
		t.Errorf("an unchanged set was published again: %d sets", len(pub.sets))
	}
}

// TestGlobalViewWait checks /v1/globalview's wait for an applied revision.
func TestGlobalViewWait(t *testing.T) {
	var inErr error
	cfg := loaderconfig.Config{Node: "node1", Cluster: "dc1", GlobalView: loaderconfig.GlobalView{Enabled: true, SyncTimeout: time.Minute}}
	d := New(Options{Config: cfg, Enforcer: &fakeEnforcer{}, Inputs: testInputs(&inErr)})
	srv := httptest.NewServer(d.Handler(&fakeEnforcer{}, "/sys/fs/bpf/roost"))
	defer srv.Close()
	get := func(query string) (int, loaderapi.GlobalView, time.Duration) {
		start := time.Now()
		resp, err := http.Get(srv.URL + loaderapi.PathGlobalView + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var g loaderapi.GlobalView
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, g, time.Since(start)
	}
	d.SetView(viewOf(3))
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if code, g, _ := get("?appliedAtLeast=3"); code != http.StatusOK || g.Applied != 3 {
		t.Errorf("applied 3: %d %+v", code, g)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		d.SetView(viewOf(5))
		_ = d.Reconcile()
	}()
	if code, g, took := get("?appliedAtLeast=5&wait=20s"); code != http.StatusOK || g.Applied != 5 || took > 10*time.Second {
		t.Errorf("waiting for 5: %d %+v after %v", code, g, took)
	}
	if code, g, _ := get("?appliedAtLeast=9&wait=50ms"); code != http.StatusOK || g.Applied != 5 {
		t.Errorf("wait over: %d %+v", code, g)
	}
	resp, err := http.Get(srv.URL + loaderapi.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"roost_globalview_revision 5", "roost_globalview_connected 0", "roost_globalview_conflicts 0"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, q := range []string{"?appliedAtLeast=x", "?appliedAtLeast=1&wait=2h", "?appliedAtLeast=1&wait=soon"} {
		if code, _, _ := get(q); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
}

// TestGlobalViewSyncTimeout checks that the wait for a first view is
// bounded: after it the local endpoints are enforced alone.
func TestGlobalViewSyncTimeout(t *testing.T) {
	var inErr error
	enf := &fakeEnforcer{}
	cfg := loaderconfig.Config{Node: "node1", Cluster: "dc1", GlobalView: loaderconfig.GlobalView{Enabled: true, SyncTimeout: 50 * time.Millisecond}}
	d := New(Options{Config: cfg, Enforcer: enf, Inputs: testInputs(&inErr)})
	if err := d.Reconcile(); err != nil || d.Status().LastApply.Result != loaderapi.ResultWaiting {
		t.Fatalf("within the timeout: %v %+v", err, d.Status().LastApply)
	}
	time.Sleep(60 * time.Millisecond)
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	s := d.Status()
	if s.LastApply.Result != loaderapi.ResultOK || len(enf.applied) != 1 || len(s.Endpoints) != 2 {
		t.Fatalf("after the timeout: %+v, %d endpoints, %d applied", s.LastApply, len(s.Endpoints), len(enf.applied))
	}
	if g := s.GlobalView; g == nil || g.Listed || g.Connected || g.Applied != 0 {
		t.Errorf("global view status after the timeout: %+v", g)
	}
}

// TestGlobalViewEndpointOnNodeAddress checks that a view endpoint holding
// an address of this cluster's nodes or of this node is skipped and
// reported, and the rest applied: it must not make every reconcile fail.
func TestGlobalViewEndpointOnNodeAddress(t *testing.T) {
	var inErr error
	enf := &fakeEnforcer{}
	cfg := loaderconfig.Config{Node: "node1", Cluster: "dc1", HostIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		GlobalView: loaderconfig.GlobalView{Enabled: true, SyncTimeout: time.Minute}}
	d := New(Options{Config: cfg, Enforcer: enf, Inputs: testInputs(&inErr)})
	c2 := globalview.ClusterOrigin("dc2")
	d.SetView(viewOf(4,
		viewEndpoint(c2, "default", "on-node2", "employee", "10.0.3.2"), // node2's, in the endpoints file
		viewEndpoint(c2, "default", "on-host", "employee", "192.0.2.1"), // this node's, configured
		viewEndpoint(c2, "default", "on-iface", "employee", "10.0.1.2"), // this node's, found on an interface
		viewEndpoint(c2, "default", "employee3", "employee", "10.244.3.11"),
	))
	if err := d.Reconcile(); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	s := d.Status()
	if !s.Ready || !slices.ContainsFunc(s.Endpoints, func(e loaderapi.Endpoint) bool { return e.Name == "cluster:dc2/default/employee3" }) {
		t.Fatalf("status %+v", s)
	}
	for _, want := range []string{
		`cluster:dc2/default/on-host skipped: 192.0.2.1 is this node's`,
		`cluster:dc2/default/on-iface skipped: 10.0.1.2 is this node's`,
		`cluster:dc2/default/on-node2 skipped: 10.0.3.2 is this cluster's node "node2"'s`,
	} {
		if !slices.Contains(s.GlobalView.Conflicts, want) {
			t.Errorf("conflicts %q lack %q", s.GlobalView.Conflicts, want)
		}
	}
}
