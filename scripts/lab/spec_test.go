package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/endpoints"
	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/services"
	"github.com/roost-net/roost/internal/syncd"
)

const defaultFile = "lab.yaml"

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parse(t *testing.T, src string) *Lab {
	t.Helper()
	lab, err := Parse(strings.NewReader(src), "lab.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return lab
}

func TestDefaultFile(t *testing.T) {
	lab := parse(t, readFile(t, defaultFile))
	if len(lab.Clusters) != 2 || len(lab.Tors) != 2 || len(lab.Nodes) != 4 || len(lab.Links) != 8 || len(lab.Pods) != 7 ||
		len(lab.VMs) != 2 || len(lab.Services) != 1 || len(lab.Checks[0]) != 14 || len(lab.Checks[1]) != 10 ||
		lab.Etcd == nil || lab.Sync == nil {
		t.Errorf("default lab: %d clusters, %d tors, %d nodes, %d links, %d pods, %d vms, %d services, %d+%d checks, etcd %v, sync %v; want 2, 2, 4, 8, 7, 2, 1, 14+10, both",
			len(lab.Clusters), len(lab.Tors), len(lab.Nodes), len(lab.Links), len(lab.Pods), len(lab.VMs), len(lab.Services),
			len(lab.Checks[0]), len(lab.Checks[1]), lab.Etcd != nil, lab.Sync != nil)
	}
}

// TestThreeNodes checks a lab of one cluster (no clusters, etcd or sync:
// the lab before clusters) with a third node: its nodes, pods, vm and
// service are all of cluster default, which needs no etcd.
func TestThreeNodes(t *testing.T) {
	lab := parse(t, readFile(t, "testdata/three-nodes.yaml"))
	if len(lab.Nodes) != 3 || len(lab.Links) != 6 || len(lab.Pods) != 6 {
		t.Errorf("%d nodes, %d links, %d pods; want 3, 6, 6", len(lab.Nodes), len(lab.Links), len(lab.Pods))
	}
	if !slices.Equal(lab.Clusters, []string{DefaultCluster}) || lab.Etcd != nil || lab.Sync != nil {
		t.Errorf("clusters %q, etcd %v, sync %v; want [default] and neither", lab.Clusters, lab.Etcd, lab.Sync)
	}
	for _, nd := range lab.Nodes {
		if nd.Cluster != DefaultCluster {
			t.Errorf("%s is of cluster %q", nd.Name, nd.Cluster)
		}
	}
	if lab.VMs[0].Cluster != DefaultCluster || lab.Services[0].Cluster != DefaultCluster {
		t.Errorf("vm of cluster %q, service of %q; want default", lab.VMs[0].Cluster, lab.Services[0].Cluster)
	}
}

// TestClusterRule checks the lab's cluster names against globalview's
// origins, which the loaders and roost-sync enforce.
func TestClusterRule(t *testing.T) {
	for _, name := range []string{"lab1", "a", "a-b", "lab-", "1lab", "Lab", "lab_1", "", strings.Repeat("a", 32), strings.Repeat("a", 33), "a--b", "x9"} {
		want := globalview.ClusterOrigin(name).Validate() == nil
		if got := clusterRE.MatchString(name); got != want {
			t.Errorf("%q: the lab says %v, globalview %v", name, got, want)
		}
	}
}

// TestBad changes the default file in one place each (the first
// occurrence of old) and checks the
// problem reported, with its line and path.
func TestBad(t *testing.T) {
	src := readFile(t, defaultFile)
	for _, tc := range []struct {
		name, old, new string
		want           []string // each a substring of the problems
	}{
		{"unknown top key", "uplinkMTU: 1600", "uplinkMTU: 1600\ncluster: []",
			[]string{`lab.yaml:18: cluster: unknown field: did you mean clusters?`}},
		{"unknown node key", "    asn: 65102\n", "    asn: 65102\n    podCIDR: 10.244.2.0/24\n",
			[]string{`nodes[1].podCIDR: unknown field`}},
		{"unknown link key", "  - tor: tor1\n    node: node2\n", "  - tor: tor1\n    node: node2\n    mtu: 1500\n",
			[]string{`links[2].mtu: unknown field`}},
		{"link to a missing node", "  - tor: tor1\n    node: node2\n", "  - tor: tor1\n    node: node9\n",
			[]string{`links[2].node: "node9" is not a node of the file (it names nothing)`}},
		{"link to a node as tor", "  - tor: tor2\n    node: node2\n", "  - tor: node1\n    node: node2\n",
			[]string{`links[3].tor: "node1" is not a tor of the file (it names a node)`}},
		{"second link", "  - tor: tor2\n    node: node2\n", "  - tor: tor1\n    node: node2\n",
			[]string{`links[3]: a second link between tor1 and node2`}},
		{"pod on a missing node", "{name: guest, node: node2,", "{name: guest, node: node9,",
			[]string{`pods[2].node: "node9" is not a node of the file`}},
		{"pod outside its PodCIDR", "ipv4: 10.244.2.12,", "ipv4: 10.244.1.12,",
			[]string{`pods[4].ipv4: 10.244.1.12 is not in node2's PodCIDR 10.244.2.0/24`}},
		{"IPv6 where IPv4 belongs", "ipv4: 10.244.2.12,", `ipv4: "fd00:244:2::12",`,
			[]string{`pods[4].ipv4: fd00:244:2::12 is not an IPv4 address`}},
		{"not an address", "ipv4: 10.244.2.12,", `ipv4: 10.244.2.300,`,
			[]string{`pods[4].ipv4: "10.244.2.300" is not an IP address`}},
		{"duplicate address", "ipv4: 10.244.2.12,", "ipv4: 10.244.2.11,",
			[]string{`pods[4].ipv4: 10.244.2.11 is already pods[3].ipv4`}},
		{"duplicate name", "{name: db2,", "{name: tor2,",
			[]string{`pods[4].name: "tor2" is already the name of a tor`}},
		{"long name", "{name: db2,", "{name: a-very-long-podname,",
			[]string{`pods[4].name: "a-very-long-podname" is not a name`}},
		{"quoted number", "asn: 65102", `asn: "65102"`,
			[]string{`nodes[1].asn: must be an AS number (1 to 4294967295): unquote it (65102)`}},
		{"host bits in a PodCIDR", "podCIDR: 10.244.2.0/24", "podCIDR: 10.244.2.1/24",
			[]string{`nodes[1].ipv4.podCIDR: 10.244.2.1/24 has host bits set: did you mean 10.244.2.0/24?`}},
		{"overlapping PodCIDRs", "podCIDR: 10.244.2.0/24", "podCIDR: 10.244.0.0/16",
			[]string{`nodes[1].ipv4.podCIDR: 10.244.0.0/16 overlaps 10.244.1.0/24 (nodes[0].ipv4.podCIDR)`}},
		{"link ends on two subnets", "node: 10.0.4.2/30}", "node: 10.0.5.2/30}",
			[]string{`links[3].ipv4.node: 10.0.5.2/30 is not on the subnet of the ToR's end, 10.0.4.0/30`}},
		{"lo outside the PodCIDR", "lo: 10.244.2.1}", "lo: 10.244.9.1}",
			[]string{`nodes[1].ipv4.lo: 10.244.9.1 is not in the node's PodCIDR 10.244.2.0/24`}},
		{"router ID twice", "routerID: 10.0.3.2", "routerID: 10.0.1.2",
			[]string{`nodes[1].routerID: 10.0.1.2 is already the router ID of node1`}},
		{"vm behind a missing tor", "    tor: tor1\n    cluster: lab1\n", "    tor: tor3\n    cluster: lab1\n",
			[]string{`vms[0].tor: "tor3" is not a tor of the file`}},
		{"vm gateway off its subnet", "gateway: 10.0.9.1}", "gateway: 10.0.8.1}",
			[]string{`vms[0].ipv4.gateway: 10.0.8.1 is not on the vm's subnet 10.0.9.0/24`}},
		{"missing backend", "backends: [db, db2]", "backends: [db, db3]",
			[]string{`services[0].backends[1]: "db3" is not a pod of the file`}},
		{"backend not listening", "backends: [db, db2]", "backends: [db, guest]",
			[]string{`services[0].backends[1]: guest does not listen on the service's port 6379`}},
		{"check of a missing client", "{client: employee2, server: db, port: 6379, expect: allow}\n    - {client: vm1",
			"{client: nobody, server: db, port: 6379, expect: allow}\n    - {client: vm1",
			[]string{`checks.ipv4[1].client: "nobody" is not a pod or vm of the file`}},
		{"check of a missing server", "{client: guest, server: db2, port: 6379, expect: drop}\n    - {client: employee2",
			"{client: guest, server: db3, port: 6379, expect: drop}\n    - {client: employee2",
			[]string{`checks.ipv4[6].server: "db3" is not a pod of the file`}},
		{"check of a vm server", "{client: guest, server: db2, port: 6379, expect: drop}\n    - {client: employee2",
			"{client: guest, server: vm1, port: 6379, expect: drop}\n    - {client: employee2",
			[]string{`checks.ipv4[6].server: "vm1" is not a pod of the file`}},
		{"check of a missing service", `server: "svc:db", port: 6379, expect: allow}`, `server: "svc:dc", port: 6379, expect: allow}`,
			[]string{`checks.ipv4[7].server: "dc" is not a service of the file`}},
		{"service over IPv6", "  ipv6:\n    - {client: employee, server: db,", "  ipv6:\n    - {client: employee, server: \"vip:db\",",
			[]string{`checks.ipv6[0].server: vip:db: the lab's services are IPv4 only`}},
		{"port nobody listens on", "{client: employee, server: db, port: 22, expect: drop}\n    - {client: employee, server: db2",
			"{client: employee, server: db, port: 23, expect: drop}\n    - {client: employee, server: db2",
			[]string{`checks.ipv4[4].port: db does not listen on 23`}},
		{"bad expectation", "{client: guest, server: db, port: 6379, expect: drop}\n    - {client: employee, server: db, port: 22",
			"{client: guest, server: db, port: 6379, expect: deny}\n    - {client: employee, server: db, port: 22",
			[]string{`checks.ipv4[3].expect: "deny" must be allow or drop`}},
		{"missing field", "    asn: 65102\n", "",
			[]string{`nodes[1].asn: missing`}},
		{"bad cluster name", "{name: lab2}", "{name: Lab_2}",
			[]string{`clusters[1].name: "Lab_2" is not a cluster name: 1-32 lower-case letters`}},
		{"second cluster", "{name: lab2}", "{name: lab1}",
			[]string{`clusters[1].name: a second cluster "lab1"`}},
		{"node of a missing cluster", "    cluster: lab2\n    asn: 65103", "    cluster: lab3\n    asn: 65103",
			[]string{`nodes[2].cluster: "lab3" is not a cluster of the file (clusters: lab1, lab2)`}},
		{"node without a cluster", "    cluster: lab1\n    asn: 65102", "    asn: 65102",
			[]string{`nodes[1].cluster: missing`}},
		{"cluster without a node", "  - {name: lab2}\n", "  - {name: lab2}\n  - {name: lab3}\n",
			[]string{`lab.yaml:28: clusters: cluster lab3 has no node`}},
		{"clusters without etcd", "etcd:\n  name: etcd\n  tor: tor1\n", "etcdx:\n  name: etcd\n  tor: tor1\n",
			[]string{`clusters: 2 clusters and no etcd`, `sync: roost-sync needs etcd`}},
		{"etcd behind a ToR a node is not linked to", "  - tor: tor1\n    node: node4\n", "  - tor: tor2\n    node: node4\n",
			[]string{`etcd.tor: node4 is not linked to tor1: every node's roost-loader reaches etcd`}},
		{"etcd gateway off its subnet", "gateway: 10.0.8.1}", "gateway: 10.0.7.1}",
			[]string{`etcd.ipv4.gateway: 10.0.7.1 is not on the etcd's subnet 10.0.8.0/24`}},
		{"etcd named as a node", "  name: etcd\n", "  name: node1\n",
			[]string{`etcd.name: "node1" is already the name of a node`}},
		{"etcd overlapping a vm", "{address: 10.0.8.10/24, gateway: 10.0.8.1}", "{address: 10.0.9.20/24, gateway: 10.0.9.2}",
			[]string{`vms[0].ipv4: 10.0.9.0/24 overlaps 10.0.9.0/24 (etcd.ipv4)`}},
		{"sync on etcd's port", "port: 9482}", "port: 2379}",
			[]string{`sync.port: 2379 is etcd's`}},
		{"sync of a missing cluster", "port: 9482}", "port: 9482, cluster: lab9}",
			[]string{`sync.cluster: "lab9" is not a cluster of the file`}},
		{"vm of another syncer", "    sync: lab\n", "    sync: vms\n",
			[]string{`vms[1].sync: "vms" is not the file's syncer (lab)`}},
		{"vm with cluster and sync", "    sync: lab\n", "    sync: lab\n    cluster: lab1\n",
			[]string{`vms[1].sync: a vm has cluster or sync, not both`}},
		{"vm with neither", "    cluster: lab1\n    app: employee\n", "    app: employee\n",
			[]string{`vms[0]: neither cluster nor sync: name the cluster whose endpoints file lists the vm, or the syncer that registers it (sync: lab)`}},
		{"service backends of two clusters", "backends: [db, db2]}", "backends: [db, db2, employee3]}",
			[]string{`services[0].backends[2]: employee3 is a pod of cluster lab2, the service's first backend one of lab1: a service's backends are of one cluster`}},
		{"cluster IP from another cluster", "{client: employee2, server: \"svc:db\"", "{client: employee3, server: \"svc:db\"",
			[]string{`checks.ipv4[7].client: svc:db: a cluster IP is served by the socket load balancer of the client's node: the client must be a pod of cluster lab1`}},
		{"cluster IP from a vm", "{client: employee2, server: \"svc:db\"", "{client: vm1, server: \"svc:db\"",
			[]string{`checks.ipv4[7].client: svc:db: a cluster IP is served by the socket load balancer`}},
		{"deregistered of a vm in a file", "{client: vm1, server: db, port: 6379, expect: allow}", "{client: vm1, server: db, port: 6379, expect: allow, deregistered: drop}",
			[]string{`checks.ipv4[2].deregistered: vm1 is not a vm registered through roost-sync`}},
		{"bad deregistered", "expect: allow, deregistered: drop}", "expect: allow, deregistered: deny}",
			[]string{`checks.ipv4[13].deregistered: "deny" must be allow or drop`}},
		{"two problems at once", "{name: guest, node: node2,", "{name: guest, node: node9, colour: red,",
			[]string{`pods[2].node: "node9" is not a node`, `pods[2].colour: unknown field`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first occurrence (an IPv4 check before its IPv6 twin).
			if !strings.Contains(src, tc.old) {
				t.Fatalf("%q is not in %s", tc.old, defaultFile)
			}
			_, err := Parse(strings.NewReader(strings.Replace(src, tc.old, tc.new, 1)), "lab.yaml")
			if err == nil {
				t.Fatalf("accepted; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems:\n%v\nwant one with %q", err, w)
				}
			}
		})
	}
	for _, tc := range []struct{ src, want string }{
		{"", "lab.yaml: the file is empty"},
		{"tors: [\n", "lab.yaml:1: YAML: did not find expected node content"},
		{"- a\n", "lab.yaml:1: must be a mapping"},
		{"uplinkMTU: 1600\n", "lab.yaml:1: tors: missing"},
	} {
		_, err := Parse(strings.NewReader(tc.src), "lab.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestRun(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("tors: []\nnodes: []\nlinks: []\nuplinkMTU: 1600\nnode: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args       []string
		code       int
		stderrPart string
	}{
		{[]string{"check", defaultFile}, 0, ""},
		{[]string{"check", "testdata/three-nodes.yaml"}, 0, ""},
		{[]string{"check", bad}, 1, bad + ":5: node: unknown field: did you mean nodes?"},
		{[]string{"check", bad}, 1, "tors: no ToR"},
		{[]string{"check", "/nonexistent.yaml"}, 1, "no such file"},
		{[]string{"check"}, 2, "usage"},
		{[]string{"print", defaultFile}, 2, "usage"},
		{[]string{"up", "extra"}, 2, "usage"},
		{nil, 2, "usage"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || stdout.Len() > 0 || !strings.Contains(stderr.String(), tc.stderrPart) {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, no output, %q", tc.args, code, stdout.String(), stderr.String(),
				tc.code, tc.stderrPart)
		}
	}
}

// TestBadOneCluster changes the file of one cluster (no clusters key).
func TestBadOneCluster(t *testing.T) {
	src := readFile(t, "testdata/three-nodes.yaml")
	for _, tc := range []struct{ name, old, new, want string }{
		{"node naming a cluster", "  - name: node3\n", "  - name: node3\n    cluster: lab1\n",
			`nodes[2].cluster: "lab1" is not a cluster of the file: it lists no clusters (add them under clusters)`},
		{"vm registered without a syncer", "    tor: tor1\n", "    tor: tor1\n    sync: lab\n",
			`vms[0].sync: "lab": the file has no sync entry (roost-sync) to register the vm`},
		{"sync without etcd", "uplinkMTU: 1600\n", "uplinkMTU: 1600\nsync: {name: lab, port: 9482}\n",
			`sync: roost-sync needs etcd`},
		{"no clusters listed", "uplinkMTU: 1600\n", "uplinkMTU: 1600\nclusters: []\n",
			`clusters: no cluster: list one at least, or leave clusters out for one cluster (default)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(src, tc.old) {
				t.Fatalf("%q is not in three-nodes.yaml", tc.old)
			}
			_, err := Parse(strings.NewReader(strings.Replace(src, tc.old, tc.new, 1)), "lab.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("problems:\n%v\nwant one with %q", err, tc.want)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestFiles compares the endpoints and services files rendered for each
// cluster with testdata/golden (go test -update rewrites them), and has
// roost-loader's own parsers read them; and roost-sync's API reads each
// registration, strictly.
func TestFiles(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		endpoints  map[string]int // per cluster
	}{
		{"lab", defaultFile, map[string]int{"lab1": 6, "lab2": 2}},
		{"three-nodes", "testdata/three-nodes.yaml", map[string]int{"default": 7}},
	} {
		lab := parse(t, readFile(t, tc.file))
		for _, c := range lab.Clusters {
			for _, f := range []struct{ kind, text string }{{"endpoints", lab.EndpointsFile(c)}, {"services", lab.ServicesFile(c)}} {
				golden := filepath.Join("testdata", "golden", tc.name+"-"+c+"-"+f.kind+".yaml")
				if *update {
					if err := os.WriteFile(golden, []byte(f.text+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if want := readFile(t, golden); f.text+"\n" != want {
					t.Errorf("%s: rendered\n%s\nwant (go test -update rewrites it)\n%s", golden, f.text, want)
				}
				if again := map[string]func(string) string{"endpoints": lab.EndpointsFile, "services": lab.ServicesFile}[f.kind](c); again != f.text {
					t.Errorf("%s: a second rendering differs", golden)
				}
				switch f.kind {
				case "endpoints":
					ef, err := endpoints.LoadFile(strings.NewReader(f.text), golden)
					if err != nil {
						t.Errorf("roost-loader refuses %s: %v", golden, err)
					} else if len(ef.Endpoints) != tc.endpoints[c] || len(ef.Nodes) != len(lab.clusterNodes(c)) {
						t.Errorf("%s: %d endpoints and %d nodes; want %d and %d", golden, len(ef.Endpoints), len(ef.Nodes), tc.endpoints[c], len(lab.clusterNodes(c)))
					}
				case "services":
					if _, err := services.Load(strings.NewReader(f.text), golden); err != nil {
						t.Errorf("roost-loader refuses %s: %v", golden, err)
					}
				}
			}
		}
		for _, v := range lab.VMs {
			if v.Sync == "" {
				continue
			}
			dec := json.NewDecoder(strings.NewReader(v.Registration()))
			dec.DisallowUnknownFields()
			var reg syncd.Registration
			if err := dec.Decode(&reg); err != nil {
				t.Errorf("%s: registration %s: %v", v.Name, v.Registration(), err)
			}
			if len(reg.IPs) != 2 || reg.Labels["app"] != v.App {
				t.Errorf("%s: registration %+v", v.Name, reg)
			}
		}
	}
}
