package cnpmodel

import (
	"net/netip"
	"strings"
	"testing"
)

// Addresses of testWorld.
const (
	webIP      = "10.0.1.1"
	clientIP   = "10.0.1.2"
	client6IP  = "fd00:1::2"
	dbIP       = "10.0.2.1"
	intruderIP = "10.0.3.1" // app=client in namespace dev
	vmIP       = "10.0.9.1"
	hostIP     = "192.168.0.1"
	host6IP    = "fd00::100"
	nodeIP     = "192.168.0.2"
	node6IP    = "fd00::2"
	worldIP    = "8.8.8.8"
	world6IP   = "2001:db8::8"
)

const (
	tcp    = protoTCP
	udp    = protoUDP
	sctp   = protoSCTP
	icmp   = protoICMP
	icmpv6 = protoICMPv6
	gre    = 47
)

func testWorld() World {
	ip := netip.MustParseAddr
	return World{
		Cluster: "c1",
		Endpoints: []Endpoint{
			{
				Name: "web", Namespace: "default",
				Labels:          map[string]string{"app": "web", "pod-template-hash": "5d8f"},
				NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "default"},
				IPs:             []netip.Addr{ip(webIP), ip("fd00:1::1")},
				NamedPorts: []NamedPort{
					{Name: "http", Port: 8080, Protocol: "TCP"},
					{Name: "dns", Port: 53, Protocol: "UDP"},
					{Name: "metrics", Port: 9090},
					{Name: "Admin", Port: 9000},
					{Name: "admin", Port: 9001},
					{Name: "admin", Port: 0}, // invalid: skipped, so 9001 stays
				},
			},
			{
				Name: "client", Namespace: "default",
				Labels: map[string]string{
					"app": "client", "pod-template-hash": "abc", "controller-uid": "u1",
					"batch.kubernetes.io/controller-uid": "u1", "app.kubernetes.io/name": "curl",
				},
				NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "default"},
				IPs:             []netip.Addr{ip(clientIP), ip(client6IP)},
			},
			{
				Name: "db", Namespace: "prod",
				Labels:          map[string]string{"app": "db"},
				NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "prod", "team": "blue"},
				ServiceAccount:  "db-sa",
				IPs:             []netip.Addr{ip(dbIP)},
			},
			{
				Name: "intruder", Namespace: "dev",
				Labels:          map[string]string{"app": "client", "io.cilium.k8s.policy.cluster": "c2"},
				NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "dev", "team": "red"},
				IPs:             []netip.Addr{ip(intruderIP)},
			},
			{
				Name: "vm", Namespace: "vms",
				Labels:          map[string]string{"app": "vm"},
				NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "vms"},
				IPs:             []netip.Addr{ip(vmIP)},
			},
		},
		Nodes:   []Node{{Name: "node2", IPs: []netip.Addr{ip(nodeIP), ip(node6IP)}}},
		HostIPs: []netip.Addr{ip(hostIP), ip(host6IP)},
	}
}

type flowCase struct {
	src   string
	dst   string
	proto uint8
	port  uint16
	want  Verdict
}

func allow(src, dst string, proto uint8, port uint16) flowCase {
	return flowCase{src, dst, proto, port, Allow}
}

func deny(src, dst string, proto uint8, port uint16) flowCase {
	return flowCase{src, dst, proto, port, Deny}
}

type verdictCase struct {
	name  string
	yaml  string
	flows []flowCase
}

func runVerdictCases(t *testing.T, cases []verdictCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pols, err := Load(strings.NewReader(tc.yaml), "default")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			w := testWorld()
			for _, f := range tc.flows {
				fl := Flow{Src: netip.MustParseAddr(f.src), Dst: f.dst, Proto: f.proto, Port: f.port}
				got, why := w.Explain(pols, fl)
				if got != f.want {
					t.Errorf("%s -> %s proto %d port %d: got %s, want %s (%s)", f.src, f.dst, f.proto, f.port, got, f.want, why)
				}
				if v := w.Verdict(pols, fl); v != got {
					t.Errorf("Verdict %s differs from Explain %s", v, got)
				}
			}
		})
	}
}

func TestNamespaces(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "CNP without namespace lives in the default namespace and peers default to it",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
			flows: []flowCase{
				allow(clientIP, "web", tcp, 80),
				allow(client6IP, "web", tcp, 80),
				deny(intruderIP, "web", tcp, 80), // app=client, but in namespace dev
				deny(clientIP, "web", tcp, 81),
				deny(clientIP, "web", udp, 80),
				allow(worldIP, "db", tcp, 22), // db is not selected: not enforced
			},
		},
		{
			name: "CNP in another namespace does not select the endpoint",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: dev}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoints: [{}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80),
				deny(worldIP, "intruder", tcp, 80),
				allow(intruderIP, "intruder", tcp, 80),
				deny(clientIP, "intruder", tcp, 80),
			},
		},
		{
			// utils.go ParseToCiliumRule: the policy's namespace overrides a user value for
			// k8s:io.kubernetes.pod.namespace in endpointSelector.
			name: "CNP endpointSelector namespace is overridden by the policy's",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web, "k8s:io.kubernetes.pod.namespace": prod}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`,
			flows: []flowCase{
				allow(clientIP, "web", tcp, 80),
				deny(worldIP, "web", tcp, 80),
			},
		},
		{
			name: "fromEndpoints naming io.kubernetes.pod.namespace reaches another namespace",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: client, io.kubernetes.pod.namespace: dev}
`,
			flows: []flowCase{
				allow(intruderIP, "web", tcp, 80),
				deny(clientIP, "web", tcp, 80),
			},
		},
		{
			name: "fromEndpoints with an Exists namespace reaches every namespace",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: client}
      matchExpressions: [{key: "k8s:io.kubernetes.pod.namespace", operator: Exists}]
`,
			flows: []flowCase{
				allow(intruderIP, "web", tcp, 80),
				allow(clientIP, "web", tcp, 80),
				deny(dbIP, "web", tcp, 80),
			},
		},
		{
			// utils.go getEndpointSelector: a namespace-label key stops the namespace being added.
			name: "namespace labels In selects across namespaces",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - matchExpressions: [{key: io.cilium.k8s.namespace.labels.team, operator: In, values: [red, green]}]
`,
			flows: []flowCase{
				allow(intruderIP, "web", tcp, 80),
				deny(dbIP, "web", tcp, 80),     // team blue
				deny(clientIP, "web", tcp, 80), // no team label
			},
		},
		{
			// NotIn matches when the key is absent, and no namespace is added: the selector
			// also matches identities without namespace labels (world, remote-node).
			name: "namespace labels NotIn also matches sources without the label",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - matchExpressions: [{key: "k8s:io.cilium.k8s.namespace.labels.team", operator: NotIn, values: [red]}]
`,
			flows: []flowCase{
				deny(intruderIP, "web", tcp, 80),
				allow(dbIP, "web", tcp, 80),
				allow(clientIP, "web", tcp, 80),
				allow(worldIP, "web", tcp, 80),
				allow(nodeIP, "web", tcp, 80),
			},
		},
		{
			name: "kubernetes.io/metadata.name namespace label",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - matchLabels: {io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name: prod}
`,
			flows: []flowCase{
				allow(dbIP, "web", tcp, 5432),
				deny(clientIP, "web", tcp, 5432),
				deny(worldIP, "web", tcp, 5432),
			},
		},
		{
			name: "empty fromEndpoints selector in a CNP is its namespace",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoints: [{}]}]
`,
			flows: []flowCase{
				allow(clientIP, "web", udp, 53),
				allow(webIP, "web", tcp, 1), // an endpoint to itself
				deny(dbIP, "web", tcp, 80),
				deny(worldIP, "web", tcp, 80),
				deny(nodeIP, "web", tcp, 80),
				allow(hostIP, "web", tcp, 80), // allow-localhost
				allow(host6IP, "web", tcp, 80),
			},
		},
		{
			name: "service account label is namespaced in a CNP",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: db-sa}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: db-sa, io.kubernetes.pod.namespace: prod}}]
`,
			flows: []flowCase{
				deny(dbIP, "web", tcp, 80),
				allow(dbIP, "client", tcp, 80),
			},
		},
	})
}

func TestClusterwide(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "CCNP selects in every namespace and its peers are in every namespace",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: clients, namespace: ignored}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`,
			flows: []flowCase{
				allow(intruderIP, "web", tcp, 80),
				allow(clientIP, "db", tcp, 80),
				allow(intruderIP, "vm", tcp, 80),
				deny(dbIP, "web", tcp, 80),
				deny(worldIP, "db", tcp, 80),
			},
		},
		{
			// utils.go getEndpointSelector: a CCNP adds "k8s:io.kubernetes.pod.namespace Exists".
			name: "CCNP fromEndpoints {} is every endpoint with a namespace",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: all-pods}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{}]}]
`,
			flows: []flowCase{
				allow(clientIP, "web", tcp, 80),
				deny(intruderIP, "web", gre, 0), // Cilium's conntrack carries no GRE
				allow(vmIP, "web", tcp, 80),
				deny(nodeIP, "web", tcp, 80),
				deny(worldIP, "web", tcp, 80),
				deny(world6IP, "web", tcp, 80),
				allow(hostIP, "web", tcp, 80),
			},
		},
		{
			name: "CCNP fromEndpoints with a reserved key is used as written",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: from-nodes}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchLabels: {"reserved:remote-node": ""}}]}]
`,
			flows: []flowCase{
				allow(nodeIP, "db", tcp, 80),
				allow(node6IP, "db", tcp, 80),
				deny(clientIP, "db", tcp, 80),
				deny(worldIP, "db", tcp, 80),
			},
		},
		{
			name: "CCNP with nodeSelector is a host policy and selects no endpoint",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host}
spec:
  nodeSelector: {}
  ingress: [{fromEntities: [cluster]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80),
			},
		},
	})
}

func TestEntities(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "world is every world source, not nodes, host or endpoints",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [world]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cidr-elsewhere, namespace: prod}
spec:
  endpointSelector: {}
  ingress: [{fromCIDR: [8.8.0.0/16]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80), // a CIDR identity is still world
				allow("1.1.1.1", "web", tcp, 80),
				allow(world6IP, "web", icmpv6, 128),
				deny(nodeIP, "web", tcp, 80),
				deny(clientIP, "web", tcp, 80),
				allow(hostIP, "web", tcp, 80), // allow-localhost, not world
			},
		},
		{
			name: "world-ipv4 and world-ipv6",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [world-ipv4]
    toPorts: [{ports: [{port: "80"}]}]
  - fromEntities: [world-ipv6]
    toPorts: [{ports: [{port: "443"}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80),
				deny(worldIP, "web", tcp, 443),
				allow(world6IP, "web", tcp, 443),
				deny(world6IP, "web", tcp, 80),
			},
		},
		{
			name: "remote-node",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [remote-node]}]
`,
			flows: []flowCase{
				allow(nodeIP, "web", tcp, 10250),
				allow(node6IP, "web", icmpv6, 128),
				deny(worldIP, "web", tcp, 10250),
				deny(clientIP, "web", tcp, 10250),
			},
		},
		{
			// entity.go InitEntities: cluster is the reserved in-cluster identities plus every
			// identity with k8s:io.cilium.k8s.policy.cluster=<cluster>. The pod label
			// io.cilium.k8s.policy.cluster=c2 of intruder is dropped (RemoveCiliumLabels).
			name: "cluster is endpoints, host and remote nodes, not world",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [cluster]}]
`,
			flows: []flowCase{
				allow(clientIP, "web", tcp, 80),
				allow(dbIP, "web", tcp, 80),
				allow(intruderIP, "web", tcp, 80),
				allow(vmIP, "web", tcp, 80),
				allow(nodeIP, "web", tcp, 80),
				deny(worldIP, "web", tcp, 80),
				deny(world6IP, "web", tcp, 80),
			},
		},
		{
			name: "a pod's own cluster label is replaced by the real cluster",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: c2}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.cluster: c2}}]
    toPorts: [{ports: [{port: "80"}]}]
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.cluster: c1}}]
    toPorts: [{ports: [{port: "81"}]}]
`,
			flows: []flowCase{
				deny(intruderIP, "web", tcp, 80),
				allow(intruderIP, "web", tcp, 81),
			},
		},
		{
			name: "host entity, and all including other protocols",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [host]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [all]}]
`,
			flows: []flowCase{
				allow(hostIP, "web", tcp, 80),
				deny(nodeIP, "web", tcp, 80),
				deny(worldIP, "db", gre, 0), // Cilium's conntrack carries no GRE
				allow(nodeIP, "db", icmp, 8),
				allow(clientIP, "db", sctp, 9),
			},
		},
		{
			name: "none, init, health and an empty list select nothing here",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [none, init, health, ingress, unmanaged, kube-apiserver]
  - fromEntities: []
    toPorts: [{ports: [{port: "80"}]}]
`,
			flows: []flowCase{
				deny(worldIP, "web", tcp, 80),
				deny(nodeIP, "web", tcp, 80),
				deny(clientIP, "web", tcp, 80),
				allow(hostIP, "web", tcp, 80),
			},
		},
	})
}

func TestCIDR(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "fromCIDRSet with except",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromCIDRSet:
    - {cidr: 172.16.0.0/12, except: [172.16.5.0/24, 172.17.0.0/16]}
    - {cidr: "2001:db8::/32", except: ["2001:db8::8/128"]}
`,
			flows: []flowCase{
				allow("172.16.1.1", "web", tcp, 80),
				deny("172.31.255.255", "web", gre, 0), // Cilium's conntrack carries no GRE
				deny("172.16.5.5", "web", tcp, 80),
				deny("172.17.0.1", "web", tcp, 80),
				deny("172.32.0.1", "web", tcp, 80),
				allow("2001:db8::9", "web", tcp, 80),
				deny(world6IP, "web", tcp, 80),
			},
		},
		{
			// Identities come from the longest prefix any policy names; selection is by
			// containment (labels.go Label.HasKey), so a /16 allows an address whose identity is
			// a /24 named by another policy, while that policy's except still denies it there.
			name: "longest prefix from other policies",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromCIDR: [172.16.0.0/16]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  endpointSelector: {}
  ingress: [{fromCIDRSet: [{cidr: 172.16.0.0/12, except: [172.16.5.0/24]}]}]
`,
			flows: []flowCase{
				allow("172.16.5.5", "web", tcp, 80),
				deny("172.16.5.5", "db", tcp, 80),
				allow("172.16.6.6", "db", tcp, 80),
				allow("172.20.0.1", "db", tcp, 80),
				deny("172.20.0.1", "web", tcp, 80),
			},
		},
		{
			name: "bare IPs in fromCIDR are /32 and /128",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromCIDR: [172.16.1.1, "2001:db8::1"]}]
`,
			flows: []flowCase{
				allow("172.16.1.1", "web", tcp, 80),
				deny("172.16.1.2", "web", tcp, 80),
				allow("2001:db8::1", "web", udp, 53),
				deny("2001:db8::2", "web", udp, 53),
			},
		},
		{
			// cidr.go CIDRSlice.GetAsEndpointSelectors: 0.0.0.0/0 also selects world-ipv4.
			name: "0.0.0.0/0 is every IPv4 world source and nothing else",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromCIDR: [0.0.0.0/0]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  endpointSelector: {}
  ingress: [{fromCIDR: [8.8.0.0/16, 10.0.0.0/8, 192.168.0.0/16]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80), // identity cidr:8.8.0.0/16
				allow("1.1.1.1", "web", tcp, 80),
				deny(world6IP, "web", tcp, 80),
				deny(clientIP, "web", tcp, 80), // CIDRs never select endpoints,
				deny(nodeIP, "web", tcp, 80),   // nor nodes,
				allow(hostIP, "web", tcp, 80),  // and the host is allowed by allow-localhost
				deny(clientIP, "db", tcp, 80),
				deny(nodeIP, "db", tcp, 80),
			},
		},
		{
			name: "0.0.0.0/0 and ::/0 together",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromCIDR: [0.0.0.0/0, "::/0"]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80),
				allow(world6IP, "web", tcp, 80),
				deny(client6IP, "web", tcp, 80),
			},
		},
		{
			// cidr.go CIDRRuleSlice.GetAsEndpointSelectors: a /0 cidr also selects the family's
			// world identity, with the same excepts.
			name: "fromCIDRSet 0.0.0.0/0 with except",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromCIDRSet: [{cidr: 0.0.0.0/0, except: [8.8.0.0/16]}]}]
`,
			flows: []flowCase{
				deny(worldIP, "web", tcp, 80),
				allow("1.1.1.1", "web", tcp, 80),
				deny(world6IP, "web", tcp, 80),
			},
		},
		{
			name: "an explicitly empty fromCIDR selects nothing, even with toPorts",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromCIDR: []
    toPorts: [{ports: [{port: "80"}]}]
  - fromCIDRSet: []
    toPorts: [{ports: [{port: "81"}]}]
  - fromEndpoints: []
    toPorts: [{ports: [{port: "82"}]}]
  - toPorts: [{ports: [{port: "83"}]}]
`,
			flows: []flowCase{
				deny(worldIP, "web", tcp, 80),
				deny(worldIP, "web", tcp, 81),
				deny(clientIP, "web", tcp, 82),
				allow(worldIP, "web", tcp, 83), // no peer field: every source
				allow(nodeIP, "web", tcp, 83),
			},
		},
	})
}

func TestPorts(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			// rule.go mergeIngress: an ANY port becomes TCP, UDP and SCTP only.
			name: "port 0 ANY is every TCP, UDP and SCTP port, not ICMP or GRE",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [all]
    toPorts: [{ports: [{port: "0", protocol: ANY}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 1234),
				allow(worldIP, "web", udp, 53),
				allow(worldIP, "web", sctp, 36412),
				deny(worldIP, "web", icmp, 8),
				deny(world6IP, "web", icmpv6, 128),
				deny(worldIP, "web", gre, 0),
			},
		},
		{
			// rule.go mergeIngress: no toPorts and no icmps is an L3 rule (port 0, protocol ANY).
			name: "an L3 rule allows ICMP and GRE",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`,
			flows: []flowCase{
				allow(clientIP, "web", icmp, 8),
				allow(client6IP, "web", icmpv6, 128),
				deny(clientIP, "web", gre, 0), // Cilium's conntrack carries no GRE
				allow(clientIP, "web", tcp, 65535),
				deny(dbIP, "web", icmp, 8),
			},
		},
		{
			name: "endPort ranges",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts:
    - ports:
      - {port: "8000", endPort: 8010, protocol: TCP}
      - {port: "9000", endPort: 10, protocol: UDP}
      - {port: "0", endPort: 100, protocol: SCTP}
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 8000),
				allow(worldIP, "web", tcp, 8005),
				allow(worldIP, "web", tcp, 8010),
				deny(worldIP, "web", tcp, 7999),
				deny(worldIP, "web", tcp, 8011),
				deny(worldIP, "web", udp, 8005),
				allow(worldIP, "web", udp, 9000), // endPort below port: just the port
				deny(worldIP, "web", udp, 9001),
				deny(worldIP, "web", udp, 10),
				allow(worldIP, "web", sctp, 100),
				deny(worldIP, "web", sctp, 101),
			},
		},
		{
			// l4.go toMapState and portmap.go GetNamedPort: a name is resolved per protocol
			// against the destination's container ports ("" is TCP); no match adds nothing.
			name: "named ports",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts:
    - ports:
      - {port: HTTP}
      - {port: dns, protocol: TCP}
      - {port: missing}
      - {port: metrics, protocol: TCP}
      - {port: admin, protocol: TCP}
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 8080),
				deny(worldIP, "web", udp, 8080),
				deny(worldIP, "web", sctp, 8080),
				deny(worldIP, "web", tcp, 53), // dns is UDP: protocol mismatch
				deny(worldIP, "web", udp, 53), // the rule asked for TCP
				allow(worldIP, "web", tcp, 9090),
				allow(worldIP, "web", tcp, 9001), // a later duplicate wins; an invalid one is skipped
				deny(worldIP, "web", tcp, 9000),
				deny(worldIP, "web", tcp, 0),
			},
		},
		{
			name: "a named port the destination lacks leaves the rule empty for it",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: http}
spec:
  endpointSelector: {}
  ingress: [{toPorts: [{ports: [{port: http}]}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 8080),
				deny(worldIP, "db", tcp, 8080),
				deny(worldIP, "db", tcp, 80),
			},
		},
		{
			// rule_validation.go PortProtocol.sanitize and l4.go createL4Filter parse with base 0.
			name: "ports are parsed with base prefixes and protocols in any case",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{toPorts: [{ports: [{port: "010", protocol: udp}]}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", udp, 8),
				deny(worldIP, "web", udp, 10),
				deny(worldIP, "web", tcp, 8),
			},
		},
		{
			// rule.go mergeIngress: toPorts with an item is not an L3 rule, and an item without
			// ports adds no port.
			name: "toPorts without ports allows nothing",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{}]
`,
			flows: []flowCase{
				deny(clientIP, "web", tcp, 80),
				deny(clientIP, "web", icmp, 8),
			},
		},
		{
			name: "an ingress item with no peer and no ports selects nothing but enforces",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{}]
`,
			flows: []flowCase{
				deny(clientIP, "web", tcp, 80),
				deny(worldIP, "web", icmp, 8),
				allow(hostIP, "web", tcp, 80),
			},
		},
	})
}

func TestICMP(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "icmps by number, IPv4 by default",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [world]
    icmps: [{fields: [{type: 8}, {type: "11", family: IPv4}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", icmp, 8),
				allow(worldIP, "web", icmp, 11),
				deny(worldIP, "web", icmp, 3),
				deny(world6IP, "web", icmpv6, 8),
				deny(worldIP, "web", tcp, 8),
				deny(clientIP, "web", icmp, 8),
			},
		},
		{
			name: "icmps by name and family",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - icmps:
    - fields:
      - {type: EchoRequest, family: IPv6}
      - {type: PacketTooBig, family: IPv6}
      - {type: Echo}
`,
			flows: []flowCase{
				allow(world6IP, "web", icmpv6, 128),
				allow(world6IP, "web", icmpv6, 2),
				deny(world6IP, "web", icmpv6, 129),
				allow(worldIP, "web", icmp, 8),
				deny(worldIP, "web", icmp, 128),
				deny(worldIP, "web", icmp, 0),
			},
		},
		{
			// Cilium v1.18.4 turns ICMP type 0 into port 0, a wildcard over every type of the
			// family (icmp.go, l4.go createL4Filter; cilium/cilium#41304, fixed after v1.18); the
			// model follows the fix.
			name: "ICMP type 0 is type 0 (cilium/cilium#41304 fixed)",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - icmps: [{fields: [{type: EchoReply}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", icmp, 0),
				deny(worldIP, "web", icmp, 8),
				deny(worldIP, "web", icmp, 3),
				deny(world6IP, "web", icmpv6, 128),
				deny(worldIP, "web", tcp, 0),
			},
		},
	})
}

func TestDenyAndDefaults(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "deny wins over allow",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [all]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
			flows: []flowCase{
				deny(clientIP, "web", tcp, 80),
				allow(clientIP, "web", tcp, 81),
				allow(clientIP, "web", udp, 80),
				allow(worldIP, "web", tcp, 80),
			},
		},
		{
			name: "deny from another policy wins, and deny covers ICMP when L3",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [world]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: deny}
spec:
  endpointSelector: {}
  ingressDeny: [{fromCIDR: [8.8.8.0/24]}]
`,
			flows: []flowCase{
				deny(worldIP, "web", icmp, 8),
				deny(worldIP, "web", tcp, 443),
				allow("1.1.1.1", "web", tcp, 443),
			},
		},
		{
			// mapstate.go determineAllowLocalhostIngress inserts the host allow under denies.
			name: "deny wins over allow-localhost",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [all]}]
  ingressDeny:
  - fromEntities: [host]
    toPorts: [{ports: [{port: "22"}]}]
`,
			flows: []flowCase{
				deny(hostIP, "web", tcp, 22),
				deny(host6IP, "web", udp, 22),
				allow(hostIP, "web", tcp, 80),
				allow(hostIP, "web", icmp, 8),
			},
		},
		{
			// repository.go computePolicyEnforcementAndRules: ingressDeny alone enforces ingress.
			name: "an ingressDeny-only policy turns on default deny",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny: [{fromEntities: [world]}]
`,
			flows: []flowCase{
				deny(worldIP, "web", tcp, 80),
				deny(clientIP, "web", tcp, 80),
				allow(hostIP, "web", tcp, 80),
				allow(worldIP, "client", tcp, 80),
			},
		},
		{
			name: "enableDefaultDeny.ingress false keeps everything else allowed",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {ingress: false}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80"}]}]
  ingressDeny:
  - fromEntities: [world]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80),
				deny(worldIP, "web", gre, 0), // Cilium's conntrack carries no GRE
				deny(worldIP, "web", tcp, 22),
				allow(clientIP, "web", tcp, 22),
			},
		},
		{
			name: "one default-deny rule is enough",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
specs:
- endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {ingress: false}
  ingress: [{fromEntities: [world]}]
- endpointSelector: {}
  enableDefaultDeny: {ingress: true, egress: false}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80),
				allow(clientIP, "web", tcp, 80),
				deny(nodeIP, "web", tcp, 80),
				deny(worldIP, "client", tcp, 80),
			},
		},
		{
			name: "rules without ingress do not enforce it",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: []
  egress: [{toEntities: [world]}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80),
			},
		},
	})
}

func TestLabelFilter(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			// labelsfilter/filter.go defaultLabelPrefixCfg: pod-template-hash, controller-uid and
			// batch.kubernetes.io/controller-uid are not identity labels; app.kubernetes.io is.
			name: "filtered labels select nothing, app.kubernetes.io is kept",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {pod-template-hash: abc}}]
    toPorts: [{ports: [{port: "1"}]}]
  - fromEndpoints: [{matchLabels: {controller-uid: u1}}]
    toPorts: [{ports: [{port: "2"}]}]
  - fromEndpoints: [{matchLabels: {batch.kubernetes.io/controller-uid: u1}}]
    toPorts: [{ports: [{port: "3"}]}]
  - fromEndpoints: [{matchLabels: {app.kubernetes.io/name: curl}}]
    toPorts: [{ports: [{port: "4"}]}]
  - fromEndpoints: [{matchExpressions: [{key: pod-template-hash, operator: DoesNotExist}]}]
    toPorts: [{ports: [{port: "5"}]}]
`,
			flows: []flowCase{
				deny(clientIP, "web", tcp, 1),
				deny(clientIP, "web", tcp, 2),
				deny(clientIP, "web", tcp, 3),
				allow(clientIP, "web", tcp, 4),
				allow(clientIP, "web", tcp, 5),
			},
		},
		{
			name: "an endpointSelector on a filtered label selects nothing",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {pod-template-hash: 5d8f}}
  ingress: [{}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 80),
			},
		},
	})
}

func TestSelectorSources(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "k8s, any and reserved sources",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {"k8s:app": web}}
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:app": client}}]
    toPorts: [{ports: [{port: "1"}]}]
  - fromEndpoints: [{matchLabels: {"any:app": client}}]
    toPorts: [{ports: [{port: "2"}]}]
  - fromEndpoints: [{matchLabels: {"reserved:app": client}}]
    toPorts: [{ports: [{port: "3"}]}]
  - fromEndpoints: [{matchLabels: {"reserved:world-ipv4": ""}}]
    toPorts: [{ports: [{port: "4"}]}]
  - fromEndpoints: [{matchLabels: {"world-ipv4": ""}}]
    toPorts: [{ports: [{port: "5"}]}]
  - fromEndpoints: [{matchExpressions: [{key: "reserved:host", operator: DoesNotExist}]}]
    toPorts: [{ports: [{port: "6"}]}]
`,
			flows: []flowCase{
				allow(clientIP, "web", tcp, 1),
				allow(clientIP, "web", tcp, 2),
				deny(clientIP, "web", tcp, 3),
				allow(worldIP, "web", tcp, 4),
				deny(world6IP, "web", tcp, 4),
				deny(worldIP, "web", tcp, 5), // any:world-ipv4 gets the namespace added
				allow(worldIP, "web", tcp, 6),
				allow(nodeIP, "web", tcp, 6),
				allow(dbIP, "web", tcp, 6),
			},
		},
		{
			name: "matchExpressions operators",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ops}
spec:
  endpointSelector: {matchExpressions: [{key: app, operator: In, values: [web, db]}]}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: app, operator: NotIn, values: [client]}]}]
    toPorts: [{ports: [{port: "1"}]}]
  - fromEndpoints: [{matchExpressions: [{key: app, operator: Exists}]}]
    toPorts: [{ports: [{port: "2"}]}]
  - fromEndpoints: [{matchExpressions: [{key: app, operator: DoesNotExist}]}]
    toPorts: [{ports: [{port: "3"}]}]
`,
			flows: []flowCase{
				deny(clientIP, "db", tcp, 1),
				allow(vmIP, "db", tcp, 1),
				deny(worldIP, "db", tcp, 1), // the CCNP adds namespace Exists
				allow(clientIP, "db", tcp, 2),
				deny(clientIP, "db", tcp, 3),
				deny(worldIP, "db", tcp, 3),
				allow(worldIP, "vm", tcp, 3), // vm is not selected
			},
		},
	})
}

func TestExplainNamesTheRule(t *testing.T) {
	pols, err := Load(strings.NewReader(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
specs:
- endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [world]}]
  ingressDeny: [{fromCIDR: [8.8.8.8]}]
`), "default")
	if err != nil {
		t.Fatal(err)
	}
	w := testWorld()
	for _, tc := range []struct {
		src, want string
	}{
		{worldIP, "denied by CiliumNetworkPolicy default/web specs[0].ingressDeny[0]"},
		{"1.1.1.1", "allowed by CiliumNetworkPolicy default/web specs[0].ingress[0]"},
		{clientIP, "denied by default"},
		{hostIP, "allow-localhost"},
	} {
		_, why := w.Explain(pols, Flow{Src: netip.MustParseAddr(tc.src), Dst: "web", Proto: tcp, Port: 80})
		if !strings.Contains(why, tc.want) {
			t.Errorf("from %s: %q does not contain %q", tc.src, why, tc.want)
		}
	}
	_, why := w.Explain(pols, Flow{Src: netip.MustParseAddr(worldIP), Dst: "default/client", Proto: tcp, Port: 80})
	if !strings.Contains(why, "not enforced") {
		t.Errorf("to client: %q does not say it is not enforced", why)
	}
}

func TestVerdictPanicsOnUnknownDestination(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	testWorld().Verdict(nil, Flow{Src: netip.MustParseAddr(worldIP), Dst: "nope", Proto: tcp, Port: 80})
}

// TestFromRequires follows resolveL4IngressPolicy (pkg/policy/rules.go) and
// GetSourceEndpointSelectorsWithRequirements (pkg/policy/api/ingress.go):
// the fromRequires of every rule selecting the destination are added to
// every fromEndpoints selector of those rules' items of the same kind
// (ingress or ingressDeny); entities and CIDRs are untouched; an item with
// fromRequires alone selects nothing, or every source with toPorts.
func TestFromRequires(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "requirements constrain fromEndpoints of every selecting rule",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: req}
specs:
- endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromRequires: [{matchLabels: {app.kubernetes.io/name: curl}}]
- endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromEntities: [world]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`,
			flows: []flowCase{
				allow(clientIP, "web", tcp, 80), // client has app.kubernetes.io/name=curl
				deny(webIP, "web", tcp, 80),     // web has not
				allow(worldIP, "web", tcp, 443), // entities are untouched
				deny(worldIP, "web", tcp, 80),
			},
		},
		{
			name: "fromRequires alone: nothing, or every source with toPorts; deny requirements apply to denies",
			yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: req}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromRequires: [{matchLabels: {app: nobody}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
  ingressDeny:
  - fromEndpoints: [{}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  - fromRequires: [{matchLabels: {app.kubernetes.io/name: curl}}]
`,
			flows: []flowCase{
				allow(worldIP, "web", tcp, 8080), // toPorts with fromRequires only: every source
				deny(clientIP, "web", tcp, 80),   // app: client AND app: nobody never holds
				deny(clientIP, "web", tcp, 22),   // the deny requires curl: client has it
				deny(webIP, "web", tcp, 22),      // not denied, but not allowed either
			},
		},
	})
}
