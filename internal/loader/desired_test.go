package loader

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/policy"
)

// seedPolicy is the seed: app=protected-db allows TCP 6379 from
// app=employee.
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

// mixedPolicies exercise every shape of entry: wildcard allows and denies,
// L3 rules, port ranges, protocol ANY with ports, entities, CIDRs, and an
// endpoint that denies without being enforced.
const mixedPolicies = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api
specs:
- endpointSelector:
    matchLabels:
      app: api
  ingress:
  - fromEntities:
    - all
  ingressDeny:
  - fromEndpoints:
    - matchLabels:
        app: guest
  - toPorts:
    - ports:
      - port: "9090"
        protocol: ANY
- endpointSelector:
    matchLabels:
      app: cache
  enableDefaultDeny:
    ingress: false
  ingressDeny:
  - fromEntities:
    - world
    toPorts:
    - ports:
      - port: "11211"
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web
spec:
  endpointSelector:
    matchLabels:
      app: web
  ingress:
  - fromEntities:
    - cluster
    toPorts:
    - ports:
      - port: "8000"
        endPort: 8100
        protocol: TCP
      - port: "53"
        protocol: ANY
  - toPorts:
    - ports:
      - port: "443"
        protocol: TCP
      - port: "0"
        protocol: UDP
  - fromEndpoints:
    - matchLabels:
        app: guest
  - fromCIDRSet:
    - cidr: 192.168.0.0/16
      except:
      - 192.168.7.0/24
    toPorts:
    - ports:
      - port: "22"
        protocol: TCP
  ingressDeny:
  - fromEndpoints:
    - matchLabels:
        app: guest
    toPorts:
    - ports:
      - port: "8050"
        protocol: TCP
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: sink
spec:
  endpointSelector:
    matchLabels:
      app: sink
  ingress:
  - {}
`

var testEndpoints = []policy.Endpoint{
	{Name: "db", IPs: ips("10.244.1.10"), Labels: podLabels("app", "protected-db"), Local: true},
	{Name: "employee", IPs: ips("10.244.1.11"), Labels: podLabels("app", "employee"), Local: true},
	{Name: "guest", IPs: ips("10.244.1.12", "fd00:244::12"), Labels: podLabels("app", "guest"), Local: true},
	{Name: "api", IPs: ips("10.244.1.13"), Labels: podLabels("app", "api"), Local: true},
	{Name: "cache", IPs: ips("10.244.1.14"), Labels: podLabels("app", "cache"), Local: true},
	{Name: "web", IPs: ips("10.244.1.15"), Labels: podLabels("app", "web"), Local: true},
	{Name: "sink", IPs: ips("10.244.1.16"), Labels: podLabels("app", "sink"), Local: true},
	{Name: "vm", IPs: ips("192.168.7.9"), Labels: podLabels("app", "vm")},
}

// podLabels returns the labels of an endpoint of the default namespace with
// own labels kv, as the sources derive them.
func podLabels(kv ...string) map[string]string {
	own := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		own[kv[i]] = kv[i+1]
	}
	return policy.EndpointLabels(own, policy.DefaultNamespace, nil, "", policy.DefaultCluster)
}

func ips(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func compile(t testing.TB, yaml string, eps []policy.Endpoint, opts ...policy.Option) policy.Resolved {
	t.Helper()
	pols, err := policy.Parse(strings.NewReader(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := policy.Compile(pols, eps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// datapathVerdict decides like to_endpoint for a new packet (no conntrack):
// not enforcing passes; else the entry of remote, or of any identity, and
// its table's verdict; allow passes.
func datapathVerdict(enforce bool, tables map[datapath.Identity]datapath.VerdictTable, remote policy.Identity, proto policy.Protocol, port uint16) policy.Verdict {
	if !enforce {
		return policy.Allow
	}
	t, ok := tables[datapath.Identity(remote)]
	if !ok {
		t, ok = tables[datapath.IdentityAny]
	}
	if ok && t.Lookup(uint8(proto), port) == datapath.VerdictAllow {
		return policy.Allow
	}
	return policy.Deny
}

// TestPolicyTablesAgreeWithDecide checks the folded tables against the
// compiler's reference evaluation, for every identity the policy knows (and
// one it does not), every port protocol, at every port where an entry
// starts or ends and around it.
func TestPolicyTablesAgreeWithDecide(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		opts []policy.Option
	}{
		{"seed", seedPolicy, nil},
		{"seed-host", seedPolicy, []policy.Option{policy.WithHostIPs(netip.MustParseAddr("10.244.1.1"))}},
		{"mixed", mixedPolicies, nil},
		{"mixed-no-host-allow", mixedPolicies, []policy.Option{policy.WithoutHostAllow()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := compile(t, tt.yaml, testEndpoints, tt.opts...)
			remotes := []policy.Identity{policy.IdentityWorld, 77777}
			for _, id := range res.Identities {
				remotes = append(remotes, id.ID)
			}
			checked := 0
			for _, ep := range res.Endpoints {
				enforce, tables, err := policyTables(ep)
				if err != nil {
					t.Fatalf("%s: %v", ep.Name, err)
				}
				ports := map[uint16]bool{0: true, 1: true, 65535: true}
				for _, e := range ep.Entries {
					for _, p := range []uint16{e.Port, e.EndPort} {
						ports[p], ports[p-1], ports[p+1] = true, true, true
					}
				}
				for _, remote := range remotes {
					for _, proto := range []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP, policy.ProtoICMPv6, 47} {
						for port := range ports {
							want := ep.Decide(remote, proto, port)
							if got := datapathVerdict(enforce, tables, remote, proto, port); got != want {
								t.Errorf("%s from %d %s/%d: datapath %s, Decide %s", ep.Name, remote, proto, port, got, want)
							}
							checked++
						}
					}
				}
			}
			if checked == 0 {
				t.Fatal("nothing checked")
			}
		})
	}
}

// TestPolicyTables pins down the shape of the entries: which identities get
// an entry of their own, and what the wildcard entry holds. An L3 allow
// holds the protocols Cilium's datapath carries (policy.CarriedProtocols).
func TestPolicyTables(t *testing.T) {
	const carried = "1/0-1/65535 allow, 2/0-5/65535 none, 6/0-6/65535 allow, 7/0-16/65535 none, 17/0-17/65535 allow, " +
		"18/0-57/65535 none, 58/0-58/65535 allow, 59/0-131/65535 none, 132/0-132/65535 allow, 133/0- none"
	res := compile(t, seedPolicy+"---\n"+mixedPolicies, testEndpoints)
	ids := map[string]datapath.Identity{}
	for _, id := range res.Identities {
		for _, name := range id.Endpoints {
			ids[name] = datapath.Identity(id.ID)
		}
	}
	tests := []struct {
		endpoint string
		enforce  bool
		// tables by identity name ("any", "host", or an endpoint's name)
		want map[string]string
	}{
		{"db", true, map[string]string{
			"host":     carried,
			"employee": "6/6379-6/6379 allow, 6/6380- none",
			"any":      "none", // no wildcard rule: denies all, and counts it
		}},
		{"employee", false, map[string]string{}},
		{"cache", true, map[string]string{
			// world's own entry: everything but the denied port
			"world": "1/0-1/65535 allow, 2/0-5/65535 none, 6/0-6/11210 allow, 6/11211-6/11211 deny, 6/11212-6/65535 allow, " +
				"7/0-16/65535 none, 17/0-17/11210 allow, 17/11211-17/11211 deny, 17/11212-17/65535 allow, 18/0-57/65535 none, " +
				"58/0-58/65535 allow, 59/0-131/65535 none, 132/0-132/11210 allow, 132/11211-132/11211 deny, 132/11212-132/65535 allow, 133/0- none",
			"any": carried,
		}},
		{"sink", true, map[string]string{"host": carried, "any": "none"}},
		{"api", true, map[string]string{
			// all: the carried protocols, less the denied port
			"any": "1/0-1/65535 allow, 2/0-5/65535 none, 6/0-6/9089 allow, 6/9090-6/9090 deny, 6/9091-6/65535 allow, " +
				"7/0-16/65535 none, 17/0-17/9089 allow, 17/9090-17/9090 deny, 17/9091-17/65535 allow, 18/0-57/65535 none, " +
				"58/0-58/65535 allow, 59/0-131/65535 none, 132/0-132/9089 allow, 132/9090-132/9090 deny, 132/9091-132/65535 allow, 133/0- none",
			"guest": "0/0- deny",
		}},
	}
	names := map[datapath.Identity]string{
		datapath.IdentityAny: "any", datapath.IdentityHost: "host", datapath.IdentityWorld: "world",
		datapath.Identity(policy.IdentityWorldIPv4): "world-ipv4", datapath.Identity(policy.IdentityWorldIPv6): "world-ipv6",
	}
	for name, id := range ids {
		names[id] = name
	}
	for _, id := range res.Identities {
		if id.ID.IsCIDR() {
			names[datapath.Identity(id.ID)] = "cidr:" + id.Prefix.String()
		}
	}
	for _, tt := range tests {
		t.Run(tt.endpoint, func(t *testing.T) {
			i := slices.IndexFunc(res.Endpoints, func(e policy.EndpointPolicy) bool { return e.Name == tt.endpoint })
			if i < 0 {
				t.Fatalf("no endpoint %s", tt.endpoint)
			}
			enforce, tables, err := policyTables(res.Endpoints[i])
			if err != nil {
				t.Fatal(err)
			}
			if enforce != tt.enforce {
				t.Errorf("enforce %v, want %v", enforce, tt.enforce)
			}
			got := map[string]string{}
			for id, tbl := range tables {
				got[names[id]] = tbl.String()
			}
			// world-ipv4, world-ipv6 and the CIDR identities (all in world)
			// share world's table; keep the test short.
			if got["world"] != "" {
				for _, w := range []string{"world-ipv4", "world-ipv6", "cidr:192.168.0.0/16", "cidr:192.168.7.0/24"} {
					if got[w] != got["world"] {
						t.Errorf("%s table %q differs from world's %q", w, got[w], got["world"])
					}
					delete(got, w)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("tables (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEntryRules(t *testing.T) {
	tests := []struct {
		name  string
		entry policy.Entry
		want  []datapath.Rule
	}{
		{"l3 allow: the protocols Cilium carries", policy.Entry{Verdict: policy.Allow},
			[]datapath.Rule{{Proto: 1, LastPort: 65535}, {Proto: 6, LastPort: 65535}, {Proto: 17, LastPort: 65535}, {Proto: 58, LastPort: 65535}, {Proto: 132, LastPort: 65535}}},
		{"l3 deny", policy.Entry{Verdict: policy.Deny},
			[]datapath.Rule{{Proto: 0, FirstPort: 0, LastPort: 65535, Deny: true}}},
		{"tcp all ports", policy.Entry{Protocol: policy.ProtoTCP, Verdict: policy.Allow},
			[]datapath.Rule{{Proto: 6, FirstPort: 0, LastPort: 65535}}},
		{"udp port", policy.Entry{Protocol: policy.ProtoUDP, Port: 53, EndPort: 53, Verdict: policy.Allow},
			[]datapath.Rule{{Proto: 17, FirstPort: 53, LastPort: 53}}},
		{"sctp range deny", policy.Entry{Protocol: policy.ProtoSCTP, Port: 100, EndPort: 200, Verdict: policy.Deny},
			[]datapath.Rule{{Proto: 132, FirstPort: 100, LastPort: 200, Deny: true}}},
		{"icmp type", policy.Entry{Protocol: policy.ProtoICMP, Port: 8, EndPort: 8, Verdict: policy.Allow},
			[]datapath.Rule{{Proto: 1, FirstPort: 8, LastPort: 8}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := entryRules(tt.entry)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := entryRules(policy.Entry{}); err == nil {
		t.Error("an entry without verdict gave no error")
	}
	if _, err := entryRules(policy.Entry{Protocol: policy.ProtoAny, Port: 53, EndPort: 53, Verdict: policy.Allow}); err == nil {
		t.Error("an entry of protocol ANY with a port gave no error")
	}
}

// TestDesiredState checks the whole state of the seed on three local
// endpoints: endpoint ids are ifindexes, only db enforces, and the ipcache
// is the compiler's.
func TestDesiredState(t *testing.T) {
	res := compile(t, seedPolicy, testEndpoints[:3])
	var eps []local
	for i, ep := range res.Endpoints {
		eps = append(eps, local{EndpointPolicy: ep, ifindex: 10 + i, ifname: "veth" + ep.Name})
	}
	s, err := desiredState(res.IPCache, eps)
	if err != nil {
		t.Fatal(err)
	}
	wantEndpoints := map[uint32]datapath.Endpoint{
		10: {ID: 10, EnforceIngress: true}, // db
		11: {ID: 11},                       // employee
		12: {ID: 12},                       // guest
	}
	if diff := cmp.Diff(wantEndpoints, s.endpoints); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	var keys []policyKey
	for k := range s.policy {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, comparePolicyKey)
	emp := res.Lookup(netip.MustParseAddr("10.244.1.11"))
	wantKeys := []policyKey{{10, datapath.IdentityAny}, {10, datapath.IdentityHost}, {10, datapath.Identity(emp)}}
	if diff := cmp.Diff(wantKeys, keys, cmp.AllowUnexported(policyKey{})); diff != "" {
		t.Errorf("policy keys (-want +got):\n%s", diff)
	}
	if len(s.ipcache) != len(res.IPCache) {
		t.Errorf("ipcache has %d entries, want %d", len(s.ipcache), len(res.IPCache))
	}
	for _, e := range res.IPCache {
		if got := s.ipcache[e.Prefix]; got != datapath.Identity(e.Identity) {
			t.Errorf("ipcache %v: %d, want %d", e.Prefix, got, e.Identity)
		}
	}
}
