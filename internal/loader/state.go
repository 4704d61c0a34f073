package loader

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/datapath"
)

// readTables rebuilds the table allocator from the maps: the tables in use
// are those the policy entries point at.
func (l *Loader) readTables() (*tables, error) {
	t := newTables(l.objs.Verdicts.MaxEntries(), now)
	var (
		k bpf.PolicyPolicyKey
		v bpf.PolicyPolicyValue
	)
	it := l.objs.Policy.Iterate()
	for it.Next(&k, &v) {
		if _, ok := t.content(v.Table); ok {
			continue
		}
		if v.Table >= t.size {
			// The datapath ignores such an entry (no table: default deny);
			// Apply replaces or deletes it.
			continue
		}
		var vt bpf.PolicyVerdictTable
		if err := l.objs.Verdicts.Lookup(v.Table, &vt); err != nil {
			return nil, fmt.Errorf("verdicts: lookup %d: %w", v.Table, err)
		}
		t.adopt(v.Table, vt)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("policy: iterate: %w", err)
	}
	return t, nil
}

// current is what the maps hold now: endpoint entries, policy entries
// (with their table index) and the ipcache.
type current struct {
	endpoints map[uint32]datapath.Endpoint
	policy    map[policyKey]uint32
	ipcache   map[netip.Prefix]datapath.Identity
}

// readState reads the endpoints, policy and ipcache maps.
func (l *Loader) readState() (current, error) {
	c := current{
		endpoints: make(map[uint32]datapath.Endpoint),
		policy:    make(map[policyKey]uint32),
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

	var (
		pk bpf.PolicyPolicyKey
		pv bpf.PolicyPolicyValue
	)
	it = l.objs.Policy.Iterate()
	for it.Next(&pk, &pv) {
		c.policy[policyKey{endpoint: pk.Endpoint, remote: datapath.Identity(pk.Identity)}] = pv.Table
	}
	if err := it.Err(); err != nil {
		return current{}, fmt.Errorf("policy: iterate: %w", err)
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
