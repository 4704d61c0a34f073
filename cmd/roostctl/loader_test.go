package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
)

// fakePolicy is the seed policy compiled for db (local) and employee, with
// the counters the datapath could have for db's entries: employee's
// allowed 12 packets and default-denied 1, the wildcard entry (no rule)
// default-denied 4, the host's nothing.
func fakePolicy(t *testing.T) loaderapi.Policy {
	t.Helper()
	pols, err := policy.Parse(strings.NewReader(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {matchLabels: {app: protected-db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: employee}}]
    toPorts: [{ports: [{port: "6379", protocol: TCP}]}]
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := policy.Compile(pols, []policy.Endpoint{
		{Name: "db", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10")}, Labels: policy.EndpointLabels(map[string]string{"app": "protected-db"}, "default", nil, "", "default"), Local: true},
		{Name: "employee", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.11")}, Labels: policy.EndpointLabels(map[string]string{"app": "employee"}, "default", nil, "", "default")},
	})
	if err != nil {
		t.Fatal(err)
	}
	employee := uint32(res.Lookup(netip.MustParseAddr("10.244.1.11")))
	return loaderapi.Policy{Resolved: res, EntryCounters: []loaderapi.EntryCounter{
		{Endpoint: "db", EndpointID: 5, Remote: 0, Counted: true, DefaultDenied: loaderapi.Count{Packets: 4, Bytes: 240}},
		{Endpoint: "db", EndpointID: 5, Remote: 1, Counted: true},
		{Endpoint: "db", EndpointID: 5, Remote: employee, Counted: true,
			Allowed: loaderapi.Count{Packets: 12, Bytes: 840}, DefaultDenied: loaderapi.Count{Packets: 1, Bytes: 60}},
		{Endpoint: "other", EndpointID: 6, Remote: 0, Counted: true, DefaultDenied: loaderapi.Count{Packets: 9, Bytes: 540}},
	}}
}

func fakeLoader(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	js := func(path string, v any) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(v) })
	}
	js(loaderapi.PathStatus, loaderapi.Status{Node: "node1", Ready: true, LastApply: loaderapi.Apply{Result: loaderapi.ResultOK},
		Endpoints: []loaderapi.Endpoint{
			{Name: "db", Origin: "file", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10")}, Labels: map[string]string{"app": "protected-db"}, Identity: 7, Local: true, Enforced: true},
			{Name: "sync:vms/default/vm2", Origin: "sync:vms", IPs: []netip.Addr{netip.MustParseAddr("10.0.10.10")}, Labels: map[string]string{"app": "employee"}, Identity: 9},
		},
		GlobalView: &loaderapi.GlobalView{Connected: false, Listed: true, Revision: 42, Origins: map[string]int{"sync:vms": 1, "cluster:c2": 0}, Nodes: map[string]int{"cluster:c2": 2}, Own: 3,
			LastError: "etcd http://10.0.8.10:2379: context deadline exceeded",
			Conflicts: []string{"cluster:c2/default/x skipped: 10.244.1.10 is the local endpoint \"db\"'s"},
			Publisher: &loaderapi.Publisher{Origin: "cluster:c1", Leader: true, Endpoints: 3, Nodes: 2, Generation: 2, Published: 2}},
		PolicyErrors: []loaderapi.PolicyError{{Kind: "CiliumNetworkPolicy", Namespace: "prod", Name: "bad",
			Error: "CiliumNetworkPolicy prod/bad: spec.egress: not supported by roost (egress policy; roost enforces ingress only); the policy is rejected whole"}},
		Warnings: []string{"p.yaml:6: metadata.uid: set by the API server; ignored"},
	})
	js(loaderapi.PathPolicy, fakePolicy(t))
	js(loaderapi.PathCounters, []loaderapi.Counter{{Reason: "drop-policy-default", Dropped: true, Packets: 4, Bytes: 240}})
	js(loaderapi.PathBPF, loaderapi.BPF{Pins: "/sys/fs/bpf/roost", Attachments: []loaderapi.Attachment{{Interface: "lxcdb", Ifindex: 5, Hook: "egress", Program: "to_endpoint", Mode: "tcx", Current: true}}})
	mux.HandleFunc(loaderapi.PathDrops, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(loaderapi.Drop{Src: netip.MustParseAddr("10.244.2.10"), Dst: netip.MustParseAddr("10.244.1.10"),
			SrcPort: 40000, DstPort: 6379, Proto: 6, SrcIdentity: 99, Endpoint: "db", Reason: "drop-policy-default"})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestLoaderCommands(t *testing.T) {
	srv := fakeLoader(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"endpoints"}, []string{"db", "10.244.1.10", "enforced", "app=protected-db", "sync:vms/default/vm2  sync:vms",
			"global view: NOT connected (enforcing the last view), revision 42", "cluster:c2=0 sync:vms=1", "other clusters' nodes (remote-node): cluster:c2=2", "own cluster's (from local sources): 3",
			"last error at", "context deadline exceeded", "publisher of cluster:c1: leader, 3 endpoints, 2 nodes",
			`conflict: cluster:c2/default/x skipped: 10.244.1.10 is the local endpoint "db"'s`}},
		{[]string{"endpoints", "--origin", "sync:vms", "-o", "json"}, []string{`"origin": "sync:vms"`}},
		{[]string{"identities"}, []string{"reserved", "world", "app=employee"}},
		{[]string{"policy", "db"}, []string{"ingress enforced", "allow", "TCP/6379", "app=employee", "drop-policy-default", "4",
			"12 (840 B)", "1 (60 B)", "4 (240 B)", "NO RULE",
			"policy objects refused", "  CiliumNetworkPolicy prod/bad: CiliumNetworkPolicy prod/bad: spec.egress: not supported",
			"ignored:\n  p.yaml:6: metadata.uid: set by the API server; ignored"}},
		{[]string{"drops"}, []string{"drop (drop-policy-default) to endpoint db", "TCP 10.244.2.10:40000 -> 10.244.1.10:6379"}},
		{[]string{"bpf"}, []string{"/sys/fs/bpf/roost", "lxcdb", "to_endpoint", "tcx"}},
		{[]string{"policy", "-o", "json"}, []string{`"counters"`, `"ingressEnforced": true`, `"entryCounters"`, `"defaultDenied"`, `"packets": 12`,
			`"policyErrors"`, `"kind": "CiliumNetworkPolicy"`, `"warnings"`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := roostctl(append([]string{"--loader", srv.URL}, tt.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	// The JSON of one endpoint carries that endpoint's entry counters only.
	out, err := roostctl("--loader", srv.URL, "policy", "db", "-o", "json")
	var doc struct {
		EntryCounters []loaderapi.EntryCounter `json:"entryCounters"`
	}
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || len(doc.EntryCounters) != 3 ||
		slices.ContainsFunc(doc.EntryCounters, func(e loaderapi.EntryCounter) bool { return e.Endpoint != "db" }) {
		t.Errorf("policy db -o json: %v, entry counters %+v\n%s", err, doc.EntryCounters, out)
	}
	if _, err := roostctl("--loader", srv.URL, "policy", "nosuch"); err == nil || !strings.Contains(err.Error(), `no local endpoint "nosuch"`) {
		t.Errorf("unknown endpoint: %v", err)
	}
	if _, err := roostctl("--loader", "127.0.0.1:1", "endpoints"); err == nil || !strings.Contains(err.Error(), "is roost-loader running?") {
		t.Errorf("loader down: %v", err)
	}
}

// TestPrintPolicy checks the policy table line by line (runs of spaces
// folded): rows grouped by source, the counters of each source's datapath
// entry on its first row, a row for a datapath entry without rules, and
// what stands in for counters that are elsewhere or missing.
func TestPrintPolicy(t *testing.T) {
	base := fakePolicy(t)
	db := base.Endpoints[0]
	employee := base.EntryCounters[2].Remote
	withUDP := db
	withUDP.Entries = append(slices.Clone(db.Entries), policy.Entry{Remote: policy.Identity(employee), Protocol: policy.ProtoUDP,
		Port: 53, EndPort: 53, Verdict: policy.Allow, Sources: []policy.RuleRef{{Policy: "dns", Rule: "spec.ingress[0]", Source: "dns.yaml:8"}}})
	head := fmt.Sprintf("db 10.244.1.10 identity %d: ingress enforced (default deny)", db.Identity)
	legend := []string{
		"ALLOWED, DENIED (by a deny rule), NO RULE (default deny): packets (bytes) of new traffic from",
		`that source, counted by the datapath's entry for it, which applies the rules for "any" too;`,
		`"any" counts the sources without an entry of their own.`,
	}
	tests := []struct {
		name    string
		ep      policy.EndpointPolicy
		entries []loaderapi.EntryCounter
		want    []string
	}{
		{"counted", withUDP, base.EntryCounters[:3], append([]string{
			head,
			"FROM VERDICT PROTO/PORTS ALLOWED DENIED NO RULE RULE",
			"any - - 0 0 4 (240 B) (no rule for any source)",
			"reserved:host allow all 0 0 0 implicit allow-localhost",
			"default:app=employee allow TCP/6379 12 (840 B) 0 1 (60 B) default/p spec.ingress[0] (p.yaml:7)",
			"default:app=employee allow UDP/53 dns spec.ingress[0] (dns.yaml:8)",
		}, legend...)},
		{"folded into any, not counted", db, []loaderapi.EntryCounter{{Endpoint: "db", Remote: 0}, {Endpoint: "db", Remote: 1, Counted: true,
			Allowed: loaderapi.Count{Packets: 3, Bytes: 5000}}}, append([]string{
			head,
			"FROM VERDICT PROTO/PORTS ALLOWED DENIED NO RULE RULE",
			"any - - not counted (no rule for any source)",
			"reserved:host allow all 3 (4.9 KiB) 0 0 implicit allow-localhost",
			"default:app=employee allow TCP/6379 as any default/p spec.ingress[0] (p.yaml:7)",
		}, legend...)},
		{"no datapath entries", db, nil, []string{
			head,
			"FROM VERDICT PROTO/PORTS RULE",
			"reserved:host allow all implicit allow-localhost",
			"default:app=employee allow TCP/6379 default/p spec.ingress[0] (p.yaml:7)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := printPolicy(&b, []policy.EndpointPolicy{tt.ep}, base.Resolved, tt.entries, nil); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
				got = append(got, strings.Join(strings.Fields(line), " "))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s\nfull output:\n%s", diff, b.String())
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}, {2 << 40, "2.0 TiB"}, {2 << 50, "2048.0 TiB"}}
	for _, tt := range tests {
		if got := byteSize(tt.n); got != tt.want {
			t.Errorf("byteSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
