package endpoints

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/policy"
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func lbl(kv ...string) map[string]string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// labEndpoints are the lab endpoints, as testdata/endpoints/lab.yaml
// lists them.
func labEndpoints() []Workload {
	return []Workload{
		{Name: "db", Namespace: "default", IPs: addrs("10.244.1.10"), Labels: lbl("app", "protected-db")},
		{Name: "employee", Namespace: "default", IPs: addrs("10.244.1.11"), Labels: lbl("app", "employee")},
		{Name: "guest", Namespace: "default", IPs: addrs("10.244.2.10"), Labels: lbl("app", "guest")},
		{Name: "employee2", Namespace: "default", IPs: addrs("10.244.2.11"), Labels: lbl("app", "employee")},
		{Name: "vm1", Namespace: "default", IPs: addrs("10.0.9.10"), Labels: lbl("app", "employee")},
	}
}

// labNodes are the lab's nodes, each with both uplink addresses.
func labNodes() []Node {
	return []Node{
		{Name: "node1", IPs: addrs("10.0.1.2", "10.0.2.2", "10.244.1.1")},
		{Name: "node2", IPs: addrs("10.0.3.2", "10.0.4.2", "10.244.2.1")},
	}
}

func loadFile(tb testing.TB, path string) (File, error) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	return LoadFile(f, path)
}

func TestLoadFileLab(t *testing.T) {
	got, err := loadFile(t, "testdata/endpoints/lab.yaml")
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	if diff := cmp.Diff(File{Endpoints: labEndpoints(), Nodes: labNodes()}, got, cmpAddr); diff != "" {
		t.Errorf("LoadFile mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadFile(t *testing.T) {
	bare := func(ws ...Workload) File { return File{Endpoints: ws} }
	tests := []struct {
		name string
		yaml string
		want File
	}{
		{name: "empty file", yaml: ""},
		{name: "only comments", yaml: "# no endpoints yet\n"},
		{name: "empty mapping", yaml: "{}\n"},
		{name: "null endpoints", yaml: "endpoints:\n"},
		{name: "empty endpoints", yaml: "endpoints: []\nnodes: []\nnamespaces: []\n"},
		{
			name: "no labels",
			yaml: "endpoints: [{name: bare, ips: [10.0.0.1]}]\n",
			want: bare(Workload{Name: "bare", Namespace: "default", IPs: addrs("10.0.0.1"), Labels: map[string]string{}}),
		},
		{
			name: "dual stack, order kept",
			yaml: "endpoints:\n- name: vm-1.example.com\n  ips: ['fd00:9::10', 10.0.9.10]\n  labels: {app: web}\n",
			want: bare(Workload{Name: "vm-1.example.com", Namespace: "default", IPs: addrs("fd00:9::10", "10.0.9.10"), Labels: lbl("app", "web")}),
		},
		{
			name: "namespace, service account and qualified labels, quoted values",
			yaml: "endpoints:\n- name: legacy_db\n  namespace: prod\n  serviceAccount: db\n  ips: [10.0.9.11]\n  labels:\n    app.kubernetes.io/name: db\n    version: \"1\"\n    empty: \"\"\n",
			want: bare(Workload{Name: "legacy_db", Namespace: "prod", ServiceAccount: "db", IPs: addrs("10.0.9.11"),
				Labels: lbl("app.kubernetes.io/name", "db", "version", "1", "empty", "")}),
		},
		{
			name: "named ports",
			yaml: "endpoints:\n- name: dns\n  ips: [10.0.9.53]\n  ports: {dns: 53/UDP, dns-tcp: 53, sig: 2905/SCTP, web: 8080/TCP}\n",
			want: bare(Workload{Name: "dns", Namespace: "default", IPs: addrs("10.0.9.53"), Labels: map[string]string{},
				NamedPorts: map[string]policy.NamedPort{
					"dns":     {Port: 53, Protocol: policy.ProtoUDP},
					"dns-tcp": {Port: 53, Protocol: policy.ProtoTCP},
					"sig":     {Port: 2905, Protocol: policy.ProtoSCTP},
					"web":     {Port: 8080, Protocol: policy.ProtoTCP},
				}}),
		},
		{
			name: "namespaces and nodes",
			yaml: "namespaces:\n- name: prod\n  labels: {team: data}\n- name: empty\nnodes:\n- name: node2\n  ips: [10.0.3.2, 10.0.4.2, 'fd00:3::2']\n",
			want: File{
				Namespaces: map[string]map[string]string{"prod": {"team": "data"}, "empty": {}},
				Nodes:      []Node{{Name: "node2", IPs: addrs("10.0.3.2", "10.0.4.2", "fd00:3::2")}},
			},
		},
		{
			name: "trailing document separator",
			yaml: "endpoints: [{name: a, ips: [10.0.0.1]}]\n---\n",
			want: bare(Workload{Name: "a", Namespace: "default", IPs: addrs("10.0.0.1"), Labels: map[string]string{}}),
		},
		{
			name: "file order kept",
			yaml: "endpoints: [{name: z, ips: [10.0.0.2]}, {name: a, ips: [10.0.0.1]}]\n",
			want: bare(
				Workload{Name: "z", Namespace: "default", IPs: addrs("10.0.0.2"), Labels: map[string]string{}},
				Workload{Name: "a", Namespace: "default", IPs: addrs("10.0.0.1"), Labels: map[string]string{}},
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadFile(strings.NewReader(tt.yaml), "endpoints.yaml")
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("LoadFile mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// expectedErrors reads the "# error: ..." lines at the top of a rejected
// file.
func expectedErrors(tb testing.TB, path string) []string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var want []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "# error: "); ok {
			want = append(want, s)
		}
	}
	return want
}

var errorLine = regexp.MustCompile(`^testdata/rejected/[a-z0-9-]+\.yaml:[1-9][0-9]*: `)

// TestLoadFileRejected runs the corpus of endpoints files roost must
// refuse: each names, in "# error:" comments, the errors that must appear
// (prefixed by testdata/rejected/), and no others may. Every error starts
// with file:line and is a *policy.FieldError.
func TestLoadFileRejected(t *testing.T) {
	files, err := filepath.Glob("testdata/rejected/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no rejected files")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want := expectedErrors(t, path)
			if len(want) == 0 {
				t.Fatal("no # error: lines")
			}
			eps, err := loadFile(t, path)
			if err == nil {
				t.Fatalf("LoadFile accepted it: %+v", eps)
			}
			if eps.Endpoints != nil || eps.Nodes != nil || eps.Namespaces != nil {
				t.Errorf("LoadFile returned something with an error: %+v", eps)
			}
			lines := strings.Split(err.Error(), "\n")
			for _, l := range lines {
				if !errorLine.MatchString(l) {
					t.Errorf("error line %q does not start with file:line", l)
				}
			}
			if len(lines) != len(want) {
				t.Errorf("%d errors, want %d:\n%s", len(lines), len(want), err)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), "testdata/rejected/"+w) {
					t.Errorf("error\n%s\ndoes not contain %q", err, w)
				}
			}
			var fe *policy.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error is not a *policy.FieldError: %T", err)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestLoadFileReadError(t *testing.T) {
	_, err := LoadFile(failingReader{}, "endpoints.yaml")
	if err == nil || !strings.Contains(err.Error(), "endpoints.yaml") || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("LoadFile = %v, want an error naming the file and the cause", err)
	}
}
