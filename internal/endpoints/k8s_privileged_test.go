package endpoints

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/roost-net/roost/internal/crds"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// apiWait bounds every wait of the tests against a real API server. It is
// generous, as it only matters when a test fails, and several API servers
// may be running at once.
const apiWait = 30 * time.Second

// crdResource is the resource of CustomResourceDefinitions.
var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates the CRDs of crds.Manifests through dyn and waits, at
// most apiWait, until the API server says they are Established.
func installCRDs(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	ctx := t.Context()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(crds.Manifests), 4096)
	var names []string
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode crds.Manifests: %v", err)
		}
		u := &unstructured.Unstructured{Object: obj}
		if _, err := dyn.Resource(crdResource).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	if len(names) != 2 {
		t.Fatalf("crds.Manifests has CRDs %q, want 2", names)
	}
	for _, name := range names {
		var last string
		established := func() bool {
			crd, err := dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
				return false
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			last = fmt.Sprint(conds)
			for _, c := range conds {
				if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
					return true
				}
			}
			return false
		}
		if !poll(apiWait, established) {
			t.Fatalf("CRD %s not Established within %v; conditions: %s", name, apiWait, last)
		}
	}
}

// poll calls done every 50 ms until it returns true, at most for within;
// it reports whether done returned true.
func poll(within time.Duration, done func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if done() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dynamicFor returns a dynamic client that uses kubeconfig.
func dynamicFor(t *testing.T, kubeconfig string) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", kubeconfig, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	return dyn
}

// dedupe passes on to emit only the texts that differ from the last one,
// for tests whose text shows part of a state that changes elsewhere too.
func dedupe(watch func(ctx context.Context, emit func(string)) error) func(context.Context, func(string)) error {
	return func(ctx context.Context, emit func(string)) error {
		last, first := "", true
		return watch(ctx, func(s string) {
			if first || s != last {
				first, last = false, s
				emit(s)
			}
		})
	}
}

// runKubeSteps runs steps against a real API server: each step's action,
// then a wait for its report. Reports before it are errors when exact is
// set (the step must cause one report), and allowed otherwise (the step
// does several things that each cause one).
func runKubeSteps[C any](t *testing.T, cs C, w *textWatch, exact bool, ss []kubeStep[C]) {
	t.Helper()
	for _, s := range ss {
		if err := s.do(t.Context(), cs); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if before := w.await(t, s.want, apiWait); exact && len(before) > 0 {
			t.Errorf("%s: reports before %q: %q, want none", s.name, s.want, before)
		}
	}
}

// forbidden runs watch as roost-nobody and checks that it fails at once
// with Forbidden, saying what access it needs.
func forbidden(t *testing.T, rbac string, watch func(ctx context.Context) (reports int, err error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), apiWait)
	defer cancel()
	reports, err := watch(ctx)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), rbac) {
		t.Errorf("watch as roost-nobody = %v, want a Forbidden error saying %q", err, rbac)
	}
	if ctx.Err() != nil {
		t.Errorf("watch as roost-nobody waited for its context (%v) instead of failing at once", ctx.Err())
	}
	if reports != 0 {
		t.Errorf("%d reports, want none", reports)
	}
}

// TestPrivilegedWatchNamespaces runs WatchNamespaces against a real API
// server. Only the namespaces the test creates are checked: the server
// makes its own (default, kube-system, ...) when it likes. Without a
// controller manager, a deleted namespace stays Terminating until the test
// finalizes it, as the namespace controller would once it is empty.
func TestPrivilegedWatchNamespaces(t *testing.T) {
	k := testenv.StartKube(t)

	t.Run("changes", func(t *testing.T) {
		cs := testenv.KubeClient(t, k.Kubeconfig)
		w := startTextWatch(t, "WatchNamespaces", dedupe(func(ctx context.Context, emit func(string)) error {
			return WatchNamespaces(ctx, cs, 0, func(s NamespacesState) {
				maps.DeleteFunc(s.Labels, func(name string, _ map[string]string) bool { return !strings.HasPrefix(name, "roost-") })
				emit(namespacesText(s))
			})
		}))
		if before := w.await(t, "none", apiWait); len(before) > 0 {
			t.Errorf("reports before the first: %q", before)
		}
		finalize := func(name string) func(context.Context, kubernetes.Interface) error {
			return func(ctx context.Context, cs kubernetes.Interface) error {
				ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
				if err == nil {
					ns.Spec.Finalizers = nil
					_, err = cs.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{})
				}
				if err != nil {
					return fmt.Errorf("finalize namespace %s: %w", name, err)
				}
				return nil
			}
		}
		const (
			prod = "roost-prod{kubernetes.io/metadata.name=roost-prod,team=payments}"
			dev  = "roost-dev{kubernetes.io/metadata.name=roost-dev}"
		)
		runKubeSteps(t, k.Client, w, true, []kubeStep[kubernetes.Interface]{
			{name: "created", do: createNamespace(namespace("roost-prod", "team", "payments")), want: prod},
			{name: "another, without labels of its own", do: createNamespace(namespace("roost-dev")), want: dev + " " + prod},
			{
				name: "relabelled",
				do:   editNamespace("roost-dev", func(ns *corev1.Namespace) { ns.Labels["team"] = "web" }),
				want: "roost-dev{kubernetes.io/metadata.name=roost-dev,team=web} " + prod,
			},
			{
				name: "changes that do not matter are not reported, a label is",
				do: steps(
					editNamespace("roost-prod", func(ns *corev1.Namespace) { ns.Annotations = map[string]string{"touched": "1"} }),
					editNamespace("roost-dev", func(ns *corev1.Namespace) { delete(ns.Labels, "team") }),
				),
				want: dev + " " + prod,
			},
			{
				name: "deleted (no change while it terminates), then finalized",
				do:   steps(deleteNamespace("roost-dev"), finalize("roost-dev")),
				want: prod,
			},
		})
		if err := w.stop(t); err != nil {
			t.Errorf("WatchNamespaces returned %v after cancel, want nil", err)
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		cs := testenv.KubeClient(t, k.NobodyKubeconfig)
		forbidden(t, "list and watch on namespaces", func(ctx context.Context) (n int, err error) {
			err = WatchNamespaces(ctx, cs, 0, func(NamespacesState) { n++ })
			return n, err
		})
	})
}

// TestPrivilegedWatchNodes runs WatchNodes against a real API server, with
// no kubelet: the test sets each node's status.addresses with UpdateStatus,
// as a kubelet would.
func TestPrivilegedWatchNodes(t *testing.T) {
	k := testenv.StartKube(t)

	t.Run("changes", func(t *testing.T) {
		cs := testenv.KubeClient(t, k.Kubeconfig)
		w := startTextWatch(t, "WatchNodes", watchNodesText(cs))
		if before := w.await(t, "none", apiWait); len(before) > 0 {
			t.Errorf("reports before the first: %q", before)
		}
		addresses := func(addrs ...string) func(*corev1.Node) {
			return func(n *corev1.Node) { n.Status.Addresses = node(n.Name, "-", addrs...).Status.Addresses }
		}
		runKubeSteps(t, k.Client, w, true, []kubeStep[kubernetes.Interface]{
			{
				name: "created with the annotation",
				do:   createNode(node("roost-node1", " 10.0.254.1, fd00:254::1")),
				want: "roost-node1 10.0.254.1 fd00:254::1",
			},
			{
				name: "status addresses of every type",
				do: editNode("roost-node1", true, addresses("InternalIP=10.0.1.1", "ExternalIP=192.0.2.1", "Hostname=roost-node1",
					"InternalDNS=roost-node1.example", "InternalIP=fd00:1::1")),
				want: "roost-node1 10.0.1.1 10.0.254.1 192.0.2.1 fd00:1::1 fd00:254::1",
			},
		})
		// A node created, then given addresses: two reports.
		runKubeSteps(t, k.Client, w, false, []kubeStep[kubernetes.Interface]{{
			name: "another node, with a bad annotation",
			do: steps(
				createNode(node("roost-node2", "10.0.254.2,10.0.0.0/24")),
				editNode("roost-node2", true, addresses("InternalIP=10.0.2.1")),
			),
			want: "roost-node1 10.0.1.1 10.0.254.1 192.0.2.1 fd00:1::1 fd00:254::1 | roost-node2 10.0.2.1 10.0.254.2 err: " +
				`node roost-node2: annotation roost.io/addresses: "10.0.0.0/24" is not an IP address (want a comma-separated list of IP addresses)`,
		}})
		runKubeSteps(t, k.Client, w, true, []kubeStep[kubernetes.Interface]{
			{
				name: "heartbeats and labels are not reported, a fixed annotation is",
				do: steps(
					editNode("roost-node1", true, func(n *corev1.Node) {
						n.Status.Conditions = []corev1.NodeCondition{{
							Type: corev1.NodeReady, Status: corev1.ConditionTrue,
							LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady",
						}}
					}),
					editNode("roost-node1", false, func(n *corev1.Node) { n.Labels = map[string]string{"example.com/touched": "1"} }),
					editNode("roost-node2", false, annotate("10.0.254.2")),
				),
				want: "roost-node1 10.0.1.1 10.0.254.1 192.0.2.1 fd00:1::1 fd00:254::1 | roost-node2 10.0.2.1 10.0.254.2",
			},
			{
				name: "annotation removed",
				do:   editNode("roost-node1", false, func(n *corev1.Node) { delete(n.Annotations, NodeAddressesAnnotation) }),
				want: "roost-node1 10.0.1.1 192.0.2.1 fd00:1::1 | roost-node2 10.0.2.1 10.0.254.2",
			},
			{name: "deleted", do: deleteNode("roost-node1"), want: "roost-node2 10.0.2.1 10.0.254.2"},
			{name: "last one deleted", do: deleteNode("roost-node2"), want: "none"},
		})
		if err := w.stop(t); err != nil {
			t.Errorf("WatchNodes returned %v after cancel, want nil", err)
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		cs := testenv.KubeClient(t, k.NobodyKubeconfig)
		forbidden(t, "list and watch on nodes", func(ctx context.Context) (n int, err error) {
			err = WatchNodes(ctx, cs, 0, func(NodesState) { n++ })
			return n, err
		})
	})
}

// TestPrivilegedWatchPolicies runs WatchPolicies against a real API server:
// started before the CRDs exist, it reports them missing, and follows them
// once roost's CRDs (crds.Manifests) are installed; the API server keeps
// what roost refuses, and WatchPolicies reports it with the field at fault.
func TestPrivilegedWatchPolicies(t *testing.T) {
	k := testenv.StartKube(t)
	for _, ns := range []string{"prod", "dev"} {
		if err := createNamespace(namespace(ns))(t.Context(), k.Client); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("changes", func(t *testing.T) {
		dyn := dynamicFor(t, k.Kubeconfig)
		w := startTextWatch(t, "WatchPolicies", func(ctx context.Context, emit func(string)) error {
			return watchPolicies(ctx, dyn, 0, 200*time.Millisecond, func(s PoliciesState) { emit(policiesText(s)) })
		})
		if before := w.await(t, texts(missingCCNP, missingCNP), apiWait); len(before) > 0 {
			t.Errorf("reports before the first: %q", before)
		}
		installCRDs(t, dyn)
		// Each resource is found at its own recheck.
		w.await(t, "none", apiWait)

		var (
			db     = objectText(cnpObject("prod", "db", dbSpec))
			db2    = objectText(cnpObject("prod", "db", dbSpec2))
			dbBad  = objectText(cnpObject("prod", "db", l7Spec))
			webBad = objectText(cnpObject("dev", "web", l7Spec))
			host   = objectText(ccnpObject("host", hostSpec))
		)
		if !strings.HasPrefix(webBad, "ERR CiliumNetworkPolicy dev/web: spec.ingress[0].toPorts[0].rules: ") {
			t.Fatalf("the bad policy's error %q does not name it and the field at fault", webBad)
		}
		// Creating objects one by one reports each.
		runKubeSteps(t, dynamic.Interface(dyn), w, false, []kubeStep[dynamic.Interface]{{
			name: "a CNP, a bad CNP in another namespace and a CCNP",
			do: steps(
				createPolicy(cnpObject("prod", "db", dbSpec)),
				createPolicy(cnpObject("dev", "web", l7Spec)),
				createPolicy(ccnpObject("host", hostSpec)),
			),
			want: texts(host, db, webBad),
		}})
		runKubeSteps(t, dynamic.Interface(dyn), w, true, []kubeStep[dynamic.Interface]{
			{name: "edited badly: the last good version stays", do: replacePolicy(cnpObject("prod", "db", l7Spec)), want: texts(host, db, webBad, dbBad)},
			{name: "labels changed, same bad spec: not reported", do: steps(
				replacePolicy(func() *unstructured.Unstructured {
					u := cnpObject("prod", "db", l7Spec)
					u.SetLabels(map[string]string{"touched": "1"})
					return u
				}()),
				replacePolicy(cnpObject("prod", "db", dbSpec2)),
			), want: texts(host, db2, webBad)},
		})
		runKubeSteps(t, dynamic.Interface(dyn), w, false, []kubeStep[dynamic.Interface]{{
			name: "bad CNP and CCNP deleted",
			do:   steps(deletePolicy(policy.KindCNP, "dev", "web"), deletePolicy(policy.KindCCNP, "", "host")),
			want: db2,
		}})
		// Deleting a CRD deletes its objects, then the CRD: the policies
		// go, and the CRD is missing.
		runKubeSteps(t, dynamic.Interface(dyn), w, false, []kubeStep[dynamic.Interface]{{
			name: "CNP CRD deleted",
			do: func(ctx context.Context, dyn dynamic.Interface) error {
				return dyn.Resource(crdResource).Delete(ctx, cnpResource.GroupResource().String(), metav1.DeleteOptions{})
			},
			want: missingCNP,
		}})
		if err := w.stop(t); err != nil {
			t.Errorf("WatchPolicies returned %v after cancel, want nil", err)
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		dyn := dynamicFor(t, k.NobodyKubeconfig)
		forbidden(t, "list and watch on ciliumnetworkpolicies and ciliumclusterwidenetworkpolicies", func(ctx context.Context) (n int, err error) {
			err = WatchPolicies(ctx, dyn, 0, func(PoliciesState) { n++ })
			return n, err
		})
	})
}
