package agent

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/testenv"
)

// TestPrivilegedAnnounceAndChange: both ToRs learn exactly the node's
// PodCIDR via the node's uplink; the node imports nothing; a PodCIDR change
// swaps the prefix at both ToRs without resetting either session; the
// kernel blackhole follows.
func TestPrivilegedAnnounceAndChange(t *testing.T) {
	f := newFabric(t)
	a := f.startAgent(f.config("10.244.1.0/24"))
	f.waitAnnounced("10.244.1.0/24")
	before := f.waitEstablished()
	f.nodeImportsNothing()
	if got := f.kernelBlackholes(); !strings.Contains(got, "blackhole 10.244.1.0/24") {
		t.Errorf("node blackholes = %q", got)
	}
	if s := a.Status(); !s.Ready || s.LastApply.Result != agentapi.ResultOK {
		t.Errorf("status = %+v", s)
	}

	a.SetConfig(f.config("10.244.7.0/24"))
	f.waitAnnounced("10.244.7.0/24")
	f.assertNoReset(before)
	f.nodeImportsNothing()
	if got := f.kernelBlackholes(); !strings.Contains(got, "blackhole 10.244.7.0/24") || strings.Contains(got, "10.244.1.0") {
		t.Errorf("node blackholes after change = %q", got)
	}

	// Two prefixes, then none: still no reset.
	a.SetConfig(f.config("10.244.7.0/24", "10.244.8.0/25"))
	f.waitAnnounced("10.244.7.0/24", "10.244.8.0/25")
	a.SetConfig(f.config())
	f.waitAnnounced()
	f.assertNoReset(before)
	if got := f.kernelBlackholes(); got != "" {
		t.Errorf("blackholes left after withdrawing all: %q", got)
	}
}

// TestPrivilegedKubernetesSource drives the real agent loop from a real
// kube-apiserver: no PodCIDR at start, one assigned later, then another
// (the API server lets a Node's PodCIDRs be set once, so the Node is
// deleted and made again, as a node that rejoins would be).
func TestPrivilegedKubernetesSource(t *testing.T) {
	f := newFabric(t)
	kube := testenv.StartKube(t)
	cfg := f.config()
	cfg.Kubernetes.Enabled = true
	a := f.startAgent(cfg)
	nodes := kube.Client.CoreV1().Nodes()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cfg.Node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cs, err := k8swatch.NewNodeClient(kube.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k8swatch.WatchNode(ctx, cs, cfg.Node, 0, a.SetNode) }()
	t.Cleanup(func() { cancel(); <-done })

	before := f.waitEstablished()
	waitStatus(t, a, "no PodCIDR yet", func(s agentapi.Status) bool {
		return s.LastApply.Result == agentapi.ResultOK && strings.Contains(s.SourceMessage, "no spec.podCIDRs yet")
	})
	f.waitAnnounced()

	n, err := nodes.Get(ctx, cfg.Node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.3.0/24", []string{"10.244.3.0/24"}
	if _, err := nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitAnnounced("10.244.3.0/24")

	if err := nodes.Delete(ctx, cfg.Node, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitAnnounced()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cfg.Node}, Spec: corev1.NodeSpec{PodCIDR: "10.244.4.0/24", PodCIDRs: []string{"10.244.4.0/24"}}}
	if _, err := nodes.Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitAnnounced("10.244.4.0/24")
	f.assertNoReset(before)
}

// TestPrivilegedRejectedConfigKeepsBird hands the real BIRD a config it
// rejects (a renderer that appends a broken line, since birdconf renders
// none): BIRD's running config, the file it was started with and both
// sessions stay as they were, and the status carries BIRD's error.
func TestPrivilegedRejectedConfigKeepsBird(t *testing.T) {
	f := newFabric(t)
	const poison = "10.244.66.0/24"
	a := f.startAgent(f.config("10.244.1.0/24"), func(o *Options) {
		o.Render = func(in birdconf.Input) ([]byte, error) {
			out, err := birdconf.Render(in)
			for _, p := range in.Prefixes {
				if p.String() == poison {
					out = append(out, "protocol bogus broken {\n}\n"...)
				}
			}
			return out, err
		}
	})
	f.waitAnnounced("10.244.1.0/24")
	before := f.waitEstablished()
	good, err := os.ReadFile(f.bird.Config)
	if err != nil {
		t.Fatal(err)
	}

	a.SetConfig(f.config(poison))
	s := waitStatus(t, a, "rejected apply", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	if !strings.Contains(s.LastApply.Error, "bird rejected the rendered config") || !strings.Contains(s.LastApply.Error, "syntax error") {
		t.Errorf("error does not carry BIRD's complaint: %q", s.LastApply.Error)
	}
	now, _ := os.ReadFile(f.bird.Config)
	if !bytes.Equal(now, good) {
		t.Error("bird.conf was replaced by the rejected config")
	}
	entries, _ := os.ReadDir(f.bird.Dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".roost-") {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	}
	f.waitAnnounced("10.244.1.0/24")
	f.assertNoReset(before)

	// The next good input applies.
	a.SetConfig(f.config("10.244.2.0/24"))
	f.waitAnnounced("10.244.2.0/24")
	f.assertNoReset(before)
}

func waitStatus(t testing.TB, a *Agent, what string, cond func(agentapi.Status) bool) agentapi.Status {
	t.Helper()
	h := &harness{t: t, a: a}
	return h.waitStatus(what, cond)
}
