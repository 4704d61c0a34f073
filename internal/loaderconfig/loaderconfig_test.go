package loaderconfig

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/globalview"
)

func defaults() Config {
	d := Default()
	d.Node = "host-default"
	return d
}

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestLoadExample(t *testing.T) {
	f, err := os.Open("testdata/loader.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Load(f, defaults())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Node:          "node1",
		BPFFS:         "/sys/fs/bpf/roost",
		PolicyDir:     "/etc/roost/policies",
		EndpointsFile: "/etc/roost/endpoints.yaml",
		ServicesFile:  "/etc/roost/services.yaml",
		SocketLB:      SocketLB{Enabled: true},
		Listen:        "127.0.0.1:9480",
		Cluster:       "dc1",
		HostIPs:       []netip.Addr{netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("fd00:1::2")},
		GlobalView:    GlobalView{Etcd: globalview.Default(), Publish: true, PublishTTL: 30 * time.Second, SyncTimeout: time.Minute},
	}
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(c *Config) // changes to defaults()
	}{
		{name: "empty file keeps defaults", yaml: "", want: func(*Config) {}},
		{name: "only comments", yaml: "# nothing\n", want: func(*Config) {}},
		{name: "node", yaml: "node: node7\n", want: func(c *Config) { c.Node = "node7" }},
		{name: "paths are cleaned", yaml: "bpffs: /sys/fs/bpf/roost/\npolicyDir: /etc/roost//policies/\nendpointsFile: /etc/roost/./endpoints.yaml\nservicesFile: /etc/roost//services.yaml\n", want: func(c *Config) {}},
		{name: "no endpoints file", yaml: "endpointsFile: ''\n", want: func(c *Config) { c.EndpointsFile = "" }},
		{name: "services file", yaml: "servicesFile: /srv/roost/services.yaml\n", want: func(c *Config) { c.ServicesFile = "/srv/roost/services.yaml" }},
		{name: "no services file", yaml: "servicesFile: ''\n", want: func(c *Config) { c.ServicesFile = "" }},
		{name: "xdp LB", yaml: "xdpLB: {enabled: true, interfaces: [tor1, tor2], mode: generic, maglevSize: 16381, sourceIPv4: 10.0.1.2}\n", want: func(c *Config) {
			c.XDPLB = XDPLB{Enabled: true, Interfaces: []string{"tor1", "tor2"}, Mode: "generic", MaglevSize: 16381, SourceIPv4: netip.MustParseAddr("10.0.1.2")}
		}},
		{name: "socket LB", yaml: "socketLB: {enabled: true, cgroup: /sys/fs/cgroup/unified/}\n", want: func(c *Config) {
			c.SocketLB = SocketLB{Enabled: true, Cgroup: "/sys/fs/cgroup/unified"}
		}},
		{name: "kubernetes in-cluster", yaml: "kubernetes: {enabled: true}\n", want: func(c *Config) { c.Kubernetes.Enabled = true }},
		{
			name: "kubernetes with kubeconfig",
			yaml: "kubernetes: {enabled: true, kubeconfig: /etc/roost/kubeconfig}\n",
			want: func(c *Config) { c.Kubernetes = Kubernetes{Enabled: true, Kubeconfig: "/etc/roost/kubeconfig"} },
		},
		{name: "listen on any address", yaml: "listen: ':9480'\n", want: func(c *Config) { c.Listen = ":9480" }},
		{name: "listen on v6", yaml: "listen: '[::1]:9480'\n", want: func(c *Config) { c.Listen = "[::1]:9480" }},
		{name: "empty host ips", yaml: "hostIPs: []\n", want: func(c *Config) {}},
		{name: "cluster", yaml: "cluster: dc-2\n", want: func(c *Config) { c.Cluster = "dc-2" }},
		{name: "global view", yaml: "globalView: {etcd: {endpoints: ['http://10.0.8.10:2379'], requestTimeout: 2s}}\n", want: func(c *Config) {
			c.GlobalView.Enabled = true
			c.GlobalView.Etcd.Endpoints = []string{"http://10.0.8.10:2379"}
			c.GlobalView.Etcd.RequestTimeout = 2 * time.Second
		}},
		{name: "global view, not publishing", yaml: "globalView: {etcd: {endpoints: ['https://etcd:2379']}, publish: false, publishTTL: 1m, syncTimeout: 5m}\n", want: func(c *Config) {
			c.GlobalView = GlobalView{Enabled: true, Etcd: globalview.Default(), PublishTTL: time.Minute, SyncTimeout: 5 * time.Minute}
			c.GlobalView.Etcd.Endpoints = []string{"https://etcd:2379"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(strings.NewReader(tt.yaml), defaults())
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := defaults()
			tt.want(&want)
			if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
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
		want []string // every substring must appear in the error
	}{
		{"unknown field", "color: blue\n", []string{"field color not found"}},
		{"unknown nested field", "kubernetes: {enabled: true, config: /x}\n", []string{"field config not found"}},
		{"misspelt key", "policydir: /etc/roost/policies\n", []string{"field policydir not found"}},
		{"wrong type", "kubernetes: {enabled: maybe}\n", []string{"parse config", "maybe"}},
		{"empty node", "node: ''\n", []string{"node: must be set"}},
		{"relative bpffs", "bpffs: roost\n", []string{`bpffs: "roost" must be an absolute path`}},
		{"root bpffs", "bpffs: /\n", []string{"bpffs: must not be /"}},
		{"empty bpffs", "bpffs: ''\n", []string{`bpffs: "" must be an absolute path`}},
		{"relative policy dir", "policyDir: policies\n", []string{`policyDir: "policies" must be an absolute path`}},
		{"empty policy dir", "policyDir: ''\n", []string{`policyDir: "" must be an absolute path`}},
		{"relative endpoints file", "endpointsFile: endpoints.yaml\n", []string{`endpointsFile: "endpoints.yaml" must be an absolute path, or empty`}},
		{"relative services file", "servicesFile: services.yaml\n", []string{`servicesFile: "services.yaml" must be an absolute path, or empty for none`}},
		{"relative cgroup", "socketLB: {enabled: true, cgroup: sys/fs/cgroup}\n", []string{`socketLB.cgroup: "sys/fs/cgroup" must be an absolute path (a cgroup v2 directory), or empty for the root of the hierarchy`}},
		{"cgroup without socket LB", "socketLB: {cgroup: /sys/fs/cgroup}\n", []string{`socketLB.cgroup: is set but socketLB.enabled is false`}},
		{"socket LB unknown key", "socketLB: {enable: true}\n", []string{`enable`}},
		{"xdp LB without interfaces", "xdpLB: {enabled: true}\n", []string{"xdpLB.interfaces: must name the node's uplinks"}},
		{"xdp LB bad mode", "xdpLB: {enabled: true, interfaces: [eth0], mode: offload}\n", []string{`xdpLB.mode: "offload" must be one of auto, native, generic`}},
		{"xdp LB table size not prime", "xdpLB: {enabled: true, interfaces: [eth0], maglevSize: 65536}\n", []string{"xdpLB.maglevSize: bad maglev table size 65536"}},
		{"xdp LB source of the other family", "xdpLB: {enabled: true, interfaces: [eth0], sourceIPv4: 'fd00::1', sourceIPv6: 10.0.0.1}\n", []string{"xdpLB.sourceIPv4: fd00::1 must be a unicast IPv4", "xdpLB.sourceIPv6: 10.0.0.1 must be a unicast IPv6"}},
		{"xdp LB bad source", "xdpLB: {enabled: true, interfaces: [eth0], sourceIPv4: 10.0.0}\n", []string{`xdpLB.sourceIPv4: "10.0.0" is not an IP address`}},
		{"xdp LB repeated interface", "xdpLB: {enabled: true, interfaces: [eth0, eth1, eth0]}\n", []string{`xdpLB.interfaces[2]: "eth0" repeats xdpLB.interfaces[0]`}},
		{"xdp LB settings while off", "xdpLB: {interfaces: [eth0]}\n", []string{"xdpLB: has settings but xdpLB.enabled is false"}},
		{"misspelt services file", "serviceFile: /etc/roost/services.yaml\n", []string{"field serviceFile not found"}},
		{"kubeconfig without kubernetes", "kubernetes: {kubeconfig: /etc/kubeconfig}\n", []string{"kubernetes.kubeconfig: is set but kubernetes.enabled is false"}},
		{"relative kubeconfig", "kubernetes: {enabled: true, kubeconfig: kc}\n", []string{`kubernetes.kubeconfig: "kc" must be an absolute path`}},
		{"listen without port", "listen: 127.0.0.1\n", []string{`listen: "127.0.0.1" is not host:port`}},
		{"listen on a name", "listen: localhost:9480\n", []string{`listen: "localhost:9480": host must be an IP address`}},
		{"listen port out of range", "listen: 127.0.0.1:70000\n", []string{`listen: "127.0.0.1:70000": port must be 0..65535`}},
		{"bad host ip", "hostIPs: [10.0.1]\n", []string{`hostIPs[0]: "10.0.1" is not an IP address`}},
		{"host ip prefix", "hostIPs: [10.0.1.2/24]\n", []string{`hostIPs[0]: "10.0.1.2/24" is not an IP address`}},
		{"duplicate host ip", "hostIPs: [10.0.1.2, 10.0.1.3, 10.0.1.2]\n", []string{"hostIPs[2]: 10.0.1.2 repeats hostIPs[0]"}},
		{"unspecified host ip", "hostIPs: [0.0.0.0]\n", []string{"hostIPs[0]: 0.0.0.0 is not a unicast address"}},
		{"loopback host ip", "hostIPs: ['::1']\n", []string{"hostIPs[0]: ::1 is not a unicast address"}},
		{"multicast host ip", "hostIPs: [224.0.0.5]\n", []string{"hostIPs[0]: 224.0.0.5 is not a unicast address"}},
		{"mapped host ip", "hostIPs: ['::ffff:10.0.1.2']\n", []string{"hostIPs[0]: ::ffff:10.0.1.2 is IPv4-mapped; write 10.0.1.2"}},
		{"global view without etcd", "globalView: {publish: true}\n", []string{"globalView.etcd.endpoints: at least one etcd client URL"}},
		{"global view, bad etcd", "globalView: {etcd: {endpoints: ['etcd:2379'], dialTimeout: 5}}\n", []string{`globalView.etcd.endpoints[0]: "etcd:2379" must be a URL`, `globalView.etcd.dialTimeout: "5" is not a duration`}},
		{"global view, unknown key", "globalView: {etcd: {endpoints: ['http://e:2379'], ca: x}}\n", []string{"field ca not found"}},
		{"global view, short TTL", "globalView: {etcd: {endpoints: ['http://e:2379']}, publishTTL: 1s}\n", []string{"globalView.publishTTL: 1s must be whole seconds, at least 3s"}},
		{"global view, bad sync timeout", "globalView: {etcd: {endpoints: ['http://e:2379']}, syncTimeout: 0s}\n", []string{"globalView.syncTimeout: 0s must be positive"}},
		{"global view, bad TTL", "globalView: {etcd: {endpoints: ['http://e:2379']}, publishTTL: long}\n", []string{`globalView.publishTTL: "long" is not a duration`}},
		{"zoned host ip", "hostIPs: ['fe80::1%eth0']\n", []string{"hostIPs[0]: fe80::1%eth0 must not have a zone"}},
		{
			name: "many at once",
			yaml: "node: ''\nbpffs: x\npolicyDir: y\nendpointsFile: z\nservicesFile: s\nlisten: nope\nhostIPs: [bad, 0.0.0.0]\nkubernetes: {kubeconfig: /k}\n",
			want: []string{
				"node: must be set", `bpffs: "x"`, `policyDir: "y"`, `endpointsFile: "z"`, `servicesFile: "s"`, `listen: "nope"`,
				`hostIPs[0]: "bad"`, "hostIPs[1]: 0.0.0.0", "kubernetes.kubeconfig: is set",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.yaml), defaults())
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", tt.want)
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
// is not reported a second time as its (valid) default.
func TestLoadReportsConversionOnce(t *testing.T) {
	_, err := Load(strings.NewReader("hostIPs: [bad]\n"), defaults())
	if err == nil {
		t.Fatal("Load succeeded")
	}
	if n := strings.Count(err.Error(), "hostIPs[0]"); n != 1 {
		t.Errorf("hostIPs[0] reported %d times in %q, want once", n, err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // substring of the error; "" for valid
	}{
		{name: "defaults with a node", change: func(*Config) {}},
		{name: "defaults without a node", change: func(c *Config) { c.Node = "" }, want: "node: must be set"},
		{name: "empty cluster", change: func(c *Config) { c.Cluster = "" }, want: `cluster: "" must be 1-32 lower-case letters`},
		{name: "cluster with upper case", change: func(c *Config) { c.Cluster = "DC1" }, want: `cluster: "DC1" must be`},
		{name: "cluster too long", change: func(c *Config) { c.Cluster = strings.Repeat("a", 33) }, want: "must be 1-32"},
		{name: "zero host ip", change: func(c *Config) { c.HostIPs = []netip.Addr{{}} }, want: "hostIPs[0]: must be set"},
		{name: "relative bpffs", change: func(c *Config) { c.BPFFS = "bpf" }, want: `bpffs: "bpf" must be an absolute path`},
		{name: "no services file", change: func(c *Config) { c.ServicesFile = "" }},
		{name: "relative services file", change: func(c *Config) { c.ServicesFile = "services.yaml" }, want: `servicesFile: "services.yaml" must be an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want error containing %q", err, tt.want)
			}
		})
	}
}
