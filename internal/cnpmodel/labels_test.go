package cnpmodel

import (
	"net/netip"
	"strings"
	"testing"
)

// The expectations follow pkg/labelsfilter/filter.go defaultLabelPrefixCfg.
func TestIdentityRelevant(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"app", true},
		{"k8s-app", true},
		{"app.kubernetes.io/name", true},
		{"io.kubernetes.pod.namespace", true},
		{"io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", true},
		{"io.cilium.k8s.policy.serviceaccount", true},
		{"io.cilium.k8s.policy.cluster", true},
		{"pod-template-hash", false},
		{"pod-template-generation", false},
		{"controller-revision-hash", false},
		{"controller-uid", false},
		{"batch.kubernetes.io/controller-uid", false},
		{"batch.kubernetes.io/job-name", true},
		{"batch.kubernetes.io/job-completion-index", false},
		{"statefulset.kubernetes.io/pod-name", false},
		{"apps.kubernetes.io/pod-index", false},
		{"kubernetes.io/hostname", false},
		{"io.kubernetes.container.name", false},
		{"k8s.io/foo", false},
		{"node.beta.kubernetes.io/instance-type", false},
		{"annotation.foo", false},
		{"etcd_node", false},
		// The filter also applies to the labels Cilium derives: a namespace label whose key
		// holds beta.kubernetes.io is dropped, since `.*beta\.kubernetes\.io` matches longer
		// than the io.cilium.k8s.namespace.labels include.
		{"io.cilium.k8s.namespace.labels.topology.beta.kubernetes.io/zone", false},
	} {
		if got := identityRelevant(sourceK8s, tc.key); got != tc.want {
			t.Errorf("identityRelevant(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestEndpointLabels(t *testing.T) {
	e := Endpoint{
		Name: "p", Namespace: "ns",
		Labels: map[string]string{
			"app": "a", "pod-template-hash": "x", "io.cilium.k8s.policy.cluster": "other",
			"io.cilium.k8s.policy.serviceaccount": "fake", "io.kubernetes.pod.namespace": "fake",
		},
		NamespaceLabels: map[string]string{"team": "t"},
	}
	got := endpointLabels(e, "c1").String()
	want := "k8s:app=a,k8s:io.cilium.k8s.namespace.labels.team=t,k8s:io.cilium.k8s.policy.cluster=c1,k8s:io.kubernetes.pod.namespace=ns"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSourceIdentity(t *testing.T) {
	pols, err := Load(strings.NewReader(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {}
  ingress:
  - fromCIDR: [172.16.0.0/12, 10.0.0.0/8, 0.0.0.0/0, 192.168.0.0/16]
  - fromCIDRSet: [{cidr: 172.16.0.0/16, except: [172.16.5.0/24]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: q, namespace: elsewhere}
spec:
  endpointSelector: {}
  ingressDeny: [{fromCIDR: ["2001:db8::/64", "2001:db8::1"]}]
`), "default")
	if err != nil {
		t.Fatal(err)
	}
	w := testWorld()
	for _, tc := range []struct{ addr, want string }{
		{"172.16.5.5", "cidr:172.16.5.0/24,reserved:world-ipv4"},
		{"172.16.6.6", "cidr:172.16.0.0/16,reserved:world-ipv4"},
		{"172.20.0.1", "cidr:172.16.0.0/12,reserved:world-ipv4"},
		{"1.1.1.1", "reserved:world-ipv4"}, // /0 is no CIDR identity
		{"2001:db8::1", "cidr:2001-db8--1/128,reserved:world-ipv6"},
		{"2001:db8::2", "cidr:2001-db8--0/64,reserved:world-ipv6"},
		{"::1", "reserved:world-ipv6"},
		{clientIP, "k8s:app=client,k8s:app.kubernetes.io/name=curl,k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default,k8s:io.cilium.k8s.policy.cluster=c1,k8s:io.kubernetes.pod.namespace=default"},
		{hostIP, "reserved:host"},        // inside 192.168.0.0/16, still the host
		{nodeIP, "reserved:remote-node"}, // inside 192.168.0.0/16, still a node
	} {
		if got := w.source(pols, netip.MustParseAddr(tc.addr)).labels.String(); got != tc.want {
			t.Errorf("source(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

// An identity from another cluster (not reachable through World, which is one cluster) is not
// in the entity cluster (entity.go InitEntities).
func TestClusterEntityChecksTheClusterLabel(t *testing.T) {
	sels, _ := entitySelectors("cluster")
	matches := func(ls labelSet) bool {
		for _, s := range sels {
			if s.matches(ls, "c1") {
				return true
			}
		}
		return false
	}
	local := labelSet{{source: sourceK8s, key: clusterLabel, value: "c1"}}
	remote := labelSet{{source: sourceK8s, key: clusterLabel, value: "c2"}}
	if !matches(local) {
		t.Error("an identity of cluster c1 is not in cluster c1")
	}
	if matches(remote) {
		t.Error("an identity of cluster c2 is in cluster c1")
	}
	if !matches(reservedLabels(reservedRemoteNode)) || matches(reservedLabels(reservedWorldIPv4)) {
		t.Error("cluster must hold remote-node and not world")
	}
}

// The keys follow pkg/labels GetExtendedKeyFrom.
func TestExtendKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"app", "any.app"},
		{"k8s:app", "k8s.app"},
		{"any:app", "any.app"},
		{"reserved:host", "reserved.host"},
		{"reserved.host", "reserved.host"},
		{"$host", "reserved.host"},
		{"io.kubernetes.pod.namespace", "any.io.kubernetes.pod.namespace"},
		{"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", "k8s.io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"},
	} {
		if got := extendKey(tc.in); got != tc.want {
			t.Errorf("extendKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
