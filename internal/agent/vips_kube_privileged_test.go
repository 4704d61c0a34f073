package agent

import (
	"fmt"
	"net/url"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/roost-net/roost/internal/testenv"
)

// TestPrivilegedAgentVIPsKubernetes runs the roost-agent binary with its
// PodCIDR and its VIPs from a real API server (vips.kubernetes) against
// real BIRD and FRR ToRs: a Service's externalIPs and load-balancer
// ingress IPs are announced, one with externalTrafficPolicy: Local only
// while this node has an endpoint of it, and none while the Node carries
// roost.io/exclude-vips=true; no session is reset.
func TestPrivilegedAgentVIPsKubernetes(t *testing.T) {
	k := testenv.StartKube(t)
	f := newFabric(t)
	server, err := url.Parse(k.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	testenv.ForwardLoopback(t, f.node, server.Host)
	ctx, api := t.Context(), k.Client

	if _, err := api.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	service := func(name string, local bool, externalIPs ...string) {
		t.Helper()
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ExternalIPs: externalIPs,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
		}
		if local {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		if _, err := api.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	endpointOn := func(svc, node string) {
		t.Helper()
		port, proto, ready := int32(80), corev1.ProtocolTCP, true
		name := svc + "-1"
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.10"}, NodeName: &node,
				Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: &port, Protocol: &proto}},
		}
		if _, err := api.DiscoveryV1().EndpointSlices("default").Get(ctx, name, metav1.GetOptions{}); err == nil {
			if _, err := api.DiscoveryV1().EndpointSlices("default").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			return
		}
		if _, err := api.DiscoveryV1().EndpointSlices("default").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	service("web", false, "192.0.2.30")
	endpointOn("web", "node2")
	service("db", true)
	// A load balancer's ingress IP, as its controller writes it.
	if _, err := api.CoreV1().Services("default").Patch(ctx, "db", types.MergePatchType,
		[]byte(`{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.31"}]}}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	endpointOn("db", "node1")

	yaml := fmt.Sprintf(`node: node1
asn: 65101
routerID: 10.0.1.2
kubernetes: {enabled: true, kubeconfig: %s}
peers:
  - {name: tor1, address: 10.0.1.1, asn: 65000}
  - {name: tor2, address: 10.0.2.1, asn: 65000}
bird: {socket: %s, configDir: %s}
listen: 127.0.0.1:9479
controlSocket: %s
vips: {kubernetes: true, table: 4243}
`, k.Kubeconfig, f.bird.Socket, f.bird.Dir, f.controlSocket())
	f.startAgentProc(yaml)
	f.waitAnnounced("10.244.1.0/24", "192.0.2.30/32", "192.0.2.31/32")
	before := f.waitEstablished()

	// db's only endpoint moves to node2: its Local VIP goes.
	endpointOn("db", "node2")
	f.waitAnnounced("10.244.1.0/24", "192.0.2.30/32")
	endpointOn("db", "node1")
	f.waitAnnounced("10.244.1.0/24", "192.0.2.30/32", "192.0.2.31/32")

	label := func(v string) {
		t.Helper()
		patch := fmt.Sprintf(`{"metadata":{"labels":{"roost.io/exclude-vips":%s}}}`, v)
		if _, err := api.CoreV1().Nodes().Patch(ctx, "node1", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	label(`"true"`)
	f.waitAnnounced("10.244.1.0/24")
	label("null")
	f.waitAnnounced("10.244.1.0/24", "192.0.2.30/32", "192.0.2.31/32")

	// The Service goes: so does its VIP.
	if err := api.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitAnnounced("10.244.1.0/24", "192.0.2.31/32")
	f.assertNoReset(before)
}
