package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/loaderapi"
)

// The traffic checks: TCP connections between the lab's namespaces, and
// what the pods, the loaders and the ToRs counted of them.

// probe tries a TCP connection from client's namespace to target:port,
// with 2 s to connect, and says how it ended: "connected", "no answer",
// "refused (RST)" or "failed: WHY". A pod's client runs in its node's
// cgroup, where the node's socket load balancer translates its connect.
func (l *lab) probe(client string, target netip.Addr, port int64) string {
	args := []string{"ip", "netns", "exec", client, l.prog.nc, "-z", "-v", "-n", "-w", "2", target.String(), strconv.FormatInt(port, 10)}
	if node := l.spec.podNode(client); node != "" {
		// The child joins the cgroup before it execs nc, so that its
		// connect is the cgroup's.
		args = append([]string{"bash", "-c", `echo $$ >"$0/cgroup.procs" && exec "$@"`, l.nodeCgroup(node)}, args...)
	}
	out, err := combined(10*time.Second, args[0], args[1:]...)
	return probeResult(out, err)
}

// probeResult says how a probe ended from nc's output and error.
func probeResult(out string, err error) string {
	out = strings.TrimRight(out, "\n")
	switch {
	case err == nil:
		return "connected"
	case strings.Contains(out, "timed out"):
		return "no answer"
	case strings.Contains(out, "refused"):
		return "refused (RST)"
	case out == "":
		return "failed: " + err.Error()
	}
	// nc's last words: what comes after its last ": ".
	if i := strings.LastIndex(out, ": "); i >= 0 {
		out = out[i+len(": "):]
	}
	return "failed: " + out
}

// nodeCgroup is the cgroup of node's roost-loader's socket load balancer,
// which the clients of node's pods run in.
func (l *lab) nodeCgroup(node string) string {
	return l.cgroupDir() + "/roost-lab-" + node
}

// accepted returns how many TCP connections pod has accepted (its own
// count: each pod is a namespace): Tcp PassiveOpens of its /proc/net/snmp.
func accepted(pod string) (int64, error) {
	out, err := nsOutput(pod, 5*time.Second, "cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	return snmpField(out, "Tcp", "PassiveOpens")
}

// snmpField returns field of proto ("Tcp") in /proc/net/snmp's text: a
// line of names, then a line of values.
func snmpField(snmp, proto, field string) (int64, error) {
	var names []string
	for _, line := range strings.Split(snmp, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, field); i > 0 && i < len(f) {
			return strconv.ParseInt(f[i], 10, 64)
		}
		break
	}
	return 0, fmt.Errorf("no %s %s in /proc/net/snmp", proto, field)
}

// torForwarded returns how many packets of family fam tor has forwarded,
// etcd's left out: the nftables counters "up" set (table inet roost_lab).
func (l *lab) torForwarded(tor string, fam int) (uint64, error) {
	name := "forwarded" + strconv.Itoa(families[fam].n)
	out, err := nsOutput(tor, 5*time.Second, l.prog.nft, "list", "counter", "inet", "roost_lab", name)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "packets" {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no packets in nft's counter %s", tor, name)
}

// drops returns the drops node's roost-loader reports, oldest first.
func (l *lab) drops(node string) ([]loaderapi.Drop, error) {
	out, err := l.roostctlLoader(node, "-o", "json", "drops")
	if err != nil {
		return nil, err
	}
	ds, err := decodeDrops(out)
	if err != nil {
		return nil, fmt.Errorf("%s: roostctl -o json drops: %w", node, err)
	}
	return ds, nil
}

// decodeDrops decodes roostctl -o json drops: one JSON object a drop.
func decodeDrops(out string) ([]loaderapi.Drop, error) {
	var ds []loaderapi.Drop
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var d loaderapi.Drop
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return ds, nil
		} else if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
}

// dropsAfter returns the drops of ds after the first that is last; all of
// them when last is nil, none when ds lacks last.
func dropsAfter(ds []loaderapi.Drop, last *loaderapi.Drop) []loaderapi.Drop {
	if last == nil {
		return ds
	}
	if i := slices.IndexFunc(ds, func(d loaderapi.Drop) bool { return sameDrop(d, *last) }); i >= 0 {
		return ds[i+1:]
	}
	return nil
}

// sameDrop reports whether a and b are the same drop listed twice. The
// loader dates a drop anew at each listing, from the kernel's clock, a few
// nanoseconds apart; a flow's drops (its SYN retransmitted) are a second
// apart.
func sameDrop(a, b loaderapi.Drop) bool {
	at, bt := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && at.Sub(bt).Abs() < time.Millisecond
}

// countDrops counts the drops of ds from src (any port) to dst:port.
func countDrops(ds []loaderapi.Drop, src, dst netip.Addr, port int64) int {
	n := 0
	for _, d := range ds {
		if d.Src.Unmap() == src && d.Dst.Unmap() == dst && int64(d.DstPort) == port {
			n++
		}
	}
	return n
}

// traffic runs checks (of family fam), between the workloads' addresses of
// fam, and prints a table of what each should give and what it gave: an
// allowed flow connects and is never dropped; a dropped flow gets no
// answer (not even a reset) and shows in the drops of its backend's node.
// BACKENDS says which backend each try went to: the pod that accepted it,
// or whose node dropped it. VIA lists the ToRs that forwarded packets of
// fam meanwhile: a flow between the nodes, or from a vm, must cross one, a
// flow within a node none. It reports whether every check passed, after
// running them all.
func (l *lab) traffic(fam int, checks []Check) bool {
	ok := true
	l.printf("%s", trafficRow(fam, "CLIENT", "SOURCE", "DESTINATION", "EXPECTED", "RESULT", "BACKENDS", "VIA", "NEW-DROPS", "CHECK"))
	for _, c := range checks {
		target, backends := l.spec.workloadIP(c.Server, fam), []string{c.Server}
		if kind, name, isSvc := strings.Cut(c.Server, ":"); isSvc {
			sv := l.spec.service(name)
			target, backends = sv.ClusterIP, sv.Backends
			if kind == "vip" {
				target = sv.ExternalIP
			}
		}
		shown := c.Server + " " + netip.AddrPortFrom(target, uint16(c.Port)).String()
		if !l.checkFlow(fam, c, shown, target, backends) {
			ok = false
		}
	}
	return ok
}

// trafficRow prints a row of the traffic table of family fam: IPv6
// addresses take wider columns.
func trafficRow(fam int, f ...string) string {
	format := "%-10s %-12s %-24s %-9s %-14s %-12s %-10s %-10s %s\n"
	if fam == 1 {
		format = "%-10s %-16s %-28s %-9s %-14s %-12s %-10s %-10s %s\n"
	}
	args := make([]any, len(f))
	for i, s := range f {
		args[i] = s
	}
	return fmt.Sprintf(format, args...)
}

// unknownBackend is the backend of a try that no backend, or more than
// one, accepted or dropped.
const unknownBackend = "?"

// checkFlow tries c's TCP connection from its client's address of family
// fam to target:c.Port, which reaches one of backends (pods), and prints
// its row of the traffic table, the destination shown as shown. It
// reports whether every try gave c.Expect. With one backend it tries once;
// with more, triesMin times and then until every backend got a try (at
// most triesMax times), and fails when one got none.
func (l *lab) checkFlow(fam int, c Check, shown string, target netip.Addr, backends []string) bool {
	src := l.spec.workloadIP(c.Client, fam)
	least, most := 1, 1
	if len(backends) > 1 {
		least, most = triesMin, triesMax
	}
	var (
		t       tally
		via     []string
		drops   int
		unknown bool
		verdict = "ok"
	)
	for try := 0; try < most; try++ {
		if try >= least && t.allTried(backends) {
			break
		}
		fwd := map[string]uint64{}
		for _, tor := range l.spec.Tors {
			if n, err := l.torForwarded(tor.Name, fam); err == nil {
				fwd[tor.Name] = n
			}
		}
		// Without the loader's API the flow is still tried (the pinned
		// programs enforce on), but its drops cannot be counted.
		opens := map[string]int64{}
		last := map[string]*loaderapi.Drop{}
		listed := map[string]bool{}
		for _, b := range backends {
			if n, err := accepted(b); err == nil {
				opens[b] = n
			}
			node := l.spec.podNode(b)
			if _, seen := listed[node]; seen {
				continue
			}
			ds, err := l.drops(node)
			listed[node] = err == nil
			if len(ds) > 0 {
				last[node] = &ds[len(ds)-1]
			}
		}
		got := l.probe(c.Client, target, c.Port)
		t.result(got)
		// Drop events reach the loader through a ring buffer: give them a
		// moment.
		var (
			newDrops map[string]int
			tdrops   int
			failed   bool
		)
		waitFor(3*time.Second, func() bool {
			newDrops, tdrops, failed = l.newDrops(fam, src, c.Port, backends, listed, last)
			return c.Expect != "drop" || tdrops != 0 || failed
		})
		unknown = unknown || failed
		drops += tdrops
		// The backend of this try: the one that accepted it or dropped it.
		hit, n := unknownBackend, 0
		for _, b := range backends {
			before, counted := opens[b]
			if now, err := accepted(b); (counted && err == nil && now > before) || newDrops[b] > 0 {
				hit, n = b, n+1
			}
		}
		if n != 1 {
			hit = unknownBackend
		}
		t.hit(hit)
		var this []string
		for _, tor := range l.spec.Tors {
			before, counted := fwd[tor.Name]
			if now, err := l.torForwarded(tor.Name, fam); counted && err == nil && now != before {
				this = append(this, tor.Name)
				if !slices.Contains(via, tor.Name) {
					via = append(via, tor.Name)
				}
			}
		}
		if verdict != "ok" {
			continue // report the first failure
		}
		verdict = tryVerdict(c.Expect, got, failed, tdrops, hit,
			l.spec.podNode(c.Client) == l.spec.podNode(hit), len(this) > 0)
	}
	if verdict == "ok" {
		for _, b := range backends {
			if t.hits[b] == 0 {
				verdict = "FAIL (" + b + " got no try)"
			}
		}
	}
	want := "allowed"
	if c.Expect == "drop" {
		want = "dropped"
	}
	shownDrops := strconv.Itoa(drops)
	if unknown {
		shownDrops = "?"
	}
	l.printf("%s", trafficRow(fam, c.Client, src.String(), shown, want, t.results(), t.served(backends),
		dash(strings.Join(via, "+")), shownDrops, verdict))
	return verdict == "ok"
}

// newDrops counts the drops of a try from src to each backend's address of
// family fam on port, those its node's loader listed after last[node]: per
// backend, in all, and whether a node's could not be read (or were not
// listed before the try).
func (l *lab) newDrops(fam int, src netip.Addr, port int64, backends []string, listed map[string]bool, last map[string]*loaderapi.Drop) (map[string]int, int, bool) {
	per := map[string]int{}
	total, failed := 0, false
	read := map[string][]loaderapi.Drop{}
	for _, b := range backends {
		node := l.spec.podNode(b)
		ds, ok := read[node]
		if !ok && listed[node] {
			all, err := l.drops(node)
			if err == nil {
				ds, ok = dropsAfter(all, last[node]), true
				read[node] = ds
			}
		}
		if !ok {
			failed = true
			continue
		}
		per[b] = countDrops(ds, src, l.spec.workloadIP(b, fam), port)
		total += per[b]
	}
	return per, total, failed
}

// tryVerdict judges one try of a check expecting expect ("allow" or
// "drop"): it got got (probe's), its drops were counted unless failed,
// tdrops of them, it went to backend hit (unknownBackend for no single
// one), which is on the client's node when local, and a ToR forwarded
// packets meanwhile when crossed.
func tryVerdict(expect, got string, failed bool, tdrops int, hit string, local, crossed bool) string {
	switch {
	case expect == "allow" && (got != "connected" || failed || tdrops != 0),
		expect == "drop" && (got != "no answer" || failed || tdrops == 0):
		return "FAIL"
	case hit == unknownBackend:
		return "FAIL (no single backend)"
	case !local && !crossed:
		return "FAIL (crossed no ToR)"
	case local && crossed:
		return "FAIL (left the node)"
	}
	return "ok"
}

// tally counts the tries of a check: how each ended, and which backend
// each went to, in the order they first came.
type tally struct {
	tries     int
	ends      []string
	endCounts map[string]int
	hits      map[string]int
}

func (t *tally) result(got string) {
	if t.endCounts == nil {
		t.endCounts = map[string]int{}
	}
	if t.endCounts[got] == 0 {
		t.ends = append(t.ends, got)
	}
	t.endCounts[got]++
	t.tries++
}

func (t *tally) hit(backend string) {
	if t.hits == nil {
		t.hits = map[string]int{}
	}
	t.hits[backend]++
}

// allTried reports whether every backend got a try.
func (t *tally) allTried(backends []string) bool {
	for _, b := range backends {
		if t.hits[b] == 0 {
			return false
		}
	}
	return true
}

// results prints how the tries ended: "connected" for a single try,
// "4x connected" (", "-separated) for several.
func (t *tally) results() string {
	if t.tries == 1 {
		return t.ends[0]
	}
	var s []string
	for _, e := range t.ends {
		s = append(s, fmt.Sprintf("%dx %s", t.endCounts[e], e))
	}
	return strings.Join(s, ", ")
}

// served prints which backend the tries went to: "db" for a single try,
// "db:3,db2:1" for several, backends in their order and unknownBackend
// last; "-" for none.
func (t *tally) served(backends []string) string {
	var s []string
	for _, b := range append(slices.Clone(backends), unknownBackend) {
		switch {
		case t.hits[b] == 0:
		case t.tries == 1:
			s = append(s, b)
		default:
			s = append(s, b+":"+strconv.Itoa(t.hits[b]))
		}
	}
	return dash(strings.Join(s, ","))
}

// dash returns s, or "-" for "".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
