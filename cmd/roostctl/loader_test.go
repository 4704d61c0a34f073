package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
)

func fakeLoader(t *testing.T) *httptest.Server {
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
		{Name: "db", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10")}, Labels: map[string]string{"app": "protected-db"}, Local: true},
		{Name: "employee", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.11")}, Labels: map[string]string{"app": "employee"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	js := func(path string, v any) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(v) })
	}
	js(loaderapi.PathStatus, loaderapi.Status{Node: "node1", Ready: true, LastApply: loaderapi.Apply{Result: loaderapi.ResultOK},
		Endpoints: []loaderapi.Endpoint{{Name: "db", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10")}, Labels: map[string]string{"app": "protected-db"}, Identity: 7, Local: true, Enforced: true}}})
	js(loaderapi.PathPolicy, res)
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
		{[]string{"endpoints"}, []string{"db", "10.244.1.10", "enforced", "app=protected-db"}},
		{[]string{"identities"}, []string{"reserved", "world", "app=employee"}},
		{[]string{"policy", "db"}, []string{"ingress enforced", "allow", "TCP/6379", "app=employee", "drop-policy-default", "4"}},
		{[]string{"drops"}, []string{"drop (drop-policy-default) to endpoint db", "TCP 10.244.2.10:40000 -> 10.244.1.10:6379"}},
		{[]string{"bpf"}, []string{"/sys/fs/bpf/roost", "lxcdb", "to_endpoint", "tcx"}},
		{[]string{"policy", "-o", "json"}, []string{`"counters"`, `"ingressEnforced": true`}},
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
	if _, err := roostctl("--loader", srv.URL, "policy", "nosuch"); err == nil || !strings.Contains(err.Error(), `no local endpoint "nosuch"`) {
		t.Errorf("unknown endpoint: %v", err)
	}
	if _, err := roostctl("--loader", "127.0.0.1:1", "endpoints"); err == nil || !strings.Contains(err.Error(), "is roost-loader running?") {
		t.Errorf("loader down: %v", err)
	}
}
