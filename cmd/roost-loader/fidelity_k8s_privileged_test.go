package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/roost-net/roost/internal/crds"
	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// kubeWait bounds each wait for the API server.
const kubeWait = 30 * time.Second

// The resources of the tests' objects.
var (
	crdResource  = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	cnpResource  = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	ccnpResource = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumclusterwidenetworkpolicies"}
)

// kubeLab is a real API server and what a test made in it.
type kubeLab struct {
	k   *testenv.Kube
	dyn dynamic.Interface
}

// kubeObjects decodes YAML documents into objects.
func kubeObjects(t *testing.T, text string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(text)), 4096)
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode %q: %v", text, err)
		}
		if obj != nil {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// installCRDs creates the CRDs of crds.Manifests and waits until the API
// server says they are Established.
func (l *kubeLab) installCRDs(t *testing.T) {
	t.Helper()
	for _, u := range kubeObjects(t, string(crds.Manifests)) {
		if _, err := l.dyn.Resource(crdResource).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", u.GetName(), err)
		}
		name := u.GetName()
		kubePoll(t, "CRD "+name+" Established", func() (bool, string) {
			crd, err := l.dyn.Resource(crdResource).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
					return true, ""
				}
			}
			return false, fmt.Sprint(conds)
		})
	}
}

// kubePoll calls cond every 50 ms until it holds, failing the test after
// kubeWait.
func kubePoll(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(kubeWait)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// applyPolicies creates each policy object of text, or replaces the spec
// of the one that exists.
func (l *kubeLab) applyPolicies(t *testing.T, text string) {
	t.Helper()
	for _, u := range kubeObjects(t, text) {
		c := l.dyn.Resource(cnpResource).Namespace(u.GetNamespace())
		if u.GetKind() == policy.KindCCNP {
			c = l.dyn.Resource(ccnpResource)
		}
		cur, err := c.Get(t.Context(), u.GetName(), metav1.GetOptions{})
		switch {
		case err == nil:
			cur.Object["spec"] = u.Object["spec"]
			_, err = c.Update(t.Context(), cur, metav1.UpdateOptions{})
		default:
			_, err = c.Create(t.Context(), u, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("apply %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

// labelNamespace sets (value non-empty) or removes a label of a namespace.
func (l *kubeLab) labelNamespace(t *testing.T, name, key, value string) {
	t.Helper()
	cs := l.k.Client
	ns, err := cs.CoreV1().Namespaces().Get(t.Context(), name, metav1.GetOptions{})
	if err == nil {
		if value == "" {
			delete(ns.Labels, key)
		} else {
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels[key] = value
		}
		_, err = cs.CoreV1().Namespaces().Update(t.Context(), ns, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("label namespace %s %s=%q: %v", name, key, value, err)
	}
}

// createKubeNode creates a Node with one InternalIP, as its kubelet would
// report it.
func createKubeNode(t *testing.T, cs kubernetes.Interface, name, ip string) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err == nil {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
}

// createKubePod creates a running pod on node1 with address ip, labels and
// container ports (name → port, TCP), as a kubelet would report it.
func createKubePod(t *testing.T, cs kubernetes.Interface, ns, name, ip string, labels map[string]string, ports map[string]int32) {
	t.Helper()
	c := corev1.Container{Name: "main", Image: "example.com/" + name}
	for pn, p := range ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: pn, ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{c}},
	}
	p, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err == nil {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		_, err = cs.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
}

// TestPrivilegedFidelityKubernetes runs roost-loader against a real API
// server, with no endpoints file and no policy file: pods, namespaces,
// nodes and policies all come from the API. A CiliumNetworkPolicy object
// is enforced, with a named port from the pod's container ports and peers
// in another namespace; a policy that selects peers by a namespace label
// follows the Namespace objects' labels; a bad policy object is reported in
// /v1/status and refused alone, and a good object edited badly keeps its
// last good version; a CiliumClusterwideNetworkPolicy object admits the
// other node (a Node object's InternalIP) as remote-node.
func TestPrivilegedFidelityKubernetes(t *testing.T) {
	k := testenv.StartKube(t)
	dyn, err := dynamic.NewForConfig(k.Config)
	if err != nil {
		t.Fatal(err)
	}
	l := &kubeLab{k: k, dyn: dyn}
	cs := k.Client
	l.installCRDs(t)

	const (
		db       = "10.244.1.10" // prod/db, app=db, container port redis 6379
		api      = "10.244.1.11" // prod/api, app=api
		frontend = "10.244.1.12" // web/frontend, app=web
		tool     = "10.244.1.13" // dev/tool, app=web
		node2    = "10.0.3.2"
	)
	for name, labels := range map[string]map[string]string{"prod": {"team": "data"}, "web": {"team": "frontend"}, "dev": nil} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if _, err := cs.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", name, err)
		}
	}
	createKubeNode(t, cs, "node1", "10.0.3.1")
	createKubeNode(t, cs, "node2", node2)
	createKubePod(t, cs, "prod", "db", db, map[string]string{"app": "db"}, map[string]int32{"redis": 6379})
	createKubePod(t, cs, "prod", "api", api, map[string]string{"app": "api"}, nil)
	createKubePod(t, cs, "web", "frontend", frontend, map[string]string{"app": "web"}, nil)
	createKubePod(t, cs, "dev", "tool", tool, map[string]string{"app": "web"}, nil)
	l.applyPolicies(t, `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web, k8s:io.kubernetes.pod.namespace: web}}]
    toPorts: [{ports: [{port: redis, protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: frontend}}]
`)

	f := newFidelity(t, fmt.Sprintf("kubernetes:\n  enabled: true\n  kubeconfig: %s\n", k.Kubeconfig))
	// The API server listens on 127.0.0.1 of the test's namespace; the
	// loader, in the node's, reaches it at the same URL.
	server, err := url.Parse(k.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	testenv.ForwardLoopback(t, f.node.ns, server.Host)
	for name, ip := range map[string]string{"db": db, "api": api, "frontend": frontend, "tool": tool} {
		f.pod(t, name, ip)
	}
	f.remote(t, "node2", "10.0.3.1", node2)
	f.serve(t, "db", db, []int{6379, 6380}, nil)
	f.serve(t, "api", api, []int{8080}, nil)
	f.start(t)
	s := f.waitApplied(t, "prod/db", "prod/api")
	if i := slices.IndexFunc(s.Nodes, func(n loaderapi.Node) bool { return n.Name == "node2" }); i < 0 || fmt.Sprint(s.Nodes[i].IPs) != "["+node2+"]" {
		t.Errorf("/v1/status nodes %+v, want node2 with %s (its Node's InternalIP)", s.Nodes, node2)
	}
	if slices.ContainsFunc(s.Nodes, func(n loaderapi.Node) bool { return n.Name == "node1" }) {
		t.Errorf("/v1/status nodes %+v include node1, the loader's own node", s.Nodes)
	}

	dbRedis, dbOther, apiWeb := db+":6379", db+":6380", api+":8080"
	f.check(t, "policies from the API",
		tcpFlow("frontend", dbRedis, true),
		tcpFlow("frontend", dbOther, false), // only the named port redis
		tcpFlow("tool", dbRedis, false),     // app=web, but in dev
		tcpFlow("node2", dbRedis, false),
		tcpFlow(hostActor, dbOther, true), // allow-localhost
		tcpFlow("frontend", apiWeb, true), // web has team=frontend
		tcpFlow("tool", apiWeb, false),    // dev has no team
	)

	t.Run("namespace labels", func(t *testing.T) {
		l.labelNamespace(t, "dev", "team", "frontend")
		f.await(t, "dev labelled team=frontend", tcpFlow("tool", apiWeb, true))
		l.labelNamespace(t, "web", "team", "")
		f.await(t, "web's team label removed", tcpFlow("frontend", apiWeb, false))
		f.check(t, "relabelled",
			tcpFlow("tool", apiWeb, true),
			tcpFlow("frontend", apiWeb, false),
			tcpFlow("frontend", dbRedis, true), // by namespace name, not label
			tcpFlow("tool", dbRedis, false),
		)
	})

	t.Run("clusterwide", func(t *testing.T) {
		l.applyPolicies(t, `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: nodes-to-db}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEntities: [remote-node]
    toPorts: [{ports: [{port: "6379", protocol: TCP}]}]
`)
		f.await(t, "CCNP created", tcpFlow("node2", dbRedis, true))
		f.check(t, "CCNP",
			tcpFlow("node2", dbOther, false),
			tcpFlow("frontend", dbRedis, true),
			tcpFlow("tool", dbRedis, false),
		)
	})

	t.Run("bad policy objects", func(t *testing.T) {
		// A new bad object, and the good prod/db edited badly: both are
		// refused; the rest, and prod/db's last good version, stay.
		l.applyPolicies(t, `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  egress:
  - toEndpoints: [{matchLabels: {app: web}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{}]
    toPorts: [{ports: [{port: "6380", protocol: TCP}], rules: {http: [{method: GET}]}}]
`)
		var errs []loaderapi.PolicyError
		f.waitFor(t, "prod/bad and prod/db in /v1/status policyErrors", func() (bool, string) {
			s, err := f.status()
			if err != nil {
				return false, err.Error()
			}
			errs = s.PolicyErrors
			names := make([]string, len(errs))
			for i, e := range errs {
				names[i] = e.Kind + " " + e.Namespace + "/" + e.Name
			}
			return s.LastApply.Result == loaderapi.ResultOK &&
				slices.Equal(names, []string{"CiliumNetworkPolicy prod/bad", "CiliumNetworkPolicy prod/db"}), fmt.Sprintf("%+v", s)
		})
		for _, e := range errs {
			want := map[string]string{"bad": "spec.egress", "db": "spec.ingress[0].toPorts[0].rules"}[e.Name]
			if !strings.Contains(e.Error, want) {
				t.Errorf("policy error %+v does not name the field at fault, %s", e, want)
			}
		}
		f.check(t, "bad objects refused",
			tcpFlow("frontend", dbRedis, true),
			tcpFlow("frontend", dbOther, false), // not the bad version's 6380
			tcpFlow("tool", dbOther, false),
			tcpFlow("node2", dbRedis, true), // the CCNP
			tcpFlow("tool", apiWeb, true),
			tcpFlow("frontend", apiWeb, false),
		)
	})
}
