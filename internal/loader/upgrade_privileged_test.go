package loader

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/datapath"
)

// guestUDPPolicy lets guest send UDP to db's port 7000 as well.
const guestUDPPolicy = `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: guest-udp
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: guest
    toPorts:
    - ports:
      - port: "7000"
        protocol: UDP
`

// changedBuild stands in for a roost whose programs differ (an upgrade):
// it is package bpf's spec with a no-op (r1 = r1) put before the first
// instruction of to_endpoint and from_endpoint, so that their instructions
// and tags differ from this build's while they use the same maps.
func changedBuild() (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadPolicy()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{bpf.PolicyProgToEndpoint, bpf.PolicyProgFromEndpoint} {
		prog := spec.Programs[name]
		if prog == nil || len(prog.Instructions) == 0 {
			return nil, fmt.Errorf("change build: no program %s", name)
		}
		insns := prog.Instructions
		// The no-op takes over the first instruction's metadata (its
		// symbol, function and line info), so that it opens the function.
		nop := asm.Mov.Reg(asm.R1, asm.R1).WithMetadata(insns[0].Metadata)
		first := insns[0].WithMetadata(asm.Metadata{})
		prog.Instructions = append(asm.Instructions{nop, first}, insns[1:]...)
	}
	return spec, nil
}

// TestPrivilegedUpgradeUnderTraffic upgrades the loader to a changed build
// (Close, Open with Options.Spec giving programs whose instructions differ,
// Apply) while guest and employee send UDP to db without pause and two TCP
// connections (employee to db, and db to employee, whose replies pass by
// conntrack alone) exchange lines: the links keep their ids and move to the new
// programs (new program ids and tags, current), not one guest datagram
// arrives, not one of employee's is lost, and neither connection breaks.
// Then a policy change lets guest's datagrams in: the new programs read the
// pinned maps, and the new loader's writes void their flow cache.
func TestPrivilegedUpgradeUnderTraffic(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	serveTCP(t, emp.ns, empHTTP)
	sink := sinkUDP(t, db.ns, dbProbe)
	res := compile(t, seedPolicy+udpProbePolicy, lab.endpoints())

	ld := lab.open(t, AttachAuto)
	apply(t, ld, res)
	before, err := ld.Counters()
	if err != nil {
		t.Fatal(err)
	}
	old, err := ld.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != 6 {
		t.Fatalf("%d attachments, want 6: %+v", len(old), old)
	}
	for _, a := range old {
		if a.Mode != AttachTCX || !a.Current || a.LinkID == 0 || a.Tag == "" {
			t.Fatalf("attachment %+v: want a current TCX link with a tag", a)
		}
	}

	toDB, fromDB := chat(t, emp.ns, dbRedis), chat(t, db.ns, empHTTP)
	empUDP, guestUDP := sendUDP(t, emp.ns, dbProbe), sendUDP(t, guest.ns, dbProbe)
	progress := func(step string) { waitFlowing(t, step, sink, emp, guest, toDB, fromDB) }
	progress("old build")

	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}
	progress("no loader")
	ld = lab.openWith(t, Options{Spec: changedBuild})
	var toTag, fromTag string
	for _, p := range []struct {
		name string
		prog *ebpf.Program
		tag  *string
	}{
		{bpf.PolicyProgToEndpoint, ld.objs.ToEndpoint, &toTag},
		{bpf.PolicyProgFromEndpoint, ld.objs.FromEndpoint, &fromTag},
	} {
		info, err := p.prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Tag == tagOf(old, p.name) {
			t.Fatalf("program %s: the changed build has the same tag %s", p.name, info.Tag)
		}
		*p.tag = info.Tag
	}
	progress("new build open")
	pending, err := ld.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != len(old) {
		t.Fatalf("attachments of the new loader %+v, want %+v", pending, old)
	}
	for i, a := range pending {
		if a.LinkID != old[i].LinkID || a.ProgramID != old[i].ProgramID || a.Tag != old[i].Tag || a.Current {
			t.Errorf("before Apply: attachment %+v; want link %d still running the old build's program %d", a, old[i].LinkID, old[i].ProgramID)
		}
	}

	rep := apply(t, ld, res)
	if rep.Counts != (Counts{}) || len(rep.Endpoints) != 3 {
		t.Errorf("upgrade apply %+v; want the 3 endpoints updated and nothing written", rep)
	}
	for _, c := range rep.Endpoints {
		if c.Action != Updated {
			t.Errorf("upgrade apply: endpoint %+v; want updated", c)
		}
	}
	progress("new build applied")

	upgraded, err := ld.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	if len(upgraded) != len(old) {
		t.Fatalf("attachments after the upgrade %+v, want %d", upgraded, len(old))
	}
	wantTag := map[string]string{bpf.PolicyProgToEndpoint: toTag, bpf.PolicyProgFromEndpoint: fromTag}
	for i, a := range upgraded {
		if a.LinkID != old[i].LinkID || a.ProgramID == old[i].ProgramID || a.Tag != wantTag[a.Program] || !a.Current {
			t.Errorf("after the upgrade: attachment %+v; want link %d running the new build (a program other than %d, tag %s), current",
				a, old[i].LinkID, old[i].ProgramID, wantTag[a.Program])
		}
	}
	newTo, err := programID(ld.objs.ToEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	if got := tcxPrograms(t, lab.node, db.ifindex, ebpf.AttachTCXEgress); len(got) != 1 || got[0] != newTo {
		t.Errorf("db egress runs %v, want the new to_endpoint %d alone", got, newTo)
	}

	for name, err := range map[string]error{
		"employee udp": empUDP.halt(), "employee -> db tcp": toDB.halt(), "db -> employee tcp": fromDB.halt(),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	sent := int(empUDP.sent.Load())
	if !sink.waitReceived(emp.ip, sent) {
		t.Errorf("employee sent %d datagrams, db received %d: %d lost", sent, sink.received(emp.ip), sent-sink.received(emp.ip))
	}
	// guest keeps sending, and its flow stays in the new programs' cache.
	guestSent := guestUDP.sent.Load()
	if n := sink.received(guest.ip); n != 0 {
		t.Errorf("db received %d of guest's %d datagrams; want none", n, guestSent)
	}
	after, err := ld.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if drops := after[datapath.ReasonDropPolicyDefault].Packets - before[datapath.ReasonDropPolicyDefault].Packets; drops < uint64(guestSent) {
		t.Errorf("%d default-deny drops counted for guest's %d datagrams", drops, guestSent)
	}
	t.Logf("employee: %d datagrams, all received; guest: %d, none received; tcp rounds %d and %d; tags to_endpoint %s -> %s, from_endpoint %s -> %s",
		sent, guestSent, toDB.rounds.Load(), fromDB.rounds.Load(), tagOf(old, bpf.PolicyProgToEndpoint), toTag, tagOf(old, bpf.PolicyProgFromEndpoint), fromTag)

	// The new programs enforce what the new loader writes next.
	apply(t, ld, compile(t, seedPolicy+udpProbePolicy+guestUDPPolicy, lab.endpoints()))
	if !sink.waitReceived(guest.ip, 50) {
		t.Errorf("guest's datagrams do not arrive after they were allowed (received %d)", sink.received(guest.ip))
	}
	if err := guestUDP.halt(); err != nil {
		t.Errorf("guest udp: %v", err)
	}
}

// tagOf returns the tag of the first attachment of program prog.
func tagOf(atts []Attachment, prog string) string {
	for _, a := range atts {
		if a.Program == prog {
			return a.Tag
		}
	}
	return fmt.Sprintf("(no %s)", prog)
}

// oldLayoutBuild stands in for a roost whose maps had another layout: this
// build's spec with half the verdict tables and half the drop ring.
func oldLayoutBuild() (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadPolicy()
	if err != nil {
		return nil, err
	}
	spec.Maps["verdicts"].MaxEntries /= 2
	spec.Maps["drops"].MaxEntries /= 2
	return spec, nil
}

// pinnedMapIDs maps each pinned map's name to its kernel id.
func pinnedMapIDs(t *testing.T, dir string) map[string]ebpf.MapID {
	t.Helper()
	ids := map[string]ebpf.MapID{}
	for _, name := range pinNames(t, dir) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "maps", name), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		ids[name] = id
	}
	return ids
}

// TestPrivilegedUpgradeMapLayout upgrades from a build whose verdicts and
// drops maps had another layout, under the traffic of the upgrade test:
// Open starts the derived maps (verdicts and every map pointing into it)
// and the drop ring anew while the old programs keep theirs, Apply fills
// them, the links move; conntrack and the per-reason counters are adopted.
// Not one guest datagram arrives, not one of employee's is lost, neither
// TCP connection breaks (their replies pass by the adopted conntrack).
func TestPrivilegedUpgradeMapLayout(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	serveTCP(t, emp.ns, empHTTP)
	sink := sinkUDP(t, db.ns, dbProbe)
	res := compile(t, seedPolicy+udpProbePolicy, lab.endpoints())

	ld := lab.openWith(t, Options{Spec: oldLayoutBuild})
	apply(t, ld, res)
	toDB, fromDB := chat(t, emp.ns, dbRedis), chat(t, db.ns, empHTTP)
	empUDP, guestUDP := sendUDP(t, emp.ns, dbProbe), sendUDP(t, guest.ns, dbProbe)
	progress := func(step string) { waitFlowing(t, step, sink, emp, guest, toDB, fromDB) }
	progress("old layout")
	before := pinnedMapIDs(t, lab.bpffs)
	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}

	ld = lab.open(t, AttachAuto)
	progress("new layout open")
	apply(t, ld, res)
	progress("new layout applied")
	after := pinnedMapIDs(t, lab.bpffs)
	if len(after) != len(before) {
		t.Errorf("pins before %v, after %v", before, after)
	}
	for name, id := range after {
		anew := slices.Contains(derivedMaps, name) || name == "drops"
		if anew == (id == before[name]) {
			t.Errorf("map %s: id %d before, %d after; want it started anew: %v", name, before[name], id, anew)
		}
	}
	v, err := ebpf.LoadPinnedMap(filepath.Join(lab.bpffs, "maps", "verdicts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if want := ld.objs.Verdicts.MaxEntries(); v.MaxEntries() != want {
		t.Errorf("pinned verdicts has %d entries, want this build's %d", v.MaxEntries(), want)
	}
	atts, err := ld.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range atts {
		if !a.Current {
			t.Errorf("attachment %+v not moved to the new programs", a)
		}
	}

	for name, err := range map[string]error{
		"employee udp": empUDP.halt(), "employee -> db tcp": toDB.halt(), "db -> employee tcp": fromDB.halt(),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	sent := int(empUDP.sent.Load())
	if !sink.waitReceived(emp.ip, sent) {
		t.Errorf("employee sent %d datagrams, db received %d: %d lost", sent, sink.received(emp.ip), sent-sink.received(emp.ip))
	}
	guestSent := guestUDP.sent.Load()
	if err := guestUDP.halt(); err != nil {
		t.Errorf("guest udp: %v", err)
	}
	if n := sink.received(guest.ip); n != 0 {
		t.Errorf("db received %d of guest's %d datagrams; want none", n, guestSent)
	}
	t.Logf("employee: %d datagrams, all received; guest: %d, none received; tcp rounds %d and %d",
		sent, guestSent, toDB.rounds.Load(), fromDB.rounds.Load())
}
