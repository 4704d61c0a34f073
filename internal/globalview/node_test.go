package globalview

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func node(o Origin, name string, ips ...string) Node {
	n := Node{Origin: o, Name: name}
	for _, ip := range ips {
		n.IPs = append(n.IPs, netip.MustParseAddr(ip))
	}
	return n
}

// TestNodeEncodeDecode checks a node's key and value, and that a reader
// tells nodes from endpoints by the key alone.
func TestNodeEncodeDecode(t *testing.T) {
	n := node(ClusterOrigin("prod"), "node-17.example", "fd00::17", "10.0.1.17")
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	key := layout.NodeKey(n)
	if want := "/roost/v1/endpoints/cluster:prod/_nodes/node-17.example"; key != want || n.ID() != "cluster:prod/_nodes/node-17.example" {
		t.Errorf("key %q, ID %q; want %q", key, n.ID(), want)
	}
	v, err := encodeNode(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"ips":["10.0.1.17","fd00::17"]}`; string(v) != want {
		t.Errorf("value %s, want %s (addresses sorted)", v, want)
	}
	e := layout.entry(key, v)
	if e.err != nil || e.node == nil {
		t.Fatalf("entry = %+v", e)
	}
	slices.SortFunc(n.IPs, netip.Addr.Compare)
	if diff := cmp.Diff(n, *e.node, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
	// An endpoint's key is never a node's: "_nodes" is no namespace.
	if e := layout.entry("/roost/v1/endpoints/cluster:prod/web/_nodes", []byte(`{"v":1,"ips":["10.0.0.1"],"namespace":"web"}`)); e.node != nil {
		t.Errorf("an endpoint named _nodes read as a node")
	}
}

func TestNodeRejects(t *testing.T) {
	prod := ClusterOrigin("prod")
	for _, tt := range []struct {
		name string
		n    Node
		want string
	}{
		{"a syncer's", node(SyncOrigin("vms"), "n1", "10.0.0.1"), "only a cluster has nodes"},
		{"bad name", node(prod, "Node_1", "10.0.0.1"), `name "Node_1"`},
		{"no IPs", node(prod, "n1"), "no IPs"},
		{"IP twice", node(prod, "n1", "10.0.0.1", "10.0.0.1"), "IP 10.0.0.1 twice"},
	} {
		if err := tt.n.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.want)
		}
	}
	for _, tt := range []struct{ name, key, value, want string }{
		{"not JSON", "/roost/v1/endpoints/cluster:prod/_nodes/n1", "garbage", "does not parse"},
		{"newer version", "/roost/v1/endpoints/cluster:prod/_nodes/n1", `{"v":2,"ips":["10.0.0.1"]}`, "unknown value version 2"},
		{"a syncer's", "/roost/v1/endpoints/sync:vms/_nodes/n1", `{"v":1,"ips":["10.0.0.1"]}`, "only a cluster has nodes"},
		{"unknown origin", "/roost/v1/endpoints/k8s:prod/_nodes/n1", `{"v":1,"ips":["10.0.0.1"]}`, "kind must be"},
		{"no IPs", "/roost/v1/endpoints/cluster:prod/_nodes/n1", `{"v":1,"ips":[]}`, "no IPs"},
	} {
		if e := layout.entry(tt.key, []byte(tt.value)); e.err == nil || !strings.Contains(e.err.Error(), tt.want) {
			t.Errorf("%s: entry(%q) = %+v, want an error containing %q", tt.name, tt.key, e, tt.want)
		}
	}
}

// TestPublishNodes publishes a cluster's nodes beside its endpoints
// through a real etcd, and checks that a subscriber's view holds them
// apart, follows a change, and that Set refuses what it must.
func TestPublishNodes(t *testing.T) {
	e := startEtcd(t, 1)
	c := newClient(t, e.Endpoints)
	prod := ClusterOrigin("prod")
	p, _ := publisher(t, c, prod, "a", 10*time.Second)
	_, rec, _ := subscribe(t, newClient(t, e.Endpoints))
	gen, err := p.Set([]Endpoint{ep(prod, "web", "web-0", "10.244.1.5")},
		[]Node{node(prod, "node1", "10.0.1.2"), node(prod, "node2", "10.0.3.2", "fd00:0:3::2"),
			node(ClusterOrigin("dev"), "node9", "10.0.9.2"), node(prod, "node1", "10.0.1.3")})
	for _, want := range []string{"node cluster:dev/_nodes/node9: origin is not this publisher's", "node cluster:prod/_nodes/node1: given twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Set error = %v, want it to contain %q", err, want)
		}
	}
	waitPublished(t, p, gen)
	if st := p.Status(); st.Endpoints != 1 || st.Nodes != 2 {
		t.Errorf("publisher status = %+v, want 1 endpoint and 2 nodes", st)
	}
	v, _ := rec.wait(t, "two nodes", func(v View) bool { return len(v.Nodes) == 2 })
	if len(v.Endpoints) != 1 || len(v.Problems) != 0 {
		t.Errorf("view: %d endpoints, problems %v; want 1, none", len(v.Endpoints), v.Problems)
	}
	if n := v.Nodes["cluster:prod/_nodes/node2"]; len(n.IPs) != 2 || n.Name != "node2" {
		t.Errorf("node2 = %+v", n)
	}
	// A node leaves, another changes its address.
	waitPublished(t, p, mustSet(t, p, nil, []Node{node(prod, "node2", "10.0.3.9")}))
	rec.wait(t, "node1 gone, node2 moved", func(v View) bool {
		n, ok := v.Nodes["cluster:prod/_nodes/node2"]
		return len(v.Nodes) == 1 && ok && n.IPs[0] == netip.MustParseAddr("10.0.3.9") && len(v.Endpoints) == 0
	})
}

func mustSet(tb testing.TB, p *Publisher, eps []Endpoint, nodes []Node) uint64 {
	tb.Helper()
	gen, err := p.Set(eps, nodes)
	if err != nil {
		tb.Fatal(err)
	}
	return gen
}
