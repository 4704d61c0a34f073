package k8swatch

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
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
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"
)

// timeout bounds every wait for something that must happen; it is generous
// because it only matters when a test fails.
const timeout = 10 * time.Second

const me = "node-a"

// newNode returns a Node with spec.podCIDR and spec.podCIDRs set as given.
func newNode(name, podCIDR string, podCIDRs ...string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: podCIDRs},
	}
}

// text renders a state for comparison: "absent", "exists", "exists
// 10.0.0.0/24 fd00::/64", with " err: ..." when Err is set.
func (s NodeState) text() string {
	var b strings.Builder
	switch {
	case !s.Synced:
		b.WriteString("unsynced")
	case !s.Exists:
		b.WriteString("absent")
	default:
		b.WriteString("exists")
	}
	for _, p := range s.PodCIDRs {
		b.WriteString(" " + p.String())
	}
	if s.ExcludeVIPs {
		b.WriteString(" exclude-vips")
	}
	if s.Err != nil {
		b.WriteString(" err: " + strings.ReplaceAll(s.Err.Error(), "\n", "; "))
	}
	return b.String()
}

func TestStateOf(t *testing.T) {
	tests := []struct {
		name string
		node *corev1.Node
		want string
	}{
		{name: "no node", want: "absent"},
		{name: "no cidr yet", node: newNode(me, ""), want: "exists"},
		{name: "dual stack podCIDRs", node: newNode(me, "10.1.0.0/24", "fd00:1::/64", "10.1.0.0/24"), want: "exists 10.1.0.0/24 fd00:1::/64"},
		{name: "podCIDR fallback", node: newNode(me, "10.3.0.0/25"), want: "exists 10.3.0.0/25"},
		{name: "podCIDRs win over podCIDR", node: newNode(me, "10.3.0.0/24", "10.4.0.0/24"), want: "exists 10.4.0.0/24"},
		{name: "duplicates collapse", node: newNode(me, "", "10.1.0.0/24", "10.1.0.0/24"), want: "exists 10.1.0.0/24"},
		{
			name: "invalid entries are left out and reported",
			node: newNode(me, "", "10.1.0.0/24", "bogus", "10.2.0.1/24"),
			want: `exists 10.1.0.0/24 err: node node-a: spec.podCIDRs[1]: netip.ParsePrefix("bogus"): no '/'; ` +
				`node node-a: spec.podCIDRs[2]: 10.2.0.1/24 has host bits set (the network is 10.2.0.0/24)`,
		},
		{
			name: "invalid podCIDR",
			node: newNode(me, "10.0.0.0/33"),
			want: `exists err: node node-a: spec.podCIDR[0]: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stateOf(tt.node).text(); got != tt.want {
				t.Errorf("state = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

func TestNodeStateEqual(t *testing.T) {
	p := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	tests := []struct {
		name string
		a, b NodeState
		want bool
	}{
		{name: "zero", want: true},
		{name: "synced differs", a: NodeState{Synced: true}, want: false},
		{name: "exists differs", a: NodeState{Synced: true}, b: NodeState{Synced: true, Exists: true}, want: false},
		{name: "same cidrs", a: NodeState{PodCIDRs: p}, b: NodeState{PodCIDRs: slices.Clone(p)}, want: true},
		{name: "cidrs differ", a: NodeState{PodCIDRs: p}, want: false},
		{name: "same error text", a: NodeState{Err: errors.New("x")}, b: NodeState{Err: errors.New("x")}, want: true},
		{name: "error differs", a: NodeState{Err: errors.New("x")}, b: NodeState{Err: errors.New("y")}, want: false},
		{name: "exclude-vips differs", a: NodeState{ExcludeVIPs: true}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

// watcher runs WatchNode in the background for one test.
type watcher struct {
	states chan NodeState
	done   chan error
	cancel context.CancelFunc
}

// fakeNodes is the Nodes client of a fake clientset, which, like the
// clientset, cannot stream a list over a watch.
type fakeNodes struct{ corev1client.NodeInterface }

func (fakeNodes) IsWatchListSemanticsUnSupported() bool { return true }

func nodesOf(cs *fake.Clientset) Nodes { return fakeNodes{cs.CoreV1().Nodes()} }

func startWatch(t *testing.T, nodes Nodes, node string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{states: make(chan NodeState, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- WatchNode(ctx, nodes, node, 0, func(s NodeState) { w.states <- s })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(timeout):
			t.Error("WatchNode did not return after cancel")
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
		t.Fatalf("WatchNode returned %v, want a report", err)
	case <-time.After(timeout):
		t.Fatalf("no report within %v", timeout)
	}
	return ""
}

// stop cancels the watch and returns what WatchNode returned.
func (w *watcher) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("WatchNode did not return within %v of cancel", timeout)
	}
	return nil
}

type step struct {
	name string
	do   func(ctx context.Context, cs kubernetes.Interface) error
	want string // the next report
}

func update(n *corev1.Node) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		_, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	}
}

func create(n *corev1.Node) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		_, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		return err
	}
}

func remove(name string) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		return cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	}
}

// withLabel returns n with a label set, a change that leaves the state alone.
func withLabel(n *corev1.Node, v string) *corev1.Node {
	n.Labels = map[string]string{"example.com/touched": v}
	return n
}

// all runs several actions as one step.
func all(fs ...func(context.Context, kubernetes.Interface) error) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		for _, f := range fs {
			if err := f(ctx, cs); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestWatchNode(t *testing.T) {
	tests := []struct {
		name    string
		objects []runtime.Object
		first   string // the first report
		steps   []step
	}{
		{
			name:    "node with podCIDRs at start",
			objects: []runtime.Object{newNode(me, "10.1.0.0/24", "10.1.0.0/24", "fd00:1::/64")},
			first:   "exists 10.1.0.0/24 fd00:1::/64",
		},
		{
			name:    "podCIDR assigned after start",
			objects: []runtime.Object{newNode(me, "")},
			first:   "exists",
			steps: []step{
				{name: "assign", do: update(newNode(me, "10.1.0.0/24", "10.1.0.0/24")), want: "exists 10.1.0.0/24"},
			},
		},
		{
			name:    "podCIDR changed",
			objects: []runtime.Object{newNode(me, "", "10.1.0.0/24")},
			first:   "exists 10.1.0.0/24",
			steps: []step{
				{name: "change", do: update(newNode(me, "", "10.2.0.0/24", "fd00:2::/64")), want: "exists 10.2.0.0/24 fd00:2::/64"},
				{name: "drop v6", do: update(newNode(me, "", "10.2.0.0/24")), want: "exists 10.2.0.0/24"},
			},
		},
		{
			name:    "podCIDR singular fallback",
			objects: []runtime.Object{newNode(me, "10.3.0.0/24")},
			first:   "exists 10.3.0.0/24",
			steps: []step{
				{name: "podCIDRs appear", do: update(newNode(me, "10.3.0.0/24", "10.3.0.0/24", "fd00:3::/64")), want: "exists 10.3.0.0/24 fd00:3::/64"},
			},
		},
		{
			name: "other nodes and changes that do not matter are not reported",
			objects: []runtime.Object{
				newNode(me, "", "10.1.0.0/24"),
				newNode("node-b", "", "10.9.0.0/24"),
			},
			first: "exists 10.1.0.0/24",
			steps: []step{{
				name: "others change, then ours",
				do: all(
					update(newNode("node-b", "", "10.8.0.0/24")),
					create(newNode("node-c", "", "10.7.0.0/24")),
					remove("node-b"),
					update(withLabel(newNode(me, "", "10.1.0.0/24"), "1")),
					update(newNode(me, "", "10.2.0.0/24")),
				),
				// Had anything before the last update been
				// reported, it would come first.
				want: "exists 10.2.0.0/24",
			}},
		},
		{
			name:    "node deleted and recreated",
			objects: []runtime.Object{newNode(me, "", "10.1.0.0/24")},
			first:   "exists 10.1.0.0/24",
			steps: []step{
				{name: "delete", do: remove(me), want: "absent"},
				{name: "recreate", do: create(newNode(me, "", "10.4.0.0/24")), want: "exists 10.4.0.0/24"},
			},
		},
		{
			name:    "node absent at start",
			objects: []runtime.Object{newNode("node-b", "", "10.9.0.0/24")},
			first:   "absent",
			steps: []step{
				{name: "created without cidr", do: create(newNode(me, "")), want: "exists"},
				{name: "cidr assigned", do: update(newNode(me, "", "10.1.0.0/24")), want: "exists 10.1.0.0/24"},
			},
		},
		{
			name:    "invalid entry reported, valid one kept",
			objects: []runtime.Object{newNode(me, "", "10.1.0.0/24", "10.2.0.1/24")},
			first:   "exists 10.1.0.0/24 err: node node-a: spec.podCIDRs[1]: 10.2.0.1/24 has host bits set (the network is 10.2.0.0/24)",
			steps: []step{
				{name: "fixed", do: update(newNode(me, "", "10.1.0.0/24", "10.2.0.0/24")), want: "exists 10.1.0.0/24 10.2.0.0/24"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objects...)
			w := startWatch(t, nodesOf(cs), me)
			if got := w.next(t); got != tt.first {
				t.Fatalf("first report = %q, want %q", got, tt.first)
			}
			ctx := context.Background()
			for _, s := range tt.steps {
				if err := s.do(ctx, cs); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if got := w.next(t); got != s.want {
					t.Fatalf("%s: report = %q, want %q", s.name, got, s.want)
				}
			}
			if err := w.stop(t); err != nil {
				t.Errorf("WatchNode returned %v after cancel, want nil", err)
			}
			if n := len(w.states); n != 0 {
				t.Errorf("%d unexpected reports left, first %q", n, (<-w.states).text())
			}
		})
	}
}

// blockList makes the clientset's node lists wait until the returned release
// function is called; listing is closed when the first list starts.
func blockList(t *testing.T, cs *fake.Clientset) (listing <-chan struct{}, release func()) {
	started := make(chan struct{})
	gate := make(chan struct{})
	var startOnce, releaseOnce sync.Once
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
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

func TestWatchNodeNothingBeforeSync(t *testing.T) {
	cs := fake.NewClientset(newNode(me, "", "10.1.0.0/24"))
	listing, release := blockList(t, cs)
	w := startWatch(t, nodesOf(cs), me)
	waitClosed(t, listing, "the first list")
	// The informer cannot have synced: its list has not returned.
	if n := len(w.states); n != 0 {
		t.Fatalf("%d reports before the informer synced, first %q", n, (<-w.states).text())
	}
	release()
	// A report made before the sync would have said "absent" and come first.
	if got, want := w.next(t), "exists 10.1.0.0/24"; got != want {
		t.Errorf("first report = %q, want %q", got, want)
	}
}

func TestWatchNodeStopsBeforeSync(t *testing.T) {
	cs := fake.NewClientset()
	listing, _ := blockList(t, cs)
	w := startWatch(t, nodesOf(cs), me)
	waitClosed(t, listing, "the first list")
	err := w.stop(t)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "watch node node-a: stopped before the first list completed") {
		t.Errorf("WatchNode = %v, want a not-synced error wrapping context.Canceled", err)
	}
	if n := len(w.states); n != 0 {
		t.Errorf("%d reports, want none", n)
	}
}

func TestWatchNodeRetriesThenStops(t *testing.T) {
	cs := fake.NewClientset()
	relisted := make(chan struct{})
	var calls int
	var once sync.Once
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls++ // the fake runs reactors one at a time
		if calls >= 2 {
			once.Do(func() { close(relisted) })
		}
		return true, nil, apierrors.NewInternalError(errors.New("etcd is sad"))
	})
	w := startWatch(t, nodesOf(cs), me)
	// By the second list, the error of the first has been handled.
	waitClosed(t, relisted, "a second list after a failed one")
	err := w.stop(t)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "etcd is sad") {
		t.Errorf("WatchNode = %v, want a not-synced error with the last list error", err)
	}
}

func TestWatchNodeForbidden(t *testing.T) {
	cs := fake.NewClientset(newNode(me, "", "10.1.0.0/24"))
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC says no"))
	})
	w := startWatch(t, nodesOf(cs), me)
	select {
	case err := <-w.done:
		w.done <- err
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "watch node node-a") || !strings.Contains(err.Error(), "RBAC") {
			t.Errorf("WatchNode = %v, want a forbidden error naming the node", err)
		}
	case s := <-w.states:
		t.Fatalf("report %q, want WatchNode to fail", s.text())
	case <-time.After(timeout):
		t.Fatalf("WatchNode did not give up on Forbidden within %v", timeout)
	}
}

func TestWatchNodeNoName(t *testing.T) {
	err := WatchNode(context.Background(), nodesOf(fake.NewClientset()), "", 0, func(NodeState) { t.Error("reported") })
	if err == nil || !strings.Contains(err.Error(), "no node name") {
		t.Errorf("WatchNode with no name = %v", err)
	}
}

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:1
users:
- name: u
  user:
    token: not-a-secret
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`

func TestNewNodeClient(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(good, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("clusters: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Not in a cluster, whatever the machine running the test says.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")

	tests := []struct {
		name       string
		kubeconfig string
		err        string // substring; "" for success
	}{
		{name: "kubeconfig", kubeconfig: good},
		{name: "missing kubeconfig", kubeconfig: filepath.Join(dir, "nope"), err: "kubernetes client: kubeconfig " + filepath.Join(dir, "nope") + ": "},
		{name: "broken kubeconfig", kubeconfig: bad, err: "kubernetes client: kubeconfig " + bad + ": "},
		{name: "not in a cluster", err: "no kubeconfig given, and in-cluster config failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewNodeClient(tt.kubeconfig)
			if tt.err == "" {
				if err != nil || c == nil {
					t.Fatalf("NewNodeClient = %v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("NewNodeClient error = %v, want it to contain %q", err, tt.err)
			}
		})
	}
}
