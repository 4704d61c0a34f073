package kubewatch

import (
	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/services"

	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/roost-net/roost/internal/testenv"
)

// apiWait bounds every wait of the tests against a real API server; it
// only matters when a test fails, and several API servers may be running
// at once.
const apiWait = 30 * time.Second

// TestPrivilegedWatchKubernetes runs WatchKubernetes against a real API
// server. Only the test's namespace is checked: the server has its own
// default/kubernetes Service. There is no EndpointSlice controller (no
// controller manager), so the test writes the slices as it would.
func TestPrivilegedWatchKubernetes(t *testing.T) {
	k := testenv.StartKube(t)
	const ns = "roost-svc"
	ctx := t.Context()
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cs := restClients(t, k.Kubeconfig)
	w := startKubeWatch(t, func(ctx context.Context, set func([]services.Service, []string)) error {
		last, first := "", true
		return WatchKubernetes(ctx, cs, 0, func(svcs []services.Service, notes []string) {
			var mine []services.Service
			for _, s := range svcs {
				if s.Namespace == ns {
					mine = append(mine, s)
				}
			}
			var myNotes []string
			for _, n := range notes {
				if strings.Contains(n, " "+ns+"/") {
					myNotes = append(myNotes, n)
				}
			}
			// Report only what changes in the test's namespace.
			if text := kubeText(mine, myNotes); first || text != last {
				first, last = false, text
				set(mine, myNotes)
			}
		})
	})
	await := func(step, want string) {
		t.Helper()
		deadline := time.After(apiWait)
		var seen []string
		for {
			select {
			case got := <-w.reports:
				if got == want {
					return
				}
				seen = append(seen, got)
			case err := <-w.done:
				w.done <- err
				t.Fatalf("%s: WatchKubernetes returned %v; reports: %q", step, err, seen)
			case <-deadline:
				t.Fatalf("%s: no report\n%s\nwithin %v; reports: %q", step, want, apiWait, seen)
			}
		}
	}
	await("start", "services:\n  none\n")

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.50", // in the helper's --service-cluster-ip-range
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}},
			Selector:  map[string]string{"app": "web"},
		},
	}
	if _, err := k.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	await("service without endpoints", `services:
  roost-svc/web
    clusterIP 10.96.0.50:80/TCP http -> none
`)

	node1, node2 := "node1", "node2"
	yes, no := true, false
	portName, port := "http", int32(8080)
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-abc", Labels: map[string]string{
			discoveryv1.LabelServiceName: "web",
			discoveryv1.LabelManagedBy:   "roost-test",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.10"}, NodeName: &node1, Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes, Terminating: &no}},
			{Addresses: []string{"10.244.2.12"}, NodeName: &node2, Conditions: discoveryv1.EndpointConditions{Ready: &no, Serving: &yes, Terminating: &yes}},
		},
	}
	slices := k.Client.DiscoveryV1().EndpointSlices(ns)
	created, err := slices.Create(ctx, sl, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	await("a slice: one ready endpoint, one terminating", `services:
  roost-svc/web
    clusterIP 10.96.0.50:80/TCP http -> 10.244.1.10:8080 on node1, 10.244.2.12:8080 on node2 (not ready, serving, terminating)
`)

	created.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: &no, Serving: &no, Terminating: &no}
	if _, err := slices.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await("the ready endpoint no longer ready", `services:
  roost-svc/web
    clusterIP 10.96.0.50:80/TCP http -> 10.244.1.10:8080 on node1 (not ready, not serving), 10.244.2.12:8080 on node2 (not ready, serving, terminating)
`)

	if err := k.Client.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	await("service deleted", "services:\n  none\n")

	if err := w.stop(t); err != nil {
		t.Errorf("WatchKubernetes returned %v after cancel, want nil", err)
	}

	t.Run("forbidden", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), apiWait)
		defer cancel()
		reports := 0
		err := WatchKubernetes(ctx, restClients(t, k.NobodyKubeconfig), 0, func([]services.Service, []string) { reports++ })
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "list and watch on services and on endpointslices") {
			t.Errorf("WatchKubernetes as roost-nobody = %v, want a Forbidden error saying what access it needs", err)
		}
		if ctx.Err() != nil {
			t.Errorf("waited for its context (%v) instead of failing at once", ctx.Err())
		}
		if reports != 0 {
			t.Errorf("%d reports, want none", reports)
		}
	})
}

// restClients are NewClients of a kubeconfig: what roost-loader and
// roost-agent read through.
func restClients(t *testing.T, kubeconfig string) Clients {
	t.Helper()
	cfg, err := k8swatch.NewConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
