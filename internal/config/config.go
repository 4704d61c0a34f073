// Package config is roost-agent's configuration: its schema, defaults,
// loading with unknown fields rejected, and validation that reports every
// problem at once with its field path.
//
// A Config returned by Load is validated and must be treated as immutable.
package config

import (
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/fieldcheck"
)

// DefaultPath is where roost-agent reads its configuration by default.
const DefaultPath = "/etc/roost/agent.yaml"

// Config is the validated configuration of roost-agent.
type Config struct {
	// Node is this node's name: the Kubernetes Node watched, and a label.
	Node string
	// ASN is this node's autonomous system number.
	ASN uint32
	// RouterID is BIRD's router id.
	RouterID netip.Addr
	// PodCIDRs are the static prefixes to announce when Kubernetes is off.
	PodCIDRs []netip.Prefix
	// Kubernetes selects the Kubernetes Node as the PodCIDR source.
	Kubernetes Kubernetes
	// Peers are the eBGP neighbours (the ToRs).
	Peers []Peer
	// Bird says where BIRD's socket and config directory are.
	Bird Bird
	// Listen is the host:port of the health, metrics and status API.
	Listen string
	// BlackholeRoutes keeps a kernel blackhole route per owned prefix.
	BlackholeRoutes bool
	// Debounce is the least time between two applies; changes that arrive
	// sooner are folded into the next apply.
	Debounce time.Duration
}

// Kubernetes configures the Kubernetes source.
type Kubernetes struct {
	Enabled bool
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string
}

// Peer is one eBGP neighbour.
type Peer struct {
	Name    string
	Address netip.Addr
	ASN     uint32
	// Password is the TCP MD5 secret; empty for none. Never logged.
	Password string
	// HoldTime in seconds; 0 leaves BIRD's default.
	HoldTime int
}

// Bird locates the BIRD daemon roost-agent drives.
type Bird struct {
	// Socket is BIRD's control socket.
	Socket string
	// ConfigDir holds bird.conf, the file BIRD is started with. In
	// containers, BIRD and the agent must see it at the same path.
	ConfigDir string
}

// ConfigFile returns the path of the BIRD config file roost-agent owns.
func (b Bird) ConfigFile() string { return strings.TrimRight(b.ConfigDir, "/") + "/bird.conf" }

// Default returns the configuration defaults. Node is left empty: the caller
// fills in the hostname.
func Default() Config {
	return Config{
		Bird:            Bird{Socket: "/run/bird/bird.ctl", ConfigDir: "/etc/bird"},
		Listen:          "127.0.0.1:9479",
		BlackholeRoutes: true,
		Debounce:        100 * time.Millisecond,
	}
}

// file is the YAML form of Config: plain strings, so that one bad value does
// not stop the others from being checked.
type file struct {
	Node            *string    `yaml:"node"`
	ASN             *int64     `yaml:"asn"`
	RouterID        *string    `yaml:"routerID"`
	PodCIDRs        []string   `yaml:"podCIDRs"`
	Kubernetes      *kubeFile  `yaml:"kubernetes"`
	Peers           []peerFile `yaml:"peers"`
	Bird            *birdFile  `yaml:"bird"`
	Listen          *string    `yaml:"listen"`
	BlackholeRoutes *bool      `yaml:"blackholeRoutes"`
	Debounce        *string    `yaml:"debounce"`
}

type kubeFile struct {
	Enabled    bool   `yaml:"enabled"`
	Kubeconfig string `yaml:"kubeconfig"`
}

type peerFile struct {
	Name     string `yaml:"name"`
	Address  string `yaml:"address"`
	ASN      int64  `yaml:"asn"`
	Password string `yaml:"password"`
	HoldTime int    `yaml:"holdTime"`
}

type birdFile struct {
	Socket    *string `yaml:"socket"`
	ConfigDir *string `yaml:"configDir"`
}

// Load reads a YAML configuration from r on top of defaults (normally
// Default with Node set to the hostname) and validates it. Unknown fields are
// an error. The returned error lists every problem found, each with its
// field path.
func Load(r io.Reader, defaults Config) (Config, error) {
	var f file
	if err := fieldcheck.Decode(r, &f); err != nil {
		return Config{}, err
	}
	c, convErrs := f.apply(defaults)
	if err := fieldcheck.Combine(convErrs, c.problems()); err != nil {
		return Config{}, err
	}
	return c, nil
}

// apply converts the YAML form onto defaults, collecting conversion errors.
func (f file) apply(c Config) (Config, fieldcheck.Problems) {
	var errs fieldcheck.Problems
	bad := errs.Add
	if f.Node != nil {
		c.Node = *f.Node
	}
	if f.ASN != nil {
		if asn, ok := asnOf(*f.ASN); ok {
			c.ASN = asn
		} else {
			bad("asn", "%d is out of range 1..4294967294", *f.ASN)
		}
	}
	if f.RouterID != nil {
		a, err := netip.ParseAddr(*f.RouterID)
		if err != nil || !a.Is4() {
			bad("routerID", "%q is not an IPv4 address", *f.RouterID)
		} else {
			c.RouterID = a
		}
	}
	if f.PodCIDRs != nil {
		c.PodCIDRs = nil
		for i, s := range f.PodCIDRs {
			// A bad entry stays as an invalid prefix so that the
			// indices Validate reports still match the file; Load
			// never returns it.
			p, err := netip.ParsePrefix(s)
			switch {
			case err != nil:
				bad(fmt.Sprintf("podCIDRs[%d]", i), "%q is not a CIDR prefix", s)
				p = netip.Prefix{}
			case p.Masked() != p:
				bad(fmt.Sprintf("podCIDRs[%d]", i), "%q has host bits set (did you mean %s?)", s, p.Masked())
				p = netip.Prefix{}
			}
			c.PodCIDRs = append(c.PodCIDRs, p)
		}
	}
	if f.Kubernetes != nil {
		c.Kubernetes = Kubernetes{Enabled: f.Kubernetes.Enabled, Kubeconfig: f.Kubernetes.Kubeconfig}
	}
	if f.Peers != nil {
		c.Peers = nil
		for i, p := range f.Peers {
			field := fmt.Sprintf("peers[%d]", i)
			peer := Peer{Name: p.Name, Password: p.Password, HoldTime: p.HoldTime}
			if a, err := netip.ParseAddr(p.Address); err != nil {
				bad(field+".address", "%q is not an IP address", p.Address)
			} else {
				peer.Address = a
			}
			if asn, ok := asnOf(p.ASN); ok {
				peer.ASN = asn
			} else {
				bad(field+".asn", "%d is out of range 1..4294967294", p.ASN)
			}
			c.Peers = append(c.Peers, peer)
		}
	}
	if f.Bird != nil {
		if f.Bird.Socket != nil {
			c.Bird.Socket = *f.Bird.Socket
		}
		if f.Bird.ConfigDir != nil {
			c.Bird.ConfigDir = *f.Bird.ConfigDir
		}
	}
	if f.Listen != nil {
		c.Listen = *f.Listen
	}
	if f.BlackholeRoutes != nil {
		c.BlackholeRoutes = *f.BlackholeRoutes
	}
	if f.Debounce != nil {
		d, err := time.ParseDuration(*f.Debounce)
		if err != nil {
			bad("debounce", "%q is not a duration (e.g. 100ms)", *f.Debounce)
		} else {
			c.Debounce = d
		}
	}
	return c, errs
}

// asnOf converts a YAML number to an ASN. 0 and 4294967295 are reserved
// (RFC 7607, RFC 7300) and refused.
func asnOf(n int64) (uint32, bool) {
	if n < 1 || n > 4294967294 {
		return 0, false
	}
	return uint32(n), true
}

// peerName is what a peer may be called: it becomes part of a BIRD protocol
// name, so letters, digits, '_' and '-' only, starting and ending with a
// letter or digit.
var peerName = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,30}[a-z0-9])?$`)

// Validate reports every problem of c at once, each naming its field.
func (c Config) Validate() error { return c.problems().Err() }

func (c Config) problems() fieldcheck.Problems {
	var errs fieldcheck.Problems
	bad := errs.Add
	if c.Node == "" {
		bad("node", "must be set (the hostname is the default)")
	}
	if c.ASN == 0 {
		bad("asn", "must be set (this node's AS number, 1..4294967294)")
	}
	if !c.RouterID.IsValid() {
		bad("routerID", "must be set (an IPv4 address, usually the node's uplink address)")
	}
	if c.Kubernetes.Enabled && len(c.PodCIDRs) > 0 {
		bad("podCIDRs", "must be empty when kubernetes.enabled is true (the Node's spec.podCIDRs is the source)")
	}
	if !c.Kubernetes.Enabled && c.Kubernetes.Kubeconfig != "" {
		bad("kubernetes.kubeconfig", "is set but kubernetes.enabled is false")
	}
	seenPrefix := map[netip.Prefix]int{}
	for i, p := range c.PodCIDRs {
		field := fmt.Sprintf("podCIDRs[%d]", i)
		if !p.IsValid() {
			bad(field, "must be a CIDR prefix")
			continue
		}
		if j, dup := seenPrefix[p]; dup {
			bad(field, "%s repeats podCIDRs[%d]", p, j)
		}
		seenPrefix[p] = i
		if !hasPeerOfFamily(c.Peers, p.Addr().Is4()) {
			bad(field, "%s cannot be announced: no peer has an address of its family", p)
		}
	}
	if len(c.Peers) == 0 {
		bad("peers", "at least one peer is needed")
	}
	seenName := map[string]int{}
	seenAddr := map[netip.Addr]int{}
	for i, p := range c.Peers {
		field := fmt.Sprintf("peers[%d]", i)
		if !peerName.MatchString(p.Name) {
			bad(field+".name", "%q must be 1-32 lower-case letters, digits, '_' or '-', starting and ending with a letter or digit", p.Name)
		}
		key := strings.ReplaceAll(p.Name, "-", "_")
		if j, dup := seenName[key]; dup {
			bad(field+".name", "%q clashes with peers[%d] (names equal once '-' is read as '_')", p.Name, j)
		}
		seenName[key] = i
		if p.Address.IsValid() {
			if j, dup := seenAddr[p.Address]; dup {
				bad(field+".address", "%s repeats peers[%d]", p.Address, j)
			}
			seenAddr[p.Address] = i
			if p.Address.IsUnspecified() || p.Address.IsMulticast() {
				bad(field+".address", "%s is not a unicast address", p.Address)
			}
		} else {
			bad(field+".address", "must be set")
		}
		if p.ASN == 0 {
			bad(field+".asn", "must be set")
		} else if p.ASN == c.ASN {
			bad(field+".asn", "%d equals this node's asn: roost speaks eBGP only", p.ASN)
		}
		if strings.ContainsAny(p.Password, "\"\\\n") {
			bad(field+".password", "must not contain '\"', '\\' or a newline")
		}
		if p.HoldTime != 0 && (p.HoldTime < 3 || p.HoldTime > 65535) {
			bad(field+".holdTime", "%d must be 0 (BIRD's default) or 3..65535 seconds", p.HoldTime)
		}
	}
	if c.Bird.Socket == "" || !strings.HasPrefix(c.Bird.Socket, "/") {
		bad("bird.socket", "%q must be an absolute path", c.Bird.Socket)
	}
	if c.Bird.ConfigDir == "" || !strings.HasPrefix(c.Bird.ConfigDir, "/") {
		bad("bird.configDir", "%q must be an absolute path", c.Bird.ConfigDir)
	}
	if err := fieldcheck.Listen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if c.Debounce < 0 || c.Debounce > time.Minute {
		bad("debounce", "%s must be between 0 and 1m", c.Debounce)
	}
	return errs
}

func hasPeerOfFamily(peers []Peer, v4 bool) bool {
	for _, p := range peers {
		if p.Address.IsValid() && p.Address.Unmap().Is4() == v4 {
			return true
		}
	}
	return false
}
