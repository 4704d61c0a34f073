package testenv

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPrivilegedKube starts a Kubernetes API server and checks that the
// admin can list namespaces, through Client and through Kubeconfig, that
// roost-nobody is Forbidden to list nodes, and that once the test's cleanup
// has run neither etcd nor kube-apiserver is left.
func TestPrivilegedKube(t *testing.T) {
	Privileged(t)
	var (
		procs []*kubeProc
		host  string
	)
	t.Run("running", func(t *testing.T) {
		k := StartKube(t)
		procs, host = []*kubeProc{k.etcd, k.apiserver}, k.Config.Host
		ctx := t.Context()

		list, err := k.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("admin: list namespaces: %v", err)
		}
		var names []string
		for _, ns := range list.Items {
			names = append(names, ns.Name)
		}
		for _, want := range []string{"default", "kube-system"} {
			if !slices.Contains(names, want) {
				t.Errorf("namespaces = %v, want %s among them", names, want)
			}
		}

		admin := KubeClient(t, k.Kubeconfig)
		if _, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("admin through %s: list nodes: %v", k.Kubeconfig, err)
		}
		nobody := KubeClient(t, k.NobodyKubeconfig)
		_, err = nobody.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("roost-nobody: list nodes = %v, want Forbidden", err)
		}
	})
	if procs == nil {
		return // StartKube did not get as far as starting them
	}
	for _, p := range procs {
		if err := syscall.Kill(p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) after cleanup: kill -0 = %v, want ESRCH", p.name, p.cmd.Process.Pid, err)
		}
	}
	u, err := url.Parse(host)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after cleanup", u.Host)
	}
}
