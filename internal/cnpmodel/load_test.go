package cnpmodel

import (
	"strings"
	"testing"
)

const cnpHeader = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
`

func TestLoadDocuments(t *testing.T) {
	pols, err := Load(strings.NewReader(`---
---
# only a comment
---
`+cnpHeader+`spec:
  endpointSelector: {}
  ingress: [{}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: q}
specs: []
...
`), "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(pols) != 2 {
		t.Fatalf("got %d policies, want 2", len(pols))
	}
	if got, want := pols[0].String(), "CiliumNetworkPolicy team-a/p"; got != want {
		t.Errorf("first policy is %q, want %q", got, want)
	}
	if got, want := pols[1].String(), "CiliumClusterwideNetworkPolicy q"; got != want {
		t.Errorf("second policy is %q, want %q", got, want)
	}
}

func TestLoadIgnores(t *testing.T) {
	_, err := Load(strings.NewReader(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: p
  namespace: default
  labels: {a: b}
  annotations: {c: d}
  description: a note
spec:
  description: what it does
  labels: [{key: a, value: b, source: k8s}]
  log: {value: x}
  enableDefaultDeny: {egress: true}
  endpointSelector: {}
  ingress:
  - fromEntities: [world]
  egress:
  - toFQDNs: [{matchName: example.com}]
    toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]
  egressDeny:
  - toGroups: [{aws: {securityGroupsIds: [sg-1]}}]
status:
  derivativePolicies: {}
`), "default")
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       string // in the error
	}{
		{"other kind", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n", "kind"},
		{"other version", "apiVersion: cilium.io/v2alpha1\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n", "kind"},
		{"not a mapping", "- a\n", "not a mapping"},
		{"no name", "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nspec: {endpointSelector: {}, ingress: [{}]}\n", "metadata.name"},
		{"no spec", cnpHeader, "spec"},
		{"fromGroups", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromGroups: [{aws: {}}]}]\n", "spec.ingress[0].fromGroups"},
		{"fromNodes", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromNodes: [{}]}]\n", "spec.ingress[0].fromNodes"},
		{"cidrGroupRef", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDRSet: [{cidrGroupRef: g}]}]\n", "spec.ingress[0].fromCIDRSet[0].cidrGroupRef"},
		{"cidrGroupSelector", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDRSet: [{cidrGroupSelector: {}}]}]\n", "fromCIDRSet[0].cidrGroupSelector"},
		{"L7 rules", cnpHeader + "specs:\n- endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: \"80\"}], rules: {http: [{}]}}]}]\n", "specs[0].ingress[0].toPorts[0].rules"},
		{"listener", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{listener: {name: l}}]}]\n", "toPorts[0].listener"},
		{"serverNames", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{serverNames: [a.example]}]}]\n", "toPorts[0].serverNames"},
		{"TLS", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{terminatingTLS: {secret: {name: s}}}]}]\n", "toPorts[0].terminatingTLS"},
		{"authentication", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{authentication: {mode: required}}]\n", "spec.ingress[0].authentication"},
		{"unknown field", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromEndpoint: [{}]}]\n", "spec.ingress[0].fromEndpoint: unknown field"},
		{"deny toPorts rules", cnpHeader + "spec:\n  endpointSelector: {}\n  ingressDeny: [{toPorts: [{rules: {}}]}]\n", "spec.ingressDeny[0].toPorts[0].rules: unknown field"},
		{"unknown entity", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromEntities: [World]}]\n", "spec.ingress[0].fromEntities[0]"},
		{"bad CIDR", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDR: [10.0.0.0/33]}]\n", "spec.ingress[0].fromCIDR[0]"},
		{"bare IP in fromCIDRSet", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDRSet: [{cidr: 10.0.0.1}]}]\n", "fromCIDRSet[0].cidr"},
		{"except outside", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/8]}]}]\n", "fromCIDRSet[0].except[0]"},
		{"bad port", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: \"70000\"}]}]}]\n", "ports[0].port"},
		{"no port", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{protocol: TCP}]}]}]\n", "ports[0].port"},
		{"ICMP in toPorts", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: \"8\", protocol: ICMP}]}]}]\n", "ports[0].protocol"},
		{"ICMP name of the other family", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{icmps: [{fields: [{type: Echo, family: IPv6}]}]}]\n", "icmps[0].fields[0].type"},
		{"ICMP family", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{icmps: [{fields: [{type: 8, family: ipv4}]}]}]\n", "icmps[0].fields[0].family"},
		{"icmps with toPorts", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{icmps: [{fields: [{type: 8}]}], toPorts: [{ports: [{port: \"80\"}]}]}]\n", "spec.ingress[0]"},
		{"combined peers", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}], fromCIDR: [10.0.0.0/8]}]\n", "combining"},
		{"operator", cnpHeader + "spec:\n  endpointSelector: {matchExpressions: [{key: a, operator: Gt, values: [\"1\"]}]}\n  ingress: [{}]\n", "endpointSelector.matchExpressions[0].operator"},
		{"nodeSelector in a CNP", cnpHeader + "spec:\n  nodeSelector: {}\n  ingress: [{}]\n", "spec.nodeSelector"},
		{"no selector", cnpHeader + "spec:\n  ingress: [{}]\n", "endpointSelector"},
		{"no rule list", cnpHeader + "spec:\n  endpointSelector: {}\n", "ingress"},
		{"duplicate key", cnpHeader + "spec:\n  endpointSelector: {}\n  ingress: [{}]\n  ingress: []\n", "spec.ingress: duplicate key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.yaml), "default")
			if err == nil {
				t.Fatalf("no error, want one naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

// utils.go getEndpointSelector: a CCNP rule whose endpointSelector has reserved:init adds no
// namespace to its peers, so fromEndpoints {} is every identity there.
func TestInitRuleAddsNoNamespace(t *testing.T) {
	pols, err := Load(strings.NewReader(`apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: init}
specs:
- endpointSelector: {matchLabels: {"reserved:init": ""}}
  ingress: [{fromEndpoints: [{}]}]
- nodeSelector: {}
  ingress: [{fromEndpoints: [{}]}]
- endpointSelector: {}
  ingress: [{fromEndpoints: [{}]}]
`), "default")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"{}", "{Exists k8s:io.kubernetes.pod.namespace}", "{Exists k8s:io.kubernetes.pod.namespace}"} {
		if got := pols[0].rules[i].ingress[0].peers[0].String(); got != want {
			t.Errorf("specs[%d] peer is %s, want %s", i, got, want)
		}
	}
}
