package globalview

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/policy"
)

// ep returns an endpoint of origin o with one address and labels given as
// key, value pairs.
func ep(o Origin, ns, name, ip string, kv ...string) Endpoint {
	e := Endpoint{Origin: o, Namespace: ns, Name: name, IPs: []netip.Addr{netip.MustParseAddr(ip)}, Labels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Labels[kv[i]] = kv[i+1]
	}
	return e
}

var layout = Layout{Root: DefaultPrefix}

func TestEncodeDecode(t *testing.T) {
	prod := ClusterOrigin("prod")
	vms := SyncOrigin("vms")
	tests := []struct {
		name string
		in   Endpoint
		key  string
		// want is the endpoint a reader gets: labels derived from the
		// key added.
		want Endpoint
	}{
		{
			name: "cluster endpoint gets namespace and cluster labels",
			in:   ep(prod, "web", "web-0", "10.244.1.5", "app", "web"),
			key:  "/roost/v1/endpoints/cluster:prod/web/web-0",
			want: ep(prod, "web", "web-0", "10.244.1.5", "app", "web", policy.NamespaceLabel, "web", policy.ClusterLabel, "prod"),
		},
		{
			name: "outside workload keeps the cluster it names",
			in:   ep(vms, "legacy", "db-1.example", "192.0.2.7", "app", "db", policy.ClusterLabel, "prod"),
			key:  "/roost/v1/endpoints/sync:vms/legacy/db-1.example",
			want: ep(vms, "legacy", "db-1.example", "192.0.2.7", "app", "db", policy.ClusterLabel, "prod", policy.NamespaceLabel, "legacy"),
		},
		{
			name: "outside workload without a cluster gets none",
			in:   ep(vms, "legacy", "db-2", "2001:db8::7"),
			key:  "/roost/v1/endpoints/sync:vms/legacy/db-2",
			want: ep(vms, "legacy", "db-2", "2001:db8::7", policy.NamespaceLabel, "legacy"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.in.Validate(); err != nil {
				t.Fatal(err)
			}
			nLabels := len(tt.in.Labels)
			if got := layout.Key(tt.in); got != tt.key {
				t.Errorf("key = %q, want %q", got, tt.key)
			}
			v, err := encode(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := layout.decode(tt.key, v)
			if err != nil {
				t.Fatalf("decode %s: %v", v, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("decode(encode) (-want +got):\n%s", diff)
			}
			if got.ID() != strings.TrimPrefix(tt.key, layout.Endpoints()) {
				t.Errorf("ID = %q, want the key below %s", got.ID(), layout.Endpoints())
			}
			if len(tt.in.Labels) != nLabels {
				t.Errorf("encode modified its input's labels: %v", tt.in.Labels)
			}
		})
	}
}

// TestEncodeStable checks that equal endpoints encode to equal bytes
// whatever the order of their addresses and labels, so that a publisher
// writes nothing when nothing changed.
func TestEncodeStable(t *testing.T) {
	o := ClusterOrigin("prod")
	a := ep(o, "web", "web-0", "10.0.0.1", "a", "1", "b", "2", "c", "3")
	a.IPs = append(a.IPs, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("10.0.0.0"))
	b := ep(o, "web", "web-0", "10.0.0.0", "c", "3", "a", "1", "b", "2")
	b.IPs = append(b.IPs, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("10.0.0.1"))
	va, err := encode(a)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := encode(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(va) != string(vb) {
		t.Errorf("equal endpoints encode differently:\n%s\n%s", va, vb)
	}
	const want = `{"v":1,"ips":["10.0.0.0","10.0.0.1","2001:db8::1"],"labels":{"a":"1","b":"2","c":"3","io.cilium.k8s.policy.cluster":"prod","io.kubernetes.pod.namespace":"web"},"namespace":"web"}`
	if string(va) != want {
		t.Errorf("value = %s\nwant    %s", va, want)
	}
}

func TestValidate(t *testing.T) {
	prod := ClusterOrigin("prod")
	tests := []struct {
		name string
		e    Endpoint
		want string // in the error; "" for valid
	}{
		{"valid", ep(prod, "web", "web-0", "10.0.0.1"), ""},
		{"unknown kind", ep(Origin{"vm", "x"}, "web", "web-0", "10.0.0.1"), `kind must be "cluster" or "sync"`},
		{"bad origin name", ep(ClusterOrigin("Prod"), "web", "web-0", "10.0.0.1"), "name must be 1-32 lower-case"},
		{"namespace with a slash", ep(prod, "we/b", "web-0", "10.0.0.1"), `namespace "we/b"`},
		{"empty name", ep(prod, "web", "", "10.0.0.1"), `name ""`},
		{"name with a slash", ep(prod, "web", "a/b", "10.0.0.1"), `name "a/b"`},
		{"no IPs", Endpoint{Origin: prod, Namespace: "web", Name: "web-0"}, "no IPs"},
		{"IP twice", Endpoint{Origin: prod, Namespace: "web", Name: "web-0", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.1")}}, "IP 10.0.0.1 twice"},
		{"zoned IP", Endpoint{Origin: prod, Namespace: "web", Name: "web-0", IPs: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}}, "plain IPv4 or IPv6"},
		{"forged cluster", ep(prod, "web", "web-0", "10.0.0.1", policy.ClusterLabel, "dev"), `does not match origin cluster:prod`},
		{"forged namespace", ep(prod, "web", "web-0", "10.0.0.1", policy.NamespaceLabel, "kube-system"), `does not match namespace "web"`},
		{"sync names a bad cluster", ep(SyncOrigin("vms"), "web", "web-0", "10.0.0.1", policy.ClusterLabel, "Bad_Cluster"), "is not a cluster name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := `{"v":1,"ips":["10.0.0.1"],"namespace":"web"}`
	tests := []struct {
		name, key, value, want string
	}{
		{"not JSON", "/roost/v1/endpoints/cluster:prod/web/web-0", "garbage", "does not parse"},
		{"newer version", "/roost/v1/endpoints/cluster:prod/web/web-0", `{"v":2,"ips":["10.0.0.1"],"namespace":"web"}`, "unknown value version 2"},
		{"no version", "/roost/v1/endpoints/cluster:prod/web/web-0", `{"ips":["10.0.0.1"],"namespace":"web"}`, "unknown value version 0"},
		{"bad IP", "/roost/v1/endpoints/cluster:prod/web/web-0", `{"v":1,"ips":["10.0.0.300"],"namespace":"web"}`, "does not parse"},
		{"namespace differs from key", "/roost/v1/endpoints/cluster:prod/web/web-0", `{"v":1,"ips":["10.0.0.1"],"namespace":"db"}`, `namespace "db" does not match the key`},
		{"forged cluster label", "/roost/v1/endpoints/cluster:prod/web/web-0", `{"v":1,"ips":["10.0.0.1"],"namespace":"web","labels":{"io.cilium.k8s.policy.cluster":"dev"}}`, "does not match origin"},
		{"key too short", "/roost/v1/endpoints/cluster:prod/web", good, "want /roost/v1/endpoints/<origin>/<namespace>/<name>"},
		{"key too long", "/roost/v1/endpoints/cluster:prod/web/a/b", good, "want /roost/v1/endpoints/<origin>/<namespace>/<name>"},
		{"unknown origin", "/roost/v1/endpoints/k8s:prod/web/web-0", good, "kind must be"},
		{"outside the prefix", "/other/web-0", good, "not under"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := layout.decode(tt.key, []byte(tt.value))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decode(%q, %q) = %v, want an error containing %q", tt.key, tt.value, err, tt.want)
			}
		})
	}
	// A reader ignores fields it does not know: version 1 may grow.
	if _, err := layout.decode("/roost/v1/endpoints/cluster:prod/web/web-0", []byte(`{"v":1,"ips":["10.0.0.1"],"namespace":"web","namedPorts":{"http":80}}`)); err != nil {
		t.Errorf("decode with an unknown field: %v", err)
	}
}

func TestConfigProblems(t *testing.T) {
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(pemFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	with := func(f func(*Config)) Config {
		c := Default()
		c.Endpoints = []string{"https://etcd-1:2379", "https://10.0.0.2:2379"}
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // each a line of the error; none for valid
	}{
		{"valid", with(func(c *Config) { c.CAFile, c.CertFile, c.KeyFile = pemFile, pemFile, pemFile }), nil},
		{"valid http for a lab", with(func(c *Config) { c.Endpoints = []string{"http://127.0.0.1:2379"} }), nil},
		{"no endpoints", with(func(c *Config) { c.Endpoints = nil }), []string{"g.endpoints: at least one etcd client URL"}},
		{"bad endpoint", with(func(c *Config) { c.Endpoints = []string{"etcd-1:2379", "https://etcd-2", "https://etcd-3:2379/v3"} }), []string{
			`g.endpoints[0]: "etcd-1:2379" must be a URL`, `g.endpoints[1]: "https://etcd-2" must name a port`, `g.endpoints[2]: "https://etcd-3:2379/v3" must be a URL`}},
		{"mixed schemes", with(func(c *Config) { c.Endpoints = []string{"https://a:2379", "http://b:2379"} }), []string{"g.endpoints: mixes http and https"}},
		{"TLS files with http", with(func(c *Config) { c.Endpoints, c.CAFile = []string{"http://a:2379"}, pemFile }), []string{"g.endpoints: are http URLs, but caFile"}},
		{"cert without key", with(func(c *Config) { c.CertFile = pemFile }), []string{"g.keyFile: is empty, but certFile is set"}},
		{"key without cert", with(func(c *Config) { c.KeyFile = pemFile }), []string{"g.certFile: is empty, but keyFile is set"}},
		{"missing file", with(func(c *Config) { c.CAFile = filepath.Join(dir, "nope.pem") }), []string{"g.caFile: stat " + filepath.Join(dir, "nope.pem")}},
		{"directory", with(func(c *Config) { c.CAFile = dir }), []string{"g.caFile: " + dir + " is a directory"}},
		{"timeouts and prefix", with(func(c *Config) { c.DialTimeout, c.RequestTimeout, c.Prefix = 0, -time.Second, "roost" }), []string{
			"g.dialTimeout: 0s must be positive", "g.requestTimeout: -1s must be positive", `g.prefix: "roost" must start and end with '/'`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Problems("g").Err()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Problems = %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Problems = none, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("Problems =\n%v\nwant %d lines", err, len(tt.want))
			}
			for i, w := range tt.want {
				if i < len(lines) && !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d = %q, want it to start with %q", i, lines[i], w)
				}
			}
		})
	}
	if err := (Config{Endpoints: []string{"http://a:1"}}).Validate(); err == nil || !strings.Contains(err.Error(), "dialTimeout:") {
		t.Errorf("Validate without a path = %v, want fields named without a prefix", err)
	}
}
