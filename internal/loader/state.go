package loader

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/datapath"
)

// readAllocators rebuilds the table and counter slot allocators from the
// maps: the tables and slots in use are those the policy entries name.
func (l *Loader) readAllocators() (*tables, *counterSlots, error) {
	entries, err := l.readPolicy()
	if err != nil {
		return nil, nil, err
	}
	t := newTables(l.objs.Verdicts.MaxEntries(), now)
	s := newCounterSlots(l.objs.PolicyCounters.MaxEntries(), now)
	// In order, so that of two entries naming one slot (which this loader
	// never writes) the same one keeps it every time.
	for _, k := range slices.SortedFunc(maps.Keys(entries), comparePolicyKey) {
		e := entries[k]
		s.adopt(k, e.Counter)
		if _, ok := t.content(e.Table); ok {
			continue
		}
		if e.Table >= t.size {
			// The datapath ignores such an entry (no table: default deny);
			// Apply replaces or deletes it.
			continue
		}
		var vt bpf.PolicyVerdictTable
		if err := l.objs.Verdicts.Lookup(e.Table, &vt); err != nil {
			return nil, nil, fmt.Errorf("verdicts: lookup %d: %w", e.Table, err)
		}
		t.adopt(e.Table, vt)
	}
	return t, s, nil
}

// current is what the maps hold now: endpoint entries, policy entries
// (table index and counter slot) and the ipcache.
type current struct {
	endpoints map[uint32]datapath.Endpoint
	policy    map[policyKey]datapath.PolicyEntry
	ipcache   map[netip.Prefix]datapath.Identity
}

// readState reads the endpoints, policy and ipcache maps.
func (l *Loader) readState() (current, error) {
	c := current{
		endpoints: make(map[uint32]datapath.Endpoint),
		ipcache:   make(map[netip.Prefix]datapath.Identity),
	}
	var (
		ifindex uint32
		info    bpf.PolicyEndpointInfo
	)
	it := l.objs.Endpoints.Iterate()
	for it.Next(&ifindex, &info) {
		c.endpoints[ifindex] = datapath.Endpoint{
			ID:             info.Id,
			EnforceIngress: info.Flags&uint32(bpf.PolicyEndpointFlagsENDPOINT_ENFORCE_INGRESS) != 0,
		}
	}
	if err := it.Err(); err != nil {
		return current{}, fmt.Errorf("endpoints: iterate: %w", err)
	}

	var err error
	if c.policy, err = l.readPolicy(); err != nil {
		return current{}, err
	}

	var iv bpf.PolicyIpcacheValue
	if err := iterate(l.objs.IpcacheHost4, &iv, func(k bpf.PolicyIpcacheHost4) {
		c.ipcache[netip.PrefixFrom(netip.AddrFrom4(k.Addr), 32)] = datapath.Identity(iv.Identity)
	}); err != nil {
		return current{}, err
	}
	if err := iterate(l.objs.IpcacheHost6, &iv, func(k bpf.PolicyIpcacheHost6) {
		c.ipcache[netip.PrefixFrom(netip.AddrFrom16(k.Addr), 128)] = datapath.Identity(iv.Identity)
	}); err != nil {
		return current{}, err
	}
	if err := iterate(l.objs.IpcacheLpm4, &iv, func(k bpf.PolicyIpcacheLpm4) {
		c.ipcache[netip.PrefixFrom(netip.AddrFrom4(k.Addr), int(k.Prefixlen))] = datapath.Identity(iv.Identity)
	}); err != nil {
		return current{}, err
	}
	if err := iterate(l.objs.IpcacheLpm6, &iv, func(k bpf.PolicyIpcacheLpm6) {
		c.ipcache[netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Prefixlen))] = datapath.Identity(iv.Identity)
	}); err != nil {
		return current{}, err
	}
	return c, nil
}

// readPolicy reads the policy map.
func (l *Loader) readPolicy() (map[policyKey]datapath.PolicyEntry, error) {
	out := make(map[policyKey]datapath.PolicyEntry)
	var (
		k bpf.PolicyPolicyKey
		v bpf.PolicyPolicyValue
	)
	it := l.objs.Policy.Iterate()
	for it.Next(&k, &v) {
		out[policyKey{endpoint: k.Endpoint, remote: datapath.Identity(k.Identity)}] = datapath.PolicyEntry{Table: v.Table, Counter: v.Counter}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("policy: iterate: %w", err)
	}
	return out, nil
}

// iterate calls f with every key of m, after reading its value into v.
func iterate[K any, V any](m *ebpf.Map, v *V, f func(K)) error {
	var k K
	it := m.Iterate()
	for it.Next(&k, v) {
		f(k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: iterate: %w", m, err)
	}
	return nil
}
