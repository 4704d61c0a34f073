package endpoints

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/roost-net/roost/internal/testenv"
)

// kubeTimeout bounds every wait of the tests against a real API server. It
// is generous, as it only matters when a test fails, and two API servers may
// be running at once.
const kubeTimeout = 30 * time.Second

// TestPrivilegedWatchPods runs WatchPods against a real API server. There is
// no scheduler or kubelet: the test sets spec.nodeName on create and the
// status with UpdateStatus, as a kubelet would. The server refuses some of
// what the fake clientset lets the unit tests do: podIPs that are not IP
// addresses, and changes to spec.hostNetwork.
func TestPrivilegedWatchPods(t *testing.T) {
	k := testenv.StartKube(t)
	for _, ns := range []string{"prod", "batch"} {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if _, err := k.Client.CoreV1().Namespaces().Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}

	t.Run("changes", func(t *testing.T) {
		cs := testenv.KubeClient(t, k.Kubeconfig)
		w := startKubeWatch(t, cs)
		if before := w.await(t, "none"); len(before) > 0 {
			t.Errorf("reports before the first: %q", before)
		}
		const (
			db      = "prod/db@node1 10.244.1.10 fd00:244:1::10 sa=db-sa app=protected-db"
			relabel = "prod/db@node1 10.244.1.10 fd00:244:1::10 sa=db-sa app=db tier=data"
			job     = "batch/job@node2 10.244.2.50"
			web     = "prod/web@node2 10.244.2.20 app=web"
		)
		steps := []struct {
			name string
			do   []kubeAction // in order
			want string       // the next report
		}{
			{
				name: "pod created, then given its addresses",
				do: []kubeAction{
					createPod(kubePod("prod", "db", "node1", func(p *corev1.Pod) {
						p.Labels = map[string]string{"app": "protected-db"}
						p.Spec.ServiceAccountName = "db-sa"
					})),
					editStatus("prod", "db", running("10.244.1.10", "fd00:244:1::10")),
				},
				want: db,
			},
			{
				name: "host network and succeeded pods left out, pod in another namespace added",
				do: []kubeAction{
					createPod(kubePod("kube-system", "proxy", "node1", func(p *corev1.Pod) { p.Spec.HostNetwork = true })),
					editStatus("kube-system", "proxy", running("10.0.1.2")),
					createPod(kubePod("batch", "done", "node2")),
					editStatus("batch", "done", func(p *corev1.Pod) {
						running("10.244.2.99")(p)
						p.Status.Phase = corev1.PodSucceeded
					}),
					createPod(kubePod("batch", "job", "node2")),
					editStatus("batch", "job", running("10.244.2.50")),
				},
				want: job + " | " + db,
			},
			{
				name: "labels changed",
				do: []kubeAction{editPod("prod", "db", func(p *corev1.Pod) {
					p.Labels = map[string]string{"app": "db", "tier": "data"}
				})},
				want: job + " | " + relabel,
			},
			{
				name: "changes that do not matter or are refused are not reported, a pod that succeeds is",
				do: []kubeAction{
					refused(editStatus("prod", "db", running("10.244.1.10", "bogus"))),
					refused(editPod("prod", "db", func(p *corev1.Pod) { p.Spec.HostNetwork = true })),
					editPod("prod", "db", func(p *corev1.Pod) { p.Annotations = map[string]string{"touched": "1"} }),
					editStatus("prod", "db", func(p *corev1.Pod) {
						p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
					}),
					editPod("kube-system", "proxy", func(p *corev1.Pod) { p.Labels = map[string]string{"touched": "1"} }),
					deletePod("batch", "done", nil),
					editStatus("batch", "job", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
				},
				want: relabel,
			},
			{
				name: "another pod",
				do: []kubeAction{
					createPod(kubePod("prod", "web", "node2", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "web"} })),
					editStatus("prod", "web", running("10.244.2.20")),
				},
				want: relabel + " | " + web,
			},
			{
				// With no kubelet to finish a graceful deletion, the
				// pod stays, terminating, and still an endpoint.
				name: "graceful deletion keeps the pod, immediate deletion removes it",
				do:   []kubeAction{deletePod("prod", "web", nil), deletePod("prod", "db", new(int64))},
				want: web,
			},
			{name: "last pod deleted", do: []kubeAction{deletePod("prod", "web", new(int64))}, want: "none"},
		}
		for _, s := range steps {
			for _, do := range s.do {
				if err := do(t.Context(), k.Client); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			}
			if before := w.await(t, s.want); len(before) > 0 {
				t.Errorf("%s: reports before %q: %q, want none", s.name, s.want, before)
			}
		}
		if err := w.stop(t); err != nil {
			t.Errorf("WatchPods returned %v after cancel, want nil", err)
		}
		if n := len(w.states); n != 0 {
			t.Errorf("%d unexpected reports left, first %q", n, kubeText(<-w.states))
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		cs := testenv.KubeClient(t, k.NobodyKubeconfig)
		ctx, cancel := context.WithTimeout(t.Context(), kubeTimeout)
		defer cancel()
		var reports int
		err := WatchPods(ctx, cs, 0, func(PodsState) { reports++ })
		if !apierrors.IsForbidden(err) {
			t.Errorf("WatchPods as roost-nobody = %v, want a Forbidden error", err)
		}
		if reports != 0 {
			t.Errorf("%d reports, want none", reports)
		}
	})
}

// kubeText renders what these tests check of a state: "none", or one
// "namespace/name@node ips sa=serviceaccount labels" per workload, joined by
// " | ", with " err: ..." when Err is set. It is kept apart from
// pods_test.go's text so that fields PodsState gains change neither these
// expectations nor this file; add them here when a test here checks them.
func kubeText(s PodsState) string {
	if !s.Synced {
		return "unsynced"
	}
	var parts []string
	for _, w := range s.Workloads {
		var b strings.Builder
		fmt.Fprintf(&b, "%s@%s", w.Name, s.Nodes[w.Name])
		for _, ip := range w.IPs {
			b.WriteString(" " + ip.String())
		}
		if ns, _, _ := strings.Cut(w.Name, "/"); w.Namespace != ns {
			fmt.Fprintf(&b, " NAMESPACE %q", w.Namespace)
		}
		if w.ServiceAccount != "" {
			b.WriteString(" sa=" + w.ServiceAccount)
		}
		for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
			fmt.Fprintf(&b, " %s=%s", k, w.Labels[k])
		}
		parts = append(parts, b.String())
	}
	out := strings.Join(parts, " | ")
	if out == "" {
		out = "none"
	}
	if s.Err != nil {
		out += " err: " + strings.ReplaceAll(s.Err.Error(), "\n", "; ")
	}
	return out
}

// kubeWatch runs WatchPods in the background for one test.
type kubeWatch struct {
	states chan PodsState
	done   chan error
	cancel context.CancelFunc
}

// startKubeWatch starts WatchPods on cs; cleanup stops it.
func startKubeWatch(t *testing.T, cs kubernetes.Interface) *kubeWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &kubeWatch{states: make(chan PodsState, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- WatchPods(ctx, cs, 0, func(s PodsState) { w.states <- s })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(kubeTimeout):
			t.Error("WatchPods did not return after cancel")
		}
	})
	return w
}

// await waits, at most kubeTimeout, until w reports want, and returns the
// reports that came before it. If want does not come, it fails the test with
// every report seen, the last one last.
func (w *kubeWatch) await(t *testing.T, want string) (before []string) {
	t.Helper()
	deadline := time.After(kubeTimeout)
	for {
		select {
		case s := <-w.states:
			if got := kubeText(s); got != want {
				before = append(before, got)
				continue
			}
			return before
		case err := <-w.done:
			w.done <- err // for the cleanup
			t.Fatalf("WatchPods returned %v while waiting for %q; reports: %q", err, want, before)
		case <-deadline:
			t.Fatalf("no report %q within %v; reports: %q", want, kubeTimeout, before)
		}
	}
}

// stop cancels the watch and returns what WatchPods returned.
func (w *kubeWatch) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(kubeTimeout):
		t.Fatalf("WatchPods did not return within %v of cancel", kubeTimeout)
	}
	return nil
}

// kubeAction changes something through the API server.
type kubeAction func(ctx context.Context, cs kubernetes.Interface) error

// kubePod returns a pod bound to node, as the API server accepts it: with a
// container (never run) and no status, which create ignores anyway.
func kubePod(ns, name, node string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "main", Image: "registry.invalid/never-pulled"}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// running sets the status a kubelet reports for a running pod with ips.
func running(ips ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP, p.Status.PodIPs = ips[0], nil
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
}

func createPod(p *corev1.Pod) kubeAction {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		if _, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		return nil
	}
}

// editPod changes a pod with f: a get, then an update.
func editPod(ns, name string, f func(*corev1.Pod)) kubeAction {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			f(p)
			_, err = cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("update pod %s/%s: %w", ns, name, err)
		}
		return nil
	}
}

// editStatus changes a pod's status with f: a get, then an UpdateStatus.
func editStatus(ns, name string, f func(*corev1.Pod)) kubeAction {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			f(p)
			_, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("update status of pod %s/%s: %w", ns, name, err)
		}
		return nil
	}
}

// refused runs do and expects the API server to refuse it as invalid.
func refused(do kubeAction) kubeAction {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		if err := do(ctx, cs); !apierrors.IsInvalid(err) {
			return fmt.Errorf("got %v, want the change refused as invalid", err)
		}
		return nil
	}
}

// deletePod deletes a pod with the given grace period in seconds (nil: the
// pod's own, which for a pod on a node waits for its kubelet).
func deletePod(ns, name string, grace *int64) kubeAction {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: grace}); err != nil {
			return fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
		}
		return nil
	}
}
