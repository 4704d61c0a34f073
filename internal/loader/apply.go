package loader

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/policy"
)

// Action is what Apply did to one endpoint's interface.
type Action string

// Actions.
const (
	// Attached: the programs were attached to the interface.
	Attached Action = "attached"
	// Updated: existing attachments were moved to this loader's programs.
	Updated Action = "updated"
	// Detached: the interface is no longer an endpoint's; its programs
	// were detached and its entries deleted.
	Detached Action = "detached"
	// Failed: attaching failed (see Err); the next Apply tries again.
	Failed Action = "failed"
)

// EndpointChange is what Apply did to the interface of one endpoint.
type EndpointChange struct {
	// Name is the endpoint's name; empty for an interface whose endpoint
	// the loader no longer knows (detached).
	Name      string `json:"name,omitempty"`
	Ifindex   int    `json:"ifindex"`
	Interface string `json:"interface,omitempty"` // empty when the interface is gone
	Action    Action `json:"action"`
	// Mode is AttachTCX or AttachClsact, for Attached and Updated.
	Mode AttachMode `json:"mode,omitzero"`
	// Error says why attaching Failed.
	Error string `json:"error,omitempty"`
}

// Skipped is an endpoint of the policy that Apply does not enforce on this
// node, and why.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Counts are the map writes of one Apply: entries set (added or changed)
// and deleted, per map, and verdict tables written and released.
type Counts struct {
	EndpointsSet     int `json:"endpointsSet"`
	EndpointsDeleted int `json:"endpointsDeleted"`
	PolicySet        int `json:"policySet"`
	PolicyDeleted    int `json:"policyDeleted"`
	IPCacheSet       int `json:"ipcacheSet"`
	IPCacheDeleted   int `json:"ipcacheDeleted"`
	TablesWritten    int `json:"tablesWritten"`
	TablesReleased   int `json:"tablesReleased"`
}

// Report is what one Apply changed, sorted by endpoint name and ifindex.
type Report struct {
	Endpoints []EndpointChange `json:"endpoints,omitempty"`
	Skipped   []Skipped        `json:"skipped,omitempty"`
	Counts    Counts           `json:"counts"`
}

// Changed reports whether Apply wrote any map entry or attached, moved or
// detached any program.
func (r Report) Changed() bool {
	return len(r.Endpoints) > 0 || r.Counts != Counts{}
}

// Apply makes the maps and attachments enforce res: the ipcache of res, and
// the ingress policy of each endpoint of res (res.Endpoints, the local ones)
// whose first address the kernel routes to a host-side interface of this
// node. Endpoints that route elsewhere are skipped and reported. Interfaces
// that were endpoints before and are not in res any more are detached and
// their pins and entries removed. The package doc gives the order of the
// writes.
//
// Apply validates everything before it writes: a policy that does not fit
// the datapath (a verdict table over datapath.MaxBounds bounds) is an error
// naming the endpoint, and nothing is written. A failure to attach one
// endpoint is reported in its EndpointChange and joined into the returned
// error after the rest was applied; any other error stops Apply where it
// happened, which leaves every entry old or new, and the next Apply
// completes the change. The Report tells what was done either way.
func (l *Loader) Apply(res policy.Resolved) (Report, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var rep Report

	locals, skipped, err := l.locals(res.Endpoints)
	if err != nil {
		return rep, fmt.Errorf("apply: %w", err)
	}
	rep.Skipped = skipped
	want, err := desiredState(res.IPCache, locals)
	if err != nil {
		return rep, fmt.Errorf("apply: %w", err)
	}
	cur, err := l.readState()
	if err != nil {
		return rep, fmt.Errorf("apply: read maps: %w", err)
	}
	names := make(map[uint32]local, len(locals))
	for _, ep := range locals {
		names[uint32(ep.ifindex)] = ep
	}

	written, err := l.writeAdditions(want, cur, &rep.Counts)
	if err != nil {
		return rep, fmt.Errorf("apply: %w", err)
	}

	// Attach or move the programs of every local endpoint.
	var attachErrs []error
	err = l.inNetNS(func() error {
		for _, ifindex := range slices.Sorted(maps.Keys(want.endpoints)) {
			ep := names[ifindex]
			change := EndpointChange{Name: ep.Name, Ifindex: ep.ifindex, Interface: ep.ifname}
			action, mode, err := l.attach(ep.ifindex)
			log := l.log.WithField(fieldEndpoint, ep.Name).WithField(fieldInterface, ep.ifname).WithField(fieldIfindex, ep.ifindex)
			switch {
			case err != nil:
				change.Action, change.Error = Failed, err.Error()
				attachErrs = append(attachErrs, fmt.Errorf("endpoint %q: %w", ep.Name, err))
				log.WithError(err).Error("attach failed")
			case action != "":
				change.Action, change.Mode = action, mode
				log.WithField(fieldMode, mode).Info("endpoint " + string(action))
			}
			if change.Action != "" {
				rep.Endpoints = append(rep.Endpoints, change)
			}
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("apply: %w", err)
	}

	// Detach what is no longer an endpoint, then delete its entries.
	pinned, err := l.pinnedInterfaces()
	if err != nil {
		return rep, fmt.Errorf("apply: %w", err)
	}
	gone := make(map[uint32]bool)
	for ifindex := range cur.endpoints {
		gone[ifindex] = true
	}
	for _, ifindex := range pinned {
		gone[ifindex] = true
	}
	err = l.inNetNS(func() error {
		for _, ifindex := range slices.Sorted(maps.Keys(gone)) {
			if _, ok := want.endpoints[ifindex]; ok {
				continue
			}
			name, err := l.detach(int(ifindex))
			if err != nil {
				return fmt.Errorf("detach interface %d: %w", ifindex, err)
			}
			if _, ok := cur.endpoints[ifindex]; ok {
				if err := l.maps.DeleteEndpoint(int(ifindex)); err != nil {
					return err
				}
				rep.Counts.EndpointsDeleted++
			}
			rep.Endpoints = append(rep.Endpoints, EndpointChange{Ifindex: int(ifindex), Interface: name, Action: Detached})
			l.log.WithField(fieldIfindex, ifindex).WithField(fieldInterface, name).Info("endpoint detached")
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("apply: %w", err)
	}

	if err := l.deleteStale(want, cur, written, &rep.Counts); err != nil {
		return rep, fmt.Errorf("apply: %w", err)
	}
	l.names = make(map[uint32]string, len(names))
	for id, ep := range names {
		l.names[id] = ep.Name
	}
	slices.SortFunc(rep.Endpoints, func(a, b EndpointChange) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Ifindex, b.Ifindex))
	})
	return rep, errors.Join(attachErrs...)
}

// locals finds the host-side interface of every endpoint policy; those
// without one are skipped, as is any endpoint whose interface an endpoint
// earlier by name already has.
func (l *Loader) locals(eps []policy.EndpointPolicy) ([]local, []Skipped, error) {
	var (
		out     []local
		skipped []Skipped
	)
	owner := make(map[int]string)
	for _, ep := range slices.SortedFunc(slices.Values(eps), func(a, b policy.EndpointPolicy) int { return cmp.Compare(a.Name, b.Name) }) {
		if len(ep.IPs) == 0 {
			skipped = append(skipped, Skipped{Name: ep.Name, Reason: "no address"})
			continue
		}
		ip := firstIP(ep.IPs)
		ifindex, ifname, err := l.hostInterface(ip)
		switch {
		case errors.Is(err, errNotLocal):
			skipped = append(skipped, Skipped{Name: ep.Name, Reason: err.Error()})
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("endpoint %q: %w", ep.Name, err)
		}
		if other, ok := owner[ifindex]; ok {
			skipped = append(skipped, Skipped{Name: ep.Name, Reason: fmt.Sprintf("its interface %s is endpoint %q's", ifname, other)})
			continue
		}
		owner[ifindex] = ep.Name
		out = append(out, local{EndpointPolicy: ep, ifindex: ifindex, ifname: ifname})
	}
	for _, s := range skipped {
		l.log.WithField(fieldEndpoint, s.Name).WithField(fieldReason, s.Reason).Info("endpoint skipped")
	}
	return out, skipped, nil
}

// firstIP returns the lowest of ips (IPv4 before IPv6), the address whose
// route locates an endpoint.
func firstIP(ips []netip.Addr) netip.Addr { return slices.MinFunc(ips, netip.Addr.Compare) }

// writeAdditions writes, in this order, the new verdict tables, the new
// and changed policy entries (with the counter slots of new entries reset
// before), endpoint entries and ipcache entries. It returns the value of
// every policy entry it wrote.
func (l *Loader) writeAdditions(want state, cur current, n *Counts) (map[policyKey]datapath.PolicyEntry, error) {
	// Tables and policy entries, endpoint by endpoint, identity by identity.
	keys := slices.SortedFunc(maps.Keys(want.policy), comparePolicyKey)
	written := make(map[policyKey]datapath.PolicyEntry, len(keys))
	uncounted := 0
	for _, k := range keys {
		tk := want.policy[k]
		have, exists := cur.policy[k]
		var e datapath.PolicyEntry
		if t, ok := l.tables.content(have.Table); exists && ok && t == tk {
			e.Table = have.Table
		} else {
			i, err := l.table(tk, n)
			if err != nil {
				return nil, err
			}
			e.Table = i
		}
		c, err := l.counter(k)
		switch {
		case errors.Is(err, ErrNoFreeCounter):
			uncounted++
		case err != nil:
			return nil, err
		}
		e.Counter = c
		if exists && have == e {
			continue
		}
		written[k] = e
	}
	if uncounted > 0 {
		l.log.WithField(fieldEntries, uncounted).Warn("policy entries not counted: every policy counter is in use")
	}
	for _, k := range keys {
		e, ok := written[k]
		if !ok {
			continue
		}
		if err := l.maps.SetPolicy(k.endpoint, k.remote, e); err != nil {
			return nil, err
		}
		n.PolicySet++
	}
	for _, ifindex := range slices.Sorted(maps.Keys(want.endpoints)) {
		ep := want.endpoints[ifindex]
		if have, ok := cur.endpoints[ifindex]; ok && have == ep {
			continue
		}
		if err := l.maps.SetEndpoint(int(ifindex), ep); err != nil {
			return nil, err
		}
		n.EndpointsSet++
	}
	for _, p := range slices.SortedFunc(maps.Keys(want.ipcache), comparePrefix) {
		id := want.ipcache[p]
		if have, ok := cur.ipcache[p]; ok && have == id {
			continue
		}
		if err := l.maps.SetIdentity(p, id); err != nil {
			return nil, err
		}
		n.IPCacheSet++
	}
	return written, nil
}

// table returns the index of a verdict table in use equal to tk, or writes
// tk at a free index.
func (l *Loader) table(tk tableKey, n *Counts) (uint32, error) {
	if i, ok := l.tables.find(tk); ok {
		return i, nil
	}
	i, err := l.tables.alloc()
	if err != nil {
		return 0, err
	}
	vt, err := datapath.DecodeVerdictTable(&tk)
	if err != nil {
		return 0, err
	}
	if err := l.maps.SetVerdictTable(i, vt); err != nil {
		return 0, err
	}
	l.tables.adopt(i, tk)
	n.TablesWritten++
	return i, nil
}

// counter returns the counter slot of policy entry k: its own, or a free
// one, reset. It returns an error wrapping ErrNoFreeCounter, and slot 0 (not
// counted), when none is free.
func (l *Loader) counter(k policyKey) (uint32, error) {
	if c, ok := l.counters.get(k); ok {
		return c, nil
	}
	c, err := l.counters.alloc(k)
	if err != nil {
		return 0, err
	}
	if err := l.maps.ResetEntryCounter(c); err != nil {
		l.counters.retain(func(o policyKey) bool { return o != k })
		return 0, err
	}
	return c, nil
}

// deleteStale deletes the ipcache and policy entries that want does not
// have, then releases the verdict tables and counter slots no policy entry
// names any more (written holds the entries writeAdditions changed).
func (l *Loader) deleteStale(want state, cur current, written map[policyKey]datapath.PolicyEntry, n *Counts) error {
	for _, p := range slices.SortedFunc(maps.Keys(cur.ipcache), comparePrefix) {
		if _, ok := want.ipcache[p]; ok {
			continue
		}
		if err := l.maps.DeleteIdentity(p); err != nil {
			return err
		}
		n.IPCacheDeleted++
	}
	for _, k := range slices.SortedFunc(maps.Keys(cur.policy), comparePolicyKey) {
		if _, ok := want.policy[k]; ok {
			continue
		}
		if err := l.maps.DeletePolicy(k.endpoint, k.remote); err != nil {
			return err
		}
		n.PolicyDeleted++
	}
	keep := make(map[uint32]bool, len(want.policy))
	for k := range want.policy {
		if e, ok := written[k]; ok {
			keep[e.Table] = true
		} else {
			keep[cur.policy[k].Table] = true
		}
	}
	n.TablesReleased += l.tables.release(keep)
	l.counters.retain(func(k policyKey) bool {
		_, ok := want.policy[k]
		return ok
	})
	return nil
}

func comparePolicyKey(a, b policyKey) int {
	return cmp.Or(cmp.Compare(a.endpoint, b.endpoint), cmp.Compare(a.remote, b.remote))
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
