package syncconfig

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// minimal is the least a valid sync.yaml says.
const minimal = "name: lab\netcd: {endpoints: ['http://127.0.0.1:2379']}\n"

func TestLoadExample(t *testing.T) {
	f, err := os.Open("testdata/sync.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Load(f)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Default()
	want.Name = "lab"
	want.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		yaml string          // after the minimal config's name line
		etcd string          // the etcd line; the minimal config's when empty
		want func(c *Config) // changes to the minimal config
	}{
		{name: "minimal", yaml: "", want: func(*Config) {}},
		{name: "no workloads file", yaml: "workloadsFile: ''\n", want: func(c *Config) { c.WorkloadsFile = "" }},
		{name: "workloads file is cleaned", yaml: "workloadsFile: /srv//roost/./w.yaml\n", want: func(c *Config) { c.WorkloadsFile = "/srv/roost/w.yaml" }},
		{name: "listen anywhere", yaml: "listen: ':9482'\n", want: func(c *Config) { c.Listen = ":9482" }},
		{name: "durations", yaml: "leaseTTL: 1m\nheartbeatTimeout: 10s\n", want: func(c *Config) {
			c.LeaseTTL, c.HeartbeatTimeout = time.Minute, 10*time.Second
		}},
		{name: "cluster", yaml: "cluster: prod\n", want: func(c *Config) { c.Cluster = "prod" }},
		{name: "etcd over TLS", etcd: "etcd: {endpoints: ['https://10.0.8.10:2379', 'https://10.0.8.11:2379'], requestTimeout: 2s, prefix: /lab/}\n", want: func(c *Config) {
			c.Etcd.Endpoints = []string{"https://10.0.8.10:2379", "https://10.0.8.11:2379"}
			c.Etcd.RequestTimeout = 2 * time.Second
			c.Etcd.Prefix = "/lab/"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			etcd := tt.etcd
			if etcd == "" {
				etcd = "etcd: {endpoints: ['http://127.0.0.1:2379']}\n"
			}
			got, err := Load(strings.NewReader("name: lab\n" + etcd + tt.yaml))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := Default()
			want.Name = "lab"
			want.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate of a loaded config: %v", err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every substring must be in the error
	}{
		{"empty file", "", []string{"name: must be set", "etcd.endpoints: at least one etcd client URL"}},
		{"unknown field", minimal + "ttl: 30s\n", []string{"line 3: field ttl not found"}},
		{"unknown etcd field", "name: lab\netcd: {endpoints: ['http://e:2379'], ca: /x}\n", []string{"field ca not found"}},
		{"wrong type", minimal + "name: [lab]\n", []string{"parse config"}},
		{"name with upper case", "name: Lab\netcd: {endpoints: ['http://e:2379']}\n", []string{`name: "Lab" must be 1-32 lower-case letters`}},
		{"name too long", "name: " + strings.Repeat("a", 33) + "\netcd: {endpoints: ['http://e:2379']}\n", []string{"name: ", "must be 1-32"}},
		{"name ending with -", "name: lab-\netcd: {endpoints: ['http://e:2379']}\n", []string{`name: "lab-" must be`}},
		{"bad etcd URL and timeout", "name: lab\netcd: {endpoints: ['etcd:2379'], dialTimeout: 5}\n", []string{`etcd.endpoints[0]: "etcd:2379" must be a URL`, `etcd.dialTimeout: "5" is not a duration`}},
		{"http with TLS files", "name: lab\netcd: {endpoints: ['http://e:2379'], caFile: /etc/hostname}\n", []string{"etcd.endpoints: are http URLs, but caFile"}},
		{"missing TLS file", "name: lab\netcd: {endpoints: ['https://e:2379'], caFile: /nonexistent/ca.pem}\n", []string{"etcd.caFile:", "/nonexistent/ca.pem"}},
		{"relative workloads file", minimal + "workloadsFile: workloads.yaml\n", []string{`workloadsFile: "workloads.yaml" must be an absolute path, or empty for none`}},
		{"listen without port", minimal + "listen: 127.0.0.1\n", []string{`listen: "127.0.0.1" is not host:port`}},
		{"listen on a name", minimal + "listen: localhost:9482\n", []string{`listen: "localhost:9482": host must be an IP address`}},
		{"short lease", minimal + "leaseTTL: 2s\n", []string{"leaseTTL: 2s must be whole seconds, at least 3s"}},
		{"lease in fractions", minimal + "leaseTTL: 3500ms\n", []string{"leaseTTL: 3.5s must be whole seconds"}},
		{"lease not a duration", minimal + "leaseTTL: 30\n", []string{`leaseTTL: "30" is not a duration (e.g. 30s)`}},
		{"short heartbeat timeout", minimal + "heartbeatTimeout: 500ms\n", []string{"heartbeatTimeout: 500ms must be at least 1s"}},
		{"heartbeat timeout not a duration", minimal + "heartbeatTimeout: soon\n", []string{`heartbeatTimeout: "soon" is not a duration`}},
		{"bad cluster", minimal + "cluster: Prod_1\n", []string{`cluster: "Prod_1" must be 1-32 lower-case letters`}},
		{
			name: "many at once",
			yaml: "name: ''\netcd: {endpoints: []}\nworkloadsFile: w\nlisten: x\nleaseTTL: 1s\nheartbeatTimeout: 0s\ncluster: X\n",
			want: []string{"name: must be set", "etcd.endpoints: at least one", `workloadsFile: "w"`, `listen: "x"`, "leaseTTL: 1s", "heartbeatTimeout: 0s", `cluster: "X"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.yaml))
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestLoadReportsConversionOnce checks that a value that failed to convert
// is not reported a second time as its default.
func TestLoadReportsConversionOnce(t *testing.T) {
	_, err := Load(strings.NewReader(minimal + "leaseTTL: long\n"))
	if err == nil {
		t.Fatal("Load succeeded")
	}
	if n := strings.Count(err.Error(), "leaseTTL"); n != 1 {
		t.Errorf("leaseTTL reported %d times in %q, want once", n, err)
	}
}

func TestValidate(t *testing.T) {
	valid := func() Config {
		c := Default()
		c.Name = "lab"
		c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
		return c
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // substring of the error; "" for valid
	}{
		{name: "valid", change: func(*Config) {}},
		{name: "defaults", change: func(c *Config) { *c = Default() }, want: "name: must be set"},
		{name: "no request timeout", change: func(c *Config) { c.Etcd.RequestTimeout = 0 }, want: "etcd.requestTimeout: 0s must be positive"},
		{name: "bad prefix", change: func(c *Config) { c.Etcd.Prefix = "roost" }, want: `etcd.prefix: "roost" must start and end with '/'`},
		{name: "no workloads file", change: func(c *Config) { c.WorkloadsFile = "" }},
		{name: "zero lease", change: func(c *Config) { c.LeaseTTL = 0 }, want: "leaseTTL: 0s must be whole seconds, at least 3s"},
		{name: "shortest lease", change: func(c *Config) { c.LeaseTTL = 3 * time.Second }},
		{name: "shortest heartbeat timeout", change: func(c *Config) { c.HeartbeatTimeout = time.Second }},
		{name: "cluster", change: func(c *Config) { c.Cluster = "c-1" }},
		{name: "cluster too long", change: func(c *Config) { c.Cluster = strings.Repeat("c", 33) }, want: "cluster: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
