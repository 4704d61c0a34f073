package datapath

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/testenv"
)

// TestPrivilegedEntryCounters checks that to_endpoint counts each packet it
// decides by policy in the counter of exactly the entry that decided it,
// under the verdict of that entry's table, both when it decides through the
// maps and when the flow cache decides; and that packets policy did not
// decide (not enforced, conntrack replies) count in no entry.
func TestPrivilegedEntryCounters(t *testing.T) {
	testenv.Privileged(t)
	d := loadDatapath(t)
	setupFixture(t, d)
	// The pod opened a connection to 198.51.100.7:443, whose replies pass.
	opened := testPacket{src: podV4, dst: ip("198.51.100.7"), proto: ProtoTCP, sport: 40000, dport: 443, tcpFlags: tcpSYN}
	if r := d.run(t, d.objs.FromEndpoint, opened.frame()); r.ret != retPass {
		t.Fatalf("from_endpoint returned %d", r.ret)
	}
	laterFrag := testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoTCP, frag: true, fragID: 2, fragOffset: 100, payload: make([]byte, 16)}

	tests := []struct {
		name string
		pkt  testPacket
		// entry and verdict: the entry that decides, and how; none: no
		// entry counts the packet.
		entry   Identity
		verdict Verdict
		none    bool
		// notCached: the flow cache never holds this decision.
		notCached bool
		endpoint  *Endpoint // instead of the fixture's
	}{
		{name: "allowed", pkt: tcp("10.0.1.1", "10.0.0.10", 80), entry: idFrontend, verdict: VerdictAllow},
		{name: "allowed v6", pkt: tcp("fd00:1::1", "fd00::10", 8050), entry: idFrontend, verdict: VerdictAllow},
		{name: "allowed icmp echo", pkt: testPacket{src: ip("10.0.1.1"), dst: podV4, proto: ProtoICMP, icmpType: 8, icmpID: 7}, entry: idFrontend, verdict: VerdictAllow},
		{name: "wildcard rule folded into an own entry", pkt: tcp("10.0.1.1", "10.0.0.10", 443), entry: idFrontend, verdict: VerdictAllow},
		{name: "no rule in an own entry", pkt: tcp("10.0.1.1", "10.0.0.10", 81), entry: idFrontend, verdict: VerdictNone},
		{name: "deny rule", pkt: tcp("10.0.1.2", "10.0.0.10", 22), entry: idAdmin, verdict: VerdictDeny},
		{name: "L3 allow", pkt: tcp("10.0.1.2", "10.0.0.10", 23), entry: idAdmin, verdict: VerdictAllow},
		{name: "deny everything", pkt: udp("fd00:1::3", "fd00::10", 53), entry: idBlocked, verdict: VerdictDeny},
		{name: "cidr", pkt: tcp("10.0.2.5", "10.0.0.10", 5432), entry: idCIDR, verdict: VerdictAllow},
		{name: "any entry allows world", pkt: tcp("192.0.2.9", "10.0.0.10", 443), entry: IdentityAny, verdict: VerdictAllow},
		{name: "any entry default-denies world", pkt: tcp("192.0.2.9", "10.0.0.10", 80), entry: IdentityAny, verdict: VerdictNone},
		{name: "any entry default-denies an identity without an entry", pkt: tcp("10.0.2.200", "10.0.0.10", 80), entry: IdentityAny, verdict: VerdictNone},
		{name: "entry whose table is missing", pkt: tcp("10.0.3.1", "10.0.0.10", 443), entry: idNoTable, verdict: VerdictNone},
		{name: "later fragment without ports", pkt: laterFrag, entry: idFrontend, verdict: VerdictNone, notCached: true},
		{name: "reply passes by conntrack", pkt: testPacket{src: ip("198.51.100.7"), dst: podV4, proto: ProtoTCP, sport: 443, dport: 40000, tcpFlags: tcpACK}, none: true},
		{name: "not enforced", pkt: tcp("192.0.2.9", "10.0.0.10", 80), endpoint: &Endpoint{ID: testEndpoint}, none: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := Endpoint{ID: testEndpoint, EnforceIngress: true}
			if tc.endpoint != nil {
				ep = *tc.endpoint
			}
			if err := d.maps.SetEndpoint(testIfindex, ep); err != nil {
				t.Fatal(err)
			}
			frame := tc.pkt.frame()
			want := map[uint32]EntryCounter{}
			if !tc.none {
				one := Counter{Packets: 1, Bytes: uint64(len(frame))}
				var c EntryCounter
				switch tc.verdict {
				case VerdictAllow:
					c.Allowed = one
				case VerdictDeny:
					c.Denied = one
				default:
					c.DefaultDenied = one
				}
				want[fixturePolicy[tc.entry].Counter] = c
			}
			if got := d.run(t, d.objs.ToEndpoint, frame).entries; !cmp.Equal(want, got) {
				t.Errorf("decided through the maps: entry counters moved %+v, want %+v", got, want)
			}

			// Again, from the flow cache: the deciding entry now names
			// another counter, unseen by the cache (no generation bump),
			// which must keep counting in the one it cached.
			if !tc.none && !tc.notCached {
				moved := fixturePolicy[tc.entry]
				moved.Counter = testCounterSlots
				key := bpf.PolicyPolicyKey{Endpoint: testEndpoint, Identity: uint32(tc.entry)}
				if err := d.objs.Policy.Put(key, bpf.PolicyPolicyValue{Table: moved.Table, Counter: moved.Counter}); err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := d.maps.SetPolicy(testEndpoint, tc.entry, fixturePolicy[tc.entry]); err != nil {
						t.Fatal(err)
					}
				}()
			}
			if got := d.run(t, d.objs.ToEndpoint, frame).entries; !cmp.Equal(want, got) {
				t.Errorf("decided from the flow cache: entry counters moved %+v, want %+v", got, want)
			}
		})
	}

	t.Run("uncounted entry", func(t *testing.T) {
		if err := d.maps.SetEndpoint(testIfindex, Endpoint{ID: testEndpoint, EnforceIngress: true}); err != nil {
			t.Fatal(err)
		}
		uncounted := fixturePolicy[idFrontend]
		uncounted.Counter = 0
		if err := d.maps.SetPolicy(testEndpoint, idFrontend, uncounted); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := d.maps.SetPolicy(testEndpoint, idFrontend, fixturePolicy[idFrontend]); err != nil {
				t.Fatal(err)
			}
		}()
		for _, pkt := range []testPacket{tcp("10.0.1.1", "10.0.0.10", 80), tcp("10.0.1.1", "10.0.0.10", 81)} {
			if got := d.run(t, d.objs.ToEndpoint, pkt.frame()).entries; len(got) != 0 {
				t.Errorf("port %d: entry counters moved %+v, want none", pkt.dport, got)
			}
		}
		if c, err := d.maps.EntryCounter(0); err != nil || c != (EntryCounter{}) {
			t.Errorf("slot 0 = %+v, %v; want never written", c, err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		slot := fixturePolicy[idFrontend].Counter
		if c, err := d.maps.EntryCounter(slot); err != nil || c.Allowed.Packets == 0 {
			t.Fatalf("slot %d = %+v, %v; want packets counted by now", slot, c, err)
		}
		if err := d.maps.ResetEntryCounter(slot); err != nil {
			t.Fatal(err)
		}
		if c, err := d.maps.EntryCounter(slot); err != nil || c != (EntryCounter{}) {
			t.Errorf("slot %d after reset = %+v, %v", slot, c, err)
		}
		for _, bad := range []uint32{0, uint32(MaxEntryCounters)} {
			if err := d.maps.ResetEntryCounter(bad); err == nil {
				t.Errorf("ResetEntryCounter(%d): no error", bad)
			}
		}
	})
}
