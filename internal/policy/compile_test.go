package policy

import (
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func lbl(kv ...string) map[string]string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// pod returns the labels of an endpoint with own labels kv, as the
// sources derive them: in the namespace kv names with NamespaceLabel
// (default "default"), in cluster "default".
func pod(kv ...string) map[string]string {
	own := lbl(kv...)
	ns := DefaultNamespace
	if v, ok := own[NamespaceLabel]; ok {
		ns = v
		delete(own, NamespaceLabel)
	}
	return EndpointLabels(own, ns, nil, "", DefaultCluster)
}

// seedEndpoints are the endpoints for the seed policy: db,
// employee and guest run here; employee2 on another node; vm1 is an
// external workload.
func seedEndpoints() []Endpoint {
	return []Endpoint{
		{Name: "db", IPs: addrs("10.0.0.1"), Labels: pod("app", "protected-db"), Local: true},
		{Name: "employee", IPs: addrs("10.0.0.2"), Labels: pod("app", "employee", "pod-template-hash", "7f9c"), Local: true},
		{Name: "employee2", IPs: addrs("10.0.1.2"), Labels: pod("app", "employee")},
		{Name: "guest", IPs: addrs("10.0.0.3"), Labels: pod("app", "guest"), Local: true},
		{Name: "vm1", IPs: addrs("192.168.10.5"), Labels: pod("app", "employee")},
	}
}

const hostIP = "10.0.0.254"

// goldenCases are the policies under testdata/policies, each resolved
// against endpoints and compared with testdata/golden/<name>.txt.
var goldenCases = []struct {
	name      string
	policies  []string
	endpoints func() []Endpoint
	opts      []Option
}{
	{
		name:      "seed",
		policies:  []string{"seed.yaml"},
		endpoints: seedEndpoints,
		opts:      []Option{WithHostIPs(addrs(hostIP)...)},
	},
	{
		name:      "seed-no-host-allow",
		policies:  []string{"seed.yaml"},
		endpoints: seedEndpoints,
		opts:      []Option{WithHostIPs(addrs(hostIP)...), WithoutHostAllow()},
	},
	{
		name:     "no-policies",
		policies: nil,
		endpoints: func() []Endpoint {
			return seedEndpoints()[:2]
		},
	},
	{
		name:     "namespaced",
		policies: []string{"namespaced.yaml"},
		endpoints: func() []Endpoint {
			return []Endpoint{
				{Name: "prod/db", IPs: addrs("10.0.0.1", "fd00::1"), Labels: pod("app", "db", NamespaceLabel, "prod"), Local: true},
				{Name: "prod/web", IPs: addrs("10.0.0.2"), Labels: pod("app", "web", NamespaceLabel, "prod"), Local: true},
				{Name: "prod/batch", IPs: addrs("10.0.0.3"), Labels: pod("app", "batch", NamespaceLabel, "prod")},
				{Name: "staging/web", IPs: addrs("10.0.1.2"), Labels: pod("app", "web", NamespaceLabel, "staging")},
				{Name: "ops/prometheus", IPs: addrs("10.0.1.3"), Labels: pod("app", "prometheus", NamespaceLabel, "ops")},
				{Name: "vm-web", IPs: addrs("192.168.10.7"), Labels: pod("app", "web")},
			}
		},
	},
	{
		name:     "cidr",
		policies: []string{"cidr.yaml"},
		endpoints: func() []Endpoint {
			return []Endpoint{
				{Name: "edge", IPs: addrs("10.0.0.10", "2001:db8::10"), Labels: pod("app", "edge"), Local: true},
				{Name: "pod-in-cidr", IPs: addrs("10.1.2.3"), Labels: pod("app", "other")},
				{Name: "legacy", IPs: addrs("192.0.2.10"), Labels: pod("app", "legacy")},
			}
		},
		opts: []Option{WithHostIPs(addrs(hostIP)...)},
	},
	{
		name:     "deny",
		policies: []string{"deny.yaml"},
		endpoints: func() []Endpoint {
			return []Endpoint{
				{Name: "api", IPs: addrs("10.0.0.1"), Labels: pod("app", "api"), Local: true},
				{Name: "cache", IPs: addrs("10.0.0.2"), Labels: pod("app", "cache"), Local: true},
				{Name: "guest", IPs: addrs("10.0.1.3"), Labels: pod("app", "guest")},
				{Name: "web", IPs: addrs("10.0.1.4"), Labels: pod("app", "web")},
			}
		},
	},
	{
		name:     "entities",
		policies: []string{"entities.yaml"},
		endpoints: func() []Endpoint {
			return []Endpoint{
				{Name: "web", IPs: addrs("10.0.0.1"), Labels: pod("app", "web"), Local: true},
				{Name: "guest", IPs: addrs("10.0.0.2"), Labels: pod("app", "guest"), Local: true},
				{Name: "client", IPs: addrs("10.0.1.1"), Labels: pod("app", "client")},
				{Name: "vm", IPs: addrs("192.168.10.9"), Labels: pod("role", "batch")},
			}
		},
		opts: []Option{WithHostIPs(addrs(hostIP)...)},
	},
	{
		name:     "clusterwide",
		policies: []string{"clusterwide.yaml"},
		endpoints: func() []Endpoint {
			dev := pod("app", "web", NamespaceLabel, "dev")
			dev[NamespaceLabelsPrefix+"env"] = "dev"
			return []Endpoint{
				{Name: "prod/db", IPs: addrs("10.0.0.1"), Labels: pod("app", "db", NamespaceLabel, "prod"), Local: true},
				{Name: "staging/db", IPs: addrs("10.0.0.2"), Labels: pod("app", "db", NamespaceLabel, "staging"), Local: true},
				{Name: "prod/web", IPs: addrs("10.0.1.2"), Labels: pod("app", "web", NamespaceLabel, "prod")},
				{Name: "dev/web", IPs: addrs("10.0.1.3"), Labels: dev},
				{Name: "vm", IPs: addrs("192.168.10.9"), Labels: pod("role", "batch")},
			}
		},
		opts: []Option{WithHostIPs(addrs(hostIP)...), WithRemoteNodeIPs(addrs("10.0.3.2", "10.0.4.2")...)},
	},
	{
		name:     "named-ports",
		policies: []string{"named-ports.yaml"},
		endpoints: func() []Endpoint {
			return []Endpoint{
				{Name: "prod/a", IPs: addrs("10.0.0.1"), Labels: pod("role", "server", NamespaceLabel, "prod"), Local: true,
					NamedPorts: map[string]NamedPort{"http": {80, ProtoTCP}, "dns": {53, ProtoUDP}, "metrics": {9100, ProtoTCP}}},
				{Name: "prod/b", IPs: addrs("10.0.0.2"), Labels: pod("role", "server", NamespaceLabel, "prod"), Local: true,
					NamedPorts: map[string]NamedPort{"http": {8080, ProtoTCP}}},
				{Name: "prod/c", IPs: addrs("10.0.0.3"), Labels: pod("role", "server", NamespaceLabel, "prod"), Local: true},
				{Name: "prod/client", IPs: addrs("10.0.1.1"), Labels: pod("app", "client", NamespaceLabel, "prod")},
			}
		},
		opts: []Option{WithHostIPs(addrs(hostIP)...)},
	},
	{
		name:     "ports",
		policies: []string{"ports.yaml"},
		endpoints: func() []Endpoint {
			return []Endpoint{
				{Name: "a", IPs: addrs("10.0.0.1"), Labels: pod("app", "a", "tier", "front"), Local: true},
				{Name: "b", IPs: addrs("10.0.0.2"), Labels: pod("app", "guest", "tier", "front")},
				{Name: "c", IPs: addrs("10.0.0.3"), Labels: pod("app", "c")},
			}
		},
	},
}

func compileCase(tb testing.TB, name string) Resolved {
	tb.Helper()
	for _, tc := range goldenCases {
		if tc.name != name {
			continue
		}
		var files []string
		for _, p := range tc.policies {
			files = append(files, filepath.Join("testdata/policies", p))
		}
		res, err := Compile(mustParse(tb, files...), tc.endpoints(), tc.opts...)
		if err != nil {
			tb.Fatalf("Compile: %v", err)
		}
		return res
	}
	tb.Fatalf("no golden case %q", name)
	return Resolved{}
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("differs from %s (-want +got; go test -update to accept):\n%s", path, diff)
	}
}

// TestCompileGolden compares each case's text form with its golden file,
// and the seed's JSON form too.
func TestCompileGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			res := compileCase(t, tc.name)
			checkGolden(t, filepath.Join("testdata/golden", tc.name+".txt"), []byte(res.String()))
			if tc.name == "seed" {
				b, err := json.MarshalIndent(res, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, "testdata/golden/seed.json", append(b, '\n'))
			}
		})
	}
}

// TestCompileStable checks that the output does not depend on the order of
// policies or endpoints, and that JSON round-trips.
func TestCompileStable(t *testing.T) {
	pols := mustParse(t, "testdata/policies/cidr.yaml", "testdata/policies/entities.yaml", "testdata/policies/deny.yaml")
	eps := append(seedEndpoints(), Endpoint{Name: "edge", IPs: addrs("10.0.0.10"), Labels: pod("app", "edge"), Local: true})
	want, err := Compile(pols, eps)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		rp := append([]Policy(nil), pols...)
		re := append([]Endpoint(nil), eps...)
		// A deterministic shuffle: rotate by i and reverse.
		rp = append(rp[i%len(rp):], rp[:i%len(rp)]...)
		re = append(re[i%len(re):], re[:i%len(re)]...)
		for a, b := 0, len(re)-1; a < b; a, b = a+1, b-1 {
			re[a], re[b] = re[b], re[a]
		}
		got, err := Compile(rp, re)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want.String(), got.String()); diff != "" {
			t.Errorf("reordered input %d changes the output (-want +got):\n%s", i, diff)
		}
	}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var back Resolved
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.String() != want.String() {
		t.Errorf("JSON round trip changes the text form:\n%s\n---\n%s", want, back)
	}
}

// verdict is the end-to-end reference decision for traffic from src to a
// local endpoint: ipcache lookup, then the endpoint's table.
func verdict(tb testing.TB, r Resolved, dst string, src string, proto Protocol, port uint16) Verdict {
	tb.Helper()
	for _, ep := range r.Endpoints {
		if ep.Name == dst {
			return ep.Decide(r.Lookup(netip.MustParseAddr(src)), proto, port)
		}
	}
	tb.Fatalf("no local endpoint %q", dst)
	return 0
}

// TestCompileVerdicts checks what each golden case means for traffic.
func TestCompileVerdicts(t *testing.T) {
	type flow struct {
		dst, src string
		proto    Protocol
		port     uint16
		want     Verdict
	}
	tests := []struct {
		name  string
		flows []flow
	}{
		{"seed", []flow{
			{"db", "10.0.0.2", ProtoTCP, 6379, Allow},     // employee
			{"db", "10.0.1.2", ProtoTCP, 6379, Allow},     // employee2, another node
			{"db", "192.168.10.5", ProtoTCP, 6379, Allow}, // vm1, external
			{"db", "10.0.0.2", ProtoTCP, 6380, Deny},
			{"db", "10.0.0.2", ProtoUDP, 6379, Deny},
			{"db", "10.0.0.3", ProtoTCP, 6379, Deny}, // guest
			{"db", "8.8.8.8", ProtoTCP, 6379, Deny},
			{"db", "2001:db8::1", ProtoTCP, 6379, Deny},
			{"db", hostIP, ProtoTCP, 8080, Allow}, // allow-localhost
			{"guest", "8.8.8.8", ProtoUDP, 53, Allow},
			{"employee", "10.0.0.3", ProtoTCP, 22, Allow},
		}},
		{"seed-no-host-allow", []flow{
			{"db", hostIP, ProtoTCP, 8080, Deny},
			{"db", "10.0.0.2", ProtoTCP, 6379, Allow},
		}},
		{"namespaced", []flow{
			{"prod/db", "10.0.0.2", ProtoTCP, 5432, Allow},    // prod/web
			{"prod/db", "10.0.1.2", ProtoTCP, 5432, Deny},     // staging/web
			{"prod/db", "192.168.10.7", ProtoTCP, 5432, Deny}, // vm-web, no namespace
			{"prod/db", "10.0.1.3", ProtoTCP, 9187, Allow},    // ops/prometheus
			{"prod/db", "10.0.1.3", ProtoTCP, 5432, Deny},     // ops/prometheus
			{"prod/db", "10.0.0.3", ProtoUDP, 1, Allow},       // prod/batch, same namespace
			{"prod/web", "10.0.0.3", ProtoTCP, 80, Allow},     // same namespace
			{"prod/web", "10.0.1.2", ProtoTCP, 80, Deny},      // other namespace
			{"prod/web", "192.168.10.7", ProtoTCP, 80, Deny},  // no namespace
			{"prod/db", "fd00::99", ProtoTCP, 5432, Deny},     // world
		}},
		{"cidr", []flow{
			{"edge", "10.2.3.4", ProtoTCP, 443, Allow},
			{"edge", "10.96.0.1", ProtoTCP, 443, Deny}, // except
			{"edge", "10.111.255.255", ProtoTCP, 443, Deny},
			{"edge", "10.112.0.0", ProtoTCP, 443, Allow},
			{"edge", "10.1.2.3", ProtoTCP, 443, Deny},   // an endpoint, not a CIDR source
			{"edge", "10.1.9.9", ProtoTCP, 443, Allow},  // partner's /16 is inside 10/8
			{"edge", "10.1.9.9", ProtoTCP, 8443, Allow}, // partner
			{"edge", "10.2.0.1", ProtoTCP, 8443, Deny},
			{"edge", "2001:db8:1::1", ProtoTCP, 443, Allow},
			{"edge", "2001:db8:bad::1", ProtoTCP, 443, Deny},
			{"edge", "198.51.100.7", ProtoTCP, 22, Allow},
			{"edge", "198.51.101.7", ProtoTCP, 22, Deny},
			{"edge", "192.0.2.10", ProtoTCP, 22, Deny}, // legacy is an endpoint
			{"edge", "192.0.2.11", ProtoTCP, 22, Deny},
			{"edge", "8.8.8.8", ProtoTCP, 443, Deny},
		}},
		{"deny", []flow{
			{"api", "10.0.1.3", ProtoTCP, 80, Deny}, // guest
			{"api", "10.0.1.4", ProtoTCP, 80, Allow},
			{"api", "8.8.8.8", ProtoUDP, 5000, Allow},
			{"api", "10.0.1.4", ProtoTCP, 9090, Deny},
			{"api", "10.0.1.4", ProtoUDP, 9090, Deny},
			{"cache", "8.8.8.8", ProtoTCP, 11211, Deny},
			{"cache", "8.8.8.8", ProtoUDP, 11211, Deny},
			{"cache", "8.8.8.8", ProtoTCP, 80, Allow}, // not enforced
			{"cache", "10.0.1.4", ProtoTCP, 11211, Allow},
		}},
		{"entities", []flow{
			{"web", "10.0.1.1", ProtoTCP, 8080, Allow},     // cluster
			{"web", "192.168.10.9", ProtoTCP, 8080, Allow}, // external is cluster too
			{"web", "8.8.8.8", ProtoTCP, 8080, Deny},
			{"web", "8.8.8.8", ProtoTCP, 443, Allow},
			{"web", "2001:db8::1", ProtoTCP, 443, Allow},
			{"web", "10.0.1.1", ProtoTCP, 443, Deny},
			{"web", "8.8.8.8", ProtoUDP, 53, Allow}, // L4-only
			{"web", "10.0.1.1", ProtoTCP, 53, Allow},
			{"web", "10.0.1.1", ProtoSCTP, 53, Deny},
			{"web", hostIP, ProtoUDP, 9999, Allow},
			{"guest", "10.0.1.1", ProtoTCP, 80, Deny},
			{"guest", hostIP, ProtoTCP, 80, Allow},
		}},
		{"ports", []flow{
			{"a", "10.0.0.1", ProtoTCP, 8050, Allow}, // itself: tier, not guest
			{"a", "10.0.0.1", ProtoTCP, 8000, Allow},
			{"a", "10.0.0.1", ProtoTCP, 8100, Allow},
			{"a", "10.0.0.1", ProtoTCP, 8101, Deny},
			{"a", "10.0.0.1", ProtoSCTP, 8050, Deny},
			{"a", "10.0.0.1", ProtoUDP, 9000, Allow},
			{"a", "10.0.0.1", ProtoUDP, 12345, Allow}, // UDP port 0
			{"a", "10.0.0.1", ProtoSCTP, 2905, Allow},
			{"a", "10.0.0.1", ProtoTCP, 7946, Allow}, // ANY
			{"a", "10.0.0.1", ProtoSCTP, 7946, Allow},
			{"a", "10.0.0.2", ProtoTCP, 8050, Deny}, // guest
			{"a", "10.0.0.3", ProtoTCP, 8050, Deny}, // no tier
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := compileCase(t, tt.name)
			for _, f := range tt.flows {
				if got := verdict(t, res, f.dst, f.src, f.proto, f.port); got != f.want {
					t.Errorf("%s -> %s %s/%d: %s, want %s", f.src, f.dst, f.proto, f.port, got, f.want)
				}
			}
		})
	}
}

// TestCompileSeed checks the exact expectation: db is enforced and
// allows TCP 6379 from the one identity of app=employee (employee,
// employee2 and vm1 share it), plus the implicit host entry, nothing else.
func TestCompileSeed(t *testing.T) {
	res := compileCase(t, "seed")
	ids := map[string]Identity{}
	for _, id := range res.Identities {
		for _, name := range id.Endpoints {
			ids[name] = id.ID
		}
	}
	emp := ids["employee"]
	if ids["employee2"] != emp || ids["vm1"] != emp || ids["guest"] == emp || ids["db"] == emp || !emp.IsLabels() {
		t.Fatalf("identities: %v", ids)
	}
	var db EndpointPolicy
	for _, ep := range res.Endpoints {
		if ep.Name == "db" {
			db = ep
		} else if ep.Enforced || len(ep.Entries) > 0 {
			t.Errorf("%s: enforced %v, %d entries; want open and empty", ep.Name, ep.Enforced, len(ep.Entries))
		}
	}
	if !db.Enforced {
		t.Fatal("db is not enforced")
	}
	want := []Entry{
		{Remote: IdentityHost, Verdict: Allow, Sources: []RuleRef{{Rule: "allow-localhost"}}},
		{Remote: emp, Protocol: ProtoTCP, Port: 6379, EndPort: 6379, Verdict: Allow, Sources: []RuleRef{{
			Policy: "default/clustermesh-ingress-l4-policy", Rule: "spec.ingress[0]", Source: "testdata/policies/seed.yaml:11",
		}}},
	}
	if diff := cmp.Diff(want, db.Entries); diff != "" {
		t.Errorf("db entries (-want +got):\n%s", diff)
	}
	if len(res.Endpoints) != 3 {
		t.Errorf("got %d local endpoints, want db, employee, guest", len(res.Endpoints))
	}
}

// TestCompileErrors checks that bad endpoints and duplicate policies are
// refused, with every problem named.
func TestCompileErrors(t *testing.T) {
	seed := mustParse(t, "testdata/policies/seed.yaml")
	tests := []struct {
		name      string
		policies  []Policy
		endpoints []Endpoint
		opts      []Option
		want      []string
	}{
		{
			name:      "duplicate name",
			endpoints: []Endpoint{{Name: "a", IPs: addrs("10.0.0.1")}, {Name: "a", IPs: addrs("10.0.0.2")}},
			want:      []string{`endpoint "a" is listed twice`},
		},
		{
			name:      "no name",
			endpoints: []Endpoint{{IPs: addrs("10.0.0.1")}},
			want:      []string{"an endpoint has no name (addresses [10.0.0.1])"},
		},
		{
			name:      "shared address",
			endpoints: []Endpoint{{Name: "a", IPs: addrs("10.0.0.1")}, {Name: "b", IPs: addrs("10.0.0.1")}},
			want:      []string{`endpoint "b": address 10.0.0.1 already belongs to endpoint "a"`},
		},
		{
			name:      "host address",
			endpoints: []Endpoint{{Name: "a", IPs: addrs(hostIP)}},
			opts:      []Option{WithHostIPs(addrs(hostIP)...)},
			want:      []string{`endpoint "a": address 10.0.0.254 already belongs to host`},
		},
		{
			name:      "bad addresses",
			endpoints: []Endpoint{{Name: "a", IPs: []netip.Addr{{}, netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("0.0.0.0")}}},
			want:      []string{`endpoint "a": invalid address "invalid IP"`, "IPv4-mapped; use 10.0.0.1", `invalid address "0.0.0.0"`},
		},
		{
			name:      "bad labels",
			endpoints: []Endpoint{{Name: "a", Labels: lbl("k8s:app", "x", "tier", "not valid!")}},
			want:      []string{`endpoint "a": label key "k8s:app"`, `endpoint "a": label tier value "not valid!"`},
		},
		{
			name:     "policy twice",
			policies: append(append([]Policy(nil), seed...), seed...),
			want:     []string{`policy "default/clustermesh-ingress-l4-policy" is defined twice: testdata/policies/seed.yaml:1 and testdata/policies/seed.yaml:1`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.policies, tt.endpoints, tt.opts...)
			if err == nil {
				t.Fatal("Compile succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestPortPrefixes checks the split of port ranges into aligned blocks.
func TestPortPrefixes(t *testing.T) {
	tests := []struct {
		port, end uint16
		want      []PortPrefix
	}{
		{0, 0, []PortPrefix{{0, 0}}},
		{80, 80, []PortPrefix{{80, 16}}},
		{8000, 8003, []PortPrefix{{8000, 14}}},
		{8000, 8100, []PortPrefix{{8000, 10}, {8064, 11}, {8096, 14}, {8100, 16}}},
		{1, 65535, []PortPrefix{{1, 16}, {2, 15}, {4, 14}, {8, 13}, {16, 12}, {32, 11}, {64, 10}, {128, 9}, {256, 8}, {512, 7}, {1024, 6}, {2048, 5}, {4096, 4}, {8192, 3}, {16384, 2}, {32768, 1}}},
		{65535, 65535, []PortPrefix{{65535, 16}}},
	}
	for _, tt := range tests {
		got := Entry{Port: tt.port, EndPort: tt.end}.PortPrefixes()
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%d-%d (-want +got):\n%s", tt.port, tt.end, diff)
		}
		// Every port in the range is covered exactly once, none outside.
		if tt.port == 0 {
			continue
		}
		for p := 0; p <= 65535; p++ {
			n := 0
			for _, b := range got {
				if p>>(16-b.Bits) == int(b.Port)>>(16-b.Bits) {
					n++
				}
			}
			in := p >= int(tt.port) && p <= int(tt.end)
			if in && n != 1 || !in && n != 0 {
				t.Fatalf("%d-%d: port %d covered %d times", tt.port, tt.end, p, n)
			}
		}
	}
}

// TestCompilePeers checks peer resolution edge cases inline: a selection
// that matches nothing must allow nothing (never widen into a wildcard),
// and the world entities split by family.
func TestCompilePeers(t *testing.T) {
	const head = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {matchLabels: {app: db}}\n"
	other := pod("app", "web")
	other[ClusterLabel] = "dc2"
	eps := []Endpoint{
		{Name: "db", IPs: addrs("10.0.0.1"), Labels: pod("app", "db"), Local: true},
		{Name: "web", IPs: addrs("10.0.0.2", "fd00::2"), Labels: pod("app", "web")},
		{Name: "ops/mon", IPs: addrs("10.0.0.3"), Labels: pod("app", "mon", NamespaceLabel, "ops")},
		{Name: "remote-web", IPs: addrs("10.9.0.2"), Labels: other},
	}
	tests := []struct {
		name    string
		ingress string
		want    []string // remote identities as in String(), "any" for the wildcard
	}{
		{"selector matching nobody", "  - fromEndpoints: [{matchLabels: {app: nobody}}]\n    toPorts: [{ports: [{port: '80'}]}]\n", nil},
		{"cidr entirely excepted", "  - fromCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.0/24]}]\n", nil},
		{"default route entirely excepted", "  - fromCIDRSet: [{cidr: 0.0.0.0/0, except: [0.0.0.0/0]}]\n", nil},
		{"cidr of an endpoint address", "  - fromCIDR: [10.0.0.2/32]\n", nil},
		{"empty rule", "  - {}\n", nil},
		{"ports only", "  - toPorts: [{ports: [{port: '80'}]}]\n", []string{"any", "any", "any"}},
		{"all", "  - fromEntities: [all]\n", []string{"any"}},
		{"world-ipv4", "  - fromEntities: [world-ipv4]\n", []string{"9"}},
		{"world-ipv6", "  - fromEntities: [world-ipv6]\n", []string{"10"}},
		{"world", "  - fromEntities: [world]\n", []string{"10", "2", "9"}},
		{"default route v6", "  - fromCIDR: ['::/0']\n", []string{"10"}},
		{"fromEndpoints {}", "  - fromEndpoints: [{}]\n", []string{"db", "remote-web", "web"}},
		{"another namespace", "  - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: ops}}]\n", []string{"ops/mon"}},
		{"namespace DoesNotExist is every reserved identity", "  - fromEndpoints: [{matchExpressions: [{key: io.kubernetes.pod.namespace, operator: DoesNotExist}]}]\n",
			[]string{"1", "10", "2", "6", "9"}},
		{"reserved:host", "  - fromEndpoints: [{matchLabels: {reserved:host: ''}}]\n", []string{"1"}},
		{"remote-node", "  - fromEntities: [remote-node]\n", []string{"6"}},
		{"cluster is the host, the nodes and this cluster's endpoints", "  - fromEntities: [cluster]\n", []string{"1", "6", "db", "ops/mon", "web"}},
		{"entities of nothing roost has", "  - fromEntities: [init, health, unmanaged, ingress, none]\n", nil},
		{"another cluster by its label", "  - fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.cluster: dc2}}]\n", []string{"remote-web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pols, err := Parse(strings.NewReader(head+"  ingress:\n"+tt.ingress), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			res, err := Compile(pols, eps, WithoutHostAllow())
			if err != nil {
				t.Fatal(err)
			}
			names := map[Identity]string{}
			for _, id := range res.Identities {
				names[id.ID] = id.ID.String()
				if len(id.Endpoints) == 1 {
					names[id.ID] = id.Endpoints[0]
				}
			}
			db := res.Endpoints[0]
			if !db.Enforced {
				t.Error("db not enforced")
			}
			var got []string
			for _, e := range db.Entries {
				if e.Remote == IdentityAny {
					got = append(got, "any")
				} else {
					got = append(got, names[e.Remote])
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("remotes (-want +got):\n%s", diff)
			}
		})
	}
}
