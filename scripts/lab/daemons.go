package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The lab's daemons: FRR on the ToRs; BIRD, roost-agent and roost-loader
// on the nodes; netcat servers in the workloads; etcd and roost-sync. Each
// is started unless it runs, and restarted when a file it read at start
// changed.

// --- ToRs (FRR) --------------------------------------------------------------

// tor returns the ToR named name; nil for none.
func (s *Lab) tor(name string) *Tor {
	for i := range s.Tors {
		if s.Tors[i].Name == name {
			return &s.Tors[i]
		}
	}
	return nil
}

// torBgpdConf returns bgpd's config for ToR tor: two neighbors per node
// link, one per family, each activated in its own address family only.
func (s *Lab) torBgpdConf(tor string) string {
	t := s.tor(tor)
	var b strings.Builder
	fmt.Fprintf(&b, `frr defaults datacenter
hostname %s
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 ! a VIP announced by several nodes (different ASes) is installed as ECMP
 bgp bestpath as-path multipath-relax
`, tor, t.ASN, t.RouterID)
	for fam := range families {
		for _, k := range s.Links {
			if k.Tor == tor {
				peer := k.NodeAddr[fam].Addr()
				fmt.Fprintf(&b, " neighbor %s remote-as %d\n", peer, s.node(k.Node).ASN)
				fmt.Fprintf(&b, " neighbor %s description %s\n", peer, k.Node)
				fmt.Fprintf(&b, " neighbor %s timers connect 5\n", peer)
			}
		}
	}
	for fam, f := range families {
		fmt.Fprintf(&b, " !\n address-family ipv%d unicast\n  maximum-paths 16\n", f.n)
		for _, k := range s.Links {
			if k.Tor == tor {
				fmt.Fprintf(&b, "  neighbor %s activate\n", k.NodeAddr[fam].Addr())
			}
		}
		b.WriteString(" exit-address-family\n")
	}
	b.WriteString("exit\n")
	return b.String()
}

// startTor writes ToR tor's FRR config and starts its zebra and bgpd.
func (l *lab) startTor(tor string) error {
	dir := l.dir(tor)
	for _, d := range []string{"frr", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "frr", "zebra.conf"), fmt.Appendf(nil, "frr defaults datacenter\nhostname %s\n", tor), 0o644); err != nil {
		return err
	}
	conf := filepath.Join(dir, "frr", "bgpd.conf")
	changed, err := updateFile(conf, l.spec.torBgpdConf(tor))
	if err != nil {
		return err
	}
	if changed {
		// A running bgpd keeps its old config.
		l.stopPid(l.pidfile(tor, "bgpd"), tor)
	}
	// The daemons drop to the frr user.
	if _, err := output(0, "chown", "-R", "frr:frr", dir); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return err
	}
	if err := checkBgpdConf(conf); err != nil {
		return fmt.Errorf("%s: %w", tor, err)
	}
	// Only a zebra started after duplicate address detection ended knows
	// the link-local addresses bgpd's IPv6 sessions need (setupNetwork);
	// with DAD off this is at once, but a veth's link-local address
	// appears only once both ends are up.
	if !alive(l.pidfile(tor, "zebra"), tor) && !waitFor(15*time.Second, func() bool { return noTentative(tor) }) {
		out, _ := output(0, "ip", "-n", tor, "-6", "-o", "addr", "show", "tentative")
		return fmt.Errorf("%s: IPv6 addresses still tentative after 15s: %s", tor, strings.TrimSpace(out))
	}
	for _, daemon := range []string{"zebra", "bgpd"} {
		if err := l.startFrrDaemon(tor, daemon); err != nil {
			return err
		}
	}
	return l.torCounters(tor)
}

// startFrrDaemon starts daemon (zebra or bgpd) of ToR tor unless it runs,
// and waits until it answers vtysh.
func (l *lab) startFrrDaemon(tor, daemon string) error {
	run, logs := l.dir(tor, "run"), l.dir(tor, "log")
	pidfile := l.pidfile(tor, daemon)
	if alive(pidfile, tor) {
		return nil
	}
	os.Remove(pidfile)
	os.Remove(filepath.Join(run, daemon+".vty"))
	outfile := filepath.Join(logs, daemon+".out")
	out, err := os.OpenFile(outfile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	// -d: it daemonizes itself. -N: FRR's pathspace, one instance per
	// namespace; every path is given so that all files stay in the state
	// directory.
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tor, filepath.Join(frrDir, daemon), "-d", "-N", tor,
		"-f", l.dir(tor, "frr", daemon+".conf"), "-i", pidfile, "-z", filepath.Join(run, "zserv.api"),
		"--vty_socket", run, "-P", "0", "--log", "file:"+filepath.Join(logs, daemon+".log"))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %s failed to start (%v); see %s and %s.log", tor, daemon, err, outfile, daemon)
	}
	answers := func() bool {
		_, err := output(5*time.Second, l.prog.vtysh, "--vty_socket", run, "-d", daemon, "-c", "show version")
		return err == nil
	}
	if !waitFor(15*time.Second, answers) {
		return fmt.Errorf("%s: %s does not answer vtysh; see %s", tor, daemon, filepath.Join(logs, daemon+".log"))
	}
	pid, _ := readPid(pidfile)
	l.logf("%s: %s started (pid %d)", tor, daemon, pid)
	return nil
}

// torCountersRules returns the nftables script of a ToR's counters of
// forwarded packets, one per family (table inet roost_lab, made anew):
// every packet it forwards but those to and from etcd's subnets, whose
// traffic the loaders keep up.
func (s *Lab) torCountersRules() string {
	var b strings.Builder
	b.WriteString("table inet roost_lab\ndelete table inet roost_lab\n")
	b.WriteString("table inet roost_lab {\n\tcounter forwarded4 {}\n\tcounter forwarded6 {}\n")
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n")
	for fam, f := range families {
		rule := "meta nfproto " + f.key
		if s.Etcd != nil && s.Etcd.Addr[fam].IsValid() {
			kw := [2]string{"ip", "ip6"}[fam]
			net := s.Etcd.Addr[fam].Masked()
			rule += fmt.Sprintf(" %s saddr != %s %s daddr != %s", kw, net, kw, net)
		}
		fmt.Fprintf(&b, "\t\t%s counter name forwarded%d\n", rule, f.n)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// torCounters sets up ToR tor's counters (torCountersRules), reset by
// every "up".
func (l *lab) torCounters(tor string) error {
	_, err := outputIn(0, strings.NewReader(l.spec.torCountersRules()), "ip", "netns", "exec", tor, l.prog.nft, "-f", "-")
	if err != nil {
		return fmt.Errorf("%s: nft refuses the lab's counters (table inet roost_lab): %w", tor, err)
	}
	return nil
}

// --- nodes (BIRD + roost-agent) ----------------------------------------------

// nodeBirdConf returns the config roost-agent would render for node: its
// PodCIDRs (and its cluster's VIPs) as static blackholes, one static
// protocol per family, exported to each of its ToRs over the session of
// their family, nothing imported. Used only with ROOST_LAB_NO_AGENT=1.
func (s *Lab) nodeBirdConf(node string) string {
	n := s.node(node)
	var b strings.Builder
	fmt.Fprintf(&b, "# written by roost-lab (scripts/lab, ROOST_LAB_NO_AGENT=1), standing in for roost-agent\nrouter id %s;\nprotocol device {}\n", n.RouterID)
	for fam, f := range families {
		fmt.Fprintf(&b, "protocol static owned%d {\n  %s;\n  route %s blackhole;\n", f.n, f.key, n.PodCIDR[fam])
		for _, vip := range s.vips(n.Cluster) {
			if vip.Is4() == (fam == 0) {
				fmt.Fprintf(&b, "  route %s blackhole;\n", netip.PrefixFrom(vip, vip.BitLen()))
			}
		}
		b.WriteString("}\n")
	}
	for _, k := range s.nodeLinks(node) {
		asn := s.tor(k.Tor).ASN
		for fam, f := range families {
			name := k.Tor
			if fam == 1 {
				name += "_v6"
			}
			fmt.Fprintf(&b, `protocol bgp %s {
  local %s as %d;
  neighbor %s as %d;
  graceful restart on;
  %s { import none; export where proto = "owned%d"; };
}
`, name, k.NodeAddr[fam].Addr(), n.ASN, k.TorAddr[fam].Addr(), asn, f.key, f.n)
		}
	}
	return b.String()
}

// agentConf returns roost-agent's config for node: both PodCIDRs, and two
// peers per ToR, one per family (the address's family picks the session's
// channel; a PodCIDR goes to the peers of its family).
func (l *lab) agentConf(node string) string {
	n := l.spec.node(node)
	var b strings.Builder
	fmt.Fprintf(&b, `# written by roost-lab (scripts/lab)
node: %s
asn: %d
routerID: %s
podCIDRs: [%s, %s]
kubernetes: {enabled: false, kubeconfig: ""}
peers:
`, node, n.ASN, n.RouterID, n.PodCIDR[0], n.PodCIDR[1])
	for _, k := range l.spec.nodeLinks(node) {
		asn := l.spec.tor(k.Tor).ASN
		fmt.Fprintf(&b, "  - {name: %s, address: %s, asn: %d}\n", k.Tor, k.TorAddr[0].Addr(), asn)
		fmt.Fprintf(&b, "  - {name: %s-v6, address: %s, asn: %d}\n", k.Tor, k.TorAddr[1].Addr(), asn)
	}
	fmt.Fprintf(&b, `bird: {socket: %s, configDir: %s}
listen: %s
controlSocket: %s
vips: {servicesFile: %s}
drain: {stateFile: %s}
`, l.dir(node, "run", "bird.ctl"), l.dir(node, "bird"), agentListen, l.dir(node, "run", "agent.sock"),
		filepath.Join(l.clusterDir(n.Cluster), "services.yaml"), l.dir(node, "drain.json"))
	return b.String()
}

// startNode starts node's BIRD and, unless ROOST_LAB_NO_AGENT=1, its
// roost-agent, unless they run.
func (l *lab) startNode(node string) error {
	n := l.spec.node(node)
	for _, d := range []string{"bird", "run", "log"} {
		if err := os.MkdirAll(l.dir(node, d), 0o755); err != nil {
			return err
		}
	}
	birdConf, ctl := l.dir(node, "bird", "bird.conf"), l.dir(node, "run", "bird.ctl")
	birdPid, agentPid := l.pidfile(node, "bird"), l.pidfile(node, "agent")
	agentConf := l.dir(node, "agent.yaml")
	if l.noAgent {
		changed, err := updateFile(birdConf, l.spec.nodeBirdConf(node))
		if err != nil {
			return err
		}
		if changed && alive(birdPid, node) {
			if _, err := output(0, l.prog.birdc, "-s", ctl, "configure"); err != nil {
				return fmt.Errorf("%s: %w", node, err)
			}
		}
		// What roost-agent keeps in the kernel for an owned prefix, with
		// its route protocol (167), so that an agent started later
		// adopts it.
		if err := ip("-n", node, "route", "replace", "blackhole", n.PodCIDR[0].String(), "proto", "167"); err != nil {
			return err
		}
		if err := ip("-n", node, "-6", "route", "replace", "blackhole", n.PodCIDR[1].String(), "proto", "167"); err != nil {
			return err
		}
		// An agent left from an earlier "up" would fight the hand-written
		// config.
		l.stopPid(agentPid, node)
	} else {
		// Rewritten only on change: an unchanged lab leaves the agent
		// alone.
		changed, err := updateFile(agentConf, l.agentConf(node))
		if err != nil {
			return err
		}
		if changed {
			// A running agent read the old file at start.
			l.stopPid(agentPid, node)
		}
		// BIRD needs a config to start; roost-agent replaces it.
		if !exists(birdConf) {
			if err := os.WriteFile(birdConf, fmt.Appendf(nil, "router id %s;\nprotocol device {}\n", n.RouterID), 0o644); err != nil {
				return err
			}
		}
	}
	if !alive(birdPid, node) {
		os.Remove(ctl)
		logfile := l.dir(node, "log", "bird.log")
		pid, err := spawn(node, birdPid, logfile, l.prog.bird, "-f", "-R", "-c", birdConf, "-s", ctl)
		if err != nil {
			return err
		}
		answers := func() bool {
			_, err := output(5*time.Second, l.prog.birdc, "-s", ctl, "show", "status")
			return err == nil
		}
		if !waitFor(15*time.Second, answers) {
			return fmt.Errorf("%s: bird does not answer on %s; see %s", node, ctl, logfile)
		}
		l.logf("%s: bird started (pid %d)", node, pid)
	}
	if l.noAgent || alive(agentPid, node) {
		return nil
	}
	return l.startChecked(node, "agent", l.prog.agent, agentConf, agentConf)
}

// startChecked starts roost's daemon bin (its pid file and log named
// name) in node with --config conf, once its --dry-run accepts conf (what
// it read is what), and fails when it exits within half a second.
func (l *lab) startChecked(node, name, bin, conf, what string) error {
	prog := filepath.Base(bin)
	if err := dryRun(bin, "--config", conf); err != nil {
		return fmt.Errorf("%s: %s rejects %s: %w", node, prog, what, err)
	}
	pidfile, logfile := l.pidfile(node, name), l.dir(node, "log", name+".log")
	pid, err := spawn(node, pidfile, logfile, bin, "--config", conf)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	if !alive(pidfile, node) {
		return fmt.Errorf("%s: %s exited at start; see %s", node, prog, logfile)
	}
	l.logf("%s: %s started (pid %d)", node, prog, pid)
	return nil
}

// dryRun runs name with args and --dry-run; its error holds what the
// program printed.
func dryRun(name string, args ...string) error {
	out, err := combined(0, name, append(args, "--dry-run")...)
	if err == nil {
		return nil
	}
	if msg := strings.TrimSpace(out); msg != "" {
		return errors.New(msg)
	}
	return err
}

// --- policy (roost-loader) and workloads -------------------------------------

// writePolicyFiles writes the seed policy, which every loader reads, and
// each cluster's endpoints and services files, which the loaders of its
// nodes read (and its agents, the services file). A loader would notice a
// change by itself, but "up" could not tell when it has applied it, so the
// running loaders that read a changed file are restarted instead (their
// pinned programs keep enforcing meanwhile): a ready loader has then
// applied the files as they are now.
func (l *lab) writePolicyFiles() error {
	seedFile := filepath.Join(l.repo, "internal", "endpoints", "testdata", "policies", "seed.yaml")
	seed, err := os.ReadFile(seedFile)
	if err != nil {
		return fmt.Errorf("%s not found: the lab's policy comes from the repository", seedFile)
	}
	policies := filepath.Join(l.state, "policies")
	if err := os.MkdirAll(policies, 0o755); err != nil {
		return err
	}
	policy, err := updateFile(filepath.Join(policies, "seed.yaml"), string(seed))
	if err != nil {
		return err
	}
	changed := map[string]bool{}
	for _, c := range l.spec.Clusters {
		dir := l.clusterDir(c)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range []struct{ name, text string }{{"endpoints.yaml", l.spec.EndpointsFile(c)}, {"services.yaml", l.spec.ServicesFile(c)}} {
			wrote, err := updateFile(filepath.Join(dir, f.name), f.text+"\n")
			if err != nil {
				return err
			}
			changed[c] = changed[c] || wrote
		}
	}
	for _, n := range l.spec.Nodes {
		pidfile := l.pidfile(n.Name, "loader")
		if (policy || changed[n.Cluster]) && alive(pidfile, n.Name) {
			l.logf("%s: policy, endpoints or services changed, restarting roost-loader", n.Name)
			l.stopPid(pidfile, n.Name)
		}
	}
	return nil
}

// loaderConf returns roost-loader's config for node: its cluster's
// endpoints and services files and, with etcd, the global view: every
// loader follows it and campaigns to publish its cluster's endpoints
// (those of the endpoints file, which all the cluster's nodes share).
func (l *lab) loaderConf(node string) string {
	c := l.spec.nodeCluster(node)
	cdir := l.clusterDir(c)
	var b strings.Builder
	fmt.Fprintf(&b, `# written by roost-lab (scripts/lab)
node: %s
cluster: %s
bpffs: %s
policyDir: %s
endpointsFile: %s
kubernetes: {enabled: false, kubeconfig: ""}
listen: %s
servicesFile: %s
socketLB: {enabled: true, cgroup: %s}
xdpLB: {enabled: true, interfaces: [%s], mode: generic}
`, node, c, l.dir(node, "bpffs"), filepath.Join(l.state, "policies"), filepath.Join(cdir, "endpoints.yaml"), loaderListen,
		filepath.Join(cdir, "services.yaml"), filepath.Join(l.cgroupDir(), "roost-lab-"+node), strings.Join(l.spec.uplinks(node), ", "))
	if l.spec.Etcd != nil {
		fmt.Fprintf(&b, "globalView:\n  etcd: {endpoints: [\"http://%s\"]}\n  publish: true\n", netip.AddrPortFrom(l.spec.etcdIP(0), EtcdClientPort))
	}
	return b.String()
}

// setupCgroups mounts the cgroup v2 hierarchy on l.cgroupDir() (outside
// /sys, which "ip netns exec" mounts anew) and makes a cgroup per node:
// each node's roost-loader attaches its socket load balancer there, and
// the lab runs the clients of that node's pods in it.
func (l *lab) setupCgroups() error {
	dir := l.cgroupDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if !mounted(dir, "cgroup2") {
		if err := syscall.Mount("none", dir, "cgroup2", 0, ""); err != nil {
			return fmt.Errorf("mount cgroup2 on %s: %w", dir, err)
		}
		l.logf("cgroup v2 mounted on %s", dir)
	}
	for _, n := range l.spec.Nodes {
		if err := os.MkdirAll(filepath.Join(dir, "roost-lab-"+n.Name), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// startLoader mounts node's private BPF filesystem (the loader pins its
// maps and links there, never in /sys/fs/bpf) and starts node's
// roost-loader unless it runs; a changed config restarts it.
func (l *lab) startLoader(node string) error {
	for _, d := range []string{"bpffs", "run", "log"} {
		if err := os.MkdirAll(l.dir(node, d), 0o755); err != nil {
			return err
		}
	}
	bpffs, conf, pidfile := l.dir(node, "bpffs"), l.dir(node, "loader.yaml"), l.pidfile(node, "loader")
	if !mounted(bpffs, "bpf") {
		if err := syscall.Mount("bpf", bpffs, "bpf", 0, ""); err != nil {
			return fmt.Errorf("%s: mount bpf on %s: %w", node, bpffs, err)
		}
		l.logf("%s: bpffs mounted on %s", node, bpffs)
	}
	changed, err := updateFile(conf, l.loaderConf(node))
	if err != nil {
		return err
	}
	if changed {
		// A running loader read the old file at start.
		l.stopPid(pidfile, node)
	}
	if alive(pidfile, node) {
		return nil
	}
	return l.startChecked(node, "loader", l.prog.loader, conf, "its config, endpoints or policy ("+conf+")")
}

// startServers starts the workloads' TCP listeners (OpenBSD's netcat,
// accepting one connection after another) unless they run: nc-PORT for
// IPv4 (it listens on 0.0.0.0 only), nc6-PORT for IPv6.
func (l *lab) startServers() error {
	type server struct {
		name   string
		listen []int64
	}
	var servers []server
	for _, p := range l.spec.Pods {
		servers = append(servers, server{p.Name, p.Listen})
	}
	for _, v := range l.spec.VMs {
		servers = append(servers, server{v.Name, v.Listen})
	}
	for _, sv := range servers {
		if len(sv.listen) == 0 {
			continue
		}
		for _, d := range []string{"run", "log"} {
			if err := os.MkdirAll(l.dir(sv.name, d), 0o755); err != nil {
				return err
			}
		}
		for _, port := range sv.listen {
			for fam, f := range families {
				name, over := fmt.Sprintf("nc-%d", port), ""
				if fam == 1 {
					name, over = fmt.Sprintf("nc6-%d", port), " over IPv6"
				}
				pidfile := l.pidfile(sv.name, name)
				if alive(pidfile, sv.name) {
					continue
				}
				logfile := l.dir(sv.name, "log", name+".log")
				pid, err := spawn(sv.name, pidfile, logfile, l.prog.nc, fmt.Sprintf("-%d", f.n), "-d", "-l", "-k", strconv.FormatInt(port, 10))
				if err != nil {
					return err
				}
				listening := func() bool {
					out, err := nsOutput(sv.name, 0, "ss", "-Htln", fmt.Sprintf("-%d", f.n), fmt.Sprintf("sport = :%d", port))
					return err == nil && strings.TrimSpace(out) != ""
				}
				if !waitFor(5*time.Second, listening) {
					return fmt.Errorf("%s: nc does not listen on %d%s; see %s", sv.name, port, over, logfile)
				}
				l.logf("%s: nc listening on %d%s (pid %d)", sv.name, port, over, pid)
			}
		}
	}
	return nil
}

// --- etcd and roost-sync -----------------------------------------------------

// etcdHealthy reports whether etcd answers /health with true (asked from
// its namespace, on 127.0.0.1).
func (l *lab) etcdHealthy() bool {
	out, err := nsOutput(l.spec.Etcd.Name, 5*time.Second, l.prog.curl, "-sS", "-m", "2", fmt.Sprintf("http://127.0.0.1:%d/health", EtcdClientPort))
	return err == nil && strings.Contains(out, `"health":"true"`)
}

// startEtcd starts etcd (one member; its data in <state>/<etcd>/data) in
// its namespace unless it runs, listening for clients on its addresses and
// 127.0.0.1, and waits until it is healthy.
func (l *lab) startEtcd() error {
	e := l.spec.Etcd
	if e == nil {
		return nil
	}
	ns := e.Name
	for _, d := range []string{"run", "log"} {
		if err := os.MkdirAll(l.dir(ns, d), 0o755); err != nil {
			return err
		}
	}
	pidfile := l.pidfile(ns, "etcd")
	if alive(pidfile, ns) {
		return nil
	}
	client := func(a netip.Addr) string { return "http://" + netip.AddrPortFrom(a, EtcdClientPort).String() }
	urls := client(l.spec.etcdIP(0)) + "," + client(netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	if ip6 := l.spec.etcdIP(1); ip6.IsValid() {
		urls += "," + client(ip6)
	}
	peer := fmt.Sprintf("http://127.0.0.1:%d", EtcdPeerPort)
	logfile := l.dir(ns, "log", "etcd.log")
	// The flags of internal/testenv's members; a data directory left by
	// an earlier "up" is reused (the --initial-* flags then do nothing).
	pid, err := spawn(ns, pidfile, logfile, l.prog.etcd, "--name", ns, "--data-dir", l.dir(ns, "data"),
		"--listen-client-urls", urls, "--advertise-client-urls", client(l.spec.etcdIP(0)),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", ns+"="+peer, "--initial-cluster-token", "roost-lab", "--initial-cluster-state", "new",
		"--quota-backend-bytes", strconv.Itoa(256<<20), "--logger", "zap", "--log-outputs", "stderr")
	if err != nil {
		return err
	}
	if !waitFor(30*time.Second, l.etcdHealthy) {
		return fmt.Errorf("%s: etcd is not healthy after 30s; see %s", ns, logfile)
	}
	l.logf("%s: etcd started on %s (pid %d)", ns, urls, pid)
	return nil
}

// syncConf returns roost-sync's config: the lab's etcd (on 127.0.0.1, in
// the same namespace), no workloads file (the lab registers its vms
// through the API), its API on etcd's address.
func (s *Lab) syncConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# written by roost-lab (scripts/lab)
name: %s
etcd: {endpoints: ["http://127.0.0.1:%d"]}
workloadsFile: ""
listen: %s
leaseTTL: %s
heartbeatTimeout: %s
`, s.Sync.Name, EtcdClientPort, s.syncListen(), syncLeaseTTL, syncHeartbeatTimeout)
	if s.Sync.Cluster != "" {
		fmt.Fprintf(&b, "cluster: %s\n", s.Sync.Cluster)
	}
	return b.String()
}

// syncAPI calls roost-sync's API (from etcd's namespace) and returns the
// answer's body; its error names method and path, and says what curl
// said, or the HTTP status and body unless the status is 2xx.
func (l *lab) syncAPI(method, path, body string) (string, error) {
	// curl prints the status on a line of its own, after the body (or
	// after its own error).
	args := []string{"netns", "exec", l.spec.Etcd.Name, l.prog.curl, "-sS", "-m", "5", "-X", method, "-w", `\n%{http_code}`}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "--data", body)
	}
	out, err := combined(10*time.Second, "ip", append(args, "http://"+l.spec.syncListen()+path)...)
	answer, code := out, ""
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		answer, code = out[:i], out[i+1:]
	}
	if err != nil {
		if msg := strings.TrimSpace(answer); msg != "" {
			return "", fmt.Errorf("%s %s: %s", method, path, msg)
		}
		return "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	if len(code) != 3 || code[0] != '2' {
		return "", fmt.Errorf("%s %s: HTTP %s: %s", method, path, code, answer)
	}
	return answer, nil
}

// startSync starts roost-sync in etcd's namespace unless it runs (a
// changed config restarts it), and waits until it is ready: its origin's
// writer, with etcd holding its current set.
func (l *lab) startSync() error {
	if l.spec.Sync == nil {
		return nil
	}
	ns := l.spec.Etcd.Name
	conf, pidfile := l.dir(ns, "sync.yaml"), l.pidfile(ns, "sync")
	logfile := l.dir(ns, "log", "sync.log")
	changed, err := updateFile(conf, l.spec.syncConf())
	if err != nil {
		return err
	}
	if changed {
		l.stopPid(pidfile, ns)
	}
	if !alive(pidfile, ns) {
		if err := dryRun(l.prog.sync, "--config", conf); err != nil {
			return fmt.Errorf("%s: roost-sync rejects %s: %w", ns, conf, err)
		}
		pid, err := spawn(ns, pidfile, logfile, l.prog.sync, "--config", conf)
		if err != nil {
			return err
		}
		l.logf("%s: roost-sync %s started on %s (pid %d)", ns, l.spec.Sync.Name, l.spec.syncListen(), pid)
	}
	var last error
	ready := func() bool {
		_, last = l.syncAPI("GET", "/readyz", "")
		return last == nil
	}
	if !waitFor(30*time.Second, ready) {
		return fmt.Errorf("%s: roost-sync is not ready after 30s: %v; see %s", ns, last, logfile)
	}
	return nil
}

// heartbeatLoop stands for an agent on a vm: every $3 seconds it posts a
// heartbeat for the workload at URL $1, and registers it again (PUT, body
// $2) when the heartbeat is refused: roost-sync keeps API workloads in
// memory only, so a restarted one answers 404.
const heartbeatLoop = `
url=$1 body=$2 every=$3
while sleep "$every"; do
	curl -fsS -m 5 -o /dev/null -X POST "$url/heartbeat" && continue
	curl -fsS -m 5 -o /dev/null -X PUT -H "Content-Type: application/json" --data "$body" "$url" &&
		echo "$(date -u +%FT%TZ) registered again"
done`

// register registers vm with roost-sync (PUT, its Registration), and
// starts vm's heartbeat (heartbeatLoop, in etcd's namespace, pid file
// heartbeat-<vm>.pid) unless it runs.
func (l *lab) register(vm string) error {
	v := l.spec.vm(vm)
	if v == nil {
		return fmt.Errorf("%s: not a vm of the lab", vm)
	}
	ns := l.spec.Etcd.Name
	path := "/v1/workloads/" + WorkloadNamespace + "/" + vm
	if _, err := l.syncAPI("PUT", path, v.Registration()); err != nil {
		return fmt.Errorf("%s: roost-sync refuses its registration: %w", vm, err)
	}
	pidfile := l.pidfile(ns, "heartbeat-"+vm)
	if alive(pidfile, ns) {
		return nil
	}
	every := int(heartbeatInterval / time.Second)
	pid, err := spawn(ns, pidfile, l.dir(ns, "log", "heartbeat-"+vm+".log"), "bash", "-c", heartbeatLoop, "heartbeat",
		"http://"+l.spec.syncListen()+path, v.Registration(), strconv.Itoa(every))
	if err != nil {
		return err
	}
	l.logf("%s: registered with roost-sync %s, heartbeat every %ds (pid %d)", vm, l.spec.Sync.Name, every, pid)
	return nil
}

// deregister stops vm's heartbeat and deregisters it (DELETE).
func (l *lab) deregister(vm string) error {
	l.stopPid(l.pidfile(l.spec.Etcd.Name, "heartbeat-"+vm), l.spec.Etcd.Name)
	if _, err := l.syncAPI("DELETE", "/v1/workloads/"+WorkloadNamespace+"/"+vm, ""); err != nil {
		return fmt.Errorf("%s: roost-sync refuses its deregistration: %w", vm, err)
	}
	l.logf("%s: deregistered from roost-sync %s", vm, l.spec.Sync.Name)
	return nil
}

// checkBgpdConf has bgpd check conf. bgpd -C exits 0 even on a bad line,
// but prints it; -p 0, or it would bind the BGP port of the root
// namespace, which a BGP speaker of something else on this machine may
// hold. FRR's complaint about its crash-log directory is no config
// problem: every FRR daemon makes /var/tmp/frr/<daemon>.<pid> and leaves
// it when killed, so a recycled pid finds one in place.
func checkBgpdConf(conf string) error {
	out, _ := combined(0, filepath.Join(frrDir, "bgpd"), "-C", "-p", "0", "-f", conf)
	if bad := bgpdProblems(out); len(bad) > 0 {
		return fmt.Errorf("bgpd rejects %s: %s", conf, strings.Join(bad, "; "))
	}
	return nil
}

// bgpdProblems returns the lines of bgpd -C's output but FRR's complaint
// about its crash-log directory.
func bgpdProblems(out string) []string {
	var bad []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		// The lines come with a time and a message id in front.
		if line == "" || (strings.Contains(line, `failed to mkdir "/var/tmp/frr/`) && strings.HasSuffix(line, ": File exists")) ||
			strings.HasSuffix(line, "crashlog and per-thread log buffering unavailable!") {
			continue
		}
		bad = append(bad, line)
	}
	return bad
}
