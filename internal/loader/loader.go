// Package loader loads roost's eBPF policy programs (package bpf), pins
// their maps and links on a BPF filesystem, attaches them to the host side
// of every local endpoint's interface, and turns a compiled policy
// (policy.Resolved) into map entries. It is the core of roost-loader.
//
// # Pins
//
// Under Options.BPFFS (/sys/fs/bpf/roost in production):
//
//	maps/<name>                  every map of bpf/policy.c except flow_cache
//	links/<ifindex>/to_endpoint  TCX link at the interface's egress hook
//	links/<ifindex>/from_endpoint TCX link at the interface's ingress hook
//
// flow_cache and the .bss map holding the generation counter belong to one
// loaded collection and are never pinned (see package datapath). Open adopts
// the pinned maps, creates the missing ones, and removes map pins that this
// version of roost does not know; Apply removes the link pins of interfaces
// that are no longer local endpoints. Programs are not pinned: the links
// hold them.
//
// # Restart and upgrade
//
// Close never detaches anything: while no loader runs, the pinned links keep
// the last programs enforcing with the pinned maps. Open loads the programs
// of this binary (or those of Options.Spec) anew over the pinned maps
// (those whose layout this build changed start anew: see Map layouts);
// Apply writes the map changes, then moves every existing link to the new
// programs with link.Update, which swaps the program atomically: there is
// no moment with no program attached, and no packet is judged by anything
// but the old or the new programs over the same maps. Until its link moves,
// an old program keeps the flow cache of its own collection, which the new
// loader cannot void: between the new loader's first map write and the link
// update, a flow whose decision the old program cached is still decided by
// the policy before the write (the old policy, never neither).
//
// # Map layouts
//
// A build may change a map's layout (key or value size, type, size limit).
// Open then cannot adopt the pinned map. When the map's entries are all
// derived from the policy and the endpoints (endpoints, the ipcache maps,
// policy, verdicts, policy_counters), Open moves the pins of all of those
// aside and creates them anew, empty: the attached programs of the old build
// keep the old maps, as one consistent set, while Apply fills the new ones
// and only then moves the links, so enforcement has no gap. Counters and
// the drop ring of another layout start over. Conntrack and fragments hold
// state that no policy can restore: pinned with another layout they make
// Open fail (ebpf.ErrMapIncompatible, naming the map), and nothing changes.
//
// # Endpoints
//
// A local endpoint is one whose first address the kernel routes with a
// host route (/32 or /128, no gateway) to an interface that is not the
// loopback: the host side of its veth. Its endpoint id, in policy and
// conntrack keys, is that interface's ifindex, which stays the same as long
// as the veth exists (a recreated veth is a new endpoint).
//
// # Order of writes
//
// Apply adds what the new policy allows before it removes what only the old
// one allowed, and never leaves a window that fails open: new verdict tables
// are written at free indices (a table an entry points at is never
// rewritten), then policy entries are added or repointed, then endpoint
// entries written, then ipcache entries added or changed; then links are
// moved or attached (from_endpoint before to_endpoint, each interface's
// endpoint entry already written, since an unknown interface drops
// everything); then the interfaces of endpoints that are gone are detached
// and their entries deleted; then stale ipcache and policy entries are
// deleted and tables no entry points at are released.
//
// Every enforcing endpoint gets a wildcard entry (IdentityAny), with the
// empty table when no rule is for any identity: it denies exactly as no
// entry would, and counts those denials.
//
// # Counters
//
// Each policy entry names a slot of the pinned policy_counters map, where
// to_endpoint counts what the entry decided (EntryCounters). Apply gives a
// new entry a free slot, reset before the entry names it, and the entry
// keeps it as long as it exists, across policy changes (a new table),
// restarts and upgrades; a deleted entry's slot is reused only after a
// grace period, and last. Slots are limited (datapath.MaxEntryCounters):
// an entry written when none is free is not counted, and gets one at a
// later Apply. Entries from a roost before per-entry counters name none
// (slot 0); the first Apply gives them one.
//
// Each map write is atomic, but Apply as a whole is not: while it runs, a
// packet may meet some entries old and others new. A source address whose
// identity changes is judged by the new policy for its old identity until
// its own ipcache entry changes, which can briefly let through what neither
// policy allows for that address.
//
// # Attachment
//
// With TCX (Linux 6.6+) both programs attach at the head of the chain
// (link.Head), so that no other program decides before roost. On kernels
// without TCX (or with Options.Attach set to AttachClsact) they attach as
// direct-action bpf filters of a clsact qdisc, priority 1, handle 1, named
// roost-to_endpoint and roost-from_endpoint. Such filters live in the
// qdisc, not on the BPF filesystem: nothing is pinned for them; the loader
// finds its filters by name and swaps their program with an atomic
// tc filter replace. When TCX becomes available, the next Apply attaches
// with TCX and only then deletes the clsact filters.
package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/datapath"
)

// Log field names.
const (
	fieldBPFFS     = "bpffs"
	fieldEndpoint  = "endpoint"
	fieldEntries   = "entries"
	fieldIfindex   = "ifindex"
	fieldInterface = "interface"
	fieldMode      = "mode"
	fieldPin       = "pin"
	fieldReason    = "reason"
	fieldProgram   = "program"
)

// AttachMode selects how the programs attach to interfaces.
type AttachMode int

const (
	// AttachAuto uses TCX when the kernel has it, else clsact.
	AttachAuto AttachMode = iota
	// AttachTCX uses TCX links only (Linux 6.6+).
	AttachTCX
	// AttachClsact uses clsact bpf filters only.
	AttachClsact
)

// String returns "auto", "tcx" or "clsact".
func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachTCX:
		return "tcx"
	case AttachClsact:
		return "clsact"
	}
	return fmt.Sprintf("attach-mode-%d", int(m))
}

// MarshalText returns the mode's name.
func (m AttachMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// Options configures a Loader.
type Options struct {
	// BPFFS is the directory of the loader's pins, on a mounted BPF
	// filesystem; it is created if missing. Production: /sys/fs/bpf/roost.
	BPFFS string
	// NetNS is the path of the network namespace whose interfaces and
	// routes the loader works with, such as /var/run/netns/node1; empty
	// means the namespace the process runs in.
	NetNS string
	// Attach selects TCX, clsact or (the zero value) whichever the kernel
	// supports.
	Attach AttachMode
	// Log receives what the loader does; nil discards it.
	Log logrus.FieldLogger
	// Spec returns the programs to load, a fresh spec on every call
	// (loading changes it); nil means package bpf's (bpf.LoadPolicy). An
	// upgrade is a loader opened with a newer spec over the same pins;
	// tests pass a modified spec.
	Spec func() (*ebpf.CollectionSpec, error)
}

// Loader owns roost's pinned eBPF objects under one BPF filesystem
// directory. Its methods may be called from several goroutines (Apply,
// Locate, Attachments and EntryCounters take turns; Counters and ReadDrops
// run alongside), but not after Close.
type Loader struct {
	opts Options
	log  logrus.FieldLogger
	lock *os.File // flock on the BPFFS directory

	objs bpf.PolicyObjects
	maps *datapath.Maps

	ns     netns.NsHandle // -1 (netns.None) for the process's namespace
	nl     *netlink.Handle
	useTCX bool

	mu       sync.Mutex // serializes Apply
	tables   *tables
	counters *counterSlots
	// names are the names of the endpoints of the last Apply, by id.
	names map[uint32]string
}

// Sentinel errors of Open.
var (
	// ErrNotBPFFS: the pin directory is not on a mounted BPF filesystem.
	ErrNotBPFFS = errors.New("not on a BPF filesystem")
	// ErrBusy: another loader holds the pin directory.
	ErrBusy = errors.New("pin directory in use by another loader")
	// ErrKernelFeature: the kernel lacks something the programs need.
	ErrKernelFeature = errors.New("kernel lacks a feature roost needs")
)

// Open loads the programs (o.Spec) and adopts (or creates) the pinned maps
// under o.BPFFS. It removes the memlock limit, checks the kernel's features,
// and runs bump_generation once. It attaches nothing: Apply does.
//
// Errors wrap ErrNotBPFFS (with how to mount one), ErrBusy,
// ErrKernelFeature (naming the feature), ebpf.ErrMapIncompatible (a pinned
// conntrack or fragments map of another layout: naming the map, and what to
// do), or *ebpf.VerifierError (its message carries the whole verifier log).
func Open(o Options) (*Loader, error) {
	if o.BPFFS == "" {
		return nil, errors.New("open loader: no BPF filesystem directory given")
	}
	o.BPFFS = filepath.Clean(o.BPFFS)
	if o.Log == nil {
		discard := logrus.New()
		discard.Out = nopWriter{}
		o.Log = discard
	}
	if o.Spec == nil {
		o.Spec = bpf.LoadPolicy
	}
	if err := prepareBPFFS(o.BPFFS); err != nil {
		return nil, err
	}
	lock, err := lockDir(o.BPFFS)
	if err != nil {
		return nil, err
	}
	l := &Loader{opts: o, log: o.Log.WithField(fieldBPFFS, o.BPFFS), lock: lock, ns: netns.None()}
	if err := l.open(); err != nil {
		l.closeAll()
		return nil, err
	}
	l.log.WithField(fieldMode, l.mode()).Info("loader open")
	return l, nil
}

func (l *Loader) open() error {
	if err := checkKernel(); err != nil {
		return err
	}
	if err := loadObjects(&l.objs, l.opts.Spec, l.opts.BPFFS, l.log); err != nil {
		return err
	}
	l.maps = datapath.NewMaps(&l.objs)
	// A predecessor may have stopped between a write and its bump; this
	// collection's cache is empty anyway, but a bump also turns it on.
	if err := l.maps.BumpGeneration(); err != nil {
		return fmt.Errorf("open loader: %w", err)
	}
	if l.opts.NetNS != "" {
		ns, err := netns.GetFromPath(l.opts.NetNS)
		if err != nil {
			return fmt.Errorf("open loader: network namespace %s: %w", l.opts.NetNS, err)
		}
		l.ns = ns
	}
	var err error
	if l.ns.IsOpen() {
		l.nl, err = netlink.NewHandleAt(l.ns)
	} else {
		l.nl, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("open loader: netlink: %w", err)
	}
	if err := l.probeAttach(); err != nil {
		return err
	}
	t, s, err := l.readAllocators()
	if err != nil {
		return fmt.Errorf("open loader: %w", err)
	}
	l.tables, l.counters = t, s
	return nil
}

// Close releases the loader's file descriptors and its hold on the pin
// directory. It detaches nothing: the pinned links keep enforcing.
func (l *Loader) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.closeAll()
	l.log.Info("loader closed")
	return err
}

func (l *Loader) closeAll() error {
	var errs []error
	if err := l.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close bpf objects: %w", err))
	}
	l.objs = bpf.PolicyObjects{}
	if l.nl != nil {
		l.nl.Close()
		l.nl = nil
	}
	if l.ns.IsOpen() {
		if err := l.ns.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close network namespace: %w", err))
		}
		l.ns = netns.None()
	}
	if l.lock != nil {
		if err := l.lock.Close(); err != nil {
			errs = append(errs, fmt.Errorf("unlock %s: %w", l.opts.BPFFS, err))
		}
		l.lock = nil
	}
	return errors.Join(errs...)
}

func (l *Loader) mode() AttachMode {
	if l.useTCX {
		return AttachTCX
	}
	return AttachClsact
}

// linksDir is where the link pins live (map pins: see loadObjects).
func (l *Loader) linksDir() string { return filepath.Join(l.opts.BPFFS, "links") }

// nopWriter discards log output.
type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// now is the clock of the table and counter slot allocators.
func now() time.Time { return time.Now() }
