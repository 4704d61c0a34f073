package loader

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// Addresses of the lab's services.
const (
	dbRedis   = "10.244.1.10:6379"
	dbSSH     = "10.244.1.10:22"
	empHTTP   = "10.244.1.11:8080"
	guestHTTP = "10.244.1.12:8080"
)

// TestPrivilegedApply applies the seed policy to the lab and checks real
// TCP: employee reaches db's 6379, guest and the outside do not, nor does
// employee reach db's 22; db's own connections get their replies; drop
// events, counters and the counters of db's policy entries show what
// passed and what was dropped; endpoints that do not route to a
// host-side veth are skipped; to_endpoint runs at the head of the TCX
// chain; a second Apply changes nothing.
func TestPrivilegedApply(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	serveTCP(t, db.ns, dbSSH)
	serveTCP(t, emp.ns, empHTTP)

	// A program that was at db's egress first: roost must still run first.
	var other bpf.PolicyObjects
	if err := bpf.LoadPolicyObjects(&other, nil); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := inNS(lab.node, func() error {
		lk, err := link.AttachTCX(link.TCXOptions{Interface: db.ifindex, Program: other.Empty, Attach: ebpf.AttachTCXEgress})
		if err != nil {
			return err
		}
		t.Cleanup(func() { lk.Close() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	eps := lab.endpoints(
		policy.Endpoint{Name: "remote", IPs: ips("10.244.2.5"), Labels: podLabels("app", "employee"), Local: true},
		policy.Endpoint{Name: "vm", IPs: ips("192.168.77.50"), Labels: podLabels("app", "vm"), Local: true},
	)
	ld := lab.open(t, AttachAuto)
	if ld.mode() != AttachTCX {
		t.Fatalf("attach mode %v on a kernel with TCX", ld.mode())
	}
	located, err := ld.Locate(eps)
	if err != nil {
		t.Fatal(err)
	}
	var local []string
	for _, ep := range located {
		if ep.Local {
			local = append(local, ep.Name)
		}
	}
	if want := []string{"db", "employee", "guest"}; !slices.Equal(local, want) {
		t.Errorf("Locate: local endpoints %v, want %v", local, want)
	}
	// Apply skips what Locate would not call local: compile all as local.
	res := compile(t, seedPolicy, eps)
	events := readDrops(t, ld)
	rep := apply(t, ld, res)

	var attached []string
	for _, c := range rep.Endpoints {
		if c.Action != Attached || c.Mode != AttachTCX {
			t.Errorf("endpoint change %+v, want attached with tcx", c)
		}
		attached = append(attached, c.Name)
	}
	if want := []string{"db", "employee", "guest"}; !slices.Equal(attached, want) {
		t.Errorf("attached %v, want %v", attached, want)
	}
	skipped := map[string]string{}
	for _, s := range rep.Skipped {
		skipped[s.Name] = s.Reason
	}
	if len(skipped) != 2 || !strings.Contains(skipped["remote"], "gateway") || !strings.Contains(skipped["vm"], "192.168.77.0/24, not by a host route") {
		t.Errorf("skipped %q; want remote (via a gateway) and vm (not a host route)", skipped)
	}
	if rep.Counts.EndpointsSet != 3 || rep.Counts.PolicySet != 3 || rep.Counts.TablesWritten != 3 || rep.Counts.IPCacheSet != len(res.IPCache) {
		t.Errorf("counts %+v; want 3 endpoints, 3 policy entries and tables (any: the empty table, host, employee), %d ipcache entries", rep.Counts, len(res.IPCache))
	}

	if !connects(t, emp.ns, dbRedis) {
		t.Error("employee -> db:6379 failed")
	}
	if !dropped(t, guest.ns, dbRedis) {
		t.Error("guest -> db:6379 passed")
	}
	if !dropped(t, emp.ns, dbSSH) {
		t.Error("employee -> db:22 passed")
	}
	if !dropped(t, lab.ext, dbRedis) {
		t.Error("external -> db:6379 passed")
	}
	if !connects(t, db.ns, empHTTP) {
		t.Error("db -> employee:8080 failed: its replies must pass db's ingress policy")
	}

	guestID := datapath.Identity(res.Lookup(guest.ip))
	ev, ok := events.waitFor(func(ev datapath.DropEvent) bool { return ev.Src == guest.ip })
	if !ok {
		t.Fatal("no drop event for guest")
	}
	if ev.Dst != db.ip || ev.DstPort != 6379 || ev.Proto != datapath.ProtoTCP || ev.Reason != datapath.ReasonDropPolicyDefault ||
		ev.SrcIdentity != guestID || ev.Endpoint != uint32(db.ifindex) || ev.Ifindex != uint32(db.ifindex) {
		t.Errorf("drop event %+v; want guest -> db:6379 TCP, default deny, identity %d, endpoint and ifindex %d", ev, guestID, db.ifindex)
	}
	counters, err := ld.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []datapath.Reason{datapath.ReasonPassPolicy, datapath.ReasonDropPolicyDefault, datapath.ReasonPassReply, datapath.ReasonTrackNew, datapath.ReasonPassNotEnforced} {
		if counters[r].Packets == 0 {
			t.Errorf("counter %v is 0", r)
		}
	}
	// employee's entry allowed its connection to 6379 and default-denied
	// the one to 22; the wildcard entry default-denied guest and the
	// outside. No deny rule, nothing denied.
	entries, err := ld.EntryCounters()
	if err != nil {
		t.Fatal(err)
	}
	empID := datapath.Identity(res.Lookup(emp.ip))
	slots := map[uint32]bool{}
	for _, e := range entries {
		slot, _ := ld.counters.get(policyKey{endpoint: e.EndpointID, remote: e.Remote})
		if e.Endpoint != "db" || e.EndpointID != uint32(db.ifindex) || !e.Counted || slot == 0 || slots[slot] {
			t.Errorf("entry counter %+v (slot %d): want db's, counted at a slot of its own", e, slot)
		}
		slots[slot] = true
		allowed, defaultDenied := e.Counts.Allowed.Packets, e.Counts.DefaultDenied.Packets
		switch e.Remote {
		case empID:
			if allowed == 0 || defaultDenied == 0 {
				t.Errorf("employee's entry %+v: want packets allowed and default-denied", e.Counts)
			}
		case datapath.IdentityAny:
			if allowed != 0 || defaultDenied == 0 {
				t.Errorf("the wildcard entry %+v: want packets default-denied, none allowed", e.Counts)
			}
		}
		if e.Counts.Denied.Packets != 0 || e.Counts.Allowed.Bytes < 40*allowed || e.Counts.DefaultDenied.Bytes < 40*defaultDenied {
			t.Errorf("entry counter %+v: want nothing denied, 40 bytes a packet at least", e)
		}
	}
	if len(entries) != 3 {
		t.Errorf("entry counters %+v; want db's 3 entries", entries)
	}

	// to_endpoint first at egress, the other program after it.
	prog, err := programID(ld.objs.ToEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	otherID, _ := programID(other.Empty)
	if got := tcxPrograms(t, lab.node, db.ifindex, ebpf.AttachTCXEgress); !slices.Equal(got, []ebpf.ProgramID{prog, otherID}) {
		t.Errorf("db egress programs %v, want [%d %d] (roost first)", got, prog, otherID)
	}

	atts, err := ld.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 6 {
		t.Errorf("%d attachments, want 6: %+v", len(atts), atts)
	}
	for _, a := range atts {
		if a.Mode != AttachTCX || !a.Current || a.LinkID == 0 || a.Tag == "" || a.Interface == "" {
			t.Errorf("attachment %+v: want a current TCX link with tag and interface", a)
		}
		if _, err := os.Stat(a.Pin); err != nil {
			t.Errorf("attachment %+v: pin: %v", a, err)
		}
	}
	for _, name := range []string{"endpoints", "policy", "verdicts", "ipcache_host4", "conntrack", "counters", "drops"} {
		if _, err := os.Stat(filepath.Join(lab.bpffs, "maps", name)); err != nil {
			t.Errorf("map %s is not pinned: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(lab.bpffs, "maps", "flow_cache")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("flow_cache is pinned (%v); it belongs to one collection", err)
	}

	if rep := apply(t, ld, res); rep.Changed() {
		t.Errorf("second apply changed %+v", rep)
	}
}

// TestPrivilegedRestart closes the loader and opens another on the same
// pins: enforcement goes on while none runs, the new loader adopts the
// same maps and links, and its first Apply only moves the links to its
// programs.
func TestPrivilegedRestart(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	res := compile(t, seedPolicy, lab.endpoints())

	ld := lab.open(t, AttachAuto)
	apply(t, ld, res)
	if _, err := Open(Options{BPFFS: lab.bpffs}); !errors.Is(err, ErrBusy) {
		t.Errorf("second Open on the same pins: %v, want ErrBusy", err)
	}
	maps1 := mapIDs(t, ld)
	atts1, err := ld.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}

	// No loader runs: the pinned links keep enforcing.
	if !connects(t, emp.ns, dbRedis) {
		t.Error("no loader: employee -> db:6379 failed")
	}
	if !dropped(t, guest.ns, dbRedis) {
		t.Error("no loader: guest -> db:6379 passed")
	}

	ld = lab.open(t, AttachAuto)
	if diff := mapIDs(t, ld); !mapsEqual(diff, maps1) {
		t.Errorf("map ids after restart %v, want the pinned %v", diff, maps1)
	}
	atts2, err := ld.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	if len(atts2) != len(atts1) {
		t.Fatalf("attachments after restart %+v, want %+v", atts2, atts1)
	}
	for i := range atts1 {
		if atts2[i].LinkID != atts1[i].LinkID || atts2[i].ProgramID != atts1[i].ProgramID || atts2[i].Current {
			t.Errorf("attachment after restart %+v; want link %d still running the old program %d", atts2[i], atts1[i].LinkID, atts1[i].ProgramID)
		}
	}

	rep := apply(t, ld, res)
	if rep.Counts != (Counts{}) || len(rep.Skipped) != 0 {
		t.Errorf("apply after restart wrote %+v, skipped %v; want nothing", rep.Counts, rep.Skipped)
	}
	if len(rep.Endpoints) != 3 {
		t.Errorf("apply after restart: %+v; want the 3 endpoints updated", rep.Endpoints)
	}
	for _, c := range rep.Endpoints {
		if c.Action != Updated {
			t.Errorf("endpoint %+v; want updated", c)
		}
	}
	atts3, err := ld.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	for i := range atts1 {
		if atts3[i].LinkID != atts1[i].LinkID || !atts3[i].Current {
			t.Errorf("attachment after apply %+v; want link %d running this loader's program", atts3[i], atts1[i].LinkID)
		}
	}
	if rep := apply(t, ld, res); rep.Changed() {
		t.Errorf("second apply after restart changed %+v", rep)
	}
	if !connects(t, emp.ns, dbRedis) {
		t.Error("after restart: employee -> db:6379 failed")
	}
	if !dropped(t, guest.ns, dbRedis) {
		t.Error("after restart: guest -> db:6379 passed")
	}
}

func mapsEqual(a, b map[string]ebpf.MapID) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestPrivilegedPolicyChange applies a policy that lets guest in too, then
// the seed again.
func TestPrivilegedPolicyChange(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	seed := compile(t, seedPolicy, lab.endpoints())
	// guest gets 6379-6380 (a new table), employee everything (the
	// table of the host's implicit allow, shared).
	open := compile(t, strings.Replace(strings.Replace(seedPolicy, "app: employee", "app: guest", 1),
		`port: "6379"`, `port: "6379"
        endPort: 6380`, 1)+`---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: employee-too
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: employee
`, lab.endpoints())

	ld := lab.open(t, AttachAuto)
	apply(t, ld, seed)
	if !dropped(t, guest.ns, dbRedis) {
		t.Fatal("seed: guest -> db:6379 passed")
	}
	if !connects(t, emp.ns, dbRedis) {
		t.Fatal("seed: employee -> db:6379 failed")
	}
	empEntry := policyKey{endpoint: uint32(db.ifindex), remote: datapath.Identity(seed.Lookup(emp.ip))}
	empSlot, _ := ld.counters.get(empEntry)
	empBefore := entryCounter(t, ld, empEntry)
	rep := apply(t, ld, open)
	if want := (Counts{PolicySet: 2, TablesWritten: 1, TablesReleased: 1}); rep.Counts != want || len(rep.Endpoints) != 0 {
		t.Errorf("policy change report %+v; want counts %+v (guest's entry and table, employee's entry moved to the shared L3 table), no attachment change", rep, want)
	}
	if !connects(t, guest.ns, dbRedis) {
		t.Error("guest -> db:6379 failed after it was allowed")
	}
	if !connects(t, emp.ns, dbRedis) {
		t.Error("employee -> db:6379 failed under the L3 allow")
	}
	// employee's entry has a new table, but the same counter, counting on.
	if slot, _ := ld.counters.get(empEntry); slot != empSlot || slot == 0 {
		t.Errorf("employee's entry moved from counter %d to %d", empSlot, slot)
	}
	if c := entryCounter(t, ld, empEntry); c.Counts.Allowed.Packets <= empBefore.Counts.Allowed.Packets {
		t.Errorf("employee's entry counts %+v after the change, before %+v: want more allowed", c.Counts, empBefore.Counts)
	}
	guestEntry := policyKey{endpoint: uint32(db.ifindex), remote: datapath.Identity(open.Lookup(guest.ip))}
	if c := entryCounter(t, ld, guestEntry); !c.Counted || c.Counts.Allowed.Packets == 0 || c.Counts.DefaultDenied.Packets != 0 {
		t.Errorf("guest's new entry %+v: want counted from its creation, packets allowed only", c)
	}

	rep = apply(t, ld, seed)
	if want := (Counts{PolicySet: 1, PolicyDeleted: 1, TablesWritten: 1, TablesReleased: 1}); rep.Counts != want {
		t.Errorf("back to the seed: %+v; want %+v (guest's entry deleted and its table released, employee's table written anew)", rep.Counts, want)
	}
	if !dropped(t, guest.ns, dbRedis) {
		t.Error("guest -> db:6379 passed after the seed came back")
	}
	if !connects(t, emp.ns, dbRedis) {
		t.Error("employee -> db:6379 failed after the seed came back")
	}
	if n := ld.tables.inUse(); n != 3 {
		t.Errorf("%d verdict tables in use, want 3 (any: empty, host, employee)", n)
	}
	if n := ld.counters.inUse(); n != 3 {
		t.Errorf("%d counters in use, want 3 (any, host, employee)", n)
	}
}

// entryCounter returns the counter of policy entry k.
func entryCounter(t *testing.T, ld *Loader, k policyKey) EntryCounter {
	t.Helper()
	cs, err := ld.EntryCounters()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.EndpointID == k.endpoint && c.Remote == k.remote {
			return c
		}
	}
	t.Fatalf("no policy entry %+v among %+v", k, cs)
	return EntryCounter{}
}

// TestPrivilegedEndpointGone removes endpoints both ways: dropped from the
// policy while its veth stays, and its veth deleted.
func TestPrivilegedEndpointGone(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	ld := lab.open(t, AttachAuto)
	apply(t, ld, compile(t, seedPolicy, lab.endpoints()))

	// db leaves the policy: its interface is detached, its entries and
	// pins deleted, and nothing enforces its ingress any more.
	eps := lab.endpoints()
	eps[0].Local = false
	rep := apply(t, ld, compile(t, seedPolicy, eps))
	if len(rep.Endpoints) != 1 || rep.Endpoints[0].Action != Detached || rep.Endpoints[0].Ifindex != db.ifindex || rep.Endpoints[0].Interface != db.hostIf {
		t.Errorf("report %+v; want db's interface detached", rep.Endpoints)
	}
	if rep.Counts.EndpointsDeleted != 1 || rep.Counts.PolicyDeleted != 3 || rep.Counts.TablesReleased != 3 {
		t.Errorf("counts %+v; want 1 endpoint and 3 policy entries deleted, 3 tables released", rep.Counts)
	}
	if n := ld.counters.inUse(); n != 0 {
		t.Errorf("%d counters in use after db left, want 0", n)
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXEgress, ebpf.AttachTCXIngress} {
		if got := tcxPrograms(t, lab.node, db.ifindex, at); len(got) != 0 {
			t.Errorf("db %v still runs %v", at, got)
		}
	}
	if _, err := os.Stat(filepath.Join(lab.bpffs, "links", strconv.Itoa(db.ifindex))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("db's link pins remain: %v", err)
	}
	cur, err := ld.readState()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cur.endpoints[uint32(db.ifindex)]; ok {
		t.Error("db's endpoint entry remains")
	}
	for k := range cur.policy {
		if k.endpoint == uint32(db.ifindex) {
			t.Errorf("db's policy entry %+v remains", k)
		}
	}
	if !connects(t, guest.ns, dbRedis) {
		t.Error("guest -> db:6379 failed with db's ingress no longer enforced")
	}

	// employee's veth goes away.
	testenv.Run(t, "ip", "-n", lab.node, "link", "del", emp.hostIf)
	rep = apply(t, ld, compile(t, seedPolicy, lab.endpoints()))
	var detached []int
	for _, c := range rep.Endpoints {
		if c.Action == Detached {
			detached = append(detached, c.Ifindex)
		}
	}
	if !slices.Equal(detached, []int{emp.ifindex}) {
		t.Errorf("report %+v; want employee's interface %d detached (and db attached again)", rep.Endpoints, emp.ifindex)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Name != "employee" || !strings.Contains(rep.Skipped[0].Reason, "no route") {
		t.Errorf("skipped %+v; want employee, no route", rep.Skipped)
	}
	if _, err := os.Stat(filepath.Join(lab.bpffs, "links", strconv.Itoa(emp.ifindex))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("employee's link pins remain: %v", err)
	}
	if cur, err := ld.readState(); err != nil {
		t.Fatal(err)
	} else if _, ok := cur.endpoints[uint32(emp.ifindex)]; ok {
		t.Error("employee's endpoint entry remains")
	}
	if !dropped(t, guest.ns, dbRedis) {
		t.Error("guest -> db:6379 passed after db was enforced again")
	}
	if rep := apply(t, ld, compile(t, seedPolicy, lab.endpoints())); rep.Changed() {
		t.Errorf("apply again changed %+v", rep)
	}
}

// TestPrivilegedClsact attaches with clsact filters, restarts (the filters
// get the new programs), then moves to TCX, which removes the filters.
func TestPrivilegedClsact(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	res := compile(t, seedPolicy, lab.endpoints())

	ld := lab.open(t, AttachClsact)
	rep := apply(t, ld, res)
	for _, c := range rep.Endpoints {
		if c.Action != Attached || c.Mode != AttachClsact {
			t.Errorf("endpoint %+v; want attached with clsact", c)
		}
	}
	if !connects(t, emp.ns, dbRedis) || !dropped(t, guest.ns, dbRedis) {
		t.Error("clsact: seed policy not enforced")
	}
	check := func(step string, want AttachMode, current bool) []Attachment {
		t.Helper()
		atts, err := ld.Attachments()
		if err != nil {
			t.Fatal(err)
		}
		if len(atts) != 6 {
			t.Errorf("%s: %d attachments, want 6: %+v", step, len(atts), atts)
		}
		for _, a := range atts {
			if a.Mode != want || a.Current != current {
				t.Errorf("%s: attachment %+v; want mode %v, current %v", step, a, want, current)
			}
		}
		return atts
	}
	before := check("clsact", AttachClsact, true)
	if out := testenv.Run(t, "tc", "-n", lab.node, "filter", "show", "dev", db.hostIf, "egress"); !strings.Contains(out, "roost-to_endpoint") || !strings.Contains(out, "direct-action") {
		t.Errorf("tc filter show: %s", out)
	}

	ld.Close()
	ld = lab.open(t, AttachClsact)
	check("clsact, restarted", AttachClsact, false)
	rep = apply(t, ld, res)
	if rep.Counts != (Counts{}) || len(rep.Endpoints) != 3 || rep.Endpoints[0].Action != Updated {
		t.Errorf("clsact restart: %+v; want 3 endpoints updated, nothing written", rep)
	}
	after := check("clsact, applied", AttachClsact, true)
	for i := range before {
		if after[i].ProgramID == before[i].ProgramID {
			t.Errorf("filter %+v still runs the old program", after[i])
		}
	}
	if !connects(t, emp.ns, dbRedis) || !dropped(t, guest.ns, dbRedis) {
		t.Error("clsact restarted: seed policy not enforced")
	}

	ld.Close()
	ld = lab.open(t, AttachTCX)
	rep = apply(t, ld, res)
	for _, c := range rep.Endpoints {
		if c.Action != Attached || c.Mode != AttachTCX {
			t.Errorf("endpoint %+v; want attached with tcx", c)
		}
	}
	check("tcx", AttachTCX, true)
	if out := testenv.Run(t, "tc", "-n", lab.node, "filter", "show", "dev", db.hostIf, "egress"); strings.Contains(out, "roost") {
		t.Errorf("clsact filter left after moving to tcx: %s", out)
	}
	if !connects(t, emp.ns, dbRedis) || !dropped(t, guest.ns, dbRedis) {
		t.Error("tcx: seed policy not enforced")
	}
}

// TestPrivilegedIncompatiblePin pins maps of another layout. A conntrack
// map, whose state no policy restores: Open refuses it, naming it and
// saying what to do, and leaves every pin as it was. A verdicts map, which
// Apply refills: Open starts it anew (and, with it, the other maps derived
// from the policy) and leaves no trace of the old pin.
func TestPrivilegedIncompatiblePin(t *testing.T) {
	testenv.Privileged(t)
	for _, tt := range []struct {
		name    string
		spec    ebpf.MapSpec
		refused bool
	}{
		{"conntrack", ebpf.MapSpec{Name: "conntrack", Type: ebpf.LRUHash, KeySize: 44, ValueSize: 16, MaxEntries: 1024}, true},
		{"verdicts", ebpf.MapSpec{Name: "verdicts", Type: ebpf.Array, KeySize: 4, ValueSize: 1028, MaxEntries: 16}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(testenv.BPFFS(t), "roost")
			if err := os.MkdirAll(filepath.Join(dir, "maps"), 0o700); err != nil {
				t.Fatal(err)
			}
			m, err := ebpf.NewMap(&tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			pin := filepath.Join(dir, "maps", tt.name)
			if err := m.Pin(pin); err != nil {
				t.Fatal(err)
			}
			ld, err := Open(Options{BPFFS: dir})
			if !tt.refused {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer ld.Close()
				got, err := ebpf.LoadPinnedMap(pin, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer got.Close()
				if got.MaxEntries() == tt.spec.MaxEntries {
					t.Errorf("%s still pinned with %d entries: not started anew", pin, got.MaxEntries())
				}
				if names := pinNames(t, dir); slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, replacedSuffix) }) {
					t.Errorf("pins left aside: %v", names)
				}
				return
			}
			if err == nil {
				ld.Close()
				t.Fatal("Open adopted an incompatible pinned map")
			}
			if !errors.Is(err, ebpf.ErrMapIncompatible) {
				t.Errorf("error %v does not wrap ebpf.ErrMapIncompatible", err)
			}
			for _, want := range []string{`"` + tt.name + `"`, pin, "rm " + pin, "MaxEntries", "changed nothing"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if names := pinNames(t, dir); !slices.Equal(names, []string{tt.name}) {
				t.Errorf("pins after the refusal: %v, want just %s", names, tt.name)
			}
		})
	}
}

// pinNames lists the map pins under dir.
func pinNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "maps"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestPrivilegedStalePins leaves pins of an older roost: Open removes a map
// pin it does not know, Apply a stray entry among the link pins.
func TestPrivilegedStalePins(t *testing.T) {
	testenv.Privileged(t)
	dir := filepath.Join(testenv.BPFFS(t), "roost")
	if err := os.MkdirAll(filepath.Join(dir, "maps"), 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "old", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, name := range []string{"old_map", "flow_cache"} {
		if err := m.Pin(filepath.Join(dir, "maps", name)); err != nil {
			t.Fatal(err)
		}
	}
	ld, err := Open(Options{BPFFS: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	for _, name := range []string{"old_map", "flow_cache"} {
		if _, err := os.Stat(filepath.Join(dir, "maps", name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale map pin %s remains: %v", name, err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "links", "stray"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ld.Apply(policy.Resolved{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "links", "stray")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stray link pin remains: %v", err)
	}
}

// TestPrivilegedEntriesFromBeforeCounters starts a loader on pins whose
// policy entries name no counter, as the roost before per-entry counters
// wrote them (the field was reserved, 0): they are listed as not counted,
// enforcement goes on, and the first Apply gives each entry a counter of
// its own and rewrites it; the next changes nothing.
func TestPrivilegedEntriesFromBeforeCounters(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	res := compile(t, seedPolicy, lab.endpoints())
	ld := lab.open(t, AttachAuto)
	apply(t, ld, res)
	entries, err := ld.readPolicy()
	if err != nil {
		t.Fatal(err)
	}
	for k, e := range entries {
		key := bpf.PolicyPolicyKey{Endpoint: k.endpoint, Identity: uint32(k.remote)}
		if err := ld.objs.Policy.Put(key, bpf.PolicyPolicyValue{Table: e.Table}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}

	ld = lab.open(t, AttachAuto)
	if n := ld.counters.inUse(); n != 0 {
		t.Errorf("%d counters adopted from entries that name none", n)
	}
	cs, err := ld.EntryCounters()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Counted || c.Counts != (datapath.EntryCounter{}) || c.Endpoint != "" {
			t.Errorf("entry %+v before any Apply: want not counted, no name", c)
		}
	}
	if !connects(t, emp.ns, dbRedis) || !dropped(t, guest.ns, dbRedis) {
		t.Fatal("entries without counters do not enforce the seed")
	}

	rep := apply(t, ld, res)
	if want := (Counts{PolicySet: len(entries)}); rep.Counts != want {
		t.Errorf("first apply %+v; want %+v (every entry given a counter)", rep.Counts, want)
	}
	if !connects(t, emp.ns, dbRedis) || !dropped(t, guest.ns, dbRedis) {
		t.Error("after the entries got counters, the seed is not enforced")
	}
	empEntry := policyKey{endpoint: uint32(db.ifindex), remote: datapath.Identity(res.Lookup(emp.ip))}
	if c := entryCounter(t, ld, empEntry); !c.Counted || c.Endpoint != "db" || c.Counts.Allowed.Packets == 0 {
		t.Errorf("employee's entry %+v: want counted, allowed packets", c)
	}
	if c := entryCounter(t, ld, policyKey{endpoint: uint32(db.ifindex)}); !c.Counted || c.Counts.DefaultDenied.Packets == 0 {
		t.Errorf("the wildcard entry %+v: want counted, default-denied packets", c)
	}
	if rep := apply(t, ld, res); rep.Changed() {
		t.Errorf("second apply changed %+v", rep)
	}
}
