package endpoints

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/policy"
)

func TestMerge(t *testing.T) {
	vm := policy.Endpoint{Name: "vm1", IPs: addrs("10.0.9.10"), Labels: lbl("app", "employee")}
	db := policy.Endpoint{Name: "db", IPs: addrs("10.244.1.10"), Labels: lbl("app", "protected-db")}
	pod := policy.Endpoint{Name: "prod/web-0", IPs: addrs("10.244.1.20", "fd00:244:1::20"), Labels: lbl("app", "web", policy.NamespaceLabel, "prod")}
	pod2 := policy.Endpoint{Name: "ops/prom-0", IPs: addrs("10.244.2.20"), Labels: lbl("app", "prom", policy.NamespaceLabel, "ops")}
	with := func(ep policy.Endpoint, name string, ips ...string) policy.Endpoint {
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
		file, pods []policy.Endpoint
		want       []policy.Endpoint
		err        []string // substrings; nil for success
	}{
		{name: "nothing", want: []policy.Endpoint{}},
		{name: "file only", file: []policy.Endpoint{vm, db}, want: []policy.Endpoint{db, vm}},
		{name: "pods only", pods: []policy.Endpoint{pod, pod2}, want: []policy.Endpoint{pod2, pod}},
		{name: "both, sorted by name", file: []policy.Endpoint{vm, db}, pods: []policy.Endpoint{pod, pod2}, want: []policy.Endpoint{db, pod2, pod, vm}},
		{
			name: "address in the file and in Kubernetes",
			file: []policy.Endpoint{vm, db},
			pods: []policy.Endpoint{with(pod, "", "10.244.1.10")},
			err:  []string{`address 10.244.1.10 is claimed twice: by endpoint "db" from the endpoints file and by endpoint "prod/web-0" from Kubernetes`},
		},
		{
			name: "address of two pods",
			pods: []policy.Endpoint{pod, with(pod2, "", "fd00:244:1::20")},
			err:  []string{`address fd00:244:1::20 is claimed twice: by endpoint "prod/web-0" from Kubernetes and by endpoint "ops/prom-0" from Kubernetes`},
		},
		{
			name: "name in both",
			file: []policy.Endpoint{with(vm, "prod/web-0", "10.0.9.99")},
			pods: []policy.Endpoint{pod},
			err:  []string{`endpoint name "prod/web-0" is claimed twice: from the endpoints file and from Kubernetes`},
		},
		{
			name: "every clash at once",
			file: []policy.Endpoint{vm, with(db, "vm1", "10.244.1.11")},
			pods: []policy.Endpoint{with(pod, "", "10.0.9.10"), with(pod2, "prod/web-0", "10.244.2.20")},
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
