// Package config is roost-agent's configuration: its schema, defaults,
// loading with unknown fields rejected, and validation that reports every
// problem at once with its field path. Validation checks each value that
// reaches bird.conf with birdconf's own Check functions and finally renders
// the config, so that a config it accepts is one birdconf renders.
//
// A Config returned by Load is validated and must be treated as immutable.
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/community"
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
	// Peers are the eBGP neighbours (the ToRs). A peer's TCP MD5
	// password is given inline or, kept out of agent.yaml, in a file of
	// its own (Peer.PasswordFile) that Load reads.
	Peers []Peer
	// Bird says where BIRD's socket and config directory are.
	Bird Bird
	// Listen is the host:port of the health, readiness, metrics and
	// status API. It serves nothing secret and changes nothing.
	Listen string
	// ControlSocket is the unix socket (mode 0600) that serves the
	// rendered config and reload (roostctl config, roostctl reload).
	ControlSocket string
	// BlackholeRoutes keeps a kernel blackhole route per owned prefix.
	BlackholeRoutes bool
	// ResyncInterval is how often the kernel blackhole routes are read
	// back whole and repaired (e.g. one deleted by hand).
	ResyncInterval time.Duration
	// Debounce is the least time between two applies; changes that arrive
	// sooner are folded into the next apply.
	Debounce time.Duration
	// VIPs announces the services' VIPs.
	VIPs VIPs
	// Communities are added to what the node announces, per prefix class.
	Communities Communities
	// Drain configures roostctl drain.
	Drain Drain
}

// Communities are the communities added to every route of a prefix class.
// A VIP also gets those of its Service's annotation
// (community.Annotation) or services-file entry (bgpCommunities).
type Communities struct {
	PodCIDR []community.Community
	VIP     []community.Community
}

// Drain configures taking the node out of service (roostctl drain).
type Drain struct {
	// Wait is how long the routes are announced with GRACEFUL_SHUTDOWN,
	// for the fabric to move traffic away, before they are withdrawn.
	Wait time.Duration
	// StateFile keeps the drain state across restarts of the agent.
	StateFile string
}

// Defaults of the drain section.
const (
	DefaultDrainWait      = 30 * time.Second
	DefaultDrainStateFile = "/var/lib/roost/drain.json"
)

// VIPs configures the announcement of the services' VIPs (their external
// and load-balancer IPs) as /32 and /128 routes.
type VIPs struct {
	// ServicesFile is the services file roost-loader serves (its
	// servicesFile, the same format); "" for none.
	ServicesFile string
	// Kubernetes reads the Services and EndpointSlices of the API server
	// too (with kubernetes.enabled); the file wins a clash.
	Kubernetes bool
	// Table is the kernel routing table where the agent keeps the VIPs as
	// blackhole routes for BIRD to learn; nothing routes by it.
	Table uint32
}

// Enabled reports whether the agent announces VIPs at all.
func (v VIPs) Enabled() bool { return v.ServicesFile != "" || v.Kubernetes }

// DefaultVIPTable is the default of VIPs.Table (167, roost's route
// protocol number, unused by Linux and by common tools).
const DefaultVIPTable = 167

// Kubernetes configures the Kubernetes source.
type Kubernetes struct {
	Enabled bool
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string
}

// Peer is one eBGP neighbour. Each field must be what birdconf.Render
// accepts; Validate checks them with birdconf's Check functions.
type Peer struct {
	// Name gives the BIRD protocol name (birdconf.ProtocolName); see
	// birdconf.CheckPeerName.
	Name string
	// Address is the neighbor's address; an IPv6 link-local one carries
	// its interface as zone (fe80::1%eth0). See birdconf.CheckNeighbor.
	Address netip.Addr
	ASN     uint32
	// Password is the TCP MD5 secret; empty for none. Never logged, and
	// never part of an error. In agent.yaml it is either given inline
	// (password) or read by Load from PasswordFile (passwordFile), not
	// both; either way Password holds the secret itself.
	Password string
	// PasswordFile is the file Password was read from, or "" when it was
	// given inline. Load requires an absolute path to a regular file that
	// neither group nor others may read or write (chmod 600 or 400); the
	// password is its content without one trailing "\n" or "\r\n".
	// The file is read by Load: after changing it, reload the config.
	PasswordFile string
	// HoldTime in seconds; 0 leaves BIRD's default.
	HoldTime int
	// BFD, when not nil, runs BFD beside the session (birdconf.BFD).
	BFD *birdconf.BFD
	// Options are the session's other settings (timers, multihop, source
	// address, port, passive, graceful restart, extended next hop, MED,
	// communities), as birdconf takes them.
	birdconf.Options
}

// Defaults of a peer's bfd section.
const (
	DefaultBFDInterval   = 100 * time.Millisecond
	DefaultBFDMultiplier = 3
)

// Bird locates the BIRD daemon roost-agent drives.
type Bird struct {
	// Socket is BIRD's control socket.
	Socket string
	// ConfigDir holds bird.conf, the file BIRD is started with. In
	// containers, BIRD and the agent must see it at the same path.
	ConfigDir string
	// ConfigGroup is the group bird.conf (mode 0640) is given, a name or
	// a number; "" picks the group of Socket's directory when it is not
	// root's, else group "bird" when it exists.
	ConfigGroup string
	// Binary is the bird executable used to parse bird.conf (bird -p)
	// while BIRD is down, to repair it; a name is looked up in PATH.
	Binary string
	// Timeout bounds every call to BIRD's control socket: a BIRD that
	// does not answer within it counts as down.
	Timeout time.Duration
	// ConfirmTimeout is N of "configure timeout N": BIRD undoes a change
	// unless the agent confirms it, which it does once every session that
	// was Established is again. 0 configures without a timeout.
	ConfirmTimeout time.Duration
	// LogFile is the file bird.conf has BIRD write its BGP errors and
	// warnings to (birdconf.Input.LogFile), where roostctl peers reads
	// what a refused peer sent; "" for none. BIRD must be able to create
	// it: a config naming a log file BIRD cannot open is refused by BIRD.
	// Load's default is DefaultLogFile(Socket).
	LogFile string
}

// DefaultLogFile returns the default of Bird.LogFile for BIRD's control
// socket socket: bird.log in the socket's directory, which BIRD can write
// (it makes its socket there) and, in containers, both BIRD and the agent
// mount. For the default socket, /run/bird/bird.ctl, it is
// /run/bird/bird.log.
func DefaultLogFile(socket string) string { return filepath.Join(filepath.Dir(socket), "bird.log") }

// ConfigFile returns the path of the BIRD config file roost-agent owns.
func (b Bird) ConfigFile() string { return strings.TrimRight(b.ConfigDir, "/") + "/bird.conf" }

// Default returns the configuration defaults. Node is left empty: the caller
// fills in the hostname. Bird.LogFile is DefaultLogFile(Bird.Socket); a
// Config built from Default with another socket keeps this log file unless
// the caller sets it too (Load does).
func Default() Config {
	const socket = "/run/bird/bird.ctl"
	return Config{
		Bird: Bird{
			Socket: socket, ConfigDir: "/etc/bird", Binary: "bird",
			Timeout: 3 * time.Second, ConfirmTimeout: 30 * time.Second,
			LogFile: DefaultLogFile(socket),
		},
		Listen:          "127.0.0.1:9479",
		ControlSocket:   "/run/roost/agent.sock",
		BlackholeRoutes: true,
		ResyncInterval:  10 * time.Second,
		Debounce:        100 * time.Millisecond,
		VIPs:            VIPs{Table: DefaultVIPTable},
		Drain:           Drain{Wait: DefaultDrainWait, StateFile: DefaultDrainStateFile},
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
	ControlSocket   *string    `yaml:"controlSocket"`
	BlackholeRoutes *bool      `yaml:"blackholeRoutes"`
	ResyncInterval  *string    `yaml:"resyncInterval"`
	Debounce        *string    `yaml:"debounce"`
	VIPs            *vipsFile  `yaml:"vips"`
	Communities     *commFile  `yaml:"communities"`
	Drain           *drainFile `yaml:"drain"`
}

type commFile struct {
	PodCIDR []string `yaml:"podCIDR"`
	VIP     []string `yaml:"vip"`
}

type drainFile struct {
	Wait      *string `yaml:"wait"`
	StateFile *string `yaml:"stateFile"`
}

type grFile struct {
	Enabled     *bool `yaml:"enabled"`
	RestartTime int   `yaml:"restartTime"`
}

type bfdFile struct {
	Interval   *string `yaml:"interval"`
	Multiplier *int    `yaml:"multiplier"`
}

type vipsFile struct {
	ServicesFile *string `yaml:"servicesFile"`
	Kubernetes   *bool   `yaml:"kubernetes"`
	Table        *int64  `yaml:"table"`
}

type kubeFile struct {
	Enabled    bool   `yaml:"enabled"`
	Kubeconfig string `yaml:"kubeconfig"`
}

type peerFile struct {
	Name         string   `yaml:"name"`
	Address      string   `yaml:"address"`
	ASN          int64    `yaml:"asn"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"passwordFile"`
	HoldTime     int      `yaml:"holdTime"`
	BFD          *bfdFile `yaml:"bfd"`

	KeepaliveTime    int      `yaml:"keepaliveTime"`
	ConnectRetryTime int      `yaml:"connectRetryTime"`
	Multihop         int      `yaml:"multihop"`
	SourceAddress    string   `yaml:"sourceAddress"`
	Port             int      `yaml:"port"`
	Passive          bool     `yaml:"passive"`
	GracefulRestart  *grFile  `yaml:"gracefulRestart"`
	ExtendedNextHop  bool     `yaml:"extendedNextHop"`
	MED              *int64   `yaml:"med"`
	Communities      []string `yaml:"communities"`
}

type birdFile struct {
	Socket         *string `yaml:"socket"`
	ConfigDir      *string `yaml:"configDir"`
	ConfigGroup    *string `yaml:"configGroup"`
	Binary         *string `yaml:"binary"`
	Timeout        *string `yaml:"timeout"`
	ConfirmTimeout *string `yaml:"confirmTimeout"`
	LogFile        *string `yaml:"logFile"`
}

// Load reads a YAML configuration from r on top of defaults (normally
// Default with Node set to the hostname) and validates it. Unknown fields are
// an error. A file that sets bird.socket to an absolute path but not
// bird.logFile gets DefaultLogFile of that socket. It reads the password
// file of each peer that has one (see Peer.PasswordFile). The returned error
// lists every problem found, each with its field path, and never contains a
// password.
func Load(r io.Reader, defaults Config) (Config, error) {
	var f file
	if err := fieldcheck.Decode(r, &f); err != nil {
		return Config{}, err
	}
	c, convErrs := f.apply(defaults)
	valid := c.problems()
	if len(convErrs) == 0 && len(valid) == 0 {
		valid = c.renderProblems()
	}
	if err := fieldcheck.Combine(convErrs, valid); err != nil {
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
	if v := f.VIPs; v != nil {
		if v.ServicesFile != nil {
			c.VIPs.ServicesFile = *v.ServicesFile
		}
		if v.Kubernetes != nil {
			c.VIPs.Kubernetes = *v.Kubernetes
		}
		if v.Table != nil {
			// Linux's table ids are 32-bit; 0 is "unspecified", and
			// 253-255 are default, main and local.
			if t := *v.Table; t < 1 || t > 0xffffffff || (t >= 253 && t <= 255) {
				bad("vips.table", "%d is not a table of its own (1..4294967295 but 253, 254 and 255)", t)
			} else {
				c.VIPs.Table = uint32(t)
			}
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
			peer := Peer{Name: p.Name, Password: p.Password, PasswordFile: p.PasswordFile, HoldTime: p.HoldTime}
			switch {
			case p.PasswordFile == "":
			case p.Password != "":
				bad(field+".passwordFile", "is set, and so is password: keep only one")
			default:
				pw, err := readPasswordFile(p.PasswordFile)
				if err != nil {
					bad(field+".passwordFile", "%v", err)
				}
				peer.Password = pw
			}
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
			if b := p.BFD; b != nil {
				peer.BFD = &birdconf.BFD{Interval: DefaultBFDInterval, Multiplier: DefaultBFDMultiplier}
				duration(&errs, field+".bfd.interval", b.Interval, &peer.BFD.Interval)
				if b.Multiplier != nil {
					peer.BFD.Multiplier = *b.Multiplier
				}
			}
			peer.KeepaliveTime, peer.ConnectRetryTime, peer.Multihop = p.KeepaliveTime, p.ConnectRetryTime, p.Multihop
			peer.Passive, peer.ExtendedNextHop = p.Passive, p.ExtendedNextHop
			if p.SourceAddress != "" {
				if a, err := netip.ParseAddr(p.SourceAddress); err != nil {
					bad(field+".sourceAddress", "%q is not an IP address", p.SourceAddress)
				} else {
					peer.SourceAddress = a
				}
			}
			if p.Port < 0 || p.Port > 65535 {
				bad(field+".port", "%d is not a TCP port (1..65535, or 0 for 179)", p.Port)
			} else {
				peer.Port = uint16(p.Port)
			}
			if g := p.GracefulRestart; g != nil {
				peer.NoGracefulRestart = g.Enabled != nil && !*g.Enabled
				peer.GracefulRestartTime = g.RestartTime
			}
			if p.MED != nil {
				if *p.MED < 0 || *p.MED > 0xffffffff {
					bad(field+".med", "%d is out of range 0..4294967295", *p.MED)
				} else {
					peer.MED = new(uint32(*p.MED))
				}
			}
			peer.Communities = communities(&errs, field+".communities", p.Communities)
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
		if f.Bird.ConfigGroup != nil {
			c.Bird.ConfigGroup = *f.Bird.ConfigGroup
		}
		if f.Bird.Binary != nil {
			c.Bird.Binary = *f.Bird.Binary
		}
		duration(&errs, "bird.timeout", f.Bird.Timeout, &c.Bird.Timeout)
		duration(&errs, "bird.confirmTimeout", f.Bird.ConfirmTimeout, &c.Bird.ConfirmTimeout)
		switch {
		case f.Bird.LogFile != nil:
			c.Bird.LogFile = *f.Bird.LogFile
		case f.Bird.Socket != nil && filepath.IsAbs(c.Bird.Socket):
			c.Bird.LogFile = DefaultLogFile(c.Bird.Socket)
		}
	}
	if f.Listen != nil {
		c.Listen = *f.Listen
	}
	if f.ControlSocket != nil {
		c.ControlSocket = *f.ControlSocket
	}
	if f.BlackholeRoutes != nil {
		c.BlackholeRoutes = *f.BlackholeRoutes
	}
	duration(&errs, "resyncInterval", f.ResyncInterval, &c.ResyncInterval)
	duration(&errs, "debounce", f.Debounce, &c.Debounce)
	if f.Communities != nil {
		c.Communities.PodCIDR = communities(&errs, "communities.podCIDR", f.Communities.PodCIDR)
		c.Communities.VIP = communities(&errs, "communities.vip", f.Communities.VIP)
	}
	if f.Drain != nil {
		duration(&errs, "drain.wait", f.Drain.Wait, &c.Drain.Wait)
		if f.Drain.StateFile != nil {
			c.Drain.StateFile = *f.Drain.StateFile
		}
	}
	return c, errs
}

// communities parses a YAML list of communities, reporting each bad one
// at its index.
func communities(errs *fieldcheck.Problems, field string, list []string) []community.Community {
	var out []community.Community
	for i, s := range list {
		c, err := community.Parse(s)
		if err != nil {
			errs.Add(fmt.Sprintf("%s[%d]", field, i), "%v", err)
			continue
		}
		out = append(out, c)
	}
	return community.Sorted(out)
}

// duration parses the YAML duration s, when set, into d.
func duration(errs *fieldcheck.Problems, field string, s *string, d *time.Duration) {
	if s == nil {
		return
	}
	v, err := time.ParseDuration(*s)
	if err != nil {
		errs.Add(field, "%q is not a duration (e.g. 100ms, 3s)", *s)
		return
	}
	*d = v
}

// asnOf converts a YAML number to an ASN. 0 and 4294967295 are reserved
// (RFC 7607, RFC 7300) and refused.
func asnOf(n int64) (uint32, bool) {
	if n < 1 || n > 4294967294 {
		return 0, false
	}
	return uint32(n), true
}

// maxPasswordFile is the most of a password file read: far more than a
// password (birdconf.MaxPasswordLen), so that a longer file is refused as
// such rather than cut.
const maxPasswordFile = 4096

// readPasswordFile returns the TCP MD5 password held in the file at path:
// its content without one trailing "\n" or "\r\n". The path must be
// absolute and name a regular file that neither group nor others may read
// or write, and the password must pass birdconf.CheckPassword. Errors start
// with the quoted path and never show the file's content.
func readPasswordFile(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%q must be an absolute path", path)
	}
	// Stat before opening, so that a FIFO or a device is refused rather
	// than opened; then check what was opened.
	fi, err := os.Stat(path)
	if err != nil {
		return "", pathError(path, err)
	}
	if err := checkSecretFile(path, fi); err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", pathError(path, err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return "", pathError(path, err)
	}
	if err := checkSecretFile(path, fi); err != nil {
		return "", err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return "", pathError(path, err)
	}
	if len(data) > maxPasswordFile {
		return "", fmt.Errorf("%q is larger than %d bytes; it must hold only the password", path, maxPasswordFile)
	}
	pw := string(data)
	if s, ok := strings.CutSuffix(pw, "\r\n"); ok {
		pw = s
	} else {
		pw = strings.TrimSuffix(pw, "\n")
	}
	if pw == "" {
		return "", fmt.Errorf("%q is empty; for a session without password, remove passwordFile", path)
	}
	if err := birdconf.CheckPassword(pw); err != nil {
		hint := ""
		if strings.HasSuffix(pw, "\n") || strings.HasSuffix(pw, "\r") {
			hint = ` (only one trailing "\n" or "\r\n" is removed)`
		}
		return "", fmt.Errorf("%q: the password %w%s", path, err, hint)
	}
	return pw, nil
}

// checkSecretFile checks that fi, the file at path, is a regular file that
// neither group nor others may read, write or execute.
func checkSecretFile(path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%q is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%q has mode %04o, so group or others may access it; run chmod 600 %q", path, perm, path)
	}
	return nil
}

// pathError reports err, from an operation on path, as "path": reason.
func pathError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%q: %w", path, err)
}

// Validate reports every problem of c at once, each naming its field. The
// last check renders c's BIRD config as roost-agent does: a Config that
// passes Validate renders.
func (c Config) Validate() error {
	errs := c.problems()
	if len(errs) == 0 {
		errs = c.renderProblems()
	}
	return errs.Err()
}

// BirdInput is what roost-agent renders for c when it announces prefixes:
// the one mapping from the configuration to birdconf's input.
func (c Config) BirdInput(prefixes []netip.Prefix) birdconf.Input {
	in := birdconf.Input{RouterID: c.RouterID, ASN: c.ASN, Prefixes: prefixes, LogFile: c.Bird.LogFile}
	if c.VIPs.Enabled() {
		in.VIPTable = c.VIPs.Table
	}
	in.PodCIDRCommunities, in.VIPCommunities = c.Communities.PodCIDR, c.Communities.VIP
	for _, p := range c.Peers {
		in.Peers = append(in.Peers, birdconf.Peer{
			Name: p.Name, Address: p.Address, ASN: p.ASN, Password: p.Password, HoldTime: p.HoldTime, BFD: p.BFD, Options: p.Options,
		})
	}
	return in
}

// renderProblems reports why birdconf.Render refuses c's own input
// (BirdInput), if it does, at the field it comes from: it renders the router
// id alone, then each peer and each prefix alone with it, and puts what
// only fails together (two peers) at "peers". Validate's own checks use
// birdconf's Check functions, so this finds nothing unless the two disagree:
// it is the guard that keeps such a disagreement from being accepted.
func (c Config) renderProblems() fieldcheck.Problems {
	in := c.BirdInput(c.PodCIDRs)
	_, err := birdconf.Render(in)
	if err == nil {
		return nil
	}
	var errs fieldcheck.Problems
	bad := func(field string, err error) {
		errs.Add(field, "roost-agent cannot render this (a validation bug; please report it): %s",
			strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	alone := birdconf.Input{RouterID: in.RouterID, ASN: in.ASN}
	if _, err := birdconf.Render(alone); err != nil {
		field := "asn"
		if errors.Is(err, birdconf.ErrRouterID) {
			field = "routerID"
		}
		bad(field, err)
		return errs
	}
	if in.LogFile != "" {
		one := alone
		one.LogFile = in.LogFile
		if _, err := birdconf.Render(one); err != nil {
			bad("bird.logFile", err)
		}
	}
	for i := range in.Peers {
		one := alone
		one.Peers = in.Peers[i : i+1]
		if _, err := birdconf.Render(one); err != nil {
			bad(fmt.Sprintf("peers[%d]", i), err)
		}
	}
	for i := range in.Prefixes {
		one := alone
		one.Prefixes = in.Prefixes[i : i+1]
		if _, err := birdconf.Render(one); err != nil {
			bad(fmt.Sprintf("podCIDRs[%d]", i), err)
		}
	}
	if len(errs) == 0 {
		bad("peers", err)
	}
	return errs
}

func (c Config) problems() fieldcheck.Problems {
	var errs fieldcheck.Problems
	bad := errs.Add
	if c.Node == "" {
		bad("node", "must be set (the hostname is the default)")
	}
	if c.ASN == 0 {
		bad("asn", "must be set (this node's AS number, 1..4294967294)")
	}
	if f := c.VIPs.ServicesFile; f != "" && !filepath.IsAbs(f) {
		bad("vips.servicesFile", "%q must be an absolute path, or empty for no VIPs", f)
	}
	if c.VIPs.Kubernetes && !c.Kubernetes.Enabled {
		bad("vips.kubernetes", "needs kubernetes.enabled (the API server to read the Services from)")
	}
	if !c.RouterID.IsValid() {
		bad("routerID", "must be set (an IPv4 address, usually the node's uplink address)")
	} else if err := birdconf.CheckRouterID(c.RouterID); err != nil {
		bad("routerID", "%v", err)
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
		if err := birdconf.CheckPrefix(p); err != nil {
			bad(field, "%v", err)
			continue
		}
		if j, dup := seenPrefix[p]; dup {
			bad(field, "%s repeats podCIDRs[%d]", p, j)
		}
		seenPrefix[p] = i
		if !hasPeerOfFamily(c.Peers, p.Addr().Is4()) {
			bad(field, "%s cannot be announced: no peer has an address of its family (or, for IPv4, extendedNextHop)", p)
		}
	}
	if len(c.Peers) == 0 {
		bad("peers", "at least one peer is needed")
	}
	seenName := map[string]int{}
	seenAddr := map[netip.Addr]int{}
	for i, p := range c.Peers {
		field := fmt.Sprintf("peers[%d]", i)
		if err := birdconf.CheckPeerName(p.Name); err != nil {
			bad(field+".name", "%v", err)
		}
		key := strings.ReplaceAll(p.Name, "-", "_")
		if j, dup := seenName[key]; dup {
			bad(field+".name", "%q clashes with peers[%d] (names equal once '-' is read as '_')", p.Name, j)
		}
		seenName[key] = i
		if p.Address.IsValid() {
			if j, dup := seenAddr[p.Address]; dup {
				// A zone may hold any character: quote it.
				if p.Address.Zone() != "" {
					bad(field+".address", "%q repeats peers[%d]", p.Address, j)
				} else {
					bad(field+".address", "%s repeats peers[%d]", p.Address, j)
				}
			}
			seenAddr[p.Address] = i
			if err := birdconf.CheckNeighbor(p.Address); err != nil {
				bad(field+".address", "%v", err)
			}
		} else {
			bad(field+".address", "must be set")
		}
		if p.ASN == 0 {
			bad(field+".asn", "must be set")
		} else if p.ASN == c.ASN {
			bad(field+".asn", "%d equals this node's asn: roost speaks eBGP only", p.ASN)
		}
		if err := birdconf.CheckPassword(p.Password); err != nil {
			pwField := field + ".password"
			if p.PasswordFile != "" {
				pwField = field + ".passwordFile"
			}
			bad(pwField, "%v", err)
		}
		if err := birdconf.CheckHoldTime(p.HoldTime); err != nil {
			bad(field+".holdTime", "%v", err)
		}
		if p.BFD != nil {
			if err := birdconf.CheckBFD(*p.BFD); err != nil {
				bad(field+".bfd", "%v", err)
			}
		}
		if p.Address.IsValid() {
			if err := birdconf.CheckPeerOptions(c.birdPeer(p)); err != nil {
				for _, e := range unjoin(err) {
					bad(field+"."+optionField(e), "%v", e)
				}
			}
		}
	}
	if c.Drain.Wait < 0 || c.Drain.Wait > time.Hour {
		bad("drain.wait", "%s must be between 0 and 1h", c.Drain.Wait)
	}
	if f := c.Drain.StateFile; f == "" || !filepath.IsAbs(f) || filepath.Clean(f) != f {
		bad("drain.stateFile", "%q must be an absolute, clean path", f)
	}
	if c.Bird.Socket == "" || !strings.HasPrefix(c.Bird.Socket, "/") {
		bad("bird.socket", "%q must be an absolute path", c.Bird.Socket)
	}
	if c.Bird.ConfigDir == "" || !strings.HasPrefix(c.Bird.ConfigDir, "/") {
		bad("bird.configDir", "%q must be an absolute path", c.Bird.ConfigDir)
	}
	if c.Bird.Binary == "" {
		bad("bird.binary", "must be set (a path or a name looked up in PATH)")
	}
	if c.Bird.Timeout < 100*time.Millisecond || c.Bird.Timeout > 5*time.Minute {
		bad("bird.timeout", "%s must be between 100ms and 5m", c.Bird.Timeout)
	}
	if c.Bird.ConfirmTimeout != 0 && (c.Bird.ConfirmTimeout < time.Second || c.Bird.ConfirmTimeout > time.Hour) {
		bad("bird.confirmTimeout", "%s must be 0 (no timed apply) or between 1s and 1h (BGP sessions restarted by a change need several seconds: 30s is the default)", c.Bird.ConfirmTimeout)
	}
	if c.Bird.LogFile != "" {
		if err := birdconf.CheckLogFile(c.Bird.LogFile); err != nil {
			bad("bird.logFile", "%v", err)
		} else {
			for _, other := range []struct{ field, path string }{
				{"bird.socket", c.Bird.Socket}, {"bird.conf in bird.configDir", c.Bird.ConfigFile()}, {"controlSocket", c.ControlSocket},
			} {
				if c.Bird.LogFile == other.path || birdconf.LogBackup(c.Bird.LogFile) == other.path {
					bad("bird.logFile", "%q would overwrite %s (%s); name another file", c.Bird.LogFile, other.path, other.field)
				}
			}
		}
	}
	if strings.ContainsAny(c.Bird.ConfigGroup, " \t\n:/") {
		bad("bird.configGroup", "%q is not a group name or number", c.Bird.ConfigGroup)
	}
	if err := fieldcheck.Listen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if c.ControlSocket == "" || !strings.HasPrefix(c.ControlSocket, "/") {
		bad("controlSocket", "%q must be an absolute path", c.ControlSocket)
	}
	if c.ResyncInterval < 100*time.Millisecond || c.ResyncInterval > time.Hour {
		bad("resyncInterval", "%s must be between 100ms and 1h", c.ResyncInterval)
	}
	if c.Debounce < 0 || c.Debounce > time.Minute {
		bad("debounce", "%s must be between 0 and 1m", c.Debounce)
	}
	return errs
}

// birdPeer is p as birdconf takes it.
func (c Config) birdPeer(p Peer) birdconf.Peer {
	in := Config{Peers: []Peer{p}}.BirdInput(nil)
	return in.Peers[0]
}

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// optionField is the agent.yaml field of a peer that a CheckPeerOptions
// error is about; its message starts with the option's name.
func optionField(err error) string {
	for _, o := range []struct{ prefix, field string }{
		{"keepalive time", "keepaliveTime"},
		{"connect retry time", "connectRetryTime"},
		{"multihop", "multihop"},
		{"source address", "sourceAddress"},
		{"graceful restart", "gracefulRestart"},
		{"extended next hop", "extendedNextHop"},
	} {
		if strings.HasPrefix(err.Error(), o.prefix) {
			return o.field
		}
	}
	return "options"
}

// hasPeerOfFamily reports whether a peer carries prefixes of the family:
// one of its address family, or for IPv4 an IPv6 peer with extended next
// hop.
func hasPeerOfFamily(peers []Peer, v4 bool) bool {
	for _, p := range peers {
		if p.Address.IsValid() && (p.Address.Unmap().Is4() == v4 || v4 && p.ExtendedNextHop) {
			return true
		}
	}
	return false
}
