// Package birdconf renders bird.conf, the BIRD 2 configuration that
// roost-agent starts BIRD with, from a small typed Input.
//
// Rendering is pure: Render validates the input, sorts and deduplicates it
// into a view model, and executes the embedded template of package bird, so
// identical input gives identical bytes (the file carries no timestamp).
//
// The rendered config is laid out so that "birdc configure" never restarts a
// BGP session when only the owned prefixes change (BIRD restarts a protocol
// whose options change, but adds and withdraws the routes of a static
// protocol incrementally):
//   - every owned prefix is a blackhole route in one of two static
//     protocols, StaticProtocol4 and StaticProtocol6, both always rendered,
//     even when empty, so the set of protocols never changes with prefixes;
//   - what is announced is decided by one function, AnnounceFunction, that
//     every export filter calls: it passes only blackhole routes of those
//     two static protocols (and of the VIPs' kernel protocols), adds the
//     communities of their prefix class and of tagged VIPs (VIPTag), adds
//     GRACEFUL_SHUTDOWN while the node drains and passes nothing once it is
//     drained. It changes with none of the prefixes; when it changes, BIRD
//     re-exports through it without restarting a session;
//   - every "protocol bgp" block depends only on the router's ASN and the
//     peer's own settings: "import none", its export filter (ExportFilter,
//     or PeerFilter for a peer with a MED or communities of its own), its
//     timers, graceful restart, the channels of the neighbor's address
//     family (and IPv4 with extended next hop).
//
// BIRD exports nothing to the kernel and imports nothing from the peers.
// With Input.VIPTable set, two kernel protocols learn the VIPs roost-agent
// keeps as blackhole routes in that kernel table; the export filter, which
// never changes, passes their blackhole routes too, so VIPs come and go
// without a reconfiguration.
//
// With Input.LogFile set, BIRD also writes its BGP errors and warnings to
// that file, size-limited with one backup (LogBackup): what a peer sent when
// BIRD refused it (e.g. the AS number in a refused OPEN) is only in BIRD's
// log, and roostctl reads it from there. The log statement is global, so
// changing it never touches a "protocol bgp" block.
package birdconf

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/roost-net/roost/bird"
	"github.com/roost-net/roost/internal/community"
)

// Names of what the rendered config defines. roostctl uses them to find
// roost's routes and filter in BIRD's output.
const (
	// StaticProtocol4 is the static protocol that holds the owned IPv4
	// prefixes as blackhole routes.
	StaticProtocol4 = "roost_owned4"
	// StaticProtocol6 is the static protocol that holds the owned IPv6
	// prefixes as blackhole routes.
	StaticProtocol6 = "roost_owned6"
	// VIPProtocol4 and VIPProtocol6 are the kernel protocols that learn
	// the VIPs roost-agent keeps in kernel table Input.VIPTable.
	VIPProtocol4 = "roost_vips4"
	VIPProtocol6 = "roost_vips6"
	// BFDProtocol is the protocol bfd rendered when a peer has BFD.
	BFDProtocol = "roost_bfd"
	// ExportFilter is the filter every BGP channel exports through, unless
	// the peer has attributes of its own (PeerFilter).
	ExportFilter = "roost_export"
	// AnnounceFunction is the function every export filter starts with: it
	// decides what is announced (roost's own blackhole routes, nothing
	// while drained) and adds the communities of its prefix class.
	AnnounceFunction = "roost_announce"
	// ProtocolPrefix starts the BIRD protocol name of every peer (see
	// ProtocolName).
	ProtocolPrefix = "bgp_"
)

// Limits of what BIRD and Linux accept.
const (
	// MaxPasswordLen is the longest TCP MD5 key Linux accepts
	// (TCP_MD5SIG_MAXKEYLEN).
	MaxPasswordLen = 80
	// MinHoldTime and MaxHoldTime bound a non-zero hold time (BIRD's range).
	MinHoldTime = 3
	MaxHoldTime = 65535
	// MaxLogFileLen is the longest log file path accepted (CheckLogFile).
	MaxLogFileLen = 1024
)

// BIRD's log file, when Input.LogFile is set.
const (
	// LogFileLimit is the size, in bytes, at which BIRD renames the log
	// file to its backup (LogBackup) and starts a new one, so the two
	// together never hold much more than twice this.
	LogFileLimit = 1000000
	// LogBackupSuffix ends the name of the log file's backup.
	LogBackupSuffix = ".old"
	// LogClasses are the classes of messages BIRD writes to the log file:
	// "remote" holds the BGP errors sent and received ("bgp_tor1: Error:
	// Bad peer AS: 65000").
	LogClasses = "remote, warning, error, auth, fatal"
)

// Errors returned (wrapped, possibly several joined) by Render. Test for them
// with errors.Is.
var (
	// ErrRouterID means the router id is not a non-zero IPv4 address.
	ErrRouterID = errors.New("router id must be a non-zero IPv4 address")
	// ErrASN means an AS number (the node's or a peer's) is zero.
	ErrASN = errors.New("AS number must not be 0")
	// ErrPeerName means a peer name does not match PeerNamePattern.
	ErrPeerName = errors.New("peer name must match " + PeerNamePattern)
	// ErrReservedName means ProtocolName would turn the peer name into a
	// keyword of BIRD 2.0.12, one of its BGP attribute names: the names
	// aggregator, aigp, atomic_aggr, cluster_list, community, ext_community,
	// large_community, local_pref, med, next_hop, origin, originator_id, otc
	// and path (with '-' or '_') are refused.
	ErrReservedName = errors.New("peer name maps to a BIRD keyword; rename the peer")
	// ErrDuplicatePeer means two peers map to the same protocol name.
	ErrDuplicatePeer = errors.New("two peers map to the same BIRD protocol name")
	// ErrPeerAddress means a neighbor address is not usable: it must be a
	// unicast IPv4 or IPv6 address (not IPv4-mapped IPv6), and an IPv6
	// link-local address needs a zone naming its interface (and only it may
	// have one).
	ErrPeerAddress = errors.New("neighbor must be a unicast IPv4 or IPv6 address; an IPv6 link-local one needs %interface, others none")
	// ErrDuplicateAddress means two peers have the same neighbor address.
	ErrDuplicateAddress = errors.New("two peers have the same neighbor address")
	// ErrPassword means a TCP MD5 password is too long or has a character
	// BIRD 2.0 strings cannot hold safely.
	ErrPassword = errors.New(`password must be at most 80 printable ASCII characters, without '"' or '\'`)
	// ErrHoldTime means a hold time is outside 0 (BIRD's default) or 3-65535.
	ErrHoldTime = errors.New("hold time must be 0 (BIRD's default) or 3-65535 seconds")
	// ErrPrefix means an owned prefix is invalid or an IPv4-mapped IPv6
	// prefix.
	ErrPrefix = errors.New("prefix must be a valid IPv4 or IPv6 prefix (not IPv4-mapped IPv6)")
	// ErrLogFile means the log file path is not one BIRD's config can
	// name safely (see CheckLogFile).
	ErrLogFile = errors.New(`log file must be an absolute, clean path of printable ASCII characters without '"' or '\'`)
)

// PeerNamePattern is what a peer name must match (see CheckPeerName). The
// config validator and Render both check it through CheckPeerName, so that
// Render can never print an invalid BIRD identifier.
const PeerNamePattern = `^[a-z0-9]([a-z0-9_-]{0,30}[a-z0-9])?$`

var (
	peerNameRE  = regexp.MustCompile(PeerNamePattern)
	interfaceRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
)

// reservedNames are the peer names (with '_' for '-') that ProtocolName would
// turn into a keyword of BIRD 2.0.12, e.g. "bgp_path"; BIRD rejects a
// protocol with such a name. A test checks each against the real bird.
var reservedNames = []string{
	"aggregator", "aigp", "atomic_aggr", "cluster_list", "community",
	"ext_community", "large_community", "local_pref", "med", "next_hop",
	"origin", "originator_id", "otc", "path",
}

// Peer is one BGP neighbor (a ToR switch).
type Peer struct {
	// Name identifies the peer; it must match PeerNamePattern and gives the
	// BIRD protocol name (ProtocolName).
	Name string
	// Address is the neighbor's address. Its family picks the channel (ipv4
	// or ipv6). An IPv6 link-local address needs a zone naming the
	// interface (letters, digits, '_', '.', '-', at most 15), rendered as
	// BIRD's "interface" option; no other address may have a zone.
	Address netip.Addr
	// ASN is the neighbor's AS number.
	ASN uint32
	// Password, if not empty, turns on TCP MD5 for the session.
	Password string
	// HoldTime is the BGP hold time in seconds; 0 leaves BIRD's default.
	HoldTime int
	// BFD, when not nil, runs a BFD session beside the BGP session: BGP
	// goes down when BFD does (BIRD's protocol bfd, BFDProtocol).
	BFD *BFD
	// Options are the session's other settings.
	Options
}

// Options are a peer's settings besides its identity, password, hold time
// and BFD. The zero value is BIRD's defaults with graceful restart on.
type Options struct {
	// KeepaliveTime is the keepalive interval in seconds (0: BIRD's
	// default, a third of the hold time); it must be less than the hold
	// time.
	KeepaliveTime int
	// ConnectRetryTime is how long, in seconds, BIRD waits between two
	// attempts to connect (0: BIRD's default, 120).
	ConnectRetryTime int
	// Multihop, when not 0, is the TTL of the session's packets: the
	// neighbor is that many hops away at most (1-255). 0 is a directly
	// connected neighbor.
	Multihop int
	// SourceAddress, when valid, is the local address of the session
	// (BIRD's "local"), of the neighbor's family.
	SourceAddress netip.Addr
	// Port is the neighbor's TCP port; 0 for 179.
	Port uint16
	// Passive makes BIRD wait for the neighbor to connect.
	Passive bool
	// NoGracefulRestart turns graceful restart off for this session: a
	// BIRD restart then withdraws the node's routes at this peer at once.
	// Graceful restart is on by default.
	NoGracefulRestart bool
	// GracefulRestartTime is how long, in seconds, the peer keeps the
	// routes as stale while BIRD restarts (1-4095; 0: BIRD's default,
	// 120).
	GracefulRestartTime int
	// ExtendedNextHop, on an IPv6 neighbor, also carries the IPv4
	// prefixes over the session with IPv6 next hops (RFC 8950).
	ExtendedNextHop bool
	// MED, when not nil, is the MULTI_EXIT_DISC sent with every route.
	MED *uint32
	// Communities are added to every route sent to this peer, on top of
	// those of the route's class.
	Communities []community.Community
}

// BFD is the BFD session of one peer.
type BFD struct {
	// Interval is both the least receive and the least transmit interval
	// this node offers: MinBFDInterval to MaxBFDInterval, in whole
	// milliseconds.
	Interval time.Duration
	// Multiplier is how many intervals without a packet bring the session
	// down: MinBFDMultiplier to MaxBFDMultiplier.
	Multiplier int
}

// The bounds of BFD's settings.
const (
	MinBFDInterval   = 10 * time.Millisecond
	MaxBFDInterval   = 10 * time.Second
	MinBFDMultiplier = 2
	MaxBFDMultiplier = 255
)

// ErrBFD is wrapped by the errors about a peer's BFD settings.
var ErrBFD = errors.New("bad BFD setting")

// ErrPeerOption is wrapped by the errors about a peer's timers, multihop,
// source address, graceful restart and extended next hop (CheckPeerOptions).
var ErrPeerOption = errors.New("bad peer option")

// The bounds of a peer's other options.
const (
	MaxTimer               = 65535 // keepalive and connect retry, seconds
	MaxMultihop            = 255
	MaxGracefulRestartTime = 4095 // the field is 12 bits (RFC 4724)
	// DefaultHoldTime is BIRD's hold time when HoldTime is 0: a keepalive
	// time must be less.
	DefaultHoldTime = 240
)

// CheckPeerOptions reports what is wrong with p's timers, multihop,
// source address, graceful restart and extended next hop, each wrapping
// ErrPeerOption and starting with the option's name, joined; nil if
// nothing. The neighbor address itself is CheckNeighbor's.
func CheckPeerOptions(p Peer) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, checkErr(ErrPeerOption, format, args...))
	}
	hold := p.HoldTime
	if hold == 0 {
		hold = DefaultHoldTime
	}
	switch {
	case p.KeepaliveTime < 0 || p.KeepaliveTime > MaxTimer:
		bad("keepalive time %d must be 0 (BIRD's default: a third of the hold time) or 1..%d seconds", p.KeepaliveTime, MaxTimer)
	case p.KeepaliveTime != 0 && hold > 0 && p.KeepaliveTime >= hold:
		bad("keepalive time %d must be less than the hold time (%d s)", p.KeepaliveTime, hold)
	}
	if p.ConnectRetryTime < 0 || p.ConnectRetryTime > MaxTimer {
		bad("connect retry time %d must be 0 (BIRD's default, 120) or 1..%d seconds", p.ConnectRetryTime, MaxTimer)
	}
	if p.Multihop < 0 || p.Multihop > MaxMultihop {
		bad("multihop %d must be 0 (directly connected) or a TTL of 1..%d", p.Multihop, MaxMultihop)
	} else if p.Multihop > 0 && p.Address.Zone() != "" {
		bad("multihop %d: a link-local neighbor is directly connected; leave multihop 0", p.Multihop)
	}
	if a := p.SourceAddress; a.IsValid() {
		switch {
		case a.Zone() != "":
			bad("source address %s must have no zone", a.WithZone(""))
		case a.Is4In6():
			bad("source address %s is IPv4-mapped; write it as IPv4", a)
		case a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast():
			bad("source address %s must be a unicast address, not link-local", a)
		case p.Address.IsValid() && a.Is4() != p.Address.Is4():
			bad("source address %s is not of the neighbor's family", a)
		}
	}
	if p.GracefulRestartTime < 0 || p.GracefulRestartTime > MaxGracefulRestartTime {
		bad("graceful restart time %d must be 0 (BIRD's default, 120) or 1..%d seconds", p.GracefulRestartTime, MaxGracefulRestartTime)
	} else if p.NoGracefulRestart && p.GracefulRestartTime != 0 {
		bad("graceful restart time %d is set, but graceful restart is off", p.GracefulRestartTime)
	}
	if p.ExtendedNextHop && p.Address.IsValid() && !p.Address.Is6() {
		bad("extended next hop carries IPv4 prefixes over an IPv6 session; neighbor %s is IPv4", p.Address)
	}
	return errors.Join(errs...)
}

// Drain is what the node announces while it is taken out of service
// (roostctl drain).
type Drain string

// The drain states.
const (
	// NotDrained announces everything as usual.
	NotDrained Drain = ""
	// DrainShutdown announces everything with GRACEFUL_SHUTDOWN
	// (community.GracefulShutdown), so the fabric prefers other paths.
	DrainShutdown Drain = "shutdown"
	// DrainWithdrawn announces nothing; the sessions stay up.
	DrainWithdrawn Drain = "withdrawn"
)

// VIPTag gives the VIPs whose kernel route has metric Metric (in
// Input.VIPTable) communities of their own (a Service's annotation).
type VIPTag struct {
	Metric      uint32
	Communities []community.Community
}

// CheckBFD reports what is wrong with b, wrapping ErrBFD, or nil.
func CheckBFD(b BFD) error {
	if b.Interval < MinBFDInterval || b.Interval > MaxBFDInterval || b.Interval%time.Millisecond != 0 {
		return fmt.Errorf("%w: interval %s must be whole milliseconds from %s to %s", ErrBFD, b.Interval, MinBFDInterval, MaxBFDInterval)
	}
	if b.Multiplier < MinBFDMultiplier || b.Multiplier > MaxBFDMultiplier {
		return fmt.Errorf("%w: multiplier %d must be %d to %d", ErrBFD, b.Multiplier, MinBFDMultiplier, MaxBFDMultiplier)
	}
	return nil
}

// Input is everything bird.conf depends on.
type Input struct {
	// RouterID is BIRD's router id, an IPv4 address even on IPv6-only nodes.
	RouterID netip.Addr
	// ASN is the node's own AS number.
	ASN uint32
	// Peers are the BGP neighbors, in any order.
	Peers []Peer
	// Prefixes are the prefixes the node owns and announces, in any order;
	// duplicates and host bits are dropped.
	Prefixes []netip.Prefix
	// LogFile, if not empty, is the file BIRD writes its BGP errors and
	// warnings to (LogClasses), renamed to LogBackup(LogFile) when it
	// reaches LogFileLimit bytes. See CheckLogFile. BIRD refuses a config
	// whose log file it cannot open for appending.
	LogFile string
	// VIPTable, when not 0, is the kernel routing table where roost-agent
	// keeps the VIPs to announce, as blackhole routes: two kernel
	// protocols (VIPProtocol4, VIPProtocol6) learn them from there, so a
	// VIP coming or going needs no reconfiguration of BIRD. Nothing routes
	// by that table (no ip rule points at it).
	VIPTable uint32
	// PodCIDRCommunities are added to every owned prefix announced,
	// VIPCommunities to every VIP.
	PodCIDRCommunities, VIPCommunities []community.Community
	// VIPTags give some VIPs communities of their own, told apart by their
	// kernel route's metric; metrics must differ and not be 0.
	VIPTags []VIPTag
	// Drain is the drain state (NotDrained, DrainShutdown, DrainWithdrawn).
	// It changes only the function AnnounceFunction, never a protocol.
	Drain Drain
}

// LogBackup returns the file BIRD renames the log file logFile to when it
// reaches LogFileLimit bytes: logFile followed by LogBackupSuffix.
func LogBackup(logFile string) string { return logFile + LogBackupSuffix }

// ProtocolName returns the BIRD protocol name of the peer called peerName:
// ProtocolPrefix ("bgp_") followed by the name with every '-' replaced by
// '_' ("tor-1" → "bgp_tor_1"). The rule never changes, so a peer keeps its
// protocol, and its session, across reconfigurations. For a name matching
// PeerNamePattern and not reserved (ErrReservedName) the result is a valid BIRD
// symbol; two names differing only in '-' against '_' map to the same
// protocol, which Render rejects.
func ProtocolName(peerName string) string {
	return ProtocolPrefix + strings.ReplaceAll(peerName, "-", "_")
}

// configTemplate is bird.ConfigTemplate, parsed once. It never changes.
var configTemplate = template.Must(
	template.New(bird.ConfigTemplate).Option("missingkey=error").ParseFS(bird.Templates, bird.ConfigTemplate))

// view is what the template prints: every value already formatted and
// sorted.
type view struct {
	// LogFile, LogBackup, LogLimit and LogClasses make the log file
	// statement, which is left out when LogFile is "".
	LogFile, LogBackup string
	LogLimit           int
	LogClasses         string
	RouterID           string
	ExportFilter       string
	Static4, Static6   string
	VIP4, VIP6         string
	VIPTable           uint32 // 0: no kernel protocols
	BFD                string // the protocol bfd's name; "" when no peer has BFD
	Announce           string // AnnounceFunction
	// Withdrawn: the function announces nothing (DrainWithdrawn);
	// Shutdown: it adds GRACEFUL_SHUTDOWN (DrainShutdown).
	Withdrawn, Shutdown bool
	// PodCIDRTags and VIPTags are BIRD statements adding communities,
	// one per line, indented for the function's blocks.
	PodCIDRTags, VIPTags string
	// Routes4 and Routes6 are the static protocols' route lines, one
	// "\troute P blackhole;\n" per prefix, sorted, unique, masked. They
	// are built here rather than ranged over in the template: at 10,000
	// prefixes text/template's range cost 5 ms of a 10 ms render.
	Routes4, Routes6 string
	Peers            []peerView
}

// peerView is one "protocol bgp" block.
type peerView struct {
	Protocol  string
	Name      string
	LocalASN  uint32
	Address   string // without zone
	Interface string // the zone of a link-local address, or ""
	ASN       uint32
	HoldTime  int    // 0: not printed
	Password  string // "": not printed
	Channel   string // "ipv4" or "ipv6"
	// BFDInterval (milliseconds) and BFDMultiplier: 0 for no BFD.
	BFDInterval, BFDMultiplier int
	// Local is BIRD's "local" address ("" for none); Port 0 is 179.
	Local string
	Port  uint16
	// KeepaliveTime, ConnectRetryTime, Multihop, GracefulRestartTime: 0
	// is not printed.
	KeepaliveTime, ConnectRetryTime, Multihop, GracefulRestartTime int
	Passive                                                        bool
	GracefulRestart                                                string // "on" or "off"
	// ExtendedChannel is "ipv4" when IPv4 prefixes ride this IPv6
	// session with extended next hops, else "".
	ExtendedChannel string
	// Filter is the export filter the channels name: ExportFilter, or
	// the peer's own (PeerFilter) when OwnTags is not "".
	Filter string
	// OwnTags are the peer's own BIRD statements (MED, communities), one
	// per line, for its own filter.
	OwnTags string
}

// PeerFilter is the name of the export filter of a peer with attributes of
// its own (MED, communities): ExportFilter, '_', its protocol name.
func PeerFilter(protocol string) string { return ExportFilter + "_" + protocol }

// Render returns the bytes of bird.conf for in. It sorts peers by name and
// prefixes by family, address and length, masks prefixes and drops
// duplicate prefixes, so the result depends only on the sets given, not on
// their order, and it never modifies in.
//
// Render refuses an input that would give a config BIRD rejects or misreads,
// returning no bytes and one error that joins every problem found, each
// naming the peer or prefix and wrapping one of ErrRouterID, ErrASN,
// ErrPeerName, ErrReservedName, ErrDuplicatePeer, ErrPeerAddress,
// ErrDuplicateAddress, ErrPassword, ErrHoldTime, ErrPrefix or ErrLogFile.
// Errors never contain a password.
func Render(in Input) ([]byte, error) {
	v, err := newView(in)
	if err != nil {
		return nil, fmt.Errorf("render bird config: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(2048 + 512*len(v.Peers) + len(v.Routes4) + len(v.Routes6))
	if err := configTemplate.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("render bird config: execute %s: %w", bird.ConfigTemplate, err)
	}
	return buf.Bytes(), nil
}

// newView validates in and turns it into the sorted view model.
func newView(in Input) (view, error) {
	var errs []error
	if err := CheckRouterID(in.RouterID); err != nil {
		errs = append(errs, fmt.Errorf("router id %w", err))
	}
	if in.ASN == 0 {
		errs = append(errs, fmt.Errorf("local AS: %w", ErrASN))
	}
	peers, err := peerViews(in.ASN, in.Peers)
	if err != nil {
		errs = append(errs, err)
	}
	r4, r6, err := routes(in.Prefixes)
	if err != nil {
		errs = append(errs, err)
	}
	if in.LogFile != "" {
		if err := CheckLogFile(in.LogFile); err != nil {
			errs = append(errs, fmt.Errorf("log file %w", err))
		}
	}
	vipTags, err := vipTagLines(in.VIPTags)
	if err != nil {
		errs = append(errs, err)
	}
	switch in.Drain {
	case NotDrained, DrainShutdown, DrainWithdrawn:
	default:
		errs = append(errs, fmt.Errorf("drain %q: must be %q, %q or %q", in.Drain, NotDrained, DrainShutdown, DrainWithdrawn))
	}
	if len(errs) > 0 {
		return view{}, errors.Join(errs...)
	}
	v := view{
		RouterID:     in.RouterID.String(),
		ExportFilter: ExportFilter,
		Static4:      StaticProtocol4,
		Static6:      StaticProtocol6,
		VIP4:         VIPProtocol4,
		VIP6:         VIPProtocol6,
		VIPTable:     in.VIPTable,
		Routes4:      r4,
		Routes6:      r6,
		Peers:        peers,
		Announce:     AnnounceFunction,
		Withdrawn:    in.Drain == DrainWithdrawn,
		Shutdown:     in.Drain == DrainShutdown,
		PodCIDRTags:  tagLines(in.PodCIDRCommunities, "\t\t"),
		VIPTags:      tagLines(in.VIPCommunities, "\t\t") + vipTags,
	}
	if in.LogFile != "" {
		v.LogFile, v.LogBackup, v.LogLimit, v.LogClasses = in.LogFile, LogBackup(in.LogFile), LogFileLimit, LogClasses
	}
	for _, p := range v.Peers {
		if p.BFDInterval > 0 {
			v.BFD = BFDProtocol
		}
	}
	return v, nil
}

// peerViews validates peers and returns their blocks sorted by name.
func peerViews(localASN uint32, peers []Peer) ([]peerView, error) {
	sorted := slices.Clone(peers)
	slices.SortStableFunc(sorted, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	var errs []error
	out := make([]peerView, 0, len(sorted))
	byProtocol := make(map[string]string, len(sorted))
	byAddress := make(map[netip.Addr]string, len(sorted))
	for _, p := range sorted {
		pv, err := peerViewOf(localASN, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, ok := byProtocol[pv.Protocol]; ok {
			errs = append(errs, fmt.Errorf("peers %q and %q (protocol %s): %w", other, p.Name, pv.Protocol, ErrDuplicatePeer))
			continue
		}
		byProtocol[pv.Protocol] = p.Name
		if other, ok := byAddress[p.Address]; ok {
			errs = append(errs, fmt.Errorf("peers %q and %q (neighbor %s): %w", other, p.Name, p.Address, ErrDuplicateAddress))
			continue
		}
		byAddress[p.Address] = p.Name
		out = append(out, pv)
	}
	return out, errors.Join(errs...)
}

// peerViewOf validates one peer and formats its block. Each error names the
// peer and the field, but never prints the password.
func peerViewOf(localASN uint32, p Peer) (peerView, error) {
	var errs []error
	if err := CheckPeerName(p.Name); err != nil {
		errs = append(errs, fmt.Errorf("peer name %w", err))
	}
	if err := CheckNeighbor(p.Address); err != nil {
		errs = append(errs, fmt.Errorf("peer %q: neighbor %w", p.Name, err))
	}
	if p.ASN == 0 {
		errs = append(errs, fmt.Errorf("peer %q: neighbor AS: %w", p.Name, ErrASN))
	}
	if err := CheckPassword(p.Password); err != nil {
		errs = append(errs, fmt.Errorf("peer %q: password %w", p.Name, err))
	}
	if err := CheckHoldTime(p.HoldTime); err != nil {
		errs = append(errs, fmt.Errorf("peer %q: hold time %w", p.Name, err))
	}
	if p.BFD != nil {
		if err := CheckBFD(*p.BFD); err != nil {
			errs = append(errs, fmt.Errorf("peer %q: %w", p.Name, err))
		}
	}
	if err := CheckPeerOptions(p); err != nil {
		errs = append(errs, fmt.Errorf("peer %q: %w", p.Name, err))
	}
	if len(errs) > 0 {
		return peerView{}, errors.Join(errs...)
	}
	channel := "ipv4"
	if p.Address.Is6() {
		channel = "ipv6"
	}
	v := peerView{
		Protocol:  ProtocolName(p.Name),
		Name:      p.Name,
		LocalASN:  localASN,
		Address:   p.Address.WithZone("").String(),
		Interface: p.Address.Zone(),
		ASN:       p.ASN,
		HoldTime:  p.HoldTime,
		Password:  p.Password,
		Channel:   channel,
	}
	if p.BFD != nil {
		v.BFDInterval, v.BFDMultiplier = int(p.BFD.Interval/time.Millisecond), p.BFD.Multiplier
	}
	if p.SourceAddress.IsValid() {
		v.Local = p.SourceAddress.String()
	}
	v.Port, v.Passive = p.Port, p.Passive
	v.KeepaliveTime, v.ConnectRetryTime, v.Multihop = p.KeepaliveTime, p.ConnectRetryTime, p.Multihop
	v.GracefulRestart, v.GracefulRestartTime = "on", p.GracefulRestartTime
	if p.NoGracefulRestart {
		v.GracefulRestart = "off"
	}
	if p.ExtendedNextHop {
		v.ExtendedChannel = "ipv4"
	}
	if p.MED != nil {
		v.OwnTags = fmt.Sprintf("\tbgp_med = %d;\n", *p.MED)
	}
	v.OwnTags += tagLines(p.Communities, "\t")
	v.Filter = ExportFilter
	if v.OwnTags != "" {
		v.Filter = PeerFilter(v.Protocol)
	}
	return v, nil
}

// tagLines returns one BIRD statement per community of cs (sorted, each
// once), each line indented by indent.
func tagLines(cs []community.Community, indent string) string {
	var b strings.Builder
	for _, c := range community.Sorted(cs) {
		b.WriteString(indent + c.Bird() + "\n")
	}
	return b.String()
}

// ErrVIPTag means two VIP tags share a metric, or one has metric 0.
var ErrVIPTag = errors.New("VIP tag metrics must be unique and not 0")

// vipTagLines returns the statements that give the VIPs of each tag their
// communities, sorted by metric.
func vipTagLines(tags []VIPTag) (string, error) {
	sorted := slices.Clone(tags)
	slices.SortFunc(sorted, func(a, b VIPTag) int { return cmp.Compare(a.Metric, b.Metric) })
	var b strings.Builder
	for i, t := range sorted {
		if t.Metric == 0 || (i > 0 && sorted[i-1].Metric == t.Metric) {
			return "", fmt.Errorf("VIP tag metric %d: %w", t.Metric, ErrVIPTag)
		}
		if len(t.Communities) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\t\tif defined(krt_metric) && krt_metric = %d then {\n%s\t\t}\n", t.Metric, tagLines(t.Communities, "\t\t\t"))
	}
	return b.String(), nil
}

// checkError is what the Check functions return: a message that names the
// value (never a password) and says what is wrong with it, wrapping one of
// the Err sentinels for errors.Is. The message reads on after a field name,
// as in "peers[0].name" + ": " + msg, or "peer name " + msg.
type checkError struct {
	msg string
	err error
}

func (e *checkError) Error() string { return e.msg }
func (e *checkError) Unwrap() error { return e.err }

func checkErr(sentinel error, format string, args ...any) error {
	return &checkError{msg: fmt.Sprintf(format, args...), err: sentinel}
}

// CheckRouterID returns nil if id can be BIRD's router id: a non-zero IPv4
// address (not IPv4-mapped IPv6). Otherwise it returns an error wrapping
// ErrRouterID. Render applies the same check.
func CheckRouterID(id netip.Addr) error {
	switch {
	case !id.IsValid():
		return checkErr(ErrRouterID, "must be set (a non-zero IPv4 address)")
	case !id.Is4():
		return checkErr(ErrRouterID, "%s is not an IPv4 address", id.WithZone(""))
	case id.IsUnspecified():
		return checkErr(ErrRouterID, "%s is unspecified; BIRD needs a non-zero router id", id)
	}
	return nil
}

// CheckPeerName returns nil if name can name a peer: it matches
// PeerNamePattern (an error wrapping ErrPeerName if not) and ProtocolName
// does not turn it into a BIRD keyword (an error wrapping ErrReservedName).
// The rendered protocol name of two peers must also differ, which only
// Render, seeing every peer, checks. The error message starts with the
// quoted name.
func CheckPeerName(name string) error {
	if !peerNameRE.MatchString(name) {
		return checkErr(ErrPeerName, "%q must be 1-32 lower-case letters, digits, '_' or '-', starting and ending with a letter or digit", name)
	}
	if slices.Contains(reservedNames, strings.ReplaceAll(name, "-", "_")) {
		return checkErr(ErrReservedName, "%q would make protocol %s, a BIRD keyword; rename the peer", name, ProtocolName(name))
	}
	return nil
}

// CheckNeighbor returns nil if a can be a BGP neighbor address in BIRD: a
// unicast IPv4 or IPv6 address, not IPv4-mapped IPv6, and with a zone
// naming an interface (letters, digits, '_', '.', '-', at most 15) if and
// only if it is IPv6 link-local. Otherwise it returns an error wrapping
// ErrPeerAddress whose message starts with the address. Two peers must also
// have different addresses, which only Render checks.
func CheckNeighbor(a netip.Addr) error {
	bare := a.WithZone("")
	switch {
	case !a.IsValid():
		return checkErr(ErrPeerAddress, "must be set")
	case a.Is4In6():
		return checkErr(ErrPeerAddress, "%s is an IPv4-mapped IPv6 address; write it as IPv4 (%s)", bare, bare.Unmap())
	case a.IsUnspecified(), a.IsMulticast():
		return checkErr(ErrPeerAddress, "%s is not a unicast address", bare)
	case a.Is6() && a.IsLinkLocalUnicast() && a.Zone() == "":
		return checkErr(ErrPeerAddress, "%s is link-local, so it needs a zone naming its interface (%s%%eth0)", bare, bare)
	case a.Is6() && a.IsLinkLocalUnicast() && !interfaceRE.MatchString(a.Zone()):
		return checkErr(ErrPeerAddress, "%s has zone %q, which is not an interface name (1-15 letters, digits, '_', '.' or '-')", bare, a.Zone())
	case !a.IsLinkLocalUnicast() && a.Zone() != "":
		return checkErr(ErrPeerAddress, "%s has zone %q, but only an IPv6 link-local address may have one", bare, a.Zone())
	}
	return nil
}

// CheckPassword returns nil if pw can be a peer's TCP MD5 password: empty
// (none), or at most MaxPasswordLen bytes of printable ASCII other than '"'
// and '\'. BIRD 2.0 strings have no escapes (a '"' ends them) and later
// versions read '\' as one, so both are refused rather than escaped.
// Otherwise it returns an error wrapping ErrPassword that says what is
// wrong without showing any of pw.
func CheckPassword(pw string) error {
	if len(pw) > MaxPasswordLen {
		return checkErr(ErrPassword, "is %d bytes long; Linux takes at most %d (TCP_MD5SIG_MAXKEYLEN)", len(pw), MaxPasswordLen)
	}
	for i := 0; i < len(pw); i++ {
		var what string
		switch c := pw[i]; {
		case c == '"':
			what = `a '"'`
		case c == '\\':
			what = `a '\'`
		case c == '\t':
			what = "a tab"
		case c == '\r':
			what = "a carriage return"
		case c == '\n':
			what = "a newline"
		case c < 0x20 || c == 0x7f:
			what = "a control character"
		case c > 0x7f:
			what = "a non-ASCII character"
		default:
			continue
		}
		return checkErr(ErrPassword, `must hold only printable ASCII characters other than '"' and '\', but has %s`, what)
	}
	return nil
}

// CheckHoldTime returns nil if seconds is a hold time BIRD accepts: 0 (BIRD's
// default) or MinHoldTime..MaxHoldTime. Otherwise it returns an error
// wrapping ErrHoldTime.
func CheckHoldTime(seconds int) error {
	if seconds != 0 && (seconds < MinHoldTime || seconds > MaxHoldTime) {
		return checkErr(ErrHoldTime, "%d must be 0 (BIRD's default) or %d..%d seconds", seconds, MinHoldTime, MaxHoldTime)
	}
	return nil
}

// CheckPrefix returns nil if p can be an owned prefix: a valid IPv4 or IPv6
// prefix, not IPv4-mapped IPv6. Host bits are allowed (Render masks them).
// Otherwise it returns an error wrapping ErrPrefix.
func CheckPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return checkErr(ErrPrefix, "is not a valid prefix")
	case p.Addr().Is4In6():
		return checkErr(ErrPrefix, "%s is an IPv4-mapped IPv6 prefix; write it as IPv4", p)
	}
	return nil
}

// CheckLogFile returns nil if path can be BIRD's log file: an absolute
// path to a file, clean (as filepath.Clean leaves it: no "//", "." or ".."
// parts, no trailing '/'), of at most MaxLogFileLen bytes of printable ASCII
// other than '"' and '\' (BIRD 2.0 strings have no escapes: a '"' ends them,
// and later versions read '\' as one). Otherwise it returns an error
// wrapping ErrLogFile. "" (no log file) is for the caller to allow: Render
// renders no log file for it.
func CheckLogFile(path string) error {
	switch {
	case len(path) > MaxLogFileLen:
		return checkErr(ErrLogFile, "is %d bytes long; at most %d are accepted", len(path), MaxLogFileLen)
	case !strings.HasPrefix(path, "/"):
		return checkErr(ErrLogFile, "%q must be an absolute path", path)
	case path == "/":
		return checkErr(ErrLogFile, `"/" is a directory; name a file (e.g. /run/bird/bird.log)`)
	case filepath.Clean(path) != path:
		return checkErr(ErrLogFile, `%q is not a clean path (no "//", "." or ".." parts, no trailing '/'): write %q`, path, filepath.Clean(path))
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return checkErr(ErrLogFile, `%q must hold only printable ASCII characters other than '"' and '\'`, path)
		}
	}
	return nil
}

// routes validates, masks, sorts and deduplicates prefixes, and formats them
// per family.
func routes(prefixes []netip.Prefix) (r4, r6 string, err error) {
	var errs []error
	keys := make([]prefixKey, 0, len(prefixes))
	for i, p := range prefixes {
		if err := CheckPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("prefixes[%d]: %w", i, err))
			continue
		}
		keys = append(keys, keyOf(p))
	}
	if len(errs) > 0 {
		return "", "", errors.Join(errs...)
	}
	// Integer keys sort several times faster than netip.Prefix.Compare,
	// and input already in order (the agent's) is only checked.
	if !slices.IsSortedFunc(keys, prefixKey.compare) {
		slices.SortFunc(keys, prefixKey.compare)
	}
	keys = slices.Compact(keys)
	n4, _ := slices.BinarySearchFunc(keys, prefixKey{v6: 1}, prefixKey.compare)
	const line = len("\troute  blackhole;\n")
	b4 := make([]byte, 0, n4*(line+18))
	b6 := make([]byte, 0, (len(keys)-n4)*(line+43))
	for _, k := range keys {
		b := &b4
		if k.v6 == 1 {
			b = &b6
		}
		*b = append(*b, "\troute "...)
		*b = k.p.AppendTo(*b)
		*b = append(*b, " blackhole;\n"...)
	}
	return string(b4), string(b6), nil
}

// prefixKey orders masked prefixes as netip.Prefix.Compare does (IPv4
// first, then by address, then by length) with integer compares.
type prefixKey struct {
	v6     uint8
	hi, lo uint64
	bits   int
	p      netip.Prefix // masked
}

func keyOf(p netip.Prefix) prefixKey {
	p = p.Masked()
	a := p.Addr().As16()
	k := prefixKey{hi: binary.BigEndian.Uint64(a[:8]), lo: binary.BigEndian.Uint64(a[8:]), bits: p.Bits(), p: p}
	if p.Addr().Is6() {
		k.v6 = 1
	}
	return k
}

func (a prefixKey) compare(b prefixKey) int {
	switch {
	case a.v6 != b.v6:
		return cmp.Compare(a.v6, b.v6)
	case a.hi != b.hi:
		return cmp.Compare(a.hi, b.hi)
	case a.lo != b.lo:
		return cmp.Compare(a.lo, b.lo)
	}
	return cmp.Compare(a.bits, b.bits)
}
