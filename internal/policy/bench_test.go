package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// benchPolicies writes n policies as YAML and parses them: each selects
// one app and admits two other apps, its namespace's monitoring, a CIDR
// with an exception and the cluster on a health port; every tenth also
// denies a guest app.
func benchPolicies(tb testing.TB, n int) []Policy {
	tb.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p%d, namespace: ns%d}
spec:
  endpointSelector: {matchLabels: {app: app%d}}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: app%d}
    - matchExpressions: [{key: app, operator: In, values: [app%d, app%d]}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}, {port: "9000", endPort: 9100, protocol: UDP}]
  - fromEndpoints: [{matchLabels: {role: monitoring}}]
    toPorts: [{ports: [{port: "9090"}]}]
  - fromCIDRSet: [{cidr: 172.%d.0.0/16, except: [172.%d.1.0/24]}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - fromEntities: [cluster]
    toPorts: [{ports: [{port: "8081", protocol: TCP}]}]
`, i, i%10, i, (i+1)%500, (i+2)%500, (i+3)%500, 16+i%16, 16+i%16)
		if i%10 == 0 {
			fmt.Fprintf(&b, "  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: guest}}]\n")
		}
	}
	pols, err := Parse(strings.NewReader(b.String()), "bench.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return pols
}

// benchEndpoints makes n endpoints over 500 apps in 10 namespaces, one in
// every localEvery of them local.
func benchEndpoints(n, localEvery int) []Endpoint {
	eps := make([]Endpoint, n)
	for i := range eps {
		role := "web"
		if i%50 == 0 {
			role = "monitoring"
		}
		eps[i] = Endpoint{
			Name: fmt.Sprintf("ep%d", i),
			IPs:  []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			Labels: map[string]string{
				"app":               fmt.Sprintf("app%d", i%500),
				"role":              role,
				NamespaceLabel:      fmt.Sprintf("ns%d", i%10),
				ClusterLabel:        DefaultCluster,
				"pod-template-hash": fmt.Sprintf("%x", i),
			},
			Local: i%localEvery == 0,
		}
	}
	return eps
}

// BenchmarkCompile resolves 100 policies against 10,000 endpoints, with a
// node's worth of local endpoints (100) and with all of them local.
func BenchmarkCompile(b *testing.B) {
	pols := benchPolicies(b, 100)
	for _, tc := range []struct {
		name       string
		localEvery int
	}{{"local=100", 100}, {"local=10000", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			eps := benchEndpoints(10000, tc.localEvery)
			var entries int
			for b.Loop() {
				res, err := Compile(pols, eps)
				if err != nil {
					b.Fatal(err)
				}
				entries = 0
				for _, ep := range res.Endpoints {
					entries += len(ep.Entries)
				}
			}
			b.ReportMetric(float64(entries), "entries")
		})
	}
}

// BenchmarkParse parses 100 policies.
func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		benchPolicies(b, 100)
	}
}
