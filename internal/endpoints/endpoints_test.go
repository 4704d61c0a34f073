package endpoints

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/policy"
)

// TestDerive checks the labels the sources' workloads end up with.
func TestDerive(t *testing.T) {
	ws := []Workload{
		{Name: "vm1", Namespace: "default", IPs: addrs("10.0.9.10"), Labels: lbl("app", "employee")},
		{Name: "prod/db-0", Namespace: "prod", ServiceAccount: "db", IPs: addrs("10.244.1.10"), Labels: lbl("app", "db", "io.cilium.k8s.policy.cluster", "forged"),
			NamedPorts: map[string]policy.NamedPort{"redis": {Port: 6379, Protocol: policy.ProtoTCP}}},
	}
	got := Derive(ws, map[string]map[string]string{"prod": {"team": "data", NamespaceNameLabel: "prod"}}, "dc1")
	want := []policy.Endpoint{
		{Name: "vm1", IPs: addrs("10.0.9.10"), Labels: lbl("app", "employee", policy.NamespaceLabel, "default",
			policy.NamespaceLabelsPrefix+NamespaceNameLabel, "default", policy.ClusterLabel, "dc1")},
		{Name: "prod/db-0", IPs: addrs("10.244.1.10"), Labels: lbl("app", "db", policy.NamespaceLabel, "prod",
			policy.NamespaceLabelsPrefix+"team", "data", policy.NamespaceLabelsPrefix+NamespaceNameLabel, "prod",
			policy.ServiceAccountLabel, "db", policy.ClusterLabel, "dc1"),
			NamedPorts: map[string]policy.NamedPort{"redis": {Port: 6379, Protocol: policy.ProtoTCP}}},
	}
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("Derive (-want +got):\n%s", diff)
	}
	if ws[1].Labels["io.cilium.k8s.policy.cluster"] != "forged" {
		t.Error("Derive changed its input")
	}
}

func TestMerge(t *testing.T) {
	vm := Workload{Name: "vm1", Namespace: "default", IPs: addrs("10.0.9.10"), Labels: lbl("app", "employee")}
	db := Workload{Name: "db", Namespace: "default", IPs: addrs("10.244.1.10"), Labels: lbl("app", "protected-db")}
	pod := Workload{Name: "prod/web-0", Namespace: "prod", IPs: addrs("10.244.1.20", "fd00:244:1::20"), Labels: lbl("app", "web")}
	pod2 := Workload{Name: "ops/prom-0", Namespace: "ops", IPs: addrs("10.244.2.20"), Labels: lbl("app", "prom")}
	with := func(ep Workload, name string, ips ...string) Workload {
		if name != "" {
			ep.Name = name
		}
		if ips != nil {
			ep.IPs = addrs(ips...)
		}
		return ep
	}
	tests := []struct {
		name       string
		file, pods []Workload
		want       []Workload
		err        []string // substrings; nil for success
	}{
		{name: "nothing", want: []Workload{}},
		{name: "file only", file: []Workload{vm, db}, want: []Workload{db, vm}},
		{name: "pods only", pods: []Workload{pod, pod2}, want: []Workload{pod2, pod}},
		{name: "both, sorted by name", file: []Workload{vm, db}, pods: []Workload{pod, pod2}, want: []Workload{db, pod2, pod, vm}},
		{
			name: "address in the file and in Kubernetes",
			file: []Workload{vm, db},
			pods: []Workload{with(pod, "", "10.244.1.10")},
			err:  []string{`address 10.244.1.10 is claimed twice: by endpoint "db" from the endpoints file and by endpoint "prod/web-0" from Kubernetes`},
		},
		{
			name: "address of two pods",
			pods: []Workload{pod, with(pod2, "", "fd00:244:1::20")},
			err:  []string{`address fd00:244:1::20 is claimed twice: by endpoint "prod/web-0" from Kubernetes and by endpoint "ops/prom-0" from Kubernetes`},
		},
		{
			name: "name in both",
			file: []Workload{with(vm, "prod/web-0", "10.0.9.99")},
			pods: []Workload{pod},
			err:  []string{`endpoint name "prod/web-0" is claimed twice: from the endpoints file and from Kubernetes`},
		},
		{
			name: "every clash at once",
			file: []Workload{vm, with(db, "vm1", "10.244.1.11")},
			pods: []Workload{with(pod, "", "10.0.9.10"), with(pod2, "prod/web-0", "10.244.2.20")},
			err: []string{
				`endpoint name "vm1" is claimed twice: from the endpoints file and from the endpoints file`,
				`address 10.0.9.10 is claimed twice: by endpoint "vm1" from the endpoints file and by endpoint "prod/web-0" from Kubernetes`,
				`endpoint name "prod/web-0" is claimed twice: from Kubernetes and from Kubernetes`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Merge(tt.file, tt.pods)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Merge: %v", err)
				}
				if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
					t.Errorf("Merge mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Merge = %+v, want an error", got)
			}
			if got != nil {
				t.Errorf("Merge returned endpoints with an error: %+v", got)
			}
			for _, w := range tt.err {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not contain %q", err, w)
				}
			}
			if n, want := strings.Count(err.Error(), "\n")+1, len(tt.err); n != want {
				t.Errorf("%d errors, want %d:\n%s", n, want, err)
			}
		})
	}
}

// TestMergeKeepsInputs checks that Merge does not reorder its inputs.
func TestMergeKeepsInputs(t *testing.T) {
	file := labEndpoints()
	if _, err := Merge(file, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(labEndpoints(), file, cmpAddr); diff != "" {
		t.Errorf("Merge changed its input (-want +got):\n%s", diff)
	}
}
