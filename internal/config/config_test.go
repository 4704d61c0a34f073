package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/community"
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
		Bird: Bird{
			Socket: "/run/bird/bird.ctl", ConfigDir: "/etc/bird", Binary: "bird",
			Timeout: 3 * time.Second, ConfirmTimeout: 30 * time.Second,
			LogFile: "/run/bird/bird.log",
		},
		Listen:          "127.0.0.1:9479",
		ControlSocket:   "/run/roost/agent.sock",
		BlackholeRoutes: true,
		ResyncInterval:  10 * time.Second,
		Debounce:        100 * time.Millisecond,
		VIPs:            VIPs{Table: DefaultVIPTable},
		Drain:           Drain{Wait: DefaultDrainWait, StateFile: DefaultDrainStateFile},
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

func TestLoadLogFile(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{name: "default", yaml: base, want: "/run/bird/bird.log"},
		{name: "beside another socket", yaml: base + "bird: {socket: /var/run/bird2/bird.ctl}\n", want: "/var/run/bird2/bird.log"},
		{name: "set", yaml: base + "bird: {socket: /var/run/bird2/bird.ctl, logFile: /var/log/bird/bird.log}\n", want: "/var/log/bird/bird.log"},
		{name: "off", yaml: base + "bird: {logFile: ''}\n", want: ""},
		{name: "other bird keys", yaml: base + "bird: {timeout: 1s}\n", want: "/run/bird/bird.log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(strings.NewReader(tt.yaml), defaults())
			if err != nil {
				t.Fatal(err)
			}
			if c.Bird.LogFile != tt.want {
				t.Errorf("bird.logFile = %q, want %q", c.Bird.LogFile, tt.want)
			}
			if got := c.BirdInput(nil).LogFile; got != tt.want {
				t.Errorf("BirdInput().LogFile = %q, want %q", got, tt.want)
			}
		})
	}
	if got := Default().Bird.LogFile; got != DefaultLogFile(Default().Bird.Socket) || got != "/run/bird/bird.log" {
		t.Errorf("Default().Bird.LogFile = %q", got)
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
		{"password quote", strings.Replace(base, "asn: 65000}", "asn: 65000, password: 'a\"b'}", 1), []string{`peers[0].password: must hold only printable ASCII characters other than '"' and '\', but has a '"'`}},
		{"bad debounce", base + "debounce: soon\n", []string{`debounce: "soon" is not a duration`}},
		{"bad bird timeout", base + "bird: {timeout: forever}\n", []string{`bird.timeout: "forever" is not a duration`}},
		{"tiny bird timeout", base + "bird: {timeout: 1ms}\n", []string{"bird.timeout: 1ms must be between 100ms and 5m"}},
		{"short confirm timeout", base + "bird: {confirmTimeout: 500ms}\n", []string{"bird.confirmTimeout: 500ms must be 0 (no timed apply) or between 1s and 1h"}},
		{"empty bird binary", base + "bird: {binary: ''}\n", []string{"bird.binary: must be set"}},
		{"bad config group", base + "bird: {configGroup: 'a b'}\n", []string{`bird.configGroup: "a b" is not a group name or number`}},
		{"relative log file", base + "bird: {logFile: bird.log}\n", []string{`bird.logFile: "bird.log" must be an absolute path`}},
		{"log file with quote", base + "bird: {logFile: '/run/bird/\"x'}\n", []string{`bird.logFile: "/run/bird/\"x" must hold only printable ASCII characters other than '"' and '\'`}},
		{"log file not clean", base + "bird: {logFile: /run/bird/}\n", []string{`bird.logFile: "/run/bird/" is not a clean path`}},
		{"log file is the socket", base + "bird: {logFile: /run/bird/bird.ctl}\n", []string{`bird.logFile: "/run/bird/bird.ctl" would overwrite /run/bird/bird.ctl (bird.socket)`}},
		{"log file is bird.conf", base + "bird: {logFile: /etc/bird/bird.conf}\n", []string{`bird.logFile: "/etc/bird/bird.conf" would overwrite /etc/bird/bird.conf (bird.conf in bird.configDir)`}},
		{"log file beside a relative socket", base + "bird: {socket: bird.ctl}\n", []string{`bird.socket: "bird.ctl" must be an absolute path`}},
		{"relative control socket", base + "controlSocket: agent.sock\n", []string{`controlSocket: "agent.sock" must be an absolute path`}},
		{"bad resync", base + "resyncInterval: 10ms\n", []string{"resyncInterval: 10ms must be between 100ms and 1h"}},
		{"keyword name", strings.Replace(base, "name: tor2", "name: path", 1), []string{`peers[1].name: "path" would make protocol bgp_path, a BIRD keyword`}},
		{"dashed keyword name", strings.Replace(base, "name: tor1", "name: local-pref", 1), []string{`peers[0].name: "local-pref" would make protocol bgp_local_pref`}},
		{"password tab", strings.Replace(base, "asn: 65000}", `asn: 65000, password: "SECRET\tx"}`, 1), []string{"peers[0].password: must hold only printable ASCII", "but has a tab"}},
		{"password CR", strings.Replace(base, "asn: 65000}", `asn: 65000, password: "SECRET\r"}`, 1), []string{"peers[0].password:", "but has a carriage return"}},
		{"password not ASCII", strings.Replace(base, "asn: 65000}", "asn: 65000, password: SECRETä}", 1), []string{"peers[0].password:", "but has a non-ASCII character"}},
		{"password too long", strings.Replace(base, "asn: 65000}", "asn: 65000, password: SECRET"+strings.Repeat("x", 75)+"}", 1), []string{"peers[0].password: is 81 bytes long; Linux takes at most 80"}},
		{"link-local without zone", strings.Replace(base, "10.0.2.1", "'fe80::1'", 1), []string{"peers[1].address: fe80::1 is link-local, so it needs a zone naming its interface"}},
		{"zone on global address", strings.Replace(base, "10.0.2.1", "'2001:db8::1%eth0'", 1), []string{`peers[1].address: 2001:db8::1 has zone "eth0", but only an IPv6 link-local address may have one`}},
		{"bad zone", strings.Replace(base, "10.0.2.1", `"fe80::1%eth\"0"`, 1), []string{`peers[1].address: fe80::1 has zone "eth\"0", which is not an interface name`}},
		{"zone with newline, repeated", strings.Replace(strings.Replace(base, "10.0.2.1", `"fe80::1%a\nb"`, 1), "10.0.1.1", `"fe80::1%a\nb"`, 1), []string{`peers[1].address: "fe80::1%a\nb" repeats peers[0]`}},
		{"mapped neighbor", strings.Replace(base, "10.0.2.1", "'::ffff:192.0.2.1'", 1), []string{"peers[1].address: ::ffff:192.0.2.1 is an IPv4-mapped IPv6 address; write it as IPv4 (192.0.2.1)"}},
		{"mapped prefix", strings.Replace(base, "[10.244.1.0/24]", "[10.244.1.0/24, '::ffff:10.244.2.0/120']", 1), []string{"podCIDRs[1]: ::ffff:10.244.2.0/120 is an IPv4-mapped IPv6 prefix"}},
		{"router id zero", strings.Replace(base, "routerID: 10.0.1.2", "routerID: 0.0.0.0", 1), []string{"routerID: 0.0.0.0 is unspecified; BIRD needs a non-zero router id"}},
		{"router id mapped", strings.Replace(base, "routerID: 10.0.1.2", "routerID: '::ffff:10.0.1.2'", 1), []string{`routerID: "::ffff:10.0.1.2" is not an IPv4 address`}},
		{"hold time", strings.Replace(base, "asn: 65000}", "asn: 65000, holdTime: 2}", 1), []string{"peers[0].holdTime: 2 must be 0 (BIRD's default) or 3..65535 seconds"}},
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
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q shows the password", err)
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

// withPasswordFile is base with peers[0] reading its password from path;
// extra is more YAML for that peer.
func withPasswordFile(path, extra string) string {
	return strings.Replace(base, "asn: 65000}", fmt.Sprintf("asn: 65000, passwordFile: %q%s}", path, extra), 1)
}

func TestLoadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Run("accepted", func(t *testing.T) {
		for _, tc := range []struct {
			name, content string
			mode          os.FileMode
			want          string
		}{
			{"newline", "S3cret#x\n", 0o600, "S3cret#x"},
			{"crlf", "S3cret#x\r\n", 0o600, "S3cret#x"},
			{"no line end", "S3cret#x", 0o400, "S3cret#x"},
			{"spaces kept", " S3cret x \n", 0o600, " S3cret x "},
			{"80 bytes", strings.Repeat("s", 80) + "\n", 0o600, strings.Repeat("s", 80)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				path := write(strings.ReplaceAll(tc.name, " ", "_"), tc.content, tc.mode)
				c, err := Load(strings.NewReader(withPasswordFile(path, "")), defaults())
				if err != nil {
					t.Fatal(err)
				}
				if p := c.Peers[0]; p.Password != tc.want || p.PasswordFile != path {
					t.Errorf("peer password %q from %q, want %q from %q", p.Password, p.PasswordFile, tc.want, path)
				}
				if p := c.Peers[1]; p.Password != "" || p.PasswordFile != "" {
					t.Errorf("the other peer got password %q from %q", p.Password, p.PasswordFile)
				}
			})
		}
	})
	t.Run("empty inline password", func(t *testing.T) {
		path := write("with_empty_inline", "S3cret\n", 0o600)
		c, err := Load(strings.NewReader(withPasswordFile(path, ", password: ''")), defaults())
		if err != nil || c.Peers[0].Password != "S3cret" {
			t.Fatalf("Load = %v, password %q", err, c.Peers[0].Password)
		}
	})

	const secret = "SECRET"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"mode 0644", withPasswordFile(write("m644", secret, 0o644), ""), `has mode 0644, so group or others may access it; run chmod 600 "` + dir},
		{"mode 0640", withPasswordFile(write("m640", secret, 0o640), ""), "has mode 0640"},
		{"mode 0604", withPasswordFile(write("m604", secret, 0o604), ""), "has mode 0604"},
		{"mode 0601", withPasswordFile(write("m601", secret, 0o601), ""), "has mode 0601"},
		{"missing", withPasswordFile(filepath.Join(dir, "missing"), ""), `peers[0].passwordFile: "` + dir + `/missing": no such file or directory`},
		{"relative", withPasswordFile("tor1.pw", ""), `peers[0].passwordFile: "tor1.pw" must be an absolute path`},
		{"directory", withPasswordFile(dir, ""), `peers[0].passwordFile: "` + dir + `" is not a regular file`},
		{"both", withPasswordFile(write("both", secret, 0o600), ", password: "+secret), "peers[0].passwordFile: is set, and so is password: keep only one"},
		{"empty", withPasswordFile(write("empty", "", 0o600), ""), "is empty; for a session without password, remove passwordFile"},
		{"only a newline", withPasswordFile(write("newline", "\n", 0o600), ""), "is empty"},
		{"two newlines", withPasswordFile(write("two_newlines", secret+"\n\n", 0o600), ""), `the password must hold only printable ASCII characters other than '"' and '\', but has a newline (only one trailing "\n" or "\r\n" is removed)`},
		{"quote", withPasswordFile(write("quote", secret+`"x`, 0o600), ""), `/quote": the password must hold only printable ASCII characters other than '"' and '\', but has a '"'`},
		{"tab", withPasswordFile(write("tab", secret+"\tx", 0o600), ""), "but has a tab"},
		{"not ascii", withPasswordFile(write("unicode", secret+"ä", 0o600), ""), "but has a non-ASCII character"},
		{"too long", withPasswordFile(write("long", secret+strings.Repeat("x", 75)+"\n", 0o600), ""), "the password is 81 bytes long"},
		{"huge", withPasswordFile(write("huge", strings.Repeat(secret, 1000), 0o600), ""), "is larger than 4096 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.yaml), defaults())
			if err == nil {
				t.Fatalf("Load succeeded, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "peers[0].passwordFile: ") {
				t.Errorf("error %q\ndoes not say peers[0].passwordFile: ...%q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// TestRenderProblems tests the last guard of validation on configs that the
// field checks would refuse anyway: each problem birdconf.Render finds is
// reported at its field, on one line.
func TestRenderProblems(t *testing.T) {
	c, err := Load(strings.NewReader(base), defaults())
	if err != nil {
		t.Fatal(err)
	}
	if p := c.renderProblems(); p != nil {
		t.Fatalf("a valid config: %v", p.Err())
	}
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"router id", func(c *Config) { c.RouterID = netip.MustParseAddr("0.0.0.0") }, []string{"routerID: roost-agent cannot render this"}},
		{"peer and prefix", func(c *Config) {
			c.Peers = append(c.Peers, Peer{Name: "med", Address: netip.MustParseAddr("fe80::1"), ASN: 65000, Password: "SECRET\n"})
			c.PodCIDRs = append(c.PodCIDRs, netip.MustParsePrefix("::ffff:10.0.0.0/104"))
		}, []string{"peers[2]: roost-agent cannot render this", `peer name "med" would make protocol bgp_med`, "; peer \"med\": neighbor fe80::1 is link-local", "podCIDRs[1]: roost-agent"}},
		{"two peers", func(c *Config) { c.Peers[1].Address = c.Peers[0].Address }, []string{"peers: roost-agent cannot render this", "the same neighbor address"}},
		{"log file", func(c *Config) { c.Bird.LogFile = "/run/bird/a\"b" }, []string{"bird.logFile: roost-agent cannot render this", "log file \"/run/bird/a\\\"b\" must hold only"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := c
			c.Peers, c.PodCIDRs = slices.Clone(c.Peers), slices.Clone(c.PodCIDRs)
			tc.edit(&c)
			err := c.renderProblems().Err()
			if err == nil {
				t.Fatal("no problem found")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q shows the password", err)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(c.renderProblems()) {
				t.Errorf("%d problems print as %d lines", len(c.renderProblems()), n)
			}
			if c.Validate() == nil {
				t.Error("Validate accepts it")
			}
		})
	}
}

// TestVIPs: the vips section, its defaults, its checks, and what it
// changes in BIRD's input.
func TestVIPs(t *testing.T) {
	base := "node: node1\nasn: 65101\nrouterID: 10.0.1.2\npodCIDRs: [10.244.1.0/24]\npeers: [{name: tor1, address: 10.0.1.1, asn: 65000}]\n"
	c, err := Load(strings.NewReader(base), defaults())
	if err != nil {
		t.Fatal(err)
	}
	if c.VIPs != (VIPs{Table: DefaultVIPTable}) || c.BirdInput(nil).VIPTable != 0 {
		t.Errorf("default: %+v, BIRD input table %d; want no VIPs", c.VIPs, c.BirdInput(nil).VIPTable)
	}
	c, err = Load(strings.NewReader(base+"vips: {servicesFile: /etc/roost/services.yaml, table: 300}\n"), defaults())
	if err != nil {
		t.Fatal(err)
	}
	if c.VIPs != (VIPs{ServicesFile: "/etc/roost/services.yaml", Table: 300}) || c.BirdInput(nil).VIPTable != 300 {
		t.Errorf("set: %+v, BIRD input table %d", c.VIPs, c.BirdInput(nil).VIPTable)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"vips: {servicesFile: services.yaml}\n", `vips.servicesFile: "services.yaml" must be an absolute path`},
		{"vips: {table: 254}\n", "vips.table: 254 is not a table of its own"},
		{"vips: {table: 0}\n", "vips.table: 0 is not a table of its own"},
		{"vips: {file: /x}\n", "file"},
		{"vips: {kubernetes: true}\n", "vips.kubernetes: needs kubernetes.enabled"},
	} {
		if _, err := Load(strings.NewReader(base+tc.yaml), defaults()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestPeerBFD: a peer's bfd section, its defaults and its checks.
func TestPeerBFD(t *testing.T) {
	base := "node: node1\nasn: 65101\nrouterID: 10.0.1.2\npodCIDRs: [10.244.1.0/24]\n"
	c, err := Load(strings.NewReader(base+"peers: [{name: tor1, address: 10.0.1.1, asn: 65000, bfd: {}}, {name: tor2, address: 10.0.2.1, asn: 65000, bfd: {interval: 50ms, multiplier: 5}}, {name: tor3, address: 10.0.3.1, asn: 65000}]\n"), defaults())
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Peers[0].BFD; b == nil || b.Interval != DefaultBFDInterval || b.Multiplier != DefaultBFDMultiplier {
		t.Errorf("bfd: {} = %+v, want the defaults", b)
	}
	if b := c.Peers[1].BFD; b == nil || b.Interval != 50*time.Millisecond || b.Multiplier != 5 {
		t.Errorf("bfd = %+v", b)
	}
	if c.Peers[2].BFD != nil || c.BirdInput(nil).Peers[1].BFD == nil {
		t.Errorf("no bfd section: %+v; BIRD input %+v", c.Peers[2].BFD, c.BirdInput(nil).Peers)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"bfd: {interval: 1ms}", "peers[0].bfd: bad BFD setting: interval 1ms must be whole milliseconds from 10ms to 10s"},
		{"bfd: {interval: 100500us}", "peers[0].bfd: bad BFD setting: interval 100.5ms"},
		{"bfd: {multiplier: 1}", "peers[0].bfd: bad BFD setting: multiplier 1 must be 2 to 255"},
		{"bfd: {interval: soon}", `peers[0].bfd.interval: "soon" is not a duration`},
		{"bfd: {rx: 10ms}", "rx"},
	} {
		y := base + "peers: [{name: tor1, address: 10.0.1.1, asn: 65000, " + tc.yaml + "}]\n"
		if _, err := Load(strings.NewReader(y), defaults()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestPeerOptions: every other option of a peer, the communities per
// prefix class and the drain section, what they give BIRD, and their checks
// at their field paths.
func TestPeerOptions(t *testing.T) {
	base := "node: node1\nasn: 4200000101\nrouterID: 10.0.1.2\npodCIDRs: [10.244.1.0/24]\n"
	c, err := Load(strings.NewReader(base+`peers:
  - name: tor1
    address: 10.0.1.1
    asn: 4200000000
    holdTime: 9
    keepaliveTime: 3
    connectRetryTime: 5
    multihop: 2
    sourceAddress: 10.0.1.2
    port: 1179
    passive: true
    gracefulRestart: {restartTime: 300}
    med: 4294967295
    communities: ["65000:7", "4200000101:9:9", "65000:7"]
  - {name: tor1-v6, address: "2001:db8::1", asn: 65000, extendedNextHop: true, gracefulRestart: {enabled: false}}
communities: {podCIDR: ["65000:100"], vip: ["65000:200", "65101:1:1"]}
drain: {wait: 5s, stateFile: /run/roost/drain.json}
`), defaults())
	if err != nil {
		t.Fatal(err)
	}
	in := c.BirdInput(c.PodCIDRs)
	want := birdconf.Peer{
		Name: "tor1", Address: netip.MustParseAddr("10.0.1.1"), ASN: 4200000000, HoldTime: 9,
		Options: birdconf.Options{
			KeepaliveTime: 3, ConnectRetryTime: 5, Multihop: 2, SourceAddress: netip.MustParseAddr("10.0.1.2"), Port: 1179, Passive: true,
			GracefulRestartTime: 300, MED: new(uint32(4294967295)),
			Communities: []community.Community{{A: 65000, B: 7}, {Large: true, A: 4200000101, B: 9, C: 9}},
		},
	}
	cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if diff := cmp.Diff(want, in.Peers[0], cmpAddr); diff != "" {
		t.Errorf("tor1 (-want +got):\n%s", diff)
	}
	if p := in.Peers[1]; !p.ExtendedNextHop || !p.NoGracefulRestart {
		t.Errorf("tor1-v6: %+v", p)
	}
	if got := community.Join(in.PodCIDRCommunities) + " " + community.Join(in.VIPCommunities); got != "65000:100 65000:200,65101:1:1" {
		t.Errorf("communities %q", got)
	}
	if c.Drain != (Drain{Wait: 5 * time.Second, StateFile: "/run/roost/drain.json"}) {
		t.Errorf("drain %+v", c.Drain)
	}
	if _, err := birdconf.Render(in); err != nil {
		t.Error(err)
	}

	peer := "peers: [{name: tor1, address: 10.0.1.1, asn: 65000, "
	for _, tc := range []struct{ yaml, want string }{
		{peer + "keepaliveTime: 300}]", "peers[0].keepaliveTime: keepalive time 300 must be less than the hold time (240 s)"},
		{peer + "holdTime: 9, keepaliveTime: 10}]", "peers[0].keepaliveTime: keepalive time 10 must be less than the hold time (9 s)"},
		{peer + "connectRetryTime: 70000}]", "peers[0].connectRetryTime: connect retry time 70000"},
		{peer + "multihop: 300}]", "peers[0].multihop: multihop 300 must be 0"},
		{peer + "sourceAddress: nowhere}]", `peers[0].sourceAddress: "nowhere" is not an IP address`},
		{peer + "sourceAddress: \"2001:db8::2\"}]", "peers[0].sourceAddress: source address 2001:db8::2 is not of the neighbor's family"},
		{peer + "port: 70000}]", "peers[0].port: 70000 is not a TCP port"},
		{peer + "gracefulRestart: {enabled: false, restartTime: 60}}]", "peers[0].gracefulRestart: graceful restart time 60 is set, but graceful restart is off"},
		{peer + "gracefulRestart: {restartTime: 5000}}]", "peers[0].gracefulRestart: graceful restart time 5000"},
		{peer + "extendedNextHop: true}]", "peers[0].extendedNextHop: extended next hop carries IPv4 prefixes over an IPv6 session"},
		{peer + "med: -1}]", "peers[0].med: -1 is out of range"},
		{peer + "communities: [\"65536:1\"]}]", `peers[0].communities[0]: "65536:1"`},
		{peer + "localPref: 100}]", "localPref"},
		{peer + "}]\ncommunities: {vip: [x]}", `communities.vip[0]: "x"`},
		{peer + "}]\ncommunities: {pods: []}", "pods"},
		{peer + "}]\ndrain: {wait: 2h}", "drain.wait: 2h0m0s must be between 0 and 1h"},
		{peer + "}]\ndrain: {stateFile: drain.json}", `drain.stateFile: "drain.json" must be an absolute, clean path`},
	} {
		if _, err := Load(strings.NewReader(base+tc.yaml+"\n"), defaults()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
