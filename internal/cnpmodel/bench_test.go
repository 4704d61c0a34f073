package cnpmodel

import (
	"net/netip"
	"strings"
	"testing"
)

// BenchmarkVerdict measures one verdict on a small world: differential tests call it millions of times.
func BenchmarkVerdict(b *testing.B) {
	pols, err := Load(strings.NewReader(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromCIDRSet: [{cidr: 172.16.0.0/12, except: [172.16.5.0/24]}]
  ingressDeny: [{fromEntities: [world], toPorts: [{ports: [{port: "22"}]}]}]
`), "default")
	if err != nil {
		b.Fatal(err)
	}
	w := testWorld()
	flows := []Flow{
		{Src: netip.MustParseAddr(clientIP), Dst: "web", Proto: protoTCP, Port: 80},
		{Src: netip.MustParseAddr("172.16.1.1"), Dst: "web", Proto: protoTCP, Port: 22},
		{Src: netip.MustParseAddr(dbIP), Dst: "web", Proto: protoUDP, Port: 53},
	}
	for i := 0; b.Loop(); i++ {
		w.Verdict(pols, flows[i%len(flows)])
	}
}
