package endpoints

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/roost-net/roost/internal/policy"
)

// timeout bounds every wait for something that must happen; it is generous
// because it only matters when a test fails.
const timeout = 10 * time.Second

// pod is a running pod; opts change it.
func pod(ns, name, node string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func ips(ss ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.PodIPs = nil
		for _, s := range ss {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: s})
		}
		if len(ss) > 0 {
			p.Status.PodIP = ss[0]
		}
	}
}

func labels(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Labels = lbl(kv...) }
}

func phase(ph corev1.PodPhase) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}

func hostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }

func serviceAccount(sa string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.ServiceAccountName = sa }
}

// text renders a state for comparison: one "name@node ips labels ports"
// per workload, joined by " | ", with " err: ..." when Err is set. The
// labels are those Derive gives the workload (in cluster "c"), without the
// namespace and cluster labels, which must be the pod's namespace and "c".
func (s PodsState) text() string {
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
		ns, _, _ := strings.Cut(w.Name, "/")
		labels := Derive([]Workload{w}, nil, "c")[0].Labels
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			switch {
			case k == policy.NamespaceLabel && labels[k] == ns && w.Namespace == ns,
				k == policy.ClusterLabel && labels[k] == "c",
				k == policy.NamespaceLabelsPrefix+NamespaceNameLabel && labels[k] == ns:
				continue
			}
			fmt.Fprintf(&b, " %s=%s", k, labels[k])
		}
		if labels[policy.NamespaceLabel] != ns {
			b.WriteString(" NAMESPACE LABEL MISSING")
		}
		for _, name := range slices.Sorted(maps.Keys(w.NamedPorts)) {
			fmt.Fprintf(&b, " %s:%d/%s", name, w.NamedPorts[name].Port, w.NamedPorts[name].Protocol)
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

func TestStateOf(t *testing.T) {
	tests := []struct {
		name string
		pods []*corev1.Pod
		want string
	}{
		{name: "no pods", want: "none"},
		{
			name: "pods here and on other nodes, sorted by name",
			pods: []*corev1.Pod{
				pod("prod", "web-1", "node2", ips("10.244.2.20"), labels("app", "web")),
				pod("prod", "db-0", "node1", ips("10.244.1.10"), labels("app", "protected-db")),
			},
			want: "prod/db-0@node1 10.244.1.10 app=protected-db | prod/web-1@node2 10.244.2.20 app=web",
		},
		{name: "host network", pods: []*corev1.Pod{pod("kube-system", "proxy", "node1", ips("10.0.1.2"), hostNetwork)}, want: "none"},
		{name: "no address yet", pods: []*corev1.Pod{pod("prod", "web", "node1", phase(corev1.PodPending))}, want: "none"},
		{name: "pending with an address", pods: []*corev1.Pod{pod("prod", "web", "node1", phase(corev1.PodPending), ips("10.244.1.5"))}, want: "prod/web@node1 10.244.1.5"},
		{name: "succeeded", pods: []*corev1.Pod{pod("batch", "job", "node1", ips("10.244.1.6"), phase(corev1.PodSucceeded))}, want: "none"},
		{name: "failed", pods: []*corev1.Pod{pod("batch", "job", "node1", ips("10.244.1.6"), phase(corev1.PodFailed))}, want: "none"},
		{name: "unknown phase kept", pods: []*corev1.Pod{pod("prod", "web", "node1", ips("10.244.1.6"), phase(corev1.PodUnknown))}, want: "prod/web@node1 10.244.1.6"},
		{name: "dual stack, order kept", pods: []*corev1.Pod{pod("prod", "web", "node1", ips("fd00:244:1::5", "10.244.1.5"))}, want: "prod/web@node1 fd00:244:1::5 10.244.1.5"},
		{
			name: "podIP when podIPs is empty",
			pods: []*corev1.Pod{pod("prod", "web", "node1", func(p *corev1.Pod) { p.Status.PodIP = "10.244.1.7" })},
			want: "prod/web@node1 10.244.1.7",
		},
		{name: "repeated address once", pods: []*corev1.Pod{pod("prod", "web", "node1", ips("10.244.1.5", "10.244.1.5"))}, want: "prod/web@node1 10.244.1.5"},
		{
			name: "named container ports, a later one winning, unnamed and bad ones skipped",
			pods: []*corev1.Pod{pod("prod", "web", "node1", ips("10.244.1.5"), func(p *corev1.Pod) {
				p.Spec.Containers = []corev1.Container{
					{Name: "a", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}, {ContainerPort: 9999}, {Name: "DNS", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
					{Name: "b", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "not_a_name", ContainerPort: 1}, {Name: "sig", ContainerPort: 2905, Protocol: corev1.ProtocolSCTP}}},
				}
			})},
			want: "prod/web@node1 10.244.1.5 dns:53/UDP http:8080/TCP sig:2905/SCTP",
		},
		{name: "service account label", pods: []*corev1.Pod{pod("prod", "web", "node1", ips("10.244.1.5"), serviceAccount("web-sa"))}, want: "prod/web@node1 10.244.1.5 io.cilium.k8s.policy.serviceaccount=web-sa"},
		{
			name: "a pod cannot claim another namespace or derived labels",
			pods: []*corev1.Pod{pod("guest", "evil", "node1", ips("10.244.1.66"), serviceAccount("guest"), labels(
				"app", "evil",
				policy.NamespaceLabel, "prod",
				"io.cilium.k8s.namespace.labels.team", "payments",
				policy.ServiceAccountLabel, "admin",
				"io.cilium.k8s.policy.cluster", "other",
			))},
			want: "guest/evil@node1 10.244.1.66 app=evil io.cilium.k8s.policy.serviceaccount=guest",
		},
		{
			name: "bad address left out and reported",
			pods: []*corev1.Pod{
				pod("prod", "web", "node1", ips("10.244.1.5", "bogus")),
				pod("prod", "broken", "node1", ips("nope")),
			},
			want: `prod/web@node1 10.244.1.5 err: pod prod/broken: status.podIPs[0]: "nope" is not an IP address; pod prod/web: status.podIPs[1]: "bogus" is not an IP address`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stateOf(tt.pods).text(); got != tt.want {
				t.Errorf("state = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

func TestStripPodKeepsTheState(t *testing.T) {
	full := pod("prod", "web", "node1", ips("10.244.1.5", "fd00::5"), labels("app", "web"), serviceAccount("sa"), func(p *corev1.Pod) {
		p.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "nginx"}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	})
	obj, err := stripPod(full)
	if err != nil {
		t.Fatal(err)
	}
	stripped := obj.(*corev1.Pod)
	if got, want := stateOf([]*corev1.Pod{stripped}).text(), stateOf([]*corev1.Pod{full}).text(); got != want {
		t.Errorf("stripped state = %q, want %q", got, want)
	}
	if stripped.Annotations != nil || stripped.Spec.Containers != nil || stripped.Status.Conditions != nil {
		t.Errorf("stripPod kept fields it does not need: %+v", stripped)
	}
	if full.Annotations == nil {
		t.Error("stripPod changed its input")
	}
	if n := &(corev1.Node{}); func() any { o, _ := stripPod(n); return o }() != any(n) {
		t.Error("stripPod changed a non-pod")
	}
}

// watcher runs WatchPods in the background for one test.
type watcher struct {
	states chan PodsState
	done   chan error
	cancel context.CancelFunc
}

func startWatch(t *testing.T, cs kubernetes.Interface) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{states: make(chan PodsState, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- WatchPods(ctx, cs, 0, func(s PodsState) { w.states <- s })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(timeout):
			t.Error("WatchPods did not return after cancel")
		}
	})
	return w
}

// next waits for the next report.
func (w *watcher) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-w.states:
		return s.text()
	case err := <-w.done:
		t.Fatalf("WatchPods returned %v, want a report", err)
	case <-time.After(timeout):
		t.Fatalf("no report within %v", timeout)
	}
	return ""
}

// stop cancels the watch and returns what WatchPods returned.
func (w *watcher) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("WatchPods did not return within %v of cancel", timeout)
	}
	return nil
}

type action func(ctx context.Context, cs kubernetes.Interface) error

type step struct {
	name string
	do   action
	want string // the next report
}

func create(p *corev1.Pod) action {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		_, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		return err
	}
}

func update(p *corev1.Pod) action {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		_, err := cs.CoreV1().Pods(p.Namespace).Update(ctx, p, metav1.UpdateOptions{})
		return err
	}
}

func remove(ns, name string) action {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		return cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})
	}
}

// all runs several actions as one step.
func all(as ...action) action {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		for _, a := range as {
			if err := a(ctx, cs); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestWatchPods(t *testing.T) {
	db := func(opts ...func(*corev1.Pod)) *corev1.Pod {
		return pod("prod", "db", "node1", append([]func(*corev1.Pod){ips("10.244.1.10"), labels("app", "protected-db")}, opts...)...)
	}
	tests := []struct {
		name    string
		objects []runtime.Object
		first   string // the first report
		steps   []step
	}{
		{
			name:  "nothing at start",
			first: "none",
			steps: []step{{name: "add", do: create(db()), want: "prod/db@node1 10.244.1.10 app=protected-db"}},
		},
		{
			name: "pods at start, skipped ones left out",
			objects: []runtime.Object{
				db(),
				pod("prod", "employee2", "node2", ips("10.244.2.11"), labels("app", "employee")),
				pod("kube-system", "kube-proxy", "node1", ips("10.0.1.2"), hostNetwork),
				pod("prod", "starting", "node1", phase(corev1.PodPending)),
				pod("batch", "done", "node2", ips("10.244.2.99"), phase(corev1.PodSucceeded)),
			},
			first: "prod/db@node1 10.244.1.10 app=protected-db | prod/employee2@node2 10.244.2.11 app=employee",
		},
		{
			name:    "labels change",
			objects: []runtime.Object{db()},
			first:   "prod/db@node1 10.244.1.10 app=protected-db",
			steps: []step{
				{name: "relabel", do: update(db(labels("app", "db", "tier", "data"))), want: "prod/db@node1 10.244.1.10 app=db tier=data"},
			},
		},
		{
			name:    "pod gets its address, then terminates",
			objects: []runtime.Object{pod("batch", "job", "node2", phase(corev1.PodPending))},
			first:   "none",
			steps: []step{
				{name: "running", do: update(pod("batch", "job", "node2", ips("10.244.2.50"))), want: "batch/job@node2 10.244.2.50"},
				{name: "succeeded", do: update(pod("batch", "job", "node2", ips("10.244.2.50"), phase(corev1.PodSucceeded))), want: "none"},
			},
		},
		{
			name:    "pod deleted",
			objects: []runtime.Object{db(), pod("prod", "web", "node2", ips("10.244.2.20"))},
			first:   "prod/db@node1 10.244.1.10 app=protected-db | prod/web@node2 10.244.2.20",
			steps: []step{
				{name: "delete web", do: remove("prod", "web"), want: "prod/db@node1 10.244.1.10 app=protected-db"},
				{name: "delete db", do: remove("prod", "db"), want: "none"},
			},
		},
		{
			name:    "changes that do not matter are not reported",
			objects: []runtime.Object{db(), pod("kube-system", "kube-proxy", "node1", ips("10.0.1.2"), hostNetwork)},
			first:   "prod/db@node1 10.244.1.10 app=protected-db",
			steps: []step{{
				name: "irrelevant changes, then a relevant one",
				do: all(
					update(db(func(p *corev1.Pod) { p.Annotations = map[string]string{"touched": "1"} })),
					update(db(func(p *corev1.Pod) {
						p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
					})),
					update(pod("kube-system", "kube-proxy", "node1", ips("10.0.1.2"), hostNetwork, labels("touched", "1"))),
					create(pod("kube-system", "coredns-host", "node2", ips("10.0.3.2"), hostNetwork)),
					create(pod("batch", "old", "node2", ips("10.244.2.98"), phase(corev1.PodFailed))),
					remove("kube-system", "kube-proxy"),
					update(db(ips("10.244.1.12"))),
				),
				// Had anything before the last update been
				// reported, it would come first.
				want: "prod/db@node1 10.244.1.12 app=protected-db",
			}},
		},
		{
			name:    "pod on another node",
			objects: []runtime.Object{db()},
			first:   "prod/db@node1 10.244.1.10 app=protected-db",
			steps: []step{
				{name: "add remote", do: create(pod("prod", "guest", "node2", ips("10.244.2.10"), labels("app", "guest"))), want: "prod/db@node1 10.244.1.10 app=protected-db | prod/guest@node2 10.244.2.10 app=guest"},
			},
		},
		{
			name:    "pod becomes host network",
			objects: []runtime.Object{db()},
			first:   "prod/db@node1 10.244.1.10 app=protected-db",
			steps:   []step{{name: "host network", do: update(db(hostNetwork)), want: "none"}},
		},
		{
			name:    "bad address reported, then fixed",
			objects: []runtime.Object{db(ips("10.244.1.10", "bogus"))},
			first:   `prod/db@node1 10.244.1.10 app=protected-db err: pod prod/db: status.podIPs[1]: "bogus" is not an IP address`,
			steps:   []step{{name: "fixed", do: update(db(ips("10.244.1.10", "fd00:244:1::10"))), want: "prod/db@node1 10.244.1.10 fd00:244:1::10 app=protected-db"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objects...)
			w := startWatch(t, cs)
			if got := w.next(t); got != tt.first {
				t.Fatalf("first report = %q\nwant %q", got, tt.first)
			}
			ctx := context.Background()
			for _, s := range tt.steps {
				if err := s.do(ctx, cs); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if got := w.next(t); got != s.want {
					t.Fatalf("%s: report = %q\nwant %q", s.name, got, s.want)
				}
			}
			if err := w.stop(t); err != nil {
				t.Errorf("WatchPods returned %v after cancel, want nil", err)
			}
			if n := len(w.states); n != 0 {
				t.Errorf("%d unexpected reports left, first %q", n, (<-w.states).text())
			}
		})
	}
}

// TestWatchPodsAsksForLivePodsOnly checks the list and watch ask the server
// to leave out host-network and terminated pods.
func TestWatchPodsAsksForLivePodsOnly(t *testing.T) {
	cs := fake.NewClientset()
	var (
		mu        sync.Mutex
		selectors []string
	)
	cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		selectors = append(selectors, a.(k8stesting.ListAction).GetListRestrictions().Fields.String())
		return false, nil, nil
	})
	w := startWatch(t, cs)
	w.next(t)
	mu.Lock()
	defer mu.Unlock()
	if len(selectors) == 0 {
		t.Fatal("no list")
	}
	for _, want := range []string{"spec.hostNetwork=false", "status.phase!=Succeeded", "status.phase!=Failed"} {
		if !strings.Contains(selectors[0], want) {
			t.Errorf("field selector %q does not contain %q", selectors[0], want)
		}
	}
}

// blockList makes the clientset's pod lists wait until the returned release
// function is called; listing is closed when the first list starts.
func blockList(t *testing.T, cs *fake.Clientset) (listing <-chan struct{}, release func()) {
	started := make(chan struct{})
	gate := make(chan struct{})
	var startOnce, releaseOnce sync.Once
	cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		startOnce.Do(func() { close(started) })
		<-gate
		return false, nil, nil // on to the default reactor
	})
	release = func() { releaseOnce.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return started, release
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("%s did not happen within %v", what, timeout)
	}
}

func TestWatchPodsNothingBeforeSync(t *testing.T) {
	cs := fake.NewClientset(pod("prod", "db", "node1", ips("10.244.1.10")))
	listing, release := blockList(t, cs)
	w := startWatch(t, cs)
	waitClosed(t, listing, "the first list")
	// The informer cannot have synced: its list has not returned.
	if n := len(w.states); n != 0 {
		t.Fatalf("%d reports before the informer synced, first %q", n, (<-w.states).text())
	}
	release()
	// A report made before the sync would have said "none" and come first.
	if got, want := w.next(t), "prod/db@node1 10.244.1.10"; got != want {
		t.Errorf("first report = %q, want %q", got, want)
	}
}

func TestWatchPodsStopsBeforeSync(t *testing.T) {
	cs := fake.NewClientset()
	listing, _ := blockList(t, cs)
	w := startWatch(t, cs)
	waitClosed(t, listing, "the first list")
	err := w.stop(t)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "watch pods: stopped before the first list completed") {
		t.Errorf("WatchPods = %v, want a not-synced error wrapping context.Canceled", err)
	}
	if n := len(w.states); n != 0 {
		t.Errorf("%d reports, want none", n)
	}
}

func TestWatchPodsRetriesThenStops(t *testing.T) {
	cs := fake.NewClientset()
	relisted := make(chan struct{})
	var calls int
	var once sync.Once
	cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls++ // the fake runs reactors one at a time
		if calls >= 2 {
			once.Do(func() { close(relisted) })
		}
		return true, nil, apierrors.NewInternalError(errors.New("etcd is sad"))
	})
	w := startWatch(t, cs)
	// By the second list, the error of the first has been handled.
	waitClosed(t, relisted, "a second list after a failed one")
	err := w.stop(t)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "etcd is sad") {
		t.Errorf("WatchPods = %v, want a not-synced error with the last list error", err)
	}
}

func TestWatchPodsForbidden(t *testing.T) {
	cs := fake.NewClientset(pod("prod", "db", "node1", ips("10.244.1.10")))
	cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("RBAC says no"))
	})
	w := startWatch(t, cs)
	select {
	case err := <-w.done:
		w.done <- err
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "watch pods") || !strings.Contains(err.Error(), "list and watch on pods in all namespaces") {
			t.Errorf("WatchPods = %v, want a forbidden error saying what is needed", err)
		}
	case s := <-w.states:
		t.Fatalf("report %q, want WatchPods to fail", s.text())
	case <-time.After(timeout):
		t.Fatalf("WatchPods did not give up on Forbidden within %v", timeout)
	}
}

func TestPodsStateEqual(t *testing.T) {
	ep := Workload{Name: "prod/db", Namespace: "prod", IPs: addrs("10.244.1.10"), Labels: lbl("app", "db")}
	other := ep
	other.Labels = lbl("app", "web")
	state := func(eps ...Workload) PodsState {
		s := PodsState{Synced: true, Nodes: map[string]string{}}
		for _, e := range eps {
			s.Workloads = append(s.Workloads, e)
			s.Nodes[e.Name] = "node1"
		}
		return s
	}
	moved := state(ep)
	moved.Nodes["prod/db"] = "node2"
	tests := []struct {
		name string
		a, b PodsState
		want bool
	}{
		{name: "zero", want: true},
		{name: "synced differs", a: PodsState{Synced: true}, want: false},
		{name: "nil and empty nodes", a: PodsState{Synced: true}, b: PodsState{Synced: true, Nodes: map[string]string{}}, want: true},
		{name: "same endpoints", a: state(ep), b: state(ep), want: true},
		{name: "labels differ", a: state(ep), b: state(other), want: false},
		{name: "node differs", a: state(ep), b: moved, want: false},
		{name: "error differs", a: PodsState{Err: errors.New("x")}, b: PodsState{Err: errors.New("y")}, want: false},
		{name: "same error text", a: PodsState{Err: errors.New("x")}, b: PodsState{Err: errors.New("x")}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}
