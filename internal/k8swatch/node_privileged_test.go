package k8swatch

import (
	"context"
	"fmt"
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

// TestPrivilegedWatchNode runs WatchNode against a real API server, through
// clients built by NewNodeClient from kubeconfig files.
func TestPrivilegedWatchNode(t *testing.T) {
	k := testenv.StartKube(t)

	t.Run("changes", func(t *testing.T) {
		nodes, err := NewNodeClient(k.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		w := startWatch(t, nodes, me)
		if before := await(t, w, "absent"); len(before) > 0 {
			t.Errorf("reports before the first: %q", before)
		}
		// The API server lets spec.podCIDRs go from empty to set, and
		// then refuses every change; a new Node may have any. It fills
		// spec.podCIDRs from spec.podCIDR, and accepts a CIDR with host
		// bits set (with a warning).
		steps := []step{
			{
				name: "created without podCIDRs, other nodes not reported",
				do:   all(create(newNode("node-b", "", "10.9.0.0/24")), create(newNode(me, ""))),
				want: "exists",
			},
			{
				name: "podCIDRs assigned",
				do: modify(me, func(n *corev1.Node) {
					n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.1.0.0/24", []string{"10.1.0.0/24", "fd00:1::/64"}
				}),
				want: "exists 10.1.0.0/24 fd00:1::/64",
			},
			{
				name: "labelled to announce no VIPs",
				do:   modify(me, func(n *corev1.Node) { n.Labels[ExcludeVIPsLabel] = "true" }),
				want: "exists 10.1.0.0/24 fd00:1::/64 exclude-vips",
			},
			{
				name: "label set to something else than true",
				do:   modify(me, func(n *corev1.Node) { n.Labels[ExcludeVIPsLabel] = "no" }),
				want: "exists 10.1.0.0/24 fd00:1::/64",
			},
			{
				name: "podCIDR changes refused, other changes not reported, then deleted",
				do: all(
					refused(modify(me, func(n *corev1.Node) {
						n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.2.0.0/24", []string{"10.2.0.0/24", "fd00:1::/64"}
					})),
					refused(modify(me, func(n *corev1.Node) { n.Spec.PodCIDRs = n.Spec.PodCIDRs[:1] })),
					modify(me, func(n *corev1.Node) { n.Labels["example.com/touched"] = "1" }),
					modify("node-b", func(n *corev1.Node) { n.Labels = map[string]string{"example.com/touched": "1"} }),
					remove("node-b"),
					remove(me),
				),
				want: "absent",
			},
			{
				name: "recreated with spec.podCIDR only",
				do:   create(newNode(me, "10.3.0.0/24")),
				want: "exists 10.3.0.0/24",
			},
			{name: "deleted again", do: remove(me), want: "absent"},
			{
				name: "recreated with host bits set",
				do:   create(newNode(me, "", "10.4.0.1/24", "fd00:4::/64")),
				want: "exists fd00:4::/64 err: node node-a: spec.podCIDRs[0]: 10.4.0.1/24 has host bits set (the network is 10.4.0.0/24)",
			},
		}
		admin := k.Client
		for _, s := range steps {
			if err := s.do(t.Context(), admin); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if before := await(t, w, s.want); len(before) > 0 {
				t.Errorf("%s: reports before %q: %q, want none", s.name, s.want, before)
			}
		}
		if err := w.stop(t); err != nil {
			t.Errorf("WatchNode returned %v after cancel, want nil", err)
		}
		if n := len(w.states); n != 0 {
			t.Errorf("%d unexpected reports left, first %q", n, (<-w.states).text())
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		nodes, err := NewNodeClient(k.NobodyKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), kubeTimeout)
		defer cancel()
		var reports int
		err = WatchNode(ctx, nodes, me, 0, func(NodeState) { reports++ })
		if !apierrors.IsForbidden(err) {
			t.Errorf("WatchNode as roost-nobody = %v, want a Forbidden error", err)
		}
		if reports != 0 {
			t.Errorf("%d reports, want none", reports)
		}
	})
}

// await waits, at most kubeTimeout, until w reports want, and returns the
// reports that came before it. If want does not come, it fails the test with
// every report seen, the last one last.
func await(t *testing.T, w *watcher, want string) (before []string) {
	t.Helper()
	deadline := time.After(kubeTimeout)
	for {
		select {
		case s := <-w.states:
			if got := s.text(); got != want {
				before = append(before, got)
				continue
			}
			return before
		case err := <-w.done:
			w.done <- err // for the cleanup
			t.Fatalf("WatchNode returned %v while waiting for %q; reports: %q", err, want, before)
		case <-deadline:
			t.Fatalf("no report %q within %v; reports: %q", want, kubeTimeout, before)
		}
	}
}

// modify changes the Node named name with f: a get, then an update.
func modify(name string, f func(*corev1.Node)) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		f(n)
		_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	}
}

// refused runs do and expects the API server to refuse it as invalid.
func refused(do func(context.Context, kubernetes.Interface) error) func(context.Context, kubernetes.Interface) error {
	return func(ctx context.Context, cs kubernetes.Interface) error {
		err := do(ctx, cs)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "may not change podCIDR") {
			return fmt.Errorf("update = %v, want it refused as invalid (may not change podCIDR)", err)
		}
		return nil
	}
}
