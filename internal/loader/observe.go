package loader

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/roost-net/roost/internal/datapath"
)

// Counters returns the packet and byte counts of every reason that counted
// something, summed over CPUs, since the counters map was created (it is
// pinned: restarts keep counting).
func (l *Loader) Counters() (map[datapath.Reason]datapath.Counter, error) {
	return l.maps.Counters()
}

// EntryCounter is what to_endpoint decided with one policy entry.
type EntryCounter struct {
	// Endpoint is the endpoint's name in the last Apply; empty when this
	// loader has not applied a policy with the endpoint yet.
	Endpoint   string
	EndpointID uint32 // the ifindex of its host-side interface
	// Remote is the entry's source identity; datapath.IdentityAny's entry
	// serves every source without an entry of its own.
	Remote datapath.Identity
	// Counted is false when the entry has no counter slot: every slot was
	// taken when it was written, or an older roost wrote it and no Apply
	// has given it one since. Counts is zero then.
	Counted bool
	Counts  datapath.EntryCounter
}

// EntryCounters returns the counters of every policy entry in the maps,
// sorted by endpoint id and remote identity, summed over CPUs. An entry's
// counts start when the loader gives it its slot (when it is first written)
// and go on across restarts, policy changes that keep the entry, and
// upgrades (the map is pinned). It waits for a running Apply.
func (l *Loader) EntryCounters() ([]EntryCounter, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	entries, err := l.readPolicy()
	if err != nil {
		return nil, fmt.Errorf("entry counters: %w", err)
	}
	out := make([]EntryCounter, 0, len(entries))
	for _, k := range slices.SortedFunc(maps.Keys(entries), comparePolicyKey) {
		e := entries[k]
		c := EntryCounter{Endpoint: l.names[k.endpoint], EndpointID: k.endpoint, Remote: k.remote}
		if e.Counter != 0 && int(e.Counter) < datapath.MaxEntryCounters {
			c.Counted = true
			if c.Counts, err = l.maps.EntryCounter(e.Counter); err != nil {
				return nil, fmt.Errorf("entry counters: endpoint %d identity %d: %w", k.endpoint, k.remote, err)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// ReadDrops calls fn with every drop event the programs write, until ctx
// is done; it then returns ctx.Err(). Events are consumed: with two readers
// of the same pins, each sees only part of them. fn runs on ReadDrops'
// goroutine; a record that does not decode is an error.
func (l *Loader) ReadDrops(ctx context.Context, fn func(datapath.DropEvent)) error {
	rd, err := ringbuf.NewReader(l.objs.Drops)
	if err != nil {
		return fmt.Errorf("read drops: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	defer rd.Close()
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrClosed) && ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read drops: %w", err)
		}
		ev, err := datapath.ParseDropEvent(rec.RawSample)
		if err != nil {
			return fmt.Errorf("read drops: %w", err)
		}
		fn(ev)
	}
}

// Attachment is one program attached to an endpoint's interface.
type Attachment struct {
	Ifindex   int    `json:"ifindex"`
	Interface string `json:"interface,omitempty"` // empty when the interface is gone
	// Program is "to_endpoint" or "from_endpoint".
	Program string `json:"program"`
	// Mode is AttachTCX or AttachClsact.
	Mode AttachMode `json:"mode"`
	// Hook is "egress" (to_endpoint) or "ingress" (from_endpoint).
	Hook      string         `json:"hook"`
	ProgramID ebpf.ProgramID `json:"programID"`
	// Tag is the program's tag (a hash of its instructions).
	Tag string `json:"tag,omitempty"`
	// Current reports whether the program is this loader's; after an
	// upgrade, false until Apply.
	Current bool `json:"current"`
	// LinkID and Pin are set for TCX links; a LinkID of 0 is a pinned link
	// whose interface is gone.
	LinkID link.ID `json:"linkID,omitempty"`
	Pin    string  `json:"pin,omitempty"`
}

// Attachments lists the programs attached to the interfaces of the
// endpoints entries and the link pins, by ifindex and program.
func (l *Loader) Attachments() ([]Attachment, error) {
	l.mu.Lock() // the netlink handle serves one request at a time
	defer l.mu.Unlock()
	cur, err := l.readState()
	if err != nil {
		return nil, fmt.Errorf("attachments: %w", err)
	}
	ifindexes := make(map[uint32]bool)
	for i := range cur.endpoints {
		ifindexes[i] = true
	}
	entries, err := os.ReadDir(l.linksDir())
	if err != nil {
		return nil, fmt.Errorf("attachments: %w", err)
	}
	for _, e := range entries {
		if n, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			ifindexes[uint32(n)] = true
		}
	}
	var out []Attachment
	err = l.inNetNS(func() error {
		for _, ifindex := range slices.Sorted(maps.Keys(ifindexes)) {
			as, err := l.attachmentsOf(int(ifindex))
			if err != nil {
				return err
			}
			out = append(out, as...)
		}
		return nil
	})
	return out, err
}

// attachmentsOf returns the TCX links and clsact filters of both programs
// on ifindex. Runs in the namespace.
func (l *Loader) attachmentsOf(ifindex int) ([]Attachment, error) {
	name := ""
	nlLink, err := l.nl.LinkByIndex(ifindex)
	if err == nil {
		name = nlLink.Attrs().Name
	}
	var out []Attachment
	for _, h := range hooks {
		hookName := "egress"
		if h.tcx == ebpf.AttachTCXIngress {
			hookName = "ingress"
		}
		cur, err := programID(l.program(h))
		if err != nil {
			return nil, err
		}
		base := Attachment{Ifindex: ifindex, Interface: name, Program: h.prog, Hook: hookName}
		pin := l.linkPin(ifindex, h)
		if lk, err := link.LoadPinnedLink(pin, nil); err == nil {
			info, err := lk.Info()
			lk.Close()
			if err != nil {
				return nil, fmt.Errorf("pinned link %s: %w", pin, err)
			}
			a := base
			a.Mode, a.Pin, a.ProgramID, a.Current = AttachTCX, pin, info.Program, info.Program == cur
			if tcx := info.TCX(); tcx != nil && tcx.Ifindex != 0 {
				a.LinkID = info.ID
			}
			a.Tag = programTag(info.Program)
			out = append(out, a)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("load pinned link %s: %w", pin, err)
		}
		if nlLink == nil {
			continue
		}
		fs, err := l.clsactFilters(nlLink, h)
		if err != nil {
			continue // no clsact qdisc
		}
		for _, f := range fs {
			a := base
			a.Mode, a.ProgramID, a.Tag = AttachClsact, ebpf.ProgramID(f.Id), f.Tag
			a.Current = a.ProgramID == cur
			out = append(out, a)
		}
	}
	return out, nil
}

// programTag returns the tag of the program with id, or "" if it cannot
// be read.
func programTag(id ebpf.ProgramID) string {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return ""
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return ""
	}
	return info.Tag
}
