package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FRRPeer is one BGP neighbor of an FRR ToR: a node's address on the link
// and the node's AS number.
type FRRPeer struct {
	Address netip.Addr
	ASN     uint32
	// ExtendedNextHop, for an IPv6 neighbor, also takes IPv4 prefixes
	// from it with IPv6 next hops (RFC 8950: capability extended-nexthop,
	// activated in the IPv4 family too).
	ExtendedNextHop bool
}

// FRRConfig is the BGP setup of an FRR ToR started by StartFRR.
type FRRConfig struct {
	ASN       uint32
	RouterID  netip.Addr // IPv4, as BGP router ids are
	Neighbors []FRRPeer  // IPv4 and IPv6 neighbors, each activated in its own family
	// BFD runs bfdd too, with a BFD session to every neighbor (100 ms
	// intervals, multiplier 3: down after 300 ms of silence).
	BFD bool
	// GracefulShutdown makes the ToR a receiver of GRACEFUL_SHUTDOWN as
	// RFC 8326 asks: a path with 65535:0 gets local preference 0, so a
	// prefix with another path moves to it (route-map on every neighbor).
	GracefulShutdown bool
}

// frrBFDConfig is bfdd's config: the profile every neighbor's session uses.
const frrBFDConfig = `frr defaults datacenter
!
bfd
 profile roost
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 exit
exit
`

// FRRNeighbor is what FRR's bgpd reports about one neighbor.
type FRRNeighbor struct {
	State                  string // "Established", "Active", "Connect", ...
	RemoteASN              uint32
	ConnectionsEstablished int // sessions that reached Established so far
	ConnectionsDropped     int // Established sessions that were torn down: a reset shows here
	Uptime                 time.Duration
	PrefixesReceived       int // accepted prefixes, summed over address families
}

// FRR is a real FRR ToR (zebra and bgpd, in the foreground) running in one
// network namespace for one test. Its config files, vty sockets, zebra API
// socket and logs are in Dir; zebra installs what bgpd learns into the
// namespace's kernel.
type FRR struct {
	NS  string
	Dir string // short directory owned by the frr user, removed at cleanup

	bin     frrBinaries
	daemons []*frrDaemon
}

// frrBinaries are the FRR programs a test drives.
type frrBinaries struct{ zebra, bgpd, bfdd, vtysh string }

// frrDaemon is one running FRR daemon.
type frrDaemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // valid once done is closed
}

// frrStartTimeout bounds how long StartFRR waits for a daemon to answer.
const frrStartTimeout = 10 * time.Second

// StartFRR starts zebra and bgpd inside namespace ns with a config made from
// cfg ("frr defaults datacenter", no eBGP policy requirement, multipath with
// AS-path relax so that a prefix learned from several nodes is installed as
// ECMP, a 2 s connect retry) and waits until both answer vtysh. Create the
// namespace's links first: StartFRR waits for their IPv6 duplicate address
// detection to finish (see waitDAD). At cleanup it stops both daemons and
// removes their files, after logging them when the test failed. The daemons
// run as the frr user, as the Debian package arranges; the test runs as root.
func StartFRR(tb testing.TB, ns string, cfg FRRConfig) *FRR {
	tb.Helper()
	Privileged(tb)
	bgpConf, err := frrBGPConfig(ns, cfg)
	if err != nil {
		tb.Fatalf("start frr in %s: %v", ns, err)
	}
	f := &FRR{NS: ns, bin: frrBinaries{
		zebra: Binary(tb, "zebra"), bgpd: Binary(tb, "bgpd"), vtysh: Binary(tb, "vtysh"),
	}}
	owner, err := user.Lookup("frr")
	if err != nil {
		skip(tb, "user frr does not exist: FRR is not installed (run scripts/deps.sh)")
	}
	// vty and zebra sockets live here too: keep the path short for sun_path.
	f.Dir, err = os.MkdirTemp("", "rf")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.stop(tb) })
	files := map[string]string{
		"zebra.conf": "frr defaults datacenter\nhostname " + ns + "\n",
		"bgpd.conf":  bgpConf,
		"vtysh.conf": "", // present so that vtysh does not warn about it
	}
	if cfg.BFD {
		f.bin.bfdd = Binary(tb, "bfdd")
		files["bfdd.conf"] = frrBFDConfig
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(f.Dir, name), []byte(text), 0o640); err != nil {
			tb.Fatal(err)
		}
	}
	if err := chownTree(f.Dir, owner); err != nil {
		tb.Fatalf("start frr in %s: %v", ns, err)
	}
	// A running bgpd only logs a bad config line, and "bgpd -C" exits 0 on
	// one too, but prints it: any output means the config is not clean,
	// except FRR's complaint that its per-pid crash-log directory under
	// /var/tmp/frr exists (a reused pid), which says nothing of the config.
	// -p 0: no BGP listener, which in this (the root) namespace would
	// clash with a BGP speaker on port 179 there, such as the deployment
	// test's BIRD.
	out, err := exec.Command(f.bin.bgpd, "-C", "-p", "0", "-f", filepath.Join(f.Dir, "bgpd.conf")).CombinedOutput()
	if err != nil || len(configComplaints(out)) > 0 {
		tb.Fatalf("start frr in %s: bgpd -C rejects its config: %v\n%s\nconfig:\n%s", ns, err, out, bgpConf)
	}
	f.waitDAD(tb)
	f.start(tb, "zebra", f.bin.zebra, "zserv.api")
	if cfg.BFD {
		f.start(tb, "bfdd", f.bin.bfdd)
	}
	f.start(tb, "bgpd", f.bin.bgpd)
	return f
}

// waitDAD waits until no IPv6 address in the namespace is tentative. zebra
// 8.4 does not tell bgpd about a link-local address that was tentative when
// zebra started and became usable later, and bgpd then never brings up an
// IPv6 session on that link ("does not have a v6 LL address"). Veths made
// just before StartFRR are in exactly that state for a second or two.
func (f *FRR) waitDAD(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(frrStartTimeout)
	for {
		out, err := exec.Command("ip", "-n", f.NS, "-6", "-o", "addr", "show", "tentative").CombinedOutput()
		if err != nil {
			tb.Fatalf("start frr in %s: list tentative addresses: %v: %s", f.NS, err, out)
		}
		if len(bytesTrim(out)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("start frr in %s: IPv6 addresses still tentative after %v:\n%s", f.NS, frrStartTimeout, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start starts one daemon in the foreground and waits until its vty socket
// and the other named sockets exist and it answers vtysh.
func (f *FRR) start(tb testing.TB, name, bin string, sockets ...string) {
	tb.Helper()
	log, err := os.OpenFile(f.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer log.Close()
	argv := InNS(f.NS, bin,
		"-N", f.NS, // FRR's pathspace; every path is also given explicitly
		"-f", filepath.Join(f.Dir, name+".conf"),
		"-i", filepath.Join(f.Dir, name+".pid"),
		"-z", filepath.Join(f.Dir, "zserv.api"),
		"--vty_socket", f.Dir,
		"-P", "0", // no TCP vty
		"--log", "stdout",
	)
	if name == "bfdd" {
		// Its control socket, which defaults to one shared path.
		argv = append(argv, "--bfdctl", filepath.Join(f.Dir, "bfdd.sock"))
	}
	d := &frrDaemon{name: name, cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		tb.Fatalf("start %s in %s: %v", name, f.NS, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	f.daemons = append(f.daemons, d)

	sockets = append(sockets, name+".vty")
	deadline := time.Now().Add(frrStartTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			tb.Fatalf("%s in %s exited at start: %v; log:\n%s", name, f.NS, d.err, f.logText(name))
		default:
		}
		lastErr = nil
		for _, s := range sockets {
			if _, err := os.Stat(filepath.Join(f.Dir, s)); err != nil {
				lastErr = err
			}
		}
		if lastErr == nil {
			if _, lastErr = f.vtysh([]string{"-d", name}, "show version"); lastErr == nil {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s in %s did not answer within %v: %v; log:\n%s", name, f.NS, frrStartTimeout, lastErr, f.logText(name))
}

// stop ends the daemons (SIGTERM, SIGKILL after 5 s), logs their output when
// the test failed, and removes Dir.
func (f *FRR) stop(tb testing.TB) {
	for _, d := range slices.Backward(f.daemons) {
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	}
	if tb.Failed() {
		for _, d := range f.daemons {
			tb.Logf("%s log (namespace %s):\n%s", d.name, f.NS, f.logText(d.name))
		}
	}
	if f.Dir != "" {
		_ = os.RemoveAll(f.Dir)
	}
}

// logPath returns the file that holds a daemon's stdout and stderr.
func (f *FRR) logPath(daemon string) string { return filepath.Join(f.Dir, daemon+".log") }

// logText returns what a daemon has logged so far.
func (f *FRR) logText(daemon string) string {
	out, _ := os.ReadFile(f.logPath(daemon))
	return strings.TrimSpace(string(out))
}

// Vtysh runs one vtysh command (e.g. "show bgp summary") against this FRR
// and returns its output. The error holds the output when vtysh fails.
func (f *FRR) Vtysh(cmd string) (string, error) { return f.vtysh(nil, cmd) }

// vtysh runs vtysh with extra arguments and one command.
func (f *FRR) vtysh(args []string, cmd string) (string, error) {
	argv := append([]string{"--config_dir", f.Dir, "--vty_socket", f.Dir}, args...)
	argv = append(argv, "-c", cmd)
	out, err := exec.Command(f.bin.vtysh, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh -c %q in %s: %w: %s", cmd, f.NS, err, bytesTrim(out))
	}
	return string(out), nil
}

// vtyshJSON runs a vtysh command that prints JSON and decodes it into v.
func (f *FRR) vtyshJSON(cmd string, v any) error {
	out, err := f.Vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("decode vtysh -c %q in %s: %w", cmd, f.NS, err)
	}
	return nil
}

// Neighbors returns bgpd's view of every configured neighbor, keyed by the
// neighbor's address, from "show bgp neighbors json".
func (f *FRR) Neighbors() (map[netip.Addr]FRRNeighbor, error) {
	var raw map[string]struct {
		RemoteAS               uint32 `json:"remoteAs"`
		BGPState               string `json:"bgpState"`
		UpMsec                 int64  `json:"bgpTimerUpMsec"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
		ConnectionsDropped     int    `json:"connectionsDropped"`
		AddressFamilyInfo      map[string]struct {
			AcceptedPrefixCounter int `json:"acceptedPrefixCounter"`
		} `json:"addressFamilyInfo"`
	}
	if err := f.vtyshJSON("show bgp neighbors json", &raw); err != nil {
		return nil, err
	}
	neighbors := make(map[netip.Addr]FRRNeighbor, len(raw))
	for key, n := range raw {
		addr, err := netip.ParseAddr(key)
		if err != nil {
			continue // not a neighbor entry
		}
		nb := FRRNeighbor{
			State:                  n.BGPState,
			RemoteASN:              n.RemoteAS,
			ConnectionsEstablished: n.ConnectionsEstablished,
			ConnectionsDropped:     n.ConnectionsDropped,
			Uptime:                 time.Duration(n.UpMsec) * time.Millisecond,
		}
		for _, af := range n.AddressFamilyInfo {
			nb.PrefixesReceived += af.AcceptedPrefixCounter
		}
		neighbors[addr] = nb
	}
	return neighbors, nil
}

// GRModes returns bgpd's graceful-restart modes for its session with
// neighbor, from "show bgp neighbors NEIGHBOR json": local is its own,
// "Helper*" by default (the star: inherited from the global mode); remote
// is what the neighbor's last OPEN announced, "Restart" from one that can
// restart gracefully and "NotApplicable" from one that cannot, or before
// any OPEN.
func (f *FRR) GRModes(neighbor netip.Addr) (local, remote string, err error) {
	var raw map[string]struct {
		GracefulRestartInfo struct {
			LocalGRMode  string `json:"localGrMode"`
			RemoteGRMode string `json:"remoteGrMode"`
		} `json:"gracefulRestartInfo"`
	}
	cmd := fmt.Sprintf("show bgp neighbors %s json", neighbor)
	if err := f.vtyshJSON(cmd, &raw); err != nil {
		return "", "", err
	}
	n, ok := raw[neighbor.String()]
	if !ok {
		return "", "", fmt.Errorf("%s in %s: %s is not a neighbor", cmd, f.NS, neighbor)
	}
	return n.GracefulRestartInfo.LocalGRMode, n.GracefulRestartInfo.RemoteGRMode, nil
}

// BGPRoutes returns bgpd's IPv4 and IPv6 unicast tables: each prefix with
// the next hops of its valid paths, sorted. A path's global next hop is
// used; its link-local one only when it has no other. Every valid path is
// listed, whether or not bgpd uses it for multipath: KernelRoutes shows what
// is installed as ECMP.
func (f *FRR) BGPRoutes() (map[netip.Prefix][]netip.Addr, error) {
	routes := make(map[netip.Prefix][]netip.Addr)
	for _, family := range []string{"ipv4", "ipv6"} {
		var table struct {
			Routes map[string][]struct {
				Valid    bool `json:"valid"`
				Nexthops []struct {
					IP    string `json:"ip"`
					Scope string `json:"scope"`
				} `json:"nexthops"`
			} `json:"routes"`
		}
		cmd := "show bgp " + family + " unicast json"
		if err := f.vtyshJSON(cmd, &table); err != nil {
			return nil, err
		}
		for key, paths := range table.Routes {
			prefix, err := netip.ParsePrefix(key)
			if err != nil {
				return nil, fmt.Errorf("%s in %s: prefix %q: %w", cmd, f.NS, key, err)
			}
			var hops []netip.Addr
			for _, p := range paths {
				if !p.Valid {
					continue
				}
				var global, local []netip.Addr
				for _, nh := range p.Nexthops {
					a, err := netip.ParseAddr(nh.IP)
					if err != nil {
						return nil, fmt.Errorf("%s in %s: next hop %q of %s: %w", cmd, f.NS, nh.IP, prefix, err)
					}
					if nh.Scope == "link-local" {
						local = append(local, a)
					} else {
						global = append(global, a)
					}
				}
				if len(global) == 0 {
					global = local
				}
				hops = append(hops, global...)
			}
			routes[prefix] = sortedAddrs(hops)
		}
	}
	return routes, nil
}

// KernelRoutes returns the routes zebra installed into the namespace's
// kernel (main table, protocol bgp, IPv4 and IPv6): each prefix with its
// gateways, sorted; an ECMP route has several.
func (f *FRR) KernelRoutes() (map[netip.Prefix][]netip.Addr, error) {
	routes := make(map[netip.Prefix][]netip.Addr)
	for _, family := range []string{"-4", "-6"} {
		out, err := exec.Command("ip", "-n", f.NS, family, "-j", "route", "show", "proto", "bgp").Output()
		if err != nil {
			return nil, fmt.Errorf("ip -n %s %s route show proto bgp: %w", f.NS, family, err)
		}
		var rows []struct {
			Dst      string `json:"dst"`
			Gateway  string `json:"gateway"`
			Nexthops []struct {
				Gateway string `json:"gateway"`
			} `json:"nexthops"`
		}
		if err := json.Unmarshal(out, &rows); err != nil {
			return nil, fmt.Errorf("decode ip -n %s %s route: %w", f.NS, family, err)
		}
		for _, r := range rows {
			prefix, err := parseRouteDst(r.Dst, family == "-6")
			if err != nil {
				return nil, fmt.Errorf("ip -n %s route: %w", f.NS, err)
			}
			gateways := []string{r.Gateway}
			for _, nh := range r.Nexthops {
				gateways = append(gateways, nh.Gateway)
			}
			var hops []netip.Addr
			for _, g := range gateways {
				if g == "" {
					continue
				}
				a, err := netip.ParseAddr(g)
				if err != nil {
					return nil, fmt.Errorf("ip -n %s route %s: gateway %q: %w", f.NS, prefix, g, err)
				}
				hops = append(hops, a)
			}
			routes[prefix] = sortedAddrs(append(routes[prefix], hops...))
		}
	}
	return routes, nil
}

// parseRouteDst parses the "dst" of ip(8)'s JSON route output: a prefix, a
// bare address (a host route), or "default".
func parseRouteDst(dst string, v6 bool) (netip.Prefix, error) {
	switch {
	case dst == "default" && v6:
		return netip.MustParsePrefix("::/0"), nil
	case dst == "default":
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	case strings.Contains(dst, "/"):
		return netip.ParsePrefix(dst)
	}
	a, err := netip.ParseAddr(dst)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("destination %q: %w", dst, err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// WaitFor polls cond every 100 ms until it reports done, and fails tb when
// timeout passes first, naming what was awaited, the last state cond
// described, and bgpd's log. The timeout is a bound for a broken setup, not
// an assertion about speed.
func (f *FRR) WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() (done bool, state string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, state := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("FRR in %s: %s: not reached within %v; last state: %s\nbgpd log:\n%s",
				f.NS, what, timeout, state, f.logText("bgpd"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitEstablished waits until every given neighbor is Established.
func (f *FRR) WaitEstablished(tb testing.TB, timeout time.Duration, peers ...netip.Addr) {
	tb.Helper()
	f.WaitFor(tb, timeout, fmt.Sprintf("sessions with %v established", peers), func() (bool, string) {
		ns, err := f.Neighbors()
		if err != nil {
			return false, err.Error()
		}
		var states []string
		done := true
		for _, p := range peers {
			n, ok := ns[p]
			if !ok {
				return false, fmt.Sprintf("%s is not a configured neighbor", p)
			}
			done = done && n.State == "Established"
			states = append(states, p.String()+"="+n.State)
		}
		return done, strings.Join(states, " ")
	})
}

// WaitBGPRoute waits until bgpd holds prefix with exactly the given next
// hops, in any order (see BGPRoutes).
func (f *FRR) WaitBGPRoute(tb testing.TB, timeout time.Duration, prefix netip.Prefix, nexthops ...netip.Addr) {
	tb.Helper()
	want := sortedAddrs(slices.Clone(nexthops))
	f.WaitFor(tb, timeout, fmt.Sprintf("BGP route %s via %v", prefix, want), func() (bool, string) {
		routes, err := f.BGPRoutes()
		if err != nil {
			return false, err.Error()
		}
		got, ok := routes[prefix]
		if !ok {
			return false, fmt.Sprintf("%s absent; table: %v", prefix, routes)
		}
		return slices.Equal(got, want), fmt.Sprintf("%s via %v", prefix, got)
	})
}

// frrBGPConfig renders bgpd's config for one ToR, neighbors sorted by
// address so that identical input gives identical text.
func frrBGPConfig(hostname string, cfg FRRConfig) (string, error) {
	var errs []error
	if cfg.ASN == 0 {
		errs = append(errs, errors.New("ASN: must be set"))
	}
	if !cfg.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("RouterID: %v is not an IPv4 address", cfg.RouterID))
	}
	peers := slices.Clone(cfg.Neighbors)
	slices.SortFunc(peers, func(a, b FRRPeer) int { return a.Address.Compare(b.Address) })
	for i, p := range peers {
		if !p.Address.IsValid() {
			errs = append(errs, errors.New("Neighbors: an address is not set"))
		}
		if p.ASN == 0 {
			errs = append(errs, fmt.Errorf("Neighbors: %v: ASN must be set", p.Address))
		}
		if i > 0 && p.Address == peers[i-1].Address {
			errs = append(errs, fmt.Errorf("Neighbors: %v is listed twice", p.Address))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("frr config: %w", err)
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("frr defaults datacenter")
	w("hostname %s", hostname)
	w("!")
	w("router bgp %d", cfg.ASN)
	w(" bgp router-id %s", cfg.RouterID)
	w(" no bgp ebgp-requires-policy")
	w(" no bgp default ipv4-unicast")
	w(" bgp bestpath as-path multipath-relax")
	for _, p := range peers {
		w(" neighbor %s remote-as %d", p.Address, p.ASN)
		w(" neighbor %s timers connect 2", p.Address)
		if cfg.BFD {
			w(" neighbor %s bfd profile roost", p.Address)
		}
		if p.ExtendedNextHop {
			w(" neighbor %s capability extended-nexthop", p.Address)
		}
	}
	for _, family := range []struct {
		name string
		is6  bool
	}{{"ipv4", false}, {"ipv6", true}} {
		w(" !")
		w(" address-family %s unicast", family.name)
		w("  maximum-paths 16")
		for _, p := range peers {
			if p.Address.Is6() == family.is6 || p.ExtendedNextHop && !family.is6 {
				w("  neighbor %s activate", p.Address)
				if cfg.GracefulShutdown {
					w("  neighbor %s route-map roost-gshut in", p.Address)
				}
			}
		}
		w(" exit-address-family")
	}
	w("exit")
	if cfg.GracefulShutdown {
		w("!")
		w("bgp community-list standard roost-gshut permit graceful-shutdown")
		w("route-map roost-gshut permit 10")
		w(" match community roost-gshut")
		w(" set local-preference 0")
		w("exit")
		w("route-map roost-gshut permit 20")
		w("exit")
	}
	return b.String(), nil
}

// chownTree gives dir and everything in it to the user u.
func chownTree(dir string, u *user.User) error {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("uid of %s: %w", u.Username, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return fmt.Errorf("gid of %s: %w", u.Username, err)
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
		return nil
	})
}

// sortedAddrs sorts addrs in place, drops duplicates and returns it.
func sortedAddrs(addrs []netip.Addr) []netip.Addr {
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}

// bytesTrim returns out as a string without surrounding space.
func bytesTrim(out []byte) string { return strings.TrimSpace(string(out)) }

// configComplaints returns the lines of "bgpd -C" output that are about the
// config, leaving out the crash-log directory notices FRR prints when
// /var/tmp/frr/bgpd.<pid> is left from an earlier process with that pid.
func configComplaints(out []byte) []string {
	var lines []string
	for _, l := range strings.Split(bytesTrim(out), "\n") {
		if l == "" || strings.Contains(l, `failed to mkdir "/var/tmp/frr/`) || strings.Contains(l, "crashlog and per-thread log buffering unavailable") {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}
