package endpoints

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// nodesText renders a state: "name ip ..." per node, joined by " | ",
// "none" when there are none, with " err: ..." when Err is set.
func nodesText(s NodesState) string {
	if !s.Synced {
		return "unsynced"
	}
	var parts []string
	for _, n := range s.Nodes {
		var b strings.Builder
		b.WriteString(n.Name)
		for _, ip := range n.IPs {
			b.WriteString(" " + ip.String())
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

// node returns a Node with status addresses given as "Type=address" and,
// when annotation is not "-", the annotation NodeAddressesAnnotation.
func node(name, annotation string, addresses ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if annotation != "-" {
		n.Annotations = map[string]string{NodeAddressesAnnotation: annotation}
	}
	for _, a := range addresses {
		typ, addr, _ := strings.Cut(a, "=")
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeAddressType(typ), Address: addr})
	}
	return n
}

func TestNodesStateOf(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*corev1.Node
		want  string
	}{
		{name: "no nodes", want: "none"},
		{
			name: "internal and external addresses, sorted, nodes sorted by name",
			nodes: []*corev1.Node{
				node("node2", "-", "InternalIP=10.0.2.1", "InternalIP=fd00::2:1", "ExternalIP=192.0.2.2"),
				node("node1", "-", "ExternalIP=192.0.2.1", "InternalIP=10.0.1.1"),
			},
			want: "node1 10.0.1.1 192.0.2.1 | node2 10.0.2.1 192.0.2.2 fd00::2:1",
		},
		{
			name:  "other types, bad and zoned status addresses left out",
			nodes: []*corev1.Node{node("node1", "-", "Hostname=node1", "InternalDNS=node1.local", "InternalIP=10.0.1.1", "ExternalIP=not-an-ip", "InternalIP=fe80::1%eth0")},
			want:  "node1 10.0.1.1",
		},
		{name: "a node without addresses", nodes: []*corev1.Node{node("node1", "-")}, want: "node1"},
		{
			name:  "mapped and repeated addresses once",
			nodes: []*corev1.Node{node("node1", "10.0.1.1", "InternalIP=::ffff:10.0.1.1", "ExternalIP=10.0.1.1")},
			want:  "node1 10.0.1.1",
		},
		{
			name:  "annotation, spaces and empty entries ignored",
			nodes: []*corev1.Node{node("node1", " 10.0.254.1 , fd00:254::1,, 10.0.253.1,", "InternalIP=10.0.1.1")},
			want:  "node1 10.0.1.1 10.0.253.1 10.0.254.1 fd00:254::1",
		},
		{name: "empty annotation", nodes: []*corev1.Node{node("node1", "", "InternalIP=10.0.1.1")}, want: "node1 10.0.1.1"},
		{
			name: "bad annotation entries left out and reported, one error per node, sorted",
			nodes: []*corev1.Node{
				node("node2", "10.0.0.0/24", "InternalIP=10.0.2.1"),
				node("node1", "10.0.254.1,bogus,fe80::1%eth0", "InternalIP=10.0.1.1"),
			},
			want: "node1 10.0.1.1 10.0.254.1 | node2 10.0.2.1 err: " +
				`node node1: annotation roost.io/addresses: "bogus" is not an IP address; "fe80::1%eth0" has a zone (want a comma-separated list of IP addresses); ` +
				`node node2: annotation roost.io/addresses: "10.0.0.0/24" is not an IP address (want a comma-separated list of IP addresses)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := make([]any, len(tt.nodes))
			for i, n := range tt.nodes {
				objs[i] = n
			}
			if got := nodesText(nodesStateOf(objs)); got != tt.want {
				t.Errorf("state = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

func TestStripNodeKeepsTheState(t *testing.T) {
	full := node("node1", "10.0.254.1,bogus", "InternalIP=10.0.1.1", "ExternalIP=192.0.2.1", "Hostname=node1")
	full.Annotations["big"] = strings.Repeat("x", 1000)
	full.Labels = map[string]string{"kubernetes.io/hostname": "node1"}
	full.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	full.Status.Images = []corev1.ContainerImage{{Names: []string{"nginx"}}}
	obj, err := stripNode(full)
	if err != nil {
		t.Fatal(err)
	}
	stripped := obj.(*corev1.Node)
	if got, want := nodesText(nodesStateOf([]any{stripped})), nodesText(nodesStateOf([]any{full})); got != want {
		t.Errorf("stripped state = %q, want %q", got, want)
	}
	if len(stripped.Annotations) != 1 || stripped.Labels != nil || stripped.Status.Conditions != nil || stripped.Status.Images != nil ||
		len(stripped.Status.Addresses) != 2 {
		t.Errorf("stripNode kept fields it does not need: %+v", stripped)
	}
	if len(full.Annotations) != 2 || len(full.Status.Addresses) != 3 {
		t.Error("stripNode changed its input")
	}
}

func createNode(n *corev1.Node) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
		return nil
	}
}

// editNode changes a node with f: a get, then an update, and an update of
// its status when status is set.
func editNode(name string, status bool, f func(*corev1.Node)) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			f(n)
			if status {
				_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
			} else {
				_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("update node %s: %w", name, err)
		}
		return nil
	}
}

func deleteNode(name string) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		if err := cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete node %s: %w", name, err)
		}
		return nil
	}
}

func annotate(value string) func(*corev1.Node) {
	return func(n *corev1.Node) {
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations[NodeAddressesAnnotation] = value
	}
}

func watchNodesText(cs kubernetes.Interface) func(context.Context, func(string)) error {
	return func(ctx context.Context, emit func(string)) error {
		return WatchNodes(ctx, cs, 0, func(s NodesState) { emit(nodesText(s)) })
	}
}

func TestWatchNodes(t *testing.T) {
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
				{name: "create", do: createNode(node("node1", "-", "InternalIP=10.0.1.1")), want: "node1 10.0.1.1"},
			},
		},
		{
			name:    "nodes at start",
			objects: []runtime.Object{node("node2", "10.0.254.2", "InternalIP=10.0.2.1"), node("node1", "-", "InternalIP=10.0.1.1")},
			first:   "node1 10.0.1.1 | node2 10.0.2.1 10.0.254.2",
		},
		{
			name:    "addresses change",
			objects: []runtime.Object{node("node1", "-", "InternalIP=10.0.1.1")},
			first:   "node1 10.0.1.1",
			steps: []kubeStep[kubernetes.Interface]{
				{
					name: "external address",
					do: editNode("node1", true, func(n *corev1.Node) {
						n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "192.0.2.1"})
					}),
					want: "node1 10.0.1.1 192.0.2.1",
				},
				{name: "annotated", do: editNode("node1", false, annotate("10.0.254.1, 10.0.253.1")), want: "node1 10.0.1.1 10.0.253.1 10.0.254.1 192.0.2.1"},
				{
					name: "bad annotation",
					do:   editNode("node1", false, annotate("10.0.254.1,bogus")),
					want: `node1 10.0.1.1 10.0.254.1 192.0.2.1 err: node node1: annotation roost.io/addresses: "bogus" is not an IP address (want a comma-separated list of IP addresses)`,
				},
				{
					name: "annotation removed",
					do:   editNode("node1", false, func(n *corev1.Node) { delete(n.Annotations, NodeAddressesAnnotation) }),
					want: "node1 10.0.1.1 192.0.2.1",
				},
			},
		},
		{
			name:    "changes that do not matter are not reported",
			objects: []runtime.Object{node("node1", "-", "InternalIP=10.0.1.1"), node("node2", "-", "InternalIP=10.0.2.1")},
			first:   "node1 10.0.1.1 | node2 10.0.2.1",
			steps: []kubeStep[kubernetes.Interface]{{
				name: "heartbeat, labels, hostname, then an address",
				do: steps(
					editNode("node1", true, func(n *corev1.Node) {
						n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
					}),
					editNode("node1", false, func(n *corev1.Node) { n.Labels = map[string]string{"touched": "1"} }),
					editNode("node1", true, func(n *corev1.Node) {
						n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node1"})
					}),
					editNode("node2", true, func(n *corev1.Node) { n.Status.Addresses[0].Address = "10.0.2.2" }),
				),
				want: "node1 10.0.1.1 | node2 10.0.2.2",
			}},
		},
		{
			name:    "node deleted",
			objects: []runtime.Object{node("node1", "-", "InternalIP=10.0.1.1"), node("node2", "10.0.254.2,nope")},
			first:   `node1 10.0.1.1 | node2 10.0.254.2 err: node node2: annotation roost.io/addresses: "nope" is not an IP address (want a comma-separated list of IP addresses)`,
			steps: []kubeStep[kubernetes.Interface]{
				{name: "delete node2", do: deleteNode("node2"), want: "node1 10.0.1.1"},
				{name: "delete node1", do: deleteNode("node1"), want: "none"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objects...)
			w := startTextWatch(t, "WatchNodes", watchNodesText(cs))
			if got := w.next(t); got != tt.first {
				t.Fatalf("first report = %q\nwant %q", got, tt.first)
			}
			runSteps(t, kubernetes.Interface(cs), w, tt.steps)
		})
	}
}

func TestWatchNodesBeforeSync(t *testing.T) {
	testBeforeSync(t, func() fakeRig {
		cs := fake.NewClientset(node("node1", "-", "InternalIP=10.0.1.1"))
		return fakeRig{
			fake: &cs.Fake, resource: "nodes",
			what: "watch nodes", rbac: "list and watch on nodes",
			first: "node1 10.0.1.1",
			watch: watchNodesText(cs),
		}
	})
}

func TestNodesStateEqual(t *testing.T) {
	n1 := node("node1", "-", "InternalIP=10.0.1.1")
	n1b := node("node1", "-", "InternalIP=10.0.1.2")
	bad := node("node1", "bogus", "InternalIP=10.0.1.1")
	bad2 := node("node1", "nope", "InternalIP=10.0.1.1")
	state := func(ns ...*corev1.Node) NodesState {
		objs := make([]any, len(ns))
		for i, n := range ns {
			objs[i] = n
		}
		return nodesStateOf(objs)
	}
	tests := []struct {
		name string
		a, b NodesState
		want bool
	}{
		{name: "zero", want: true},
		{name: "synced differs", a: NodesState{Synced: true}, want: false},
		{name: "same", a: state(n1), b: state(n1), want: true},
		{name: "address differs", a: state(n1), b: state(n1b), want: false},
		{name: "error added", a: state(n1), b: state(bad), want: false},
		{name: "error differs", a: state(bad), b: state(bad2), want: false},
		{name: "same error", a: state(bad), b: state(bad), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}
