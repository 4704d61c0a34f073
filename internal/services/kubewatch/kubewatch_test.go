package kubewatch

import (
	"github.com/roost-net/roost/internal/services"

	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// reportWait bounds every wait for a report; it only matters when a test
// fails.
const reportWait = 10 * time.Second

// kubeWatch runs WatchKubernetes for a test and keeps its reports as text:
// Describe, then "note: ..." lines.
type kubeWatch struct {
	reports chan string
	done    chan error
	cancel  context.CancelFunc
}

func startKubeWatch(t *testing.T, watch func(ctx context.Context, set func([]services.Service, []string)) error) *kubeWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &kubeWatch{reports: make(chan string, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- watch(ctx, func(svcs []services.Service, notes []string) { w.reports <- kubeText(svcs, notes) })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.done:
			w.done <- err
		case <-time.After(reportWait):
			t.Errorf("WatchKubernetes did not return after cancel")
		}
	})
	return w
}

func kubeText(svcs []services.Service, notes []string) string {
	out := services.Describe(svcs)
	for _, n := range notes {
		out += "note: " + n + "\n"
	}
	return out
}

// next waits for the next report.
func (w *kubeWatch) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-w.reports:
		return s
	case err := <-w.done:
		w.done <- err
		t.Fatalf("WatchKubernetes returned %v, want a report", err)
	case <-time.After(reportWait):
		t.Fatalf("no report within %v", reportWait)
	}
	return ""
}

// stop cancels the watch and returns what it returned; reports nobody
// waited for fail the test.
func (w *kubeWatch) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	var err error
	select {
	case err = <-w.done:
		w.done <- err
	case <-time.After(reportWait):
		t.Fatalf("WatchKubernetes did not return after cancel")
	}
	close(w.reports)
	for s := range w.reports {
		t.Errorf("report nobody waited for: %q", s)
	}
	return err
}

func TestWatchKubernetes(t *testing.T) {
	v4 := discoveryv1.AddressTypeIPv4
	svc := kubeService("web", []string{"10.96.0.10"}, "http:80->web")
	cs := fake.NewClientset(svc, slice("web-a", "web", v4, []string{"http=8080"}, endpoint("10.244.1.1", "node1")))
	w := startKubeWatch(t, func(ctx context.Context, set func([]services.Service, []string)) error {
		return WatchKubernetes(ctx, clientsOf(cs), 0, set)
	})
	ctx := t.Context()
	slices := cs.DiscoveryV1().EndpointSlices("default")

	if got, want := w.next(t), `services:
  default/web
    clusterIP 10.96.0.10:80/TCP http -> 10.244.1.1:8080 on node1
`; got != want {
		t.Fatalf("first report:\n%s\nwant:\n%s", got, want)
	}

	// A second slice.
	if _, err := slices.Create(ctx, slice("web-b", "web", v4, []string{"http=8081"}, endpoint("10.244.2.2", "node2", "!ready", "terminating")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := w.next(t), `services:
  default/web
    clusterIP 10.96.0.10:80/TCP http -> 10.244.1.1:8080 on node1, 10.244.2.2:8081 on node2 (not ready, serving, terminating)
`; got != want {
		t.Fatalf("after a second slice:\n%s\nwant:\n%s", got, want)
	}

	// A change that does not change the services is not reported; the
	// change after it is.
	a, err := slices.Get(ctx, "web-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Annotations = map[string]string{"touched": "1"}
	if _, err := slices.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := slices.Delete(ctx, "web-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := w.next(t), `services:
  default/web
    clusterIP 10.96.0.10:80/TCP http -> 10.244.1.1:8080 on node1
`; got != want {
		t.Fatalf("after a deleted slice:\n%s\nwant:\n%s", got, want)
	}

	// A new external IP.
	svc.Spec.ExternalIPs = []string{"192.0.2.10"}
	if _, err := cs.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := w.next(t), `services:
  default/web
    clusterIP 10.96.0.10:80/TCP http -> 10.244.1.1:8080 on node1
    externalIP 192.0.2.10:80/TCP http -> 10.244.1.1:8080 on node1
`; got != want {
		t.Fatalf("after an external IP:\n%s\nwant:\n%s", got, want)
	}

	if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := w.next(t), "services:\n  none\n"; got != want {
		t.Fatalf("after the service's deletion:\n%s\nwant:\n%s", got, want)
	}
	if err := w.stop(t); err != nil {
		t.Errorf("WatchKubernetes returned %v after cancel, want nil", err)
	}
}

func TestWatchKubernetesNothing(t *testing.T) {
	cs := fake.NewClientset()
	w := startKubeWatch(t, func(ctx context.Context, set func([]services.Service, []string)) error {
		return WatchKubernetes(ctx, clientsOf(cs), 0, set)
	})
	if got := w.next(t); got != "services:\n  none\n" {
		t.Errorf("first report = %q, want no services", got)
	}
	if err := w.stop(t); err != nil {
		t.Errorf("WatchKubernetes returned %v after cancel, want nil", err)
	}
}

// TestWatchKubernetesForbidden checks that a missing RBAC rule on either
// resource ends the watch at once, saying what access it needs.
func TestWatchKubernetesForbidden(t *testing.T) {
	for _, resource := range []string{"services", "endpointslices"} {
		t.Run(resource, func(t *testing.T) {
			cs := fake.NewClientset()
			cs.PrependReactor("list", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "", nil)
			})
			ctx, cancel := context.WithTimeout(t.Context(), reportWait)
			defer cancel()
			reports := 0
			err := WatchKubernetes(ctx, clientsOf(cs), 0, func([]services.Service, []string) { reports++ })
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "list and watch on services and on endpointslices") {
				t.Errorf("WatchKubernetes = %v, want a Forbidden error saying what access it needs", err)
			}
			if ctx.Err() != nil {
				t.Errorf("waited for its context (%v) instead of failing at once", ctx.Err())
			}
			if reports != 0 {
				t.Errorf("%d reports, want none", reports)
			}
		})
	}
}

// TestWatchKubernetesCancelledBeforeSync checks that a watch whose
// context ends before the first list says so.
func TestWatchKubernetesCancelledBeforeSync(t *testing.T) {
	cs := fake.NewClientset()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	// The list answers only once the watch's context has ended. It must
	// answer then: the fake clientset holds one lock while a reactor
	// runs, so a list blocked for good would also block the services
	// informer's watch, and WatchKubernetes, which waits for both
	// informers to stop, would never return (it did, once in CI).
	cs.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-ctx.Done()
		return true, &discoveryv1.EndpointSliceList{}, nil
	})
	err := WatchKubernetes(ctx, clientsOf(cs), 0, func([]services.Service, []string) { t.Error("a report before the first sync") })
	if err == nil || !strings.Contains(err.Error(), "stopped before the first list") {
		t.Errorf("WatchKubernetes = %v, want an error saying it stopped before the first list", err)
	}
}

// TestStripKubeKeepsTheServices checks that the informers' transform
// leaves what FromKubernetes reads.
func TestStripKubeKeepsTheServices(t *testing.T) {
	svc := kubeService("web", []string{"10.96.0.10"}, "80->80")
	svc.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 1000)}
	svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	sl := slice("web-a", "web", discoveryv1.AddressTypeIPv4, []string{"80"}, endpoint("10.244.1.1", ""))
	sl.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}}
	before := kubeText(FromKubernetes([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{sl}))
	for _, obj := range []any{svc, sl} {
		if _, err := stripKube(obj); err != nil {
			t.Fatal(err)
		}
	}
	if svc.Annotations != nil || svc.ManagedFields != nil || sl.ManagedFields != nil {
		t.Error("stripKube kept managed fields or annotations")
	}
	if after := kubeText(FromKubernetes([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{sl})); after != before {
		t.Errorf("after stripKube:\n%s\nbefore:\n%s", after, before)
	}
}
