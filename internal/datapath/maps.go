package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/bpf"
)

// Maps writes the entries the loader owns into the datapath's maps. Each
// write is one map operation followed by BumpGeneration, so that no cached
// decision outlives it; a caller controls the order of writes (see the
// package doc for the order that never opens a window).
type Maps struct {
	m    *bpf.PolicyMaps
	bump *ebpf.Program
}

// NewMaps returns a writer for the maps of one loaded Policy collection
// (maps possibly pinned), whose bump_generation program it runs.
func NewMaps(objs *bpf.PolicyObjects) *Maps {
	return &Maps{m: &objs.PolicyMaps, bump: objs.BumpGeneration}
}

// BumpGeneration voids every decision to_endpoint has cached. The write
// methods call it; a caller that writes the maps another way (batch
// updates at startup) calls it after its last write, and a loader calls it
// once when it starts, in case its predecessor stopped between a write and
// its bump.
func (m *Maps) BumpGeneration() error {
	if _, err := m.bump.Run(&ebpf.RunOptions{}); err != nil {
		return fmt.Errorf("bump generation: %w", err)
	}
	return nil
}

// SetEndpoint writes the endpoint behind the host-side interface ifindex.
func (m *Maps) SetEndpoint(ifindex int, ep Endpoint) error {
	if err := m.m.Endpoints.Put(uint32(ifindex), ep.encode()); err != nil {
		return fmt.Errorf("endpoints: put ifindex %d: %w", ifindex, err)
	}
	return m.BumpGeneration()
}

// DeleteEndpoint removes the endpoint behind ifindex; packets still seen
// there are then dropped. Deleting a missing entry is not an error.
func (m *Maps) DeleteEndpoint(ifindex int) error {
	if err := m.m.Endpoints.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("endpoints: delete ifindex %d: %w", ifindex, err)
	}
	return m.BumpGeneration()
}

// ipcacheMap names the map an ipcache entry lives in.
type ipcacheMap int

const (
	ipcacheHost4 ipcacheMap = iota // hash, IPv4 /32
	ipcacheHost6                   // hash, IPv6 /128
	ipcacheLPM4                    // LPM trie, shorter IPv4 prefixes
	ipcacheLPM6                    // LPM trie, shorter IPv6 prefixes
)

// ipcacheKey returns where prefix p lives and its key: host addresses (/32,
// /128) in the hash maps, every shorter prefix, masked, in the LPM tries.
func ipcacheKey(p netip.Prefix) (ipcacheMap, any, error) {
	switch {
	case !p.IsValid():
		return 0, nil, fmt.Errorf("ipcache: invalid prefix %v", p)
	case p.Addr().Is4In6():
		return 0, nil, fmt.Errorf("ipcache: prefix %v: use the IPv4 form", p)
	case p.Addr().Zone() != "":
		return 0, nil, fmt.Errorf("ipcache: prefix %v: zones are not allowed", p)
	}
	p = p.Masked()
	switch {
	case p.Addr().Is4() && p.IsSingleIP():
		return ipcacheHost4, bpf.PolicyIpcacheHost4{Addr: p.Addr().As4()}, nil
	case p.Addr().Is4():
		return ipcacheLPM4, bpf.PolicyIpcacheLpm4{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}, nil
	case p.IsSingleIP():
		return ipcacheHost6, bpf.PolicyIpcacheHost6{Addr: p.Addr().As16()}, nil
	default:
		return ipcacheLPM6, bpf.PolicyIpcacheLpm6{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}, nil
	}
}

func (m *Maps) ipcache(which ipcacheMap) *ebpf.Map {
	return [...]*ebpf.Map{m.m.IpcacheHost4, m.m.IpcacheHost6, m.m.IpcacheLpm4, m.m.IpcacheLpm6}[which]
}

// SetIdentity maps the source prefix p to identity id. Longest prefix wins.
// p is masked; an IPv4-mapped IPv6 prefix is an error (the datapath sees
// IPv4 packets with IPv4 addresses).
func (m *Maps) SetIdentity(p netip.Prefix, id Identity) error {
	which, key, err := ipcacheKey(p)
	if err != nil {
		return err
	}
	if err := m.ipcache(which).Put(key, bpf.PolicyIpcacheValue{Identity: uint32(id)}); err != nil {
		return fmt.Errorf("ipcache: put %v: %w", p, err)
	}
	return m.BumpGeneration()
}

// DeleteIdentity removes the ipcache entry of p; the addresses fall back to
// the next shorter prefix, or world. Deleting a missing entry is not an error.
func (m *Maps) DeleteIdentity(p netip.Prefix) error {
	which, key, err := ipcacheKey(p)
	if err != nil {
		return err
	}
	if err := m.ipcache(which).Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ipcache: delete %v: %w", p, err)
	}
	return m.BumpGeneration()
}

// SetVerdictTable writes table t at index (0 to the verdicts map's size - 1).
// An array element is not replaced atomically: a program reading the table
// while it is written could see half of each. So never rewrite a table a
// policy entry points at; write the new one at a free index, repoint the
// entries (SetPolicy replaces an entry atomically), and reuse the old index
// only some time later (a program holds a table for well under a
// millisecond).
func (m *Maps) SetVerdictTable(index uint32, t VerdictTable) error {
	if err := m.m.Verdicts.Put(index, t.Encode()); err != nil {
		return fmt.Errorf("verdicts: put table %d: %w", index, err)
	}
	return m.BumpGeneration()
}

// SetPolicy points the policy of endpoint for remote identity (IdentityAny:
// every identity without an entry of its own) at verdict table e.Table, and
// has its decisions counted at e.Counter. The table must already be written,
// and the counter reset (ResetEntryCounter) unless it is the entry's own.
func (m *Maps) SetPolicy(endpoint uint32, remote Identity, e PolicyEntry) error {
	key := bpf.PolicyPolicyKey{Endpoint: endpoint, Identity: uint32(remote)}
	if err := m.m.Policy.Put(key, bpf.PolicyPolicyValue{Table: e.Table, Counter: e.Counter}); err != nil {
		return fmt.Errorf("policy: put endpoint %d identity %d: %w", endpoint, remote, err)
	}
	return m.BumpGeneration()
}

// DeletePolicy removes the policy entry of endpoint for remote identity.
// Deleting a missing entry is not an error.
func (m *Maps) DeletePolicy(endpoint uint32, remote Identity) error {
	key := bpf.PolicyPolicyKey{Endpoint: endpoint, Identity: uint32(remote)}
	if err := m.m.Policy.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("policy: delete endpoint %d identity %d: %w", endpoint, remote, err)
	}
	return m.BumpGeneration()
}

// Counters returns the packet and byte counts of every reason that has
// counted something, summed over CPUs.
func (m *Maps) Counters() (map[Reason]Counter, error) {
	out := map[Reason]Counter{}
	var per []bpf.PolicyCounter
	for i := range numReasons {
		if err := m.m.Counters.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("counters: lookup %d: %w", i, err)
		}
		var c Counter
		for _, p := range per {
			c.Packets += p.Packets
			c.Bytes += p.Bytes
		}
		if c.Packets != 0 {
			out[Reason(i)] = c
		}
	}
	return out, nil
}

// ResetEntryCounter zeroes the policy_counters slot index (1 to
// MaxEntryCounters - 1) on every CPU, before a policy entry is given it.
func (m *Maps) ResetEntryCounter(index uint32) error {
	if index == 0 || int(index) >= MaxEntryCounters {
		return fmt.Errorf("policy counters: reset %d: index out of 1-%d", index, MaxEntryCounters-1)
	}
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("policy counters: reset %d: %w", index, err)
	}
	if err := m.m.PolicyCounters.Put(index, make([]bpf.PolicyPolicyCounter, n)); err != nil {
		return fmt.Errorf("policy counters: reset %d: %w", index, err)
	}
	return nil
}

// EntryCounter returns what the policy_counters slot index holds, summed
// over CPUs. Index 0 is never counted: it reads as zero.
func (m *Maps) EntryCounter(index uint32) (EntryCounter, error) {
	var per []bpf.PolicyPolicyCounter
	if err := m.m.PolicyCounters.Lookup(index, &per); err != nil {
		return EntryCounter{}, fmt.Errorf("policy counters: lookup %d: %w", index, err)
	}
	return decodeEntryCounter(per), nil
}
