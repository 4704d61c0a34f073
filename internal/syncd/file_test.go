package syncd

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func TestParseFile(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []Workload
	}{
		{name: "empty", yaml: ""},
		{name: "comments only", yaml: "# none yet\n"},
		{name: "no workloads", yaml: "workloads: []\n"},
		{name: "null workloads", yaml: "workloads:\n"},
		{
			name: "example",
			yaml: `workloads:
  - name: vm1
    namespace: default
    ips: [10.0.9.10, "fd00:0:9::10"]
    labels: {app: employee}
  - name: db-1.legacy
    namespace: legacy
    ips: ["fd00:0:9::20", 10.0.9.20]
    labels: {app: db, app.kubernetes.io/part-of: shop}
  - name: vm1
    namespace: other
    ips: [192.0.2.1]
`,
			want: []Workload{
				{Namespace: "default", Name: "vm1", IPs: addrs("10.0.9.10", "fd00:0:9::10"), Labels: map[string]string{"app": "employee"}},
				{Namespace: "legacy", Name: "db-1.legacy", IPs: addrs("10.0.9.20", "fd00:0:9::20"), Labels: map[string]string{"app": "db", "app.kubernetes.io/part-of": "shop"}},
				{Namespace: "other", Name: "vm1", IPs: addrs("192.0.2.1"), Labels: map[string]string{}},
			},
		},
		{
			name: "namespace defaults to default",
			yaml: "workloads: [{name: vm1, ips: [10.0.9.10]}]\n",
			want: []Workload{{Namespace: "default", Name: "vm1", IPs: addrs("10.0.9.10"), Labels: map[string]string{}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFile(strings.NewReader(tt.yaml), "workloads.yaml")
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("ParseFile mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFileErrors(t *testing.T) {
	const src = "/etc/roost/workloads.yaml"
	tests := []struct {
		name string
		yaml string
		want []string // every one must be in the error
	}{
		{"YAML syntax", "workloads:\n  - name: vm1\n    ips: [10.0.9.10\n", []string{src + ":2: YAML: did not find expected ',' or ']'"}},
		{"a list", "- name: vm1\n", []string{src + ":1: the file must be a mapping, `workloads: [...]`, not a list"}},
		{"unknown top key", "workload: []\n", []string{src + ":1: workload: unknown field: did you mean workloads?"}},
		{"unknown workload key", "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    ports: {}\n", []string{src + ":4: workloads[0].ports: unknown field (known: name, namespace, ips, labels)"}},
		{"no name", "workloads:\n  - ips: [10.0.9.10]\n", []string{src + ":2: workloads[0].name: required"}},
		{"bad name", "workloads:\n  - name: VM_1\n    ips: [10.0.9.10]\n", []string{src + `:2: workloads[0].name: "VM_1" is not a workload name`}},
		{"bad namespace", "workloads:\n  - name: vm1\n    namespace: a.b\n    ips: [10.0.9.10]\n", []string{src + `:3: workloads[0].namespace: "a.b" is not a namespace name`}},
		{"number as name", "workloads:\n  - name: 12\n    ips: [10.0.9.10]\n", []string{src + `:2: workloads[0].name: must be a string: quote it ("12")`}},
		{"no ips", "workloads:\n  - name: vm1\n", []string{src + ":2: workloads[0].ips: required: at least one address"}},
		{"empty ips", "workloads:\n  - name: vm1\n    ips: []\n", []string{src + ":3: workloads[0].ips: at least one address is required"}},
		{"bad ip", "workloads:\n  - name: vm1\n    ips: [10.0.9.10, 10.0.9]\n", []string{src + `:3: workloads[0].ips[1]: "10.0.9" is not an IP address`}},
		{"prefix", "workloads:\n  - name: vm1\n    ips: [10.0.9.0/24]\n", []string{src + `:3: workloads[0].ips[0]: "10.0.9.0/24" is a prefix`}},
		{"loopback", "workloads:\n  - name: vm1\n    ips: [127.0.0.1]\n", []string{src + ":3: workloads[0].ips[0]: 127.0.0.1 is not a unicast address"}},
		{"mapped", "workloads:\n  - name: vm1\n    ips: ['::ffff:10.0.9.10']\n", []string{src + ":3: workloads[0].ips[0]: ::ffff:10.0.9.10 is IPv4-mapped; write 10.0.9.10"}},
		{"zone", "workloads:\n  - name: vm1\n    ips: ['fe80::1%eth0']\n", []string{src + ":3: workloads[0].ips[0]: fe80::1%eth0 must not have a zone"}},
		{"ip twice", "workloads:\n  - name: vm1\n    ips: [10.0.9.10, 10.0.9.10]\n", []string{src + ":3: workloads[0].ips[1]: 10.0.9.10 repeats workloads[0].ips[0]"}},
		{
			"duplicate name",
			"workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n  - name: vm1\n    namespace: default\n    ips: [10.0.9.11]\n",
			[]string{src + ":4: workloads[1].name: default/vm1 is already the name of workloads[0] (line 2)"},
		},
		{
			"duplicate address",
			"workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n  - name: vm2\n    ips:\n      - 10.0.9.10\n",
			[]string{src + ":6: workloads[1].ips[0]: 10.0.9.10 is already an address of workload default/vm1 (workloads[0], line 3); an address belongs to one workload"},
		},
		{"derived label", "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    labels: {io.cilium.k8s.policy.cluster: prod}\n", []string{src + ":4: workloads[0].labels.io.cilium.k8s.policy.cluster: keys under io.cilium.k8s. are derived"}},
		{"namespace label", "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    labels:\n      io.kubernetes.pod.namespace: x\n", []string{src + ":5: workloads[0].labels.io.kubernetes.pod.namespace: is derived from the workload's namespace"}},
		{"label with a source", "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    labels: {'k8s:app': web}\n", []string{src + `:4: workloads[0].labels.k8s:app: label keys carry no source here: write "app"`}},
		{"bad label value", "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    labels: {app: 'a b'}\n", []string{src + `:4: workloads[0].labels.app: invalid label value "a b"`}},
		{"number label value", "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    labels: {version: 2}\n", []string{src + `:4: workloads[0].labels.version: must be a string: quote it ("2")`}},
		{"labels a list", "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    labels: [app]\n", []string{src + ":4: workloads[0].labels: must be a mapping of label keys to values"}},
		{
			"every problem at once",
			"workloads:\n  - name: vm1\n    ips: [bad]\n  - name: vm2\n    namespace: Bad\n    ips: [10.0.9.11]\n    labels: {io.cilium.k8s.x: y}\n",
			[]string{src + ":3: workloads[0].ips[0]", src + ":5: workloads[1].namespace", src + ":7: workloads[1].labels.io.cilium.k8s.x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := ParseFile(strings.NewReader(tt.yaml), src)
			if err == nil {
				t.Fatalf("ParseFile = %v, want an error containing %q", ws, tt.want)
			}
			if ws != nil {
				t.Errorf("ParseFile returned %v with its error, want nothing", ws)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseFileLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("workloads:\n  - name: vm1\n    ips:\n")
	for i := range MaxIPs + 1 {
		b.WriteString("      - 10.0.9." + strconv.Itoa(i+1) + "\n")
	}
	b.WriteString("    labels:\n")
	for i := range MaxLabels + 1 {
		b.WriteString("      l" + strconv.Itoa(i) + ": v\n")
	}
	_, err := ParseFile(strings.NewReader(b.String()), "w.yaml")
	for _, want := range []string{"w.yaml:4: workloads[0].ips: 65 addresses; at most 64", "workloads[0].labels: 65 labels; at most 64"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	ws, err := LoadFile(filepath.Join(dir, "missing.yaml"))
	if err != nil || ws != nil {
		t.Errorf("LoadFile of a missing file = %v, %v; want no workloads and no error", ws, err)
	}
	// A directory opens but does not read: an error, not an empty set.
	if ws, err := LoadFile(dir); err == nil {
		t.Errorf("LoadFile of a directory = %v, want an error", ws)
	}
	path := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(path, []byte("workloads: [{name: vm1, ips: [10.0.9.10]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, err = LoadFile(path)
	if err != nil || len(ws) != 1 || ws[0].ID() != "default/vm1" {
		t.Errorf("LoadFile = %v, %v; want default/vm1", ws, err)
	}
}
