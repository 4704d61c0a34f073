package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/syncd"
)

// The report "up" and "status" print: what each side of the fabric sees,
// the paths, the traffic checks, the global view and each loader's state.

// show runs name with args and prints its stdout; it reports whether the
// command succeeded, and logs why not.
func (l *lab) show(name string, args ...string) bool {
	out, err := output(0, name, args...)
	l.printf("%s", out)
	if err != nil {
		l.logf("%v", err)
		return false
	}
	return true
}

// report prints each ToR's BGP routes in zebra's RIB (with their FIB
// state) and its BGP summaries, each node's peers and routes, and whether
// traffic crosses the fabric. It reports whether every check passed, after
// printing everything.
func (l *lab) report() bool {
	ok := true
	for _, t := range l.spec.Tors {
		sock := l.dir(t.Name, "run")
		for _, s := range []struct{ title, cmd string }{
			{"show ip route bgp", "show ip route bgp"},
			{"show bgp summary", "show bgp ipv4 unicast summary"},
			{"show ipv6 route bgp", "show ipv6 route bgp"},
			{"show bgp ipv6 unicast summary", "show bgp ipv6 unicast summary"},
		} {
			l.section(t.Name + ": " + s.title)
			ok = l.show(l.prog.vtysh, "--vty_socket", sock, "-c", s.cmd) && ok
		}
	}
	for _, nd := range l.spec.Nodes {
		sock := l.dir(nd.Name, "run", "bird.ctl")
		if l.noAgent {
			l.section(nd.Name + ": birdc show protocols (ROOST_LAB_NO_AGENT=1)")
			ok = l.show(l.prog.birdc, "-s", sock, "show", "protocols") && ok
			l.section(nd.Name + ": birdc show route")
			ok = l.show(l.prog.birdc, "-s", sock, "show", "route") && ok
			continue
		}
		for _, what := range []string{"peers", "routes"} {
			l.section(nd.Name + ": roostctl " + what)
			if !l.show("ip", "netns", "exec", nd.Name, l.prog.roostctl, "--bird-socket", sock, "--agent", "http://"+agentListen, what) {
				l.printf("(roostctl %s failed)\n", what)
				ok = false
			}
		}
	}
	l.section("fabric")
	return l.fabric() && ok
}

// fabric pings every other node's lo from the first node's, over each
// family.
func (l *lab) fabric() bool {
	ping, err := exec.LookPath("ping")
	if err != nil {
		l.printf("check skipped: ping is not installed (iputils-ping)\n")
		return true
	}
	ok := true
	first := l.spec.Nodes[0]
	for fam := range families {
		from := first.Lo[fam]
		for _, nd := range l.spec.Nodes[1:] {
			to := nd.Lo[fam]
			if _, err := nsOutput(first.Name, 10*time.Second, ping, "-"+strconv.Itoa(families[fam].n), "-c", "1", "-W", "2", "-I", from.String(), to.String()); err != nil {
				l.printf("%s %s -> %s %s: NOT reachable\n", first.Name, from, nd.Name, to)
				ok = false
				continue
			}
			l.printf("%s %s -> %s %s: reachable through the ToRs\n", first.Name, from, nd.Name, to)
		}
	}
	return ok
}

// hop prints ns's route to dst for a packet from src that came in on iif:
// where ns sends it next.
func (l *lab) hop(ns string, dst, src netip.Addr, iif string) {
	// An error (no route) is what the line shows.
	out, _ := combined(0, "ip", "-n", ns, "-o", "route", "get", dst.String(), "from", src.String(), "iif", iif)
	l.printf("  %-6s %s\n", ns, hopLine(out))
}

// hopLine is a route of "ip -o route get" without the cache details after
// it, its spaces squeezed.
func hopLine(out string) string {
	out = strings.TrimRight(out, "\n")
	if i := strings.IndexByte(out, '\\'); i >= 0 {
		out = out[:i]
	}
	return strings.TrimSuffix(squeeze(out), " ")
}

// routeLine is "ip -o route show"'s output on one line a route: each
// next hop's "\" and the spaces after it made a space, spaces squeezed.
func routeLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i, line := range lines {
		var b strings.Builder
		for j := 0; j < len(line); j++ {
			if line[j] != '\\' {
				b.WriteByte(line[j])
				continue
			}
			b.WriteByte(' ')
			for j+1 < len(line) && (line[j+1] == ' ' || line[j+1] == '\t') {
				j++
			}
		}
		lines[i] = squeeze(strings.TrimRight(b.String(), " "))
	}
	return strings.Join(lines, "\n")
}

// squeeze replaces each run of spaces in s with one.
func squeeze(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' && i > 0 && s[i-1] == ' ' {
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// defaultShape reports whether the lab has what paths describes: the
// default file's tor1 and tor2, both linked to node1 and node2, db on
// node1, employee2 and db2 on node2, vm1 behind tor1, and service db's
// VIP.
func (l *lab) defaultShape() bool {
	s := l.spec
	for _, tor := range []string{"tor1", "tor2"} {
		for _, node := range []string{"node1", "node2"} {
			if s.link(tor, node) == nil {
				return false
			}
		}
	}
	vm1, db := s.vm("vm1"), s.service("db")
	return s.podNode("db") == "node1" && s.podNode("employee2") == "node2" && s.podNode("db2") == "node2" &&
		vm1 != nil && vm1.Tor == "tor1" && db != nil && db.ExternalIP.IsValid()
}

// paths prints the hops of the flows between the nodes and from vm1: each
// node sends other nodes' pods and vm1 to a ToR (by its default route, and
// the route to vm1's subnet via tor1), and the ToRs send each PodCIDR to
// its node (by what that node's roost-agent announced). It describes the
// default file's workloads (defaultShape), and says so in another lab.
func (l *lab) paths() {
	if !l.defaultShape() {
		l.printf("(described for the workloads of the default lab, scripts/lab/lab.yaml, only)\n")
		return
	}
	s := l.spec
	nodeEnd := func(tor, node string, fam int) netip.Addr { return s.link(tor, node).NodeAddr[fam].Addr() }
	l.podPaths(0)
	db, db2, vm1, vip := s.workloadIP("db", 0), s.workloadIP("db2", 0), s.workloadIP("vm1", 0), s.service("db").ExternalIP
	l.printf("vm1 -> VIP %s (tor1 -> either node, by ECMP over both nodes' announcements; that node's XDP picks the backend):\n", vip)
	for _, t := range s.Tors {
		out, err := output(0, "ip", "-n", t.Name, "-o", "route", "show", vip.String())
		if err != nil {
			l.logf("%v", err)
		}
		l.printf("  %-6s %s\n", t.Name, routeLine(out))
	}
	l.printf("  a backend on the other node: encapsulated (IPIP) back to tor1, which routes it to that node:\n")
	l.hop("tor1", db2, nodeEnd("tor1", "node1", 0), "node1")
	l.hop("tor1", db, nodeEnd("tor1", "node2", 0), "node2")
	l.printf("  the reply leaves the backend's node directly (its uplinks' TC egress sets the VIP as source):\n")
	l.hop("node1", vm1, db, "db")
	l.hop("node2", vm1, db2, "db2")
	// The same flows over IPv6 (no VIP: the services are IPv4 only): the
	// nodes' IPv6 default routes, and the routes the ToRs learnt over
	// their IPv6 sessions.
	l.podPaths(1)
}

// podPaths prints the hops of employee2 -> db and back, and of vm1 -> db
// and back, over family fam.
func (l *lab) podPaths(fam int) {
	s := l.spec
	nodeEnd := func(tor, node string) netip.Addr { return s.link(tor, node).NodeAddr[fam].Addr() }
	db, employee2, vm1 := s.workloadIP("db", fam), s.workloadIP("employee2", fam), s.workloadIP("vm1", fam)
	over := ""
	if fam == 1 {
		over = " over IPv6"
	}
	l.printf("employee2 -> db%s (node2 -> ToR -> node1):\n", over)
	l.hop("node2", db, employee2, "employee2")
	l.hop("tor1", db, nodeEnd("tor1", "node2"), "node2")
	l.hop("tor2", db, nodeEnd("tor2", "node2"), "node2")
	l.hop("node1", db, employee2, "tor1")
	l.printf("db -> employee2%s (node1 -> ToR -> node2):\n", over)
	l.hop("node1", employee2, db, "db")
	l.hop("tor1", employee2, nodeEnd("tor1", "node1"), "node1")
	l.hop("tor2", employee2, nodeEnd("tor2", "node1"), "node1")
	l.printf("vm1 -> db%s (tor1 -> node1), and back (node1 -> tor1):\n", over)
	l.hop("tor1", db, vm1, "vm1")
	l.hop("node1", vm1, db, "db")
}

// reportPolicy prints the paths, runs the traffic checks, prints the
// global view (with etcd), then prints for each node its drops, endpoints,
// its enforced pods' policy with the datapath's counters, and what its
// socket and uplink load balancers serve ("roostctl services"). It reports
// whether every check passed, after printing everything.
func (l *lab) reportPolicy() bool {
	l.section("paths")
	l.paths()
	l.section("traffic (seed policy: only app=employee may reach app=protected-db, on TCP 6379; svc:db is service db's cluster IP, vip:db its VIP)")
	ok := l.traffic(0, l.spec.Checks[0])
	l.section("traffic over IPv6 (the same seed policy, the workloads' IPv6 addresses)")
	ok = l.traffic(1, l.spec.Checks[1]) && ok
	if l.spec.Etcd != nil {
		ok = l.reportGlobalview() && ok
	}
	for _, nd := range l.spec.Nodes {
		ok = l.reportDrops(nd.Name) && ok
		cmds := [][]string{{"endpoints"}}
		for _, p := range l.spec.Pods {
			if p.Node == nd.Name && l.spec.enforcedPod(p.Name) {
				cmds = append(cmds, []string{"policy", p.Name})
			}
		}
		for _, args := range append(cmds, []string{"services"}) {
			what := strings.Join(args, " ")
			l.section(nd.Name + ": roostctl " + what)
			out, err := l.roostctlLoader(nd.Name, args...)
			l.printf("%s", out)
			if err != nil {
				l.logf("%v", err)
				l.printf("(roostctl %s failed)\n", what)
				ok = false
			}
		}
	}
	return ok
}

// reportDrops prints node's "roostctl drops", the last 20 when there are
// more.
func (l *lab) reportDrops(node string) bool {
	l.section(node + ": roostctl drops")
	out, err := l.roostctlLoader(node, "drops")
	if err != nil {
		l.logf("%v", err)
		l.printf("(roostctl drops failed)\n")
		return false
	}
	l.printf("%s", lastLines(out, 20))
	return true
}

// lastLines returns out's last n lines, under a line that says so when
// out has more; an empty line for none.
func lastLines(out string, n int) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n") + "\n"
	}
	return fmt.Sprintf("(the last %d of %d)\n", n, len(lines)) + strings.Join(lines[len(lines)-n:], "\n") + "\n"
}

// originCounts prints how many endpoints node's roost-loader enforces of
// each origin (file, kubernetes, cluster:NAME, sync:NAME), as
// "ORIGIN=COUNT" words, sorted.
func (l *lab) originCounts(node string) (string, error) {
	eps, err := l.endpoints(node)
	if err != nil {
		return "", err
	}
	n := map[string]int{}
	for _, e := range eps {
		n[e.Origin]++
	}
	var words []string
	for o, c := range n {
		words = append(words, o+"="+strconv.Itoa(c))
	}
	slices.Sort(words)
	return strings.Join(words, " "), nil
}

// reportGlobalview prints, for each node, the endpoints its roost-loader
// enforces by origin and the state of its global view and publisher (the
// lines below "roostctl endpoints"' table), and what roost-sync has
// registered. It reports whether every loader and roost-sync answered.
func (l *lab) reportGlobalview() bool {
	ok := true
	l.section(fmt.Sprintf("global view (etcd %s): what each roost-loader enforces, by origin", netip.AddrPortFrom(l.spec.etcdIP(0), EtcdClientPort)))
	for _, nd := range l.spec.Nodes {
		counts, err := l.originCounts(nd.Name)
		var table string
		if err == nil {
			table, err = l.endpointsTable(nd.Name)
		}
		if err != nil {
			l.logf("%v", err)
			l.printf("%s: (roostctl endpoints failed)\n", nd.Name)
			ok = false
			continue
		}
		l.printf("%-6s cluster %-6s %s\n", nd.Name, nd.Cluster, counts)
		for _, line := range strings.Split(table, "\n") {
			for _, p := range []string{"global view", "publisher", "conflict", "bad key"} {
				if strings.HasPrefix(line, p) {
					l.printf("       %s\n", line)
					break
				}
			}
		}
	}
	if l.spec.Sync == nil {
		return ok
	}
	l.section(fmt.Sprintf("roost-sync %s (%s): GET /v1/workloads", l.spec.Sync.Name, l.spec.syncListen()))
	out, err := l.syncAPI("GET", "/v1/workloads", "")
	if err == nil {
		var list syncd.WorkloadList
		if err = json.Unmarshal([]byte(out), &list); err == nil {
			l.printf("%s", workloadsTable(list.Workloads))
			return ok
		}
		err = fmt.Errorf("roost-sync GET /v1/workloads: %w", err)
	}
	l.logf("%v", err)
	return false
}

// workloadsTable prints roost-sync's workloads as a table.
func workloadsTable(ws []syncd.WorkloadInfo) string {
	const format = "%-20s %-7s %-26s %-13s %s\n"
	var b strings.Builder
	fmt.Fprintf(&b, format, "WORKLOAD", "SOURCE", "IPS", "LABELS", "EXPIRES")
	for _, w := range ws {
		ips := make([]string, len(w.IPs))
		for i, a := range w.IPs {
			ips[i] = a.String()
		}
		var labels []string
		for k, v := range w.Labels {
			labels = append(labels, k+"="+v)
		}
		slices.Sort(labels)
		expires := ""
		if !w.Expires.IsZero() {
			expires = w.Expires.Format(time.RFC3339Nano)
		}
		fmt.Fprintf(&b, format, w.Namespace+"/"+w.Name, w.Source, strings.Join(ips, ","), strings.Join(labels, ","), expires)
	}
	if len(ws) == 0 {
		b.WriteString("(none)\n")
	}
	return b.String()
}

// deregChecks returns the checks of family fam whose client is a vm
// roost-sync registers, each expecting what it gives once the vm is
// deregistered.
func (s *Lab) deregChecks(fam int) []Check {
	var out []Check
	for _, c := range s.Checks[fam] {
		if c.Deregistered != "" {
			c.Expect = c.Deregistered
			out = append(out, c)
		}
	}
	return out
}

// deregistrationChecks deregisters every vm roost-sync registers, waits
// until no loader lists it any more, runs the checks of what the vms'
// flows give now, and registers the vms again, waiting until every loader
// lists them: the lab is left as "up" built it. It reports whether every
// check passed and the view followed within l.timeout.
func (l *lab) deregistrationChecks() bool {
	vms := l.spec.syncedVMs()
	if len(vms) == 0 {
		return true
	}
	ok := true
	var nodes []string
	for _, nd := range l.spec.Nodes {
		nodes = append(nodes, nd.Name)
	}
	secs := strconv.Itoa(int(l.timeout.Seconds())) + "s"
	l.section(fmt.Sprintf("deregistration: %s deregistered from roost-sync %s", strings.Join(vms, " "), l.spec.Sync.Name))
	began := time.Now()
	deregistered := true
	for _, vm := range vms {
		if err := l.deregister(vm); err != nil {
			l.logf("%v", err)
			deregistered, ok = false, false
		}
	}
	// Checks of a vm that may still be registered would tell nothing:
	// register them all again at once.
	if deregistered {
		for _, vm := range vms {
			if !waitFor(l.timeout, func() bool { return l.viewLacksEverywhere(l.spec.ViewName(vm)) }) {
				l.printf("%s: still in a loader's view %s after its deregistration\n", vm, secs)
				ok = false
			}
		}
		l.printf("gone from every loader's view (%s) %.2fs after the DELETE\n", strings.Join(nodes, " "), time.Since(began).Seconds())
		ok = l.traffic(0, l.spec.deregChecks(0)) && ok
		l.section("deregistration over IPv6")
		ok = l.traffic(1, l.spec.deregChecks(1)) && ok
	}
	l.section("registration again: " + strings.Join(vms, " "))
	began = time.Now()
	for _, vm := range vms {
		if err := l.register(vm); err != nil {
			l.logf("%v", err)
			ok = false
		}
	}
	if !waitFor(l.timeout, l.loadersReady) {
		l.printf("not in every loader's view %s after the PUT\n", secs)
		return false
	}
	l.printf("in every loader's view again %.2fs after the PUT\n", time.Since(began).Seconds())
	return ok
}
