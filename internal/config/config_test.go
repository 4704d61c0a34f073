package config

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func defaults() Config {
	d := Default()
	d.Node = "host-default"
	return d
}

func TestLoadExample(t *testing.T) {
	f, err := os.Open("testdata/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Load(f, defaults())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Node:     "node1",
		ASN:      65101,
		RouterID: netip.MustParseAddr("10.0.1.2"),
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		Peers: []Peer{
			{Name: "tor1", Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000},
			{Name: "tor2", Address: netip.MustParseAddr("10.0.2.1"), ASN: 65000},
		},
		Bird:            Bird{Socket: "/run/bird/bird.ctl", ConfigDir: "/etc/bird"},
		Listen:          "127.0.0.1:9479",
		BlackholeRoutes: true,
		Debounce:        100 * time.Millisecond,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
	if got.Bird.ConfigFile() != "/etc/bird/bird.conf" {
		t.Errorf("ConfigFile = %q", got.Bird.ConfigFile())
	}
}

const base = `
asn: 65101
routerID: 10.0.1.2
podCIDRs: [10.244.1.0/24]
peers:
  - {name: tor1, address: 10.0.1.1, asn: 65000}
  - {name: tor2, address: 10.0.2.1, asn: 65000}
`

func TestLoadDefaults(t *testing.T) {
	c, err := Load(strings.NewReader(base), defaults())
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != "host-default" || c.Listen != "127.0.0.1:9479" || c.Bird.Socket != "/run/bird/bird.ctl" || !c.BlackholeRoutes {
		t.Errorf("defaults not kept: %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every substring must appear in the error
	}{
		{"invalid CIDR", strings.Replace(base, "10.244.1.0/24", "10.244.1.0/33", 1), []string{`podCIDRs[0]: "10.244.1.0/33" is not a CIDR prefix`}},
		{"host bits", strings.Replace(base, "10.244.1.0/24", "10.244.1.7/24", 1), []string{"podCIDRs[0]", "did you mean 10.244.1.0/24"}},
		{"AS 0", strings.Replace(base, "asn: 65101", "asn: 0", 1), []string{"asn: 0 is out of range"}},
		{"AS too large", strings.Replace(base, "asn: 65101", "asn: 4294967296", 1), []string{"asn: 4294967296 is out of range"}},
		{"peer AS out of range", strings.Replace(base, "asn: 65000}", "asn: -1}", 1), []string{"peers[0].asn: -1 is out of range"}},
		{"duplicate peer names", strings.Replace(base, "name: tor2", "name: tor1", 1), []string{`peers[1].name: "tor1" clashes with peers[0]`}},
		{"names equal after mapping", strings.Replace(strings.Replace(base, "name: tor1", "name: tor-a", 1), "name: tor2", "name: tor_a", 1), []string{`peers[1].name: "tor_a" clashes`}},
		{"bad peer name", strings.Replace(base, "name: tor1", "name: Tor 1", 1), []string{`peers[0].name: "Tor 1" must be`}},
		{"unknown field", base + "color: blue\n", []string{"field color not found"}},
		{"unknown nested field", base + "bird: {sock: /x}\n", []string{"field sock not found"}},
		{"ibgp", strings.Replace(base, "asn: 65000}", "asn: 65101}", 1), []string{"peers[0].asn: 65101 equals this node's asn"}},
		{"duplicate peer address", strings.Replace(base, "10.0.2.1", "10.0.1.1", 1), []string{"peers[1].address: 10.0.1.1 repeats peers[0]"}},
		{"bad peer address", strings.Replace(base, "10.0.2.1", "10.0.2", 1), []string{`peers[1].address: "10.0.2" is not an IP address`}},
		{"v6 prefix without v6 peer", strings.Replace(base, "[10.244.1.0/24]", "[10.244.1.0/24, 'fd00:10:244:1::/64']", 1), []string{"podCIDRs[1]: fd00:10:244:1::/64 cannot be announced"}},
		{"index after a bad prefix", strings.Replace(base, "[10.244.1.0/24]", "['x', 10.244.1.0/24, 10.244.1.0/24]", 1), []string{`podCIDRs[0]: "x"`, "podCIDRs[2]: 10.244.1.0/24 repeats podCIDRs[1]"}},
		{"duplicate prefix", strings.Replace(base, "[10.244.1.0/24]", "[10.244.1.0/24, 10.244.1.0/24]", 1), []string{"podCIDRs[1]: 10.244.1.0/24 repeats podCIDRs[0]"}},
		{"kubernetes with static", base + "kubernetes: {enabled: true}\n", []string{"podCIDRs: must be empty when kubernetes.enabled"}},
		{"no peers", "asn: 65101\nrouterID: 10.0.1.2\n", []string{"peers: at least one peer"}},
		{"router id v6", strings.Replace(base, "routerID: 10.0.1.2", "routerID: '::1'", 1), []string{`routerID: "::1" is not an IPv4 address`}},
		{"missing router id", strings.Replace(base, "routerID: 10.0.1.2", "", 1), []string{"routerID: must be set"}},
		{"bad listen", base + "listen: localhost\n", []string{`listen: "localhost" is not host:port`}},
		{"relative socket", base + "bird: {socket: bird.ctl}\n", []string{`bird.socket: "bird.ctl" must be an absolute path`}},
		{"password quote", strings.Replace(base, "asn: 65000}", "asn: 65000, password: 'a\"b'}", 1), []string{"peers[0].password: must not contain"}},
		{"bad debounce", base + "debounce: soon\n", []string{`debounce: "soon" is not a duration`}},
		{"many at once", "asn: 0\nrouterID: x\npodCIDRs: [bad]\npeers: [{name: A, address: y, asn: 0}]\n",
			[]string{"asn: 0 is out of range", `routerID: "x"`, `podCIDRs[0]: "bad"`, `peers[0].address: "y"`, "peers[0].asn: 0 is out of range", `peers[0].name: "A"`}},
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

func TestValidateEmptyFile(t *testing.T) {
	_, err := Load(strings.NewReader(""), defaults())
	if err == nil || !strings.Contains(err.Error(), "asn: must be set") {
		t.Fatalf("empty config: got %v", err)
	}
}
