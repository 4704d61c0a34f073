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
)

// reportWait bounds the unit tests' waits for a report or for a watch to
// return; it only matters when a test fails.
const reportWait = 10 * time.Second

// textWatch runs one watch in the background for a test and keeps its
// reports, rendered as text.
type textWatch struct {
	name   string // the watch function, in failures
	states chan string
	done   chan error
	cancel context.CancelFunc
}

// startTextWatch runs watch until the test ends; watch passes each state,
// rendered, to emit.
func startTextWatch(t *testing.T, name string, watch func(ctx context.Context, emit func(string)) error) *textWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &textWatch{name: name, states: make(chan string, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- watch(ctx, func(s string) { w.states <- s })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.done:
			w.done <- err
		case <-time.After(reportWait):
			t.Errorf("%s did not return after cancel", name)
		}
	})
	return w
}

// next waits for the next report.
func (w *textWatch) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-w.states:
		return s
	case err := <-w.done:
		w.done <- err
		t.Fatalf("%s returned %v, want a report", w.name, err)
	case <-time.After(reportWait):
		t.Fatalf("%s: no report within %v", w.name, reportWait)
	}
	return ""
}

// await waits, at most within, until w reports want, and returns the reports
// that came before it. If want does not come, it fails the test with every
// report seen, the last one last.
func (w *textWatch) await(t *testing.T, want string, within time.Duration) (before []string) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case s := <-w.states:
			if s == want {
				return before
			}
			before = append(before, s)
		case err := <-w.done:
			w.done <- err
			t.Fatalf("%s returned %v while waiting for %q; reports: %q", w.name, err, want, before)
		case <-deadline:
			t.Fatalf("%s: no report %q within %v; reports: %q", w.name, want, within, before)
		}
	}
}

// stop cancels the watch and returns what it returned; it fails the test if
// reports are left that nobody waited for.
func (w *textWatch) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err
		if n := len(w.states); n != 0 {
			t.Errorf("%s: %d unexpected reports left, first %q", w.name, n, <-w.states)
		}
		return err
	case <-time.After(reportWait):
		t.Fatalf("%s did not return within %v of cancel", w.name, reportWait)
	}
	return nil
}

// failure waits for the watch to return without a report, and returns its
// error.
func (w *textWatch) failure(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case s := <-w.states:
		t.Fatalf("%s reported %q, want it to fail", w.name, s)
	case <-time.After(reportWait):
		t.Fatalf("%s did not fail within %v", w.name, reportWait)
	}
	return nil
}

// fakeRig is one watch over a fake client whose reactors a test may
// prepend.
type fakeRig struct {
	fake *k8stesting.Fake
	// resource is the resource whose lists the test intercepts; what and
	// rbac are what the watch's errors must say.
	resource, what, rbac string
	// first is the first report when nothing is intercepted.
	first string
	watch func(ctx context.Context, emit func(string)) error
}

// testBeforeSync checks what a watch does before its informers have synced:
// no report; an error when ctx ends; an error at once when the list is
// refused as Forbidden or Unauthorized. newRig returns a fresh rig.
func testBeforeSync(t *testing.T, newRig func() fakeRig) {
	// block makes the rig's lists wait until release is called; listing
	// is closed when the first list starts.
	block := func(t *testing.T, r fakeRig) (listing <-chan struct{}, release func()) {
		started, gate := make(chan struct{}), make(chan struct{})
		var startOnce, releaseOnce sync.Once
		r.fake.PrependReactor("list", r.resource, func(k8stesting.Action) (bool, runtime.Object, error) {
			startOnce.Do(func() { close(started) })
			<-gate
			return false, nil, nil // on to the default reactor
		})
		release = func() { releaseOnce.Do(func() { close(gate) }) }
		t.Cleanup(release)
		return started, release
	}
	waitClosed := func(t *testing.T, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(reportWait):
			t.Fatalf("no list within %v", reportWait)
		}
	}

	t.Run("nothing before sync", func(t *testing.T) {
		r := newRig()
		listing, release := block(t, r)
		w := startTextWatch(t, r.what, r.watch)
		waitClosed(t, listing)
		// The informer cannot have synced: its list has not returned.
		if n := len(w.states); n != 0 {
			t.Fatalf("%d reports before the informer synced, first %q", n, <-w.states)
		}
		release()
		if got := w.next(t); got != r.first {
			t.Errorf("first report = %q, want %q", got, r.first)
		}
		if err := w.stop(t); err != nil {
			t.Errorf("returned %v after cancel, want nil", err)
		}
	})

	t.Run("stops before sync", func(t *testing.T) {
		r := newRig()
		listing, _ := block(t, r)
		w := startTextWatch(t, r.what, r.watch)
		waitClosed(t, listing)
		err := w.stop(t)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), r.what+": stopped before the first list completed") {
			t.Errorf("returned %v, want a not-synced error wrapping context.Canceled", err)
		}
	})

	refusals := []struct {
		name   string
		err    error
		refuse func(error) bool
	}{
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Resource: "x"}, "", errors.New("RBAC says no")), apierrors.IsForbidden},
		{"unauthorized", apierrors.NewUnauthorized("who are you"), apierrors.IsUnauthorized},
	}
	for _, rf := range refusals {
		t.Run(rf.name, func(t *testing.T) {
			r := newRig()
			r.fake.PrependReactor("list", r.resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, rf.err
			})
			w := startTextWatch(t, r.what, r.watch)
			err := w.failure(t)
			if !rf.refuse(err) || !strings.Contains(err.Error(), r.what+": ") || !strings.Contains(err.Error(), r.rbac) {
				t.Errorf("returned %v, want a %s error saying what access is needed (%s)", err, rf.name, r.rbac)
			}
		})
	}
}

// kubeStep is one step of a watch test: an action on the cluster, and the
// next report it must cause. C is the client the action uses.
type kubeStep[C any] struct {
	name string
	do   func(ctx context.Context, cs C) error
	want string
}

// runSteps runs the steps ss against cs and checks the reports of w; then it stops
// w.
func runSteps[C any](t *testing.T, cs C, w *textWatch, ss []kubeStep[C]) {
	t.Helper()
	for _, s := range ss {
		if err := s.do(context.Background(), cs); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := w.next(t); got != s.want {
			t.Fatalf("%s: report = %q\nwant %q", s.name, got, s.want)
		}
	}
	if err := w.stop(t); err != nil {
		t.Errorf("%s returned %v after cancel, want nil", w.name, err)
	}
}

// steps runs several actions as one.
func steps[C any](do ...func(context.Context, C) error) func(context.Context, C) error {
	return func(ctx context.Context, cs C) error {
		for _, d := range do {
			if err := d(ctx, cs); err != nil {
				return err
			}
		}
		return nil
	}
}

// namespacesText renders a state: "name{k=v,...}" per namespace, sorted,
// joined by " ", "none" when there are none.
func namespacesText(s NamespacesState) string {
	if !s.Synced {
		return "unsynced"
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(s.Labels)) {
		l := s.Labels[name]
		if l == nil {
			parts = append(parts, name+"{NIL}")
			continue
		}
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(l)) {
			kv = append(kv, k+"="+l[k])
		}
		parts = append(parts, name+"{"+strings.Join(kv, ",")+"}")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func namespace(name string, kv ...string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(kv) > 0 {
		ns.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			ns.Labels[kv[i]] = kv[i+1]
		}
	}
	return ns
}

func createNamespace(ns *corev1.Namespace) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create namespace %s: %w", ns.Name, err)
		}
		return nil
	}
}

// editNamespace changes a namespace with f: a get, then an update.
func editNamespace(name string, f func(*corev1.Namespace)) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			f(ns)
			_, err = cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("update namespace %s: %w", name, err)
		}
		return nil
	}
}

func deleteNamespace(name string) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		if err := cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete namespace %s: %w", name, err)
		}
		return nil
	}
}

func watchNamespacesText(cs kubernetes.Interface) func(context.Context, func(string)) error {
	return func(ctx context.Context, emit func(string)) error {
		return WatchNamespaces(ctx, cs, 0, func(s NamespacesState) { emit(namespacesText(s)) })
	}
}

func TestWatchNamespaces(t *testing.T) {
	tests := []struct {
		name    string
		objects []runtime.Object
		first   string
		steps   []kubeStep[kubernetes.Interface]
	}{
		{
			name:  "nothing at start",
			first: "none",
			steps: []kubeStep[kubernetes.Interface]{
				{name: "create", do: createNamespace(namespace("prod", "team", "payments")), want: "prod{team=payments}"},
			},
		},
		{
			name:    "namespaces at start, one without labels",
			objects: []runtime.Object{namespace("prod", "team", "payments", "env", "prod"), namespace("dev")},
			first:   "dev{} prod{env=prod,team=payments}",
		},
		{
			name:    "labels change",
			objects: []runtime.Object{namespace("prod", "team", "payments")},
			first:   "prod{team=payments}",
			steps: []kubeStep[kubernetes.Interface]{
				{
					name: "relabel",
					do:   editNamespace("prod", func(ns *corev1.Namespace) { ns.Labels = map[string]string{"team": "web"} }),
					want: "prod{team=web}",
				},
				{
					name: "labels removed",
					do:   editNamespace("prod", func(ns *corev1.Namespace) { ns.Labels = nil }),
					want: "prod{}",
				},
			},
		},
		{
			name:    "changes that do not matter are not reported",
			objects: []runtime.Object{namespace("prod", "team", "payments")},
			first:   "prod{team=payments}",
			steps: []kubeStep[kubernetes.Interface]{{
				name: "annotation, finalizer and phase, then a label",
				do: steps(
					editNamespace("prod", func(ns *corev1.Namespace) { ns.Annotations = map[string]string{"touched": "1"} }),
					editNamespace("prod", func(ns *corev1.Namespace) {
						ns.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
						ns.Status.Phase = corev1.NamespaceActive
					}),
					editNamespace("prod", func(ns *corev1.Namespace) { ns.Labels["tier"] = "1" }),
				),
				// Had anything before the last update been reported,
				// it would come first.
				want: "prod{team=payments,tier=1}",
			}},
		},
		{
			name:    "namespace deleted",
			objects: []runtime.Object{namespace("prod", "team", "payments"), namespace("dev")},
			first:   "dev{} prod{team=payments}",
			steps: []kubeStep[kubernetes.Interface]{
				{name: "delete prod", do: deleteNamespace("prod"), want: "dev{}"},
				{name: "delete dev", do: deleteNamespace("dev"), want: "none"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objects...)
			w := startTextWatch(t, "WatchNamespaces", watchNamespacesText(cs))
			if got := w.next(t); got != tt.first {
				t.Fatalf("first report = %q\nwant %q", got, tt.first)
			}
			runSteps(t, kubernetes.Interface(cs), w, tt.steps)
		})
	}
}

func TestWatchNamespacesBeforeSync(t *testing.T) {
	testBeforeSync(t, func() fakeRig {
		cs := fake.NewClientset(namespace("prod", "team", "payments"))
		return fakeRig{
			fake: &cs.Fake, resource: "namespaces",
			what: "watch namespaces", rbac: "list and watch on namespaces",
			first: "prod{team=payments}",
			watch: watchNamespacesText(cs),
		}
	})
}

func TestStripNamespaceKeepsTheState(t *testing.T) {
	full := namespace("prod", "team", "payments")
	full.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	full.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
	obj, err := stripNamespace(full)
	if err != nil {
		t.Fatal(err)
	}
	stripped := obj.(*corev1.Namespace)
	if got, want := namespacesText(namespacesStateOf([]any{stripped})), namespacesText(namespacesStateOf([]any{full})); got != want {
		t.Errorf("stripped state = %q, want %q", got, want)
	}
	if stripped.Annotations != nil || stripped.Spec.Finalizers != nil {
		t.Errorf("stripNamespace kept fields it does not need: %+v", stripped)
	}
	if full.Annotations == nil {
		t.Error("stripNamespace changed its input")
	}
}

func TestNamespacesStateEqual(t *testing.T) {
	state := func(labels map[string]map[string]string) NamespacesState {
		return NamespacesState{Synced: true, Labels: labels}
	}
	tests := []struct {
		name string
		a, b NamespacesState
		want bool
	}{
		{name: "zero", want: true},
		{name: "synced differs", a: NamespacesState{Synced: true}, want: false},
		{name: "nil and empty", a: state(nil), b: state(map[string]map[string]string{}), want: true},
		{name: "same", a: state(map[string]map[string]string{"a": {"k": "v"}}), b: state(map[string]map[string]string{"a": {"k": "v"}}), want: true},
		{name: "label differs", a: state(map[string]map[string]string{"a": {"k": "v"}}), b: state(map[string]map[string]string{"a": {"k": "w"}}), want: false},
		{name: "namespace differs", a: state(map[string]map[string]string{"a": {}}), b: state(map[string]map[string]string{"b": {}}), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}
