package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/testenv"
)

// flowSlot mirrors flow_slot in bpf/policy.c: the flow cache slot of a
// packet from src to the endpoint behind ifindex.
func flowSlot(ifindex uint32, src netip.Addr, proto uint8, port uint16) uint32 {
	var b [16]byte
	family := uint32(6)
	if src.Is4() {
		a := src.As4()
		copy(b[:], a[:])
		family = 4
	} else {
		b = src.As16()
	}
	w := func(i int) uint32 { return binary.NativeEndian.Uint32(b[4*i:]) }
	h := w(0) * 0x9E3779B1
	h ^= w(1) * 0x85EBCA77
	h ^= w(2) * 0xC2B2AE3D
	h ^= w(3) * 0x27D4EB2F
	h ^= (ifindex ^ (uint32(port)<<16 | uint32(proto)<<8 | family)) * 0x165667B1
	h ^= h >> 15
	h *= 0x2C1B3C6D
	h ^= h >> 12
	return h & (uint32(bpf.PolicyFlowCacheLimitsFLOW_CACHE_SLOTS) - 1)
}

// TestPrivilegedFlowCache checks that cached decisions are keyed by the
// whole flow key and die with every map change made through Maps.
func TestPrivilegedFlowCache(t *testing.T) {
	testenv.Privileged(t)
	d := loadDatapath(t)
	setupFixture(t, d)
	allowed := tcp("10.0.1.1", "10.0.0.10", 80)

	t.Run("slot", func(t *testing.T) {
		d.step(t, nil, allowed, ReasonPassPolicy, 0)
		var per []bpf.PolicyFlowEntry
		if err := d.objs.FlowCache.Lookup(flowSlot(testIfindex, allowed.src, ProtoTCP, 80), &per); err != nil {
			t.Fatal(err)
		}
		want := bpf.PolicyFlowKey{Ifindex: testIfindex, Port: 80, Proto: ProtoTCP, Family: 4}
		want.Src[0] = binary.NativeEndian.Uint32(allowed.src.AsSlice())
		if per[0].Key != want || per[0].Endpoint != testEndpoint || per[0].Identity != uint32(idFrontend) ||
			Verdict(per[0].Verdict) != VerdictAllow || per[0].Enforce != 1 || per[0].Gen == 0 {
			t.Errorf("CPU 0 slot = %+v, want key %+v, endpoint %d, identity %d, allow, enforce", per[0], want, testEndpoint, idFrontend)
		}
	})

	t.Run("colliding flow is decided on its own", func(t *testing.T) {
		slot := flowSlot(testIfindex, allowed.src, ProtoTCP, 80)
		var other netip.Addr
		for a := netip.MustParseAddr("198.18.0.1"); ; a = a.Next() {
			if flowSlot(testIfindex, a, ProtoTCP, 80) == slot {
				other = a
				break
			}
		}
		d.step(t, nil, allowed, ReasonPassPolicy, 0)
		colliding := allowed
		colliding.src = other
		d.step(t, nil, colliding, ReasonDropPolicyDefault, IdentityWorld)
		d.step(t, nil, allowed, ReasonPassPolicy, 0)
	})

	t.Run("a change voids cached decisions", func(t *testing.T) {
		d.step(t, nil, allowed, ReasonPassPolicy, 0)
		// Written behind Maps' back, without a bump: the cache still decides.
		key := bpf.PolicyPolicyKey{Endpoint: testEndpoint, Identity: uint32(idFrontend)}
		if err := d.objs.Policy.Put(key, bpf.PolicyPolicyValue{Table: 4, Counter: fixturePolicy[idFrontend].Counter}); err != nil {
			t.Fatal(err)
		}
		d.step(t, nil, allowed, ReasonPassPolicy, 0)
		if err := d.maps.BumpGeneration(); err != nil {
			t.Fatal(err)
		}
		d.step(t, nil, allowed, ReasonDropPolicyDeny, idFrontend)
		// Through Maps the change is seen at once.
		if err := d.maps.SetPolicy(testEndpoint, idFrontend, fixturePolicy[idFrontend]); err != nil {
			t.Fatal(err)
		}
		d.step(t, nil, allowed, ReasonPassPolicy, 0)
		if err := d.maps.SetIdentity(netip.MustParsePrefix("10.0.1.1/32"), idBlocked); err != nil {
			t.Fatal(err)
		}
		d.step(t, nil, allowed, ReasonDropPolicyDeny, idBlocked)
		if err := d.maps.SetIdentity(netip.MustParsePrefix("10.0.1.1/32"), idFrontend); err != nil {
			t.Fatal(err)
		}
		if err := d.maps.SetEndpoint(testIfindex, Endpoint{ID: testEndpoint}); err != nil {
			t.Fatal(err)
		}
		d.step(t, nil, tcp("192.0.2.9", "10.0.0.10", 80), ReasonPassNotEnforced, 0)
		if err := d.maps.SetEndpoint(testIfindex, Endpoint{ID: testEndpoint, EnforceIngress: true}); err != nil {
			t.Fatal(err)
		}
		d.step(t, nil, tcp("192.0.2.9", "10.0.0.10", 80), ReasonDropPolicyDefault, IdentityWorld)
		vt, err := NewVerdictTable([]Rule{{Proto: ProtoTCP, FirstPort: 81, LastPort: 81}})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.maps.SetVerdictTable(2, vt); err != nil {
			t.Fatal(err)
		}
		d.step(t, nil, allowed, ReasonDropPolicyDefault, idFrontend)
	})

	t.Run("generation 0 caches nothing", func(t *testing.T) {
		fresh := loadDatapath(t)
		raw := func(m interface{ Put(k, v any) error }, k, v any) {
			t.Helper()
			if err := m.Put(k, v); err != nil {
				t.Fatal(err)
			}
		}
		raw(fresh.objs.Endpoints, uint32(testIfindex), bpf.PolicyEndpointInfo{Id: testEndpoint, Flags: 1})
		raw(fresh.objs.Verdicts, uint32(1), allowAllTable(t).Encode())
		raw(fresh.objs.Policy, bpf.PolicyPolicyKey{Endpoint: testEndpoint}, bpf.PolicyPolicyValue{Table: 1})
		fresh.step(t, nil, allowed, ReasonPassPolicy, 0)
		raw(fresh.objs.Policy, bpf.PolicyPolicyKey{Endpoint: testEndpoint}, bpf.PolicyPolicyValue{Table: 2})
		fresh.step(t, nil, allowed, ReasonDropPolicyDefault, IdentityWorld)
	})
}

// allowAllTable returns the table allowing everything.
func allowAllTable(t *testing.T) VerdictTable {
	t.Helper()
	vt, err := NewVerdictTable([]Rule{AnyProtocol()})
	if err != nil {
		t.Fatal(err)
	}
	return vt
}
