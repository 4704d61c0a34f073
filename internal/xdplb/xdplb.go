// Package xdplb is roost's load balancer at the uplink (north-south): it
// loads bpf/lb.c, attaches lb_xdp at XDP and lb_reply at TCX egress of the
// node's uplinks, and writes the frontends (VIPs and NodePorts), their
// backends and one Maglev table per frontend into the programs' maps.
//
// A packet to a frontend gets the backend its flow had (lb_conns), or the
// one the frontend's Maglev table names for its hash; a local backend gets
// it by DNAT, a backend on another node encapsulated (IPIP, IPv6-in-IPv6)
// through the fabric, and the reply leaves the backend's node directly with
// the frontend as its source (see bpf/lb.c and docs/services.md).
//
// Sync writes a whole desired set in place: backends first, then each
// frontend's new Maglev table, swapped in whole, then the frontend, and
// what is gone last, so no packet sees a table naming a backend that is
// not there. Backend ids are never reused while the maps live, so a flow
// remembered in lb_conns can only ever lead to the backend it had.
package xdplb

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/lbkey"
	"github.com/roost-net/roost/internal/maglev"
)

// Protocols a frontend can have.
const (
	TCP = lbkey.TCP
	UDP = lbkey.UDP
)

// Frontend is where external clients connect: a VIP or a node address, a
// port and a protocol. A node port also has a frontend on the unspecified
// address (0.0.0.0 or ::): the packets another node encapsulated to one of
// this node's backends find their frontend there, since they are to that
// other node's address.
type Frontend = lbkey.Frontend

// Backend is one backend of a frontend.
type Backend struct {
	Addr netip.AddrPort
	// Local says the backend runs on this node: it gets its packets by
	// DNAT, not encapsulated.
	Local bool
	// Active backends take new flows (they fill the Maglev table); the
	// others (terminating) keep the flows they have until they leave.
	Active bool
}

// Entry is one frontend and its backends.
type Entry struct {
	Frontend Frontend
	// VIP says the address is a VIP, not a node's own: traffic to it
	// that no frontend serves is dropped.
	VIP bool
	// Affinity (sessionAffinity: ClientIP) sends all of a client's flows
	// to one backend: the Maglev table is looked up by the hash of the
	// client's address alone, so every node agrees, and a client keeps
	// its backend for as long as the backends stay the same (there is no
	// timeout).
	Affinity bool
	Backends []Backend
}

// Config is what the programs need besides the frontends.
type Config struct {
	// MaglevSize is the size of every frontend's Maglev table, a prime
	// (maglev.CheckSize); 0 for maglev.DefaultSize.
	MaglevSize uint64
	// Source4 and Source6 are the outer source addresses of packets
	// encapsulated to a backend on another node, this node's own; a
	// family without one cannot reach remote backends (its packets to
	// them are dropped and counted as errors).
	Source4, Source6 netip.Addr
}

func (e Entry) check() error {
	f := e.Frontend
	if !f.Addr.IsValid() || (f.Addr.IsUnspecified() && e.VIP) {
		return fmt.Errorf("frontend %s: no address", f)
	}
	if f.Proto != TCP && f.Proto != UDP {
		return fmt.Errorf("frontend %s: protocol %d is neither TCP nor UDP", f, f.Proto)
	}
	if f.Port == 0 {
		return fmt.Errorf("frontend %s: port 0", f)
	}
	seen := map[netip.Addr]bool{}
	for _, b := range e.Backends {
		a := b.Addr.Addr()
		if !b.Addr.IsValid() || b.Addr.Port() == 0 || a.IsUnspecified() {
			return fmt.Errorf("frontend %s: backend %s: not an address and port", f, b.Addr)
		}
		if a.Unmap().Is4() != f.Addr.Unmap().Is4() {
			return fmt.Errorf("frontend %s: backend %s is of the other address family", f, b.Addr)
		}
		if seen[a.Unmap()] {
			return fmt.Errorf("frontend %s: backend address %s twice", f, a)
		}
		seen[a.Unmap()] = true
	}
	return nil
}

// backendKey identifies a backend in lb_backends.
type backendKey struct {
	addr  netip.AddrPort
	local bool
}

// LB is the loaded programs and maps, and the links that attach them.
type LB struct {
	objs  bpf.LbObjects
	spec  *ebpf.MapSpec // lb_maglev's inner map
	size  uint64
	links map[string]link.Link // by pin name
	modes map[string]string    // interface -> "native" or "generic"
	pins  string

	ids      map[Frontend]uint32
	nextID   uint32
	backends map[backendKey]uint32
	nextBE   uint32
	cur      map[Frontend]Entry
	// adopted are frontends found in pinned maps, which the first Sync
	// rewrites whole whatever it asks for.
	adopted map[Frontend]bool
}

// Load loads lb.c's programs and maps, pinning nothing.
func Load(cfg Config) (*LB, error) { return open("", cfg) }

// Open loads lb.c's programs with their maps pinned under dir/maps, a
// directory on a BPF file system: the pins a previous run left are adopted
// with what they hold (the flows' backends, the reverse translations, the
// frontends), so a restart or an upgrade breaks no flow. Attach then moves
// the links pinned under dir/links to the new programs. Close keeps every
// pin: the programs stay attached and serving while no loader runs; Unpin
// removes them.
func Open(dir string, cfg Config) (*LB, error) {
	if dir == "" {
		return nil, errors.New("uplink load balancer: no pin directory")
	}
	for _, d := range []string{dir, filepath.Join(dir, "maps"), filepath.Join(dir, "links")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("uplink load balancer: %w", err)
		}
	}
	return open(dir, cfg)
}

func open(dir string, cfg Config) (*LB, error) {
	size := cfg.MaglevSize
	if size == 0 {
		size = maglev.DefaultSize
	}
	if err := maglev.CheckSize(size); err != nil {
		return nil, fmt.Errorf("uplink load balancer: %w", err)
	}
	spec, err := bpf.LoadLb()
	if err != nil {
		return nil, fmt.Errorf("uplink load balancer: %w", err)
	}
	outer := spec.Maps[bpf.LbMapLbMaglev]
	outer.InnerMap.MaxEntries = uint32(size)
	lb := &LB{pins: dir, size: size, spec: outer.InnerMap.Copy(), links: map[string]link.Link{}, modes: map[string]string{},
		ids: map[Frontend]uint32{}, nextID: 1, backends: map[backendKey]uint32{}, nextBE: 1, cur: map[Frontend]Entry{}, adopted: map[Frontend]bool{}}
	var opts ebpf.CollectionOptions
	if dir != "" {
		for _, m := range spec.Maps {
			if strings.HasPrefix(m.Name, "lb_") {
				m.Pinning = ebpf.PinByName
			}
		}
		opts.Maps.PinPath = filepath.Join(dir, "maps")
		if err := dropResizedTables(filepath.Join(dir, "maps", bpf.LbMapLbMaglev), size); err != nil {
			return nil, err
		}
	}
	if err := spec.LoadAndAssign(&lb.objs, &opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load uplink load balancer: %+v", ve)
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load uplink load balancer: a map pinned under %s has another layout (from another roost version); "+
				"remove %s to start afresh (established flows through the uplink lose their backends): %w", dir, dir, err)
		}
		return nil, fmt.Errorf("load uplink load balancer (pins under %s): %w", dir, err)
	}
	if err := lb.configure(cfg); err != nil {
		lb.objs.Close()
		return nil, err
	}
	if err := lb.adopt(); err != nil {
		lb.objs.Close()
		return nil, err
	}
	return lb, nil
}

// dropResizedTables removes the pinned lb_maglev when its tables have
// another size than size: the kernel refuses inner maps of another size,
// and user space rebuilds every table on the first Sync anyway.
func dropResizedTables(pin string, size uint64) error {
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("uplink load balancer: %s: %w", pin, err)
	}
	defer m.Close()
	var (
		k  uint32
		id ebpf.MapID
	)
	same := true
	if m.Iterate().Next(&k, &id) {
		if inner, err := ebpf.NewMapFromID(id); err == nil {
			same = uint64(inner.MaxEntries()) == size
			inner.Close()
		}
	}
	if same {
		return nil
	}
	return os.Remove(pin)
}

// configure writes cfg's source addresses into lb_config.
func (lb *LB) configure(cfg Config) error {
	var c bpf.LbConfig
	if a := cfg.Source4; a.IsValid() {
		if !a.Unmap().Is4() {
			return fmt.Errorf("uplink load balancer: IPv4 source %s is not IPv4", a)
		}
		b := a.Unmap().As4()
		c.Src4 = nativeEndian32(b[:])
	}
	if a := cfg.Source6; a.IsValid() {
		if !a.Is6() || a.Is4In6() {
			return fmt.Errorf("uplink load balancer: IPv6 source %s is not IPv6", a)
		}
		b := a.As16()
		for i := range 4 {
			c.Src6[i] = nativeEndian32(b[4*i : 4*i+4])
		}
		c.HasSrc6 = 1
	}
	if err := lb.objs.LbConfig.Put(uint32(0), c); err != nil {
		return fmt.Errorf("uplink load balancer: config: %w", err)
	}
	return nil
}

// nativeEndian32 is the 4 bytes b as the program reads them, a
// little-endian load of network-order bytes.
func nativeEndian32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func svcKey(f Frontend) bpf.LbSvcKey {
	return bpf.LbSvcKey{Addr: lbkey.Mapped(f.Addr), Port: lbkey.BE16(f.Port), Proto: f.Proto}
}

func encodeBackend(k backendKey) bpf.LbBackend {
	b := bpf.LbBackend{Addr: lbkey.Mapped(k.addr.Addr()), Port: lbkey.BE16(k.addr.Port())}
	if k.local {
		b.Flags = uint8(bpf.LbBackendFlagsLB_BACKEND_LOCAL)
	}
	return b
}

// adopt reads back the frontends and backends the pinned maps hold.
func (lb *LB) adopt() error {
	var (
		bid uint32
		be  bpf.LbBackend
	)
	for it := lb.objs.LbBackends.Iterate(); it.Next(&bid, &be); {
		k := backendKey{addr: netip.AddrPortFrom(netip.AddrFrom16(be.Addr).Unmap(), lbkey.BE16(be.Port)),
			local: be.Flags&uint8(bpf.LbBackendFlagsLB_BACKEND_LOCAL) != 0}
		lb.backends[k] = bid
		lb.nextBE = max(lb.nextBE, bid+1)
	}
	var (
		k bpf.LbSvcKey
		v bpf.LbSvcValue
	)
	it := lb.objs.LbServices.Iterate()
	for it.Next(&k, &v) {
		f := Frontend{Addr: netip.AddrFrom16(k.Addr).Unmap(), Port: lbkey.BE16(k.Port), Proto: k.Proto}
		lb.ids[f] = v.Id
		lb.nextID = max(lb.nextID, v.Id+1)
		// What the frontend served is not read back: the first Sync
		// rewrites every adopted frontend whole, keeping its id (and so
		// its counters) and every backend id (and so every flow).
		lb.cur[f] = Entry{Frontend: f}
		lb.adopted[f] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("adopt uplink frontends: %w", err)
	}
	return nil
}

// bumpGeneration voids every CPU's flow cache (lb_cache): its entries
// count only under the generation they were written in.
func (lb *LB) bumpGeneration() error {
	var gen uint64
	if err := lb.objs.LbGen.Lookup(uint32(0), &gen); err != nil {
		return fmt.Errorf("flow cache generation: %w", err)
	}
	gen++
	if gen == 0 { // 0 turns the cache off
		gen = 1
	}
	if err := lb.objs.LbGen.Put(uint32(0), gen); err != nil {
		return fmt.Errorf("flow cache generation: %w", err)
	}
	return nil
}

// Sync makes the maps hold exactly entries. Whatever it changed, it voids
// the programs' flow cache after, also when it fails halfway.
func (lb *LB) Sync(entries []Entry) (err error) {
	defer func() {
		if gerr := lb.bumpGeneration(); gerr != nil && err == nil {
			err = gerr
		}
	}()
	want := map[Frontend]Entry{}
	need := map[backendKey]bool{}
	vips := map[netip.Addr]bool{}
	for _, e := range entries {
		if err := e.check(); err != nil {
			return err
		}
		e.Frontend.Addr = e.Frontend.Addr.Unmap()
		if _, dup := want[e.Frontend]; dup {
			return fmt.Errorf("frontend %s twice", e.Frontend)
		}
		want[e.Frontend] = e
		for _, b := range e.Backends {
			need[backendKey{addr: unmapAP(b.Addr), local: b.Local}] = true
		}
		if e.VIP {
			vips[e.Frontend.Addr] = true
		}
	}
	// Backends first: every table written below names only ids that are
	// in lb_backends.
	for k := range need {
		if _, ok := lb.backends[k]; ok {
			continue
		}
		id := lb.nextBE
		if err := lb.objs.LbBackends.Put(id, encodeBackend(k)); err != nil {
			return fmt.Errorf("backend %s: %w", k.addr, err)
		}
		lb.backends[k] = id
		lb.nextBE++
	}
	for a := range vips {
		if err := lb.objs.LbVips.Put(lbkey.Mapped(a), uint32(1)); err != nil {
			return fmt.Errorf("VIP %s: %w", a, err)
		}
	}
	for f, e := range want {
		if old, ok := lb.cur[f]; ok && !lb.adopted[f] && slices.Equal(old.Backends, e.Backends) && old.VIP == e.VIP && old.Affinity == e.Affinity {
			continue
		}
		if err := lb.write(e); err != nil {
			return err
		}
	}
	for f := range lb.cur {
		if _, ok := want[f]; !ok {
			if err := lb.remove(f); err != nil {
				return err
			}
		}
	}
	var a [16]uint8
	var one uint32
	var stale [][16]uint8
	for it := lb.objs.LbVips.Iterate(); it.Next(&a, &one); {
		if !vips[netip.AddrFrom16(a).Unmap()] {
			stale = append(stale, a)
		}
	}
	for _, a := range stale {
		if err := lbkey.DeleteIfPresent(lb.objs.LbVips, a); err != nil {
			return fmt.Errorf("VIP %s: %w", netip.AddrFrom16(a).Unmap(), err)
		}
	}
	// Backends no frontend names any more, last: a flow that had one is
	// balanced again by its frontend's table.
	for k, id := range lb.backends {
		if need[k] {
			continue
		}
		if err := lbkey.DeleteIfPresent(lb.objs.LbBackends, id); err != nil {
			return fmt.Errorf("backend %s: %w", k.addr, err)
		}
		delete(lb.backends, k)
	}
	return nil
}

func unmapAP(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// table builds the Maglev table of e's active backends, as backend ids.
func (lb *LB) table(e Entry) ([]uint32, error) {
	var (
		keys []maglev.Backend
		ids  = map[string]uint32{}
	)
	for _, b := range e.Backends {
		if !b.Active {
			continue
		}
		key := b.Addr.Addr().Unmap().String()
		keys = append(keys, maglev.Backend{Key: key})
		ids[key] = lb.backends[backendKey{addr: unmapAP(b.Addr), local: b.Local}]
	}
	if len(keys) == 0 {
		return nil, nil
	}
	t, err := maglev.Build(keys, lb.size)
	if err != nil {
		return nil, fmt.Errorf("frontend %s: %w", e.Frontend, err)
	}
	out := make([]uint32, len(t.Entries))
	for i, j := range t.Entries {
		out[i] = ids[t.Keys[j]]
	}
	return out, nil
}

// freeID returns the lowest frontend id no frontend has. Frontend ids are
// reused (they index lb_stats, an array): a frontend's Maglev table, local
// backends and counters go with it, and the connection table keys flows by
// address, not by frontend id.
func (lb *LB) freeID() (uint32, error) {
	used := make(map[uint32]bool, len(lb.ids))
	for _, id := range lb.ids {
		used[id] = true
	}
	for id := lb.nextID; id < maxFrontends; id++ {
		if !used[id] {
			lb.nextID = id + 1
			return id, nil
		}
	}
	for id := uint32(1); id < maxFrontends; id++ {
		if !used[id] {
			lb.nextID = id + 1
			return id, nil
		}
	}
	return 0, fmt.Errorf("more than %d frontends", maxFrontends-1)
}

// maxFrontends is LB_MAX_FRONTENDS: ids are 1..maxFrontends-1.
const maxFrontends = 65536

// write puts e in the maps.
func (lb *LB) write(e Entry) error {
	f := e.Frontend
	id, ok := lb.ids[f]
	if !ok {
		var err error
		if id, err = lb.freeID(); err != nil {
			return fmt.Errorf("frontend %s: %w", f, err)
		}
		lb.ids[f] = id
		if err := lb.objs.LbStats.Put(id, make([]bpf.LbSvcStats, ebpf.MustPossibleCPU())); err != nil {
			return fmt.Errorf("frontend %s: counters: %w", f, err)
		}
	}
	old := lb.cur[f]
	for _, b := range e.Backends {
		if !b.Local {
			continue
		}
		if err := lb.objs.LbLocal.Put(bpf.LbLocalKey{Id: id, Addr: lbkey.Mapped(b.Addr.Addr())}, lbkey.BE16(b.Addr.Port())); err != nil {
			return fmt.Errorf("frontend %s: local backend %s: %w", f, b.Addr, err)
		}
	}
	entries, err := lb.table(e)
	if err != nil {
		return err
	}
	val := bpf.LbSvcValue{Id: id}
	if e.Affinity {
		val.Flags = uint32(bpf.LbSvcFlagsLB_SVC_AFFINITY)
	}
	if entries != nil {
		inner, err := ebpf.NewMap(lb.spec)
		if err != nil {
			return fmt.Errorf("frontend %s: Maglev table: %w", f, err)
		}
		keys := make([]uint32, len(entries))
		for i := range keys {
			keys[i] = uint32(i)
		}
		_, err = inner.BatchUpdate(keys, entries, nil)
		if err == nil {
			err = lb.objs.LbMaglev.Put(id, inner)
		}
		inner.Close()
		if err != nil {
			return fmt.Errorf("frontend %s: Maglev table: %w", f, err)
		}
		val.Size = uint32(lb.size)
	}
	if err := lb.objs.LbServices.Put(svcKey(f), val); err != nil {
		return fmt.Errorf("frontend %s: %w", f, err)
	}
	if entries == nil {
		if err := lbkey.DeleteIfPresent(lb.objs.LbMaglev, id); err != nil {
			return fmt.Errorf("frontend %s: Maglev table: %w", f, err)
		}
	}
	for _, b := range old.Backends {
		if b.Local && !slices.ContainsFunc(e.Backends, func(n Backend) bool { return n.Local && n.Addr.Addr() == b.Addr.Addr() }) {
			if err := lbkey.DeleteIfPresent(lb.objs.LbLocal, bpf.LbLocalKey{Id: id, Addr: lbkey.Mapped(b.Addr.Addr())}); err != nil {
				return fmt.Errorf("frontend %s: %w", f, err)
			}
		}
	}
	if lb.adopted[f] {
		// What the frontend had is unknown: drop the local entries this
		// Sync did not write.
		if err := lb.dropLocals(id, e.Backends); err != nil {
			return fmt.Errorf("frontend %s: %w", f, err)
		}
		delete(lb.adopted, f)
	}
	e.Backends = slices.Clone(e.Backends) // the caller's slice may change
	lb.cur[f] = e
	return nil
}

// dropLocals removes the lb_local entries of frontend id but keep's.
func (lb *LB) dropLocals(id uint32, keep []Backend) error {
	var (
		k     bpf.LbLocalKey
		port  uint16
		stale []bpf.LbLocalKey
	)
	for it := lb.objs.LbLocal.Iterate(); it.Next(&k, &port); {
		if k.Id != id {
			continue
		}
		a := netip.AddrFrom16(k.Addr).Unmap()
		if !slices.ContainsFunc(keep, func(b Backend) bool { return b.Local && b.Addr.Addr().Unmap() == a }) {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		if err := lbkey.DeleteIfPresent(lb.objs.LbLocal, k); err != nil {
			return err
		}
	}
	return nil
}

// remove takes frontend f out of the maps, the frontend first.
func (lb *LB) remove(f Frontend) error {
	id := lb.ids[f]
	if err := lbkey.DeleteIfPresent(lb.objs.LbServices, svcKey(f)); err != nil {
		return fmt.Errorf("frontend %s: %w", f, err)
	}
	if err := lbkey.DeleteIfPresent(lb.objs.LbMaglev, id); err != nil {
		return fmt.Errorf("frontend %s: Maglev table: %w", f, err)
	}
	if err := lb.dropLocals(id, nil); err != nil {
		return fmt.Errorf("frontend %s: %w", f, err)
	}
	delete(lb.cur, f)
	delete(lb.ids, f)
	delete(lb.adopted, f)
	return nil
}

// Stats are a frontend's counters since it was added.
type Stats struct {
	Packets, Bytes uint64
	// Conns are the flows given a backend from the Maglev table.
	Conns uint64
}

// FrontendStats returns each frontend's counters.
func (lb *LB) FrontendStats() (map[Frontend]Stats, error) {
	out := make(map[Frontend]Stats, len(lb.ids))
	for f, id := range lb.ids {
		var per []bpf.LbSvcStats
		if err := lb.objs.LbStats.Lookup(id, &per); err != nil {
			return nil, fmt.Errorf("frontend %s: counters: %w", f, err)
		}
		var s Stats
		for _, c := range per {
			s.Packets += c.Packets
			s.Bytes += c.Bytes
			s.Conns += c.Conns
		}
		out[f] = s
	}
	return out, nil
}

// SetNodes makes addrs the addresses of the cluster's nodes, this one's
// included: only packets they encapsulated are decapsulated (an inner
// source is what the backend's policy sees, and the fabric's anti-spoofing
// checks only the outer one). Until it is called, none is.
func (lb *LB) SetNodes(addrs []netip.Addr) error {
	want := map[[16]uint8]bool{}
	for _, a := range addrs {
		if a.IsValid() {
			want[lbkey.Mapped(a)] = true
		}
	}
	for a := range want {
		if err := lb.objs.LbNodes.Put(a, uint32(1)); err != nil {
			return fmt.Errorf("node %s: %w", netip.AddrFrom16(a).Unmap(), err)
		}
	}
	var (
		k     [16]uint8
		one   uint32
		stale [][16]uint8
	)
	for it := lb.objs.LbNodes.Iterate(); it.Next(&k, &one); {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		if err := lbkey.DeleteIfPresent(lb.objs.LbNodes, k); err != nil {
			return fmt.Errorf("node %s: %w", netip.AddrFrom16(k).Unmap(), err)
		}
	}
	return nil
}

// reasonNames are the counters' names, by enum reason.
var reasonNames = map[bpf.LbReason]string{
	bpf.LbReasonLB_PASS:            "pass",
	bpf.LbReasonLB_LOCAL:           "local",
	bpf.LbReasonLB_ENCAP:           "encapsulated",
	bpf.LbReasonLB_DECAP:           "decapsulated",
	bpf.LbReasonLB_NO_BACKEND:      "no-backend",
	bpf.LbReasonLB_NOT_SERVED:      "not-served",
	bpf.LbReasonLB_DECAP_UNKNOWN:   "decap-unknown-backend",
	bpf.LbReasonLB_MALFORMED:       "malformed",
	bpf.LbReasonLB_REVNAT:          "reply-translated",
	bpf.LbReasonLB_ERROR:           "error",
	bpf.LbReasonLB_DECAP_UNTRUSTED: "decap-untrusted",
}

// Counters sums the programs' per-CPU counters by reason.
func (lb *LB) Counters() (map[string]uint64, error) {
	out := map[string]uint64{}
	for r := bpf.LbReason(0); r < bpf.LbReasonLB_REASON_MAX; r++ {
		var per []uint64
		if err := lb.objs.LbCounters.Lookup(uint32(r), &per); err != nil {
			return nil, fmt.Errorf("counter %d: %w", r, err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		name, ok := reasonNames[r]
		if !ok {
			name = fmt.Sprintf("reason-%d", r)
		}
		out[name] = sum
	}
	return out, nil
}

// Conns returns how many flows lb_conns remembers (at most its size). It
// reads the table in batches: one system call per connBatch flows, where
// iterating makes two per flow, on every status and scrape.
func (lb *LB) Conns() (int, error) {
	keys := make([]bpf.LbFlow, connBatch)
	vals := make([]bpf.LbConn, connBatch)
	var (
		cursor ebpf.MapBatchCursor
		total  int
	)
	for {
		n, err := lb.objs.LbConns.BatchLookup(&cursor, keys, vals, nil)
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("count the uplink flows: %w", err)
		}
	}
}

// connBatch is how many flows Conns reads per system call.
const connBatch = 4096

// Mode is how lb_xdp is attached to an interface.
type Mode string

// The attach modes.
const (
	// ModeAuto is native where the driver has it, generic elsewhere and
	// on veth (whose native XDP_TX needs XDP on the peer as well).
	ModeAuto    Mode = "auto"
	ModeNative  Mode = "native"
	ModeGeneric Mode = "generic"
)

// Attach attaches lb_xdp at XDP (in mode) and lb_reply at TCX egress of
// each of ifaces, the node's uplinks; links pinned by a previous run are
// moved to the new programs, and those of interfaces no longer named are
// removed.
func (lb *LB) Attach(ifaces []string, mode Mode) error {
	keep := map[string]bool{}
	for _, name := range ifaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("uplink %s: %w", name, err)
		}
		xdpPin, replyPin := "xdp-"+name, "reply-"+name
		keep[xdpPin], keep[replyPin] = true, true
		m, err := lb.attachXDP(xdpPin, ifc.Index, mode)
		if err != nil {
			return fmt.Errorf("uplink %s: %w", name, err)
		}
		lb.modes[name] = m
		if err := lb.attachReply(replyPin, ifc.Index); err != nil {
			return fmt.Errorf("uplink %s: %w", name, err)
		}
	}
	if lb.pins == "" {
		return nil
	}
	ents, err := os.ReadDir(filepath.Join(lb.pins, "links"))
	if err != nil {
		return fmt.Errorf("uplink links: %w", err)
	}
	for _, d := range ents {
		if keep[d.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(lb.pins, "links", d.Name())); err != nil {
			return fmt.Errorf("uplink links: %w", err)
		}
	}
	return nil
}

// Modes returns the attach mode of lb_xdp on each interface.
func (lb *LB) Modes() map[string]string { return lb.modes }

// adoptLink loads the link pinned under name when it is attached to
// ifindex, and removes the pin of one attached elsewhere (an interface
// that was deleted and made again).
func (lb *LB) adoptLink(name string, ifindex int) (link.Link, error) {
	if lb.pins == "" {
		return nil, nil
	}
	pin := filepath.Join(lb.pins, "links", name)
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load the link pinned at %s: %w", pin, err)
	}
	info, err := l.Info()
	idx := -1
	if err == nil {
		if x := info.XDP(); x != nil {
			idx = int(x.Ifindex)
		} else if t := info.TCX(); t != nil {
			idx = int(t.Ifindex)
		}
	}
	if idx != ifindex {
		l.Close()
		return nil, os.Remove(pin)
	}
	return l, nil
}

func (lb *LB) attachXDP(name string, ifindex int, mode Mode) (string, error) {
	l, err := lb.adoptLink(name, ifindex)
	if err != nil {
		return "", err
	}
	if l != nil {
		if err := l.Update(lb.objs.LbXdp); err != nil {
			l.Close()
			return "", fmt.Errorf("move the XDP link to the new program: %w", err)
		}
		lb.links[name] = l
		return lb.modeOf(l), nil
	}
	try := []link.XDPAttachFlags{link.XDPDriverMode, link.XDPGenericMode}
	switch {
	case mode == ModeNative:
		try = try[:1]
	case mode == ModeGeneric, mode == ModeAuto && isVeth(ifindex):
		// A veth takes native XDP, but its XDP_TX reaches the peer
		// only when the peer runs XDP (or GRO) too: encapsulated
		// packets would be lost.
		try = try[1:]
	}
	var errs []error
	for _, flags := range try {
		l, err = link.AttachXDP(link.XDPOptions{Program: lb.objs.LbXdp, Interface: ifindex, Flags: flags})
		if err == nil {
			break
		}
		errs = append(errs, err)
	}
	if l == nil {
		return "", fmt.Errorf("attach XDP (%s): %w", mode, errors.Join(errs...))
	}
	lb.links[name] = l
	if lb.pins != "" {
		if err := l.Pin(filepath.Join(lb.pins, "links", name)); err != nil {
			return "", fmt.Errorf("pin the XDP link: %w", err)
		}
	}
	return lb.modeOf(l), nil
}

// modeOf reads an XDP link's attach mode from the kernel.
func (lb *LB) modeOf(l link.Link) string {
	info, err := l.Info()
	if err != nil || info.XDP() == nil {
		return "unknown"
	}
	return xdpMode(int(info.XDP().Ifindex))
}

func (lb *LB) attachReply(name string, ifindex int) error {
	l, err := lb.adoptLink(name, ifindex)
	if err != nil {
		return err
	}
	if l != nil {
		if err := l.Update(lb.objs.LbReply); err != nil {
			l.Close()
			return fmt.Errorf("move the reply link to the new program: %w", err)
		}
		lb.links[name] = l
		return nil
	}
	l, err = link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: lb.objs.LbReply, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		return fmt.Errorf("attach the reply translation at TCX egress: %w", err)
	}
	lb.links[name] = l
	if lb.pins != "" {
		if err := l.Pin(filepath.Join(lb.pins, "links", name)); err != nil {
			return fmt.Errorf("pin the reply link: %w", err)
		}
	}
	return nil
}

// Unpin removes every pin (Open): once closed, the programs are detached
// and the maps freed.
func (lb *LB) Unpin() error {
	if lb.pins == "" {
		return nil
	}
	var errs []error
	for _, l := range lb.links {
		if err := l.Unpin(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, os.RemoveAll(lb.pins))...)
}

// Close releases the programs, maps and links: without pins (Load) that
// detaches the programs; with pins (Open) they stay attached and serving.
func (lb *LB) Close() error {
	var errs []error
	for _, l := range lb.links {
		errs = append(errs, l.Close())
	}
	lb.links = map[string]link.Link{}
	errs = append(errs, lb.objs.Close())
	return errors.Join(errs...)
}

// Programs returns lb_xdp and lb_pass (for tests and benchmarks, which run
// them with BPF_PROG_TEST_RUN).
func (lb *LB) Programs() (xdp, pass *ebpf.Program) { return lb.objs.LbXdp, lb.objs.LbPass }

// xdpMode asks the kernel how XDP is attached to ifindex.
func xdpMode(ifindex int) string {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil || l.Attrs().Xdp == nil {
		return "unknown"
	}
	switch l.Attrs().Xdp.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		return "native"
	case nl.XDP_ATTACHED_SKB:
		return "generic"
	case nl.XDP_ATTACHED_HW:
		return "offload"
	}
	return "unknown"
}

// isVeth reports whether ifindex is a veth.
func isVeth(ifindex int) bool {
	l, err := netlink.LinkByIndex(ifindex)
	return err == nil && l.Type() == "veth"
}
