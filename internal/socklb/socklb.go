// Package socklb is roost's socket-level load balancer for Services
// (east-west): it loads bpf/sock.c's CGROUP_SOCK_ADDR programs, attaches
// them to a cgroup (the cgroup v2 root on a node, so that every pod and
// every host process is served), and writes the frontends and their active
// backends into the programs' maps.
//
// A frontend is an address, a port and a protocol (TCP or UDP): a
// ClusterIP and one of its Service's ports. connect() and sendto() to a
// frontend reach one of its backends, chosen at random (or the one the
// client's network namespace used last, with session affinity);
// getpeername() and recvfrom() show the frontend. Nothing per packet.
//
// Sync writes a whole desired set: it adds, changes and removes frontends
// in place, so sockets already connected keep their backends, and a
// frontend whose backends change never disappears meanwhile.
package socklb

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/lbkey"
)

// Protocols a frontend can have.
const (
	TCP = lbkey.TCP
	UDP = lbkey.UDP
)

// MaxAffinity bounds a frontend's Affinity (Kubernetes' limit for
// sessionAffinityConfig.clientIP.timeoutSeconds).
const MaxAffinity = 86400 * time.Second

// Frontend is where clients connect: a service address, port and protocol.
type Frontend = lbkey.Frontend

// Entry is one frontend and what it serves.
type Entry struct {
	Frontend Frontend
	// Backends are the active backends (ready, not terminating), each of
	// the frontend's address family. None: connections are refused.
	Backends []netip.AddrPort
	// Affinity, when not 0, keeps a client's new connections on the
	// backend it used last, for this long after its last connection
	// (sessionAffinity: ClientIP). The client is the socket's network
	// namespace: a pod, or the host.
	Affinity time.Duration
}

// check validates e.
func (e Entry) check() error {
	f := e.Frontend
	if !f.Addr.IsValid() || f.Addr.IsUnspecified() {
		return fmt.Errorf("frontend %s: no address", f)
	}
	if f.Proto != TCP && f.Proto != UDP {
		return fmt.Errorf("frontend %s: protocol %d is neither TCP nor UDP", f, f.Proto)
	}
	if f.Port == 0 {
		return fmt.Errorf("frontend %s: port 0", f)
	}
	if e.Affinity < 0 || e.Affinity > MaxAffinity {
		return fmt.Errorf("frontend %s: affinity %s is not within 0..%s", f, e.Affinity, MaxAffinity)
	}
	seen := map[netip.AddrPort]bool{}
	for _, b := range e.Backends {
		if !b.IsValid() || b.Port() == 0 || b.Addr().IsUnspecified() {
			return fmt.Errorf("frontend %s: backend %s: not an address and port", f, b)
		}
		if b.Addr().Unmap().Is4() != f.Addr.Unmap().Is4() {
			return fmt.Errorf("frontend %s: backend %s is of the other address family", f, b)
		}
		if seen[b] {
			return fmt.Errorf("frontend %s: backend %s twice", f, b)
		}
		seen[b] = true
	}
	if len(e.Backends) > maxBackendsPerFrontend {
		return fmt.Errorf("frontend %s: %d backends, more than %d", f, len(e.Backends), maxBackendsPerFrontend)
	}
	return nil
}

// maxBackendsPerFrontend bounds one frontend's backends (the slot count is
// a __u16 in the map).
const maxBackendsPerFrontend = 65535

// LB is the loaded programs and maps, and the links that attach them.
type LB struct {
	objs  bpf.SockObjects
	links []link.Link
	// pins is the bpffs directory of the maps' and links' pins; "" when
	// nothing is pinned (Load).
	pins string
	// ids holds the service id of each frontend in the maps; ids are
	// never reused while the LB runs, so a stale affinity entry cannot
	// name another frontend's backend.
	ids    map[Frontend]uint32
	nextID uint32
	// cur holds what the maps hold, by frontend.
	cur map[Frontend]Entry
}

// Load loads sock.c's programs and maps into the kernel, pinning nothing.
// Nothing is attached yet; Close detaches what Attach attached.
func Load() (*LB, error) { return open("") }

// Open loads sock.c's programs with their maps pinned under dir/maps, a
// directory on a BPF file system: the pins a previous run left are adopted
// with what they hold (frontends, backends, the sockets' reverse
// translations, affinities), so a restart or an upgrade changes nothing a
// client sees. Attach then moves the links pinned under dir/links to the
// new programs. Close keeps every pin: the programs stay attached and
// serving while no loader runs; Unpin removes them.
func Open(dir string) (*LB, error) {
	if dir == "" {
		return nil, errors.New("socket load balancer: no pin directory")
	}
	for _, d := range []string{dir, filepath.Join(dir, "maps"), filepath.Join(dir, "links")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("socket load balancer: %w", err)
		}
	}
	return open(dir)
}

func open(dir string) (*LB, error) {
	lb := &LB{pins: dir, ids: map[Frontend]uint32{}, nextID: 1, cur: map[Frontend]Entry{}}
	spec, err := bpf.LoadSock()
	if err != nil {
		return nil, fmt.Errorf("socket load balancer: %w", err)
	}
	var opts ebpf.CollectionOptions
	if dir != "" {
		for _, m := range spec.Maps {
			if strings.HasPrefix(m.Name, "sock_") {
				m.Pinning = ebpf.PinByName
			}
		}
		opts.Maps.PinPath = filepath.Join(dir, "maps")
	}
	if err := spec.LoadAndAssign(&lb.objs, &opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load socket load balancer: %+v", ve)
		}
		return nil, fmt.Errorf("load socket load balancer (pins under %s): %w", dir, err)
	}
	if err := lb.adopt(); err != nil {
		lb.objs.Close()
		return nil, err
	}
	return lb, nil
}

// adopt reads back what the maps hold (after a restart) into ids and cur,
// and removes what a Sync cut short left beyond a frontend's backends.
func (lb *LB) adopt() error {
	var (
		k    bpf.SockSvcKey
		v    bpf.SockSvcValue
		keep = map[uint32]map[bpf.SockBackend]bool{}
		cnt  = map[uint32]uint32{}
	)
	it := lb.objs.SockServices.Iterate()
	for it.Next(&k, &v) {
		f := Frontend{Addr: netip.AddrFrom16(k.Addr).Unmap(), Port: lbkey.BE16(k.Port), Proto: k.Proto}
		e := Entry{Frontend: f}
		if v.Flags&uint16(bpf.SockSvcFlagsSVC_F_AFFINITY) != 0 {
			e.Affinity = time.Duration(v.AffinityTimeout) * time.Second
		}
		keep[v.Id] = map[bpf.SockBackend]bool{}
		for i := uint32(0); i < uint32(v.Count); i++ {
			var be bpf.SockBackend
			if err := lb.objs.SockBackends.Lookup(bpf.SockSlotKey{Id: v.Id, Slot: i}, &be); err != nil {
				return fmt.Errorf("adopt frontend %s: slot %d: %w", f, i, err)
			}
			e.Backends = append(e.Backends, netip.AddrPortFrom(netip.AddrFrom16(be.Addr).Unmap(), lbkey.BE16(be.Port)))
			keep[v.Id][be] = true
		}
		lb.ids[f], lb.cur[f], cnt[v.Id] = v.Id, e, uint32(v.Count)
		lb.nextID = max(lb.nextID, v.Id+1)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("adopt frontends: %w", err)
	}
	var stale []any
	var sk bpf.SockSlotKey
	var be bpf.SockBackend
	for it := lb.objs.SockBackends.Iterate(); it.Next(&sk, &be); {
		if _, ok := keep[sk.Id]; !ok || sk.Slot >= cnt[sk.Id] {
			stale = append(stale, sk)
		}
	}
	var mk bpf.SockMemberKey
	var one uint8
	for it := lb.objs.SockMembers.Iterate(); it.Next(&mk, &one); {
		if !keep[mk.Id][mk.Backend] {
			stale = append(stale, mk)
		}
	}
	var id uint32
	var per []uint64
	counted := map[uint32]bool{}
	for it := lb.objs.SockFrontendStats.Iterate(); it.Next(&id, &per); {
		if _, ok := keep[id]; !ok {
			stale = append(stale, id)
		}
		counted[id] = true
	}
	for id := range keep { // pins of a build without the counters
		if !counted[id] {
			if err := lb.objs.SockFrontendStats.Put(id, make([]uint64, ebpf.MustPossibleCPU())); err != nil {
				return fmt.Errorf("adopt: frontend counter: %w", err)
			}
		}
	}
	for _, key := range stale {
		m := lb.objs.SockBackends
		switch key.(type) {
		case bpf.SockMemberKey:
			m = lb.objs.SockMembers
		case uint32:
			m = lb.objs.SockFrontendStats
		}
		if err := lbkey.DeleteIfPresent(m, key); err != nil {
			return fmt.Errorf("adopt: remove a stale entry: %w", err)
		}
	}
	return nil
}

// Attach attaches the programs to the cgroup v2 directory cgroup: every
// socket of a process in it or below it is served.
func (lb *LB) Attach(cgroup string) error {
	progs := []struct {
		name   string
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{
		{"connect4", lb.objs.SockConnect4, ebpf.AttachCGroupInet4Connect},
		{"connect6", lb.objs.SockConnect6, ebpf.AttachCGroupInet6Connect},
		{"sendmsg4", lb.objs.SockSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{"sendmsg6", lb.objs.SockSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
		{"recvmsg4", lb.objs.SockRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg},
		{"recvmsg6", lb.objs.SockRecvmsg6, ebpf.AttachCGroupUDP6Recvmsg},
		{"getpeername4", lb.objs.SockGetpeername4, ebpf.AttachCgroupInet4GetPeername},
		{"getpeername6", lb.objs.SockGetpeername6, ebpf.AttachCgroupInet6GetPeername},
	}
	for _, p := range progs {
		pin := filepath.Join(lb.pins, "links", p.name)
		if lb.pins != "" {
			// A link a previous run left: move it to the new program, so
			// the hook is never empty.
			if l, err := link.LoadPinnedLink(pin, nil); err == nil {
				if err := l.Update(p.prog); err != nil {
					l.Close()
					return fmt.Errorf("move the link pinned at %s to the new program: %w", pin, err)
				}
				lb.links = append(lb.links, l)
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("load the link pinned at %s: %w", pin, err)
			}
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: p.attach, Program: p.prog})
		if err != nil {
			return fmt.Errorf("attach %s to cgroup %s: %w", p.name, cgroup, err)
		}
		lb.links = append(lb.links, l)
		if lb.pins != "" {
			if err := l.Pin(pin); err != nil {
				return fmt.Errorf("pin the link of %s at %s: %w", p.name, pin, err)
			}
		}
	}
	return nil
}

// Unpin removes the pins of the maps and links (Open): once closed, the
// programs are detached and the maps freed.
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
	for _, m := range []*ebpf.Map{lb.objs.SockServices, lb.objs.SockBackends, lb.objs.SockMembers,
		lb.objs.SockRevnat, lb.objs.SockAffinity, lb.objs.SockCounters, lb.objs.SockFrontendStats} {
		if err := m.Unpin(); err != nil {
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
	lb.links = nil
	errs = append(errs, lb.objs.Close())
	return errors.Join(errs...)
}

func svcKey(f Frontend) bpf.SockSvcKey {
	return bpf.SockSvcKey{Addr: lbkey.Mapped(f.Addr), Port: lbkey.BE16(f.Port), Proto: f.Proto}
}

func backend(b netip.AddrPort) bpf.SockBackend {
	return bpf.SockBackend{Addr: lbkey.Mapped(b.Addr()), Port: lbkey.BE16(b.Port())}
}

// Sync makes the maps hold exactly entries. A frontend being changed keeps
// serving throughout: its new backends are written before its count, and
// backends beyond a smaller count are removed after it. It returns the first
// error; what it wrote before stays (a later Sync completes it).
func (lb *LB) Sync(entries []Entry) error {
	want := map[Frontend]Entry{}
	for _, e := range entries {
		if err := e.check(); err != nil {
			return err
		}
		e.Frontend.Addr = e.Frontend.Addr.Unmap()
		if _, dup := want[e.Frontend]; dup {
			return fmt.Errorf("frontend %s twice", e.Frontend)
		}
		want[e.Frontend] = e
	}
	for f, e := range want {
		if old, ok := lb.cur[f]; ok && slices.Equal(old.Backends, e.Backends) && old.Affinity == e.Affinity {
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
	return nil
}

// write puts e in the maps.
func (lb *LB) write(e Entry) error {
	f := e.Frontend
	id, ok := lb.ids[f]
	if !ok {
		id = lb.nextID
		lb.nextID++
		lb.ids[f] = id
	}
	old := lb.cur[f]
	for i, b := range e.Backends {
		be := backend(b)
		if err := lb.objs.SockBackends.Put(bpf.SockSlotKey{Id: id, Slot: uint32(i)}, be); err != nil {
			return fmt.Errorf("frontend %s: backend %s: %w", f, b, err)
		}
		if err := lb.objs.SockMembers.Put(bpf.SockMemberKey{Id: id, Backend: be}, uint8(1)); err != nil {
			return fmt.Errorf("frontend %s: backend %s: %w", f, b, err)
		}
	}
	if !ok { // a new frontend: its connection counter first
		if err := lb.objs.SockFrontendStats.Put(id, make([]uint64, ebpf.MustPossibleCPU())); err != nil {
			return fmt.Errorf("frontend %s: counter: %w", f, err)
		}
	}
	val := bpf.SockSvcValue{Id: id, Count: uint16(len(e.Backends))}
	if e.Affinity > 0 {
		val.Flags = uint16(bpf.SockSvcFlagsSVC_F_AFFINITY)
		val.AffinityTimeout = uint32((e.Affinity + time.Second - 1) / time.Second)
	}
	if err := lb.objs.SockServices.Put(svcKey(f), val); err != nil {
		return fmt.Errorf("frontend %s: %w", f, err)
	}
	for i := len(e.Backends); i < len(old.Backends); i++ {
		if err := lbkey.DeleteIfPresent(lb.objs.SockBackends, bpf.SockSlotKey{Id: id, Slot: uint32(i)}); err != nil {
			return fmt.Errorf("frontend %s: %w", f, err)
		}
	}
	for _, b := range old.Backends {
		if !slices.Contains(e.Backends, b) {
			if err := lbkey.DeleteIfPresent(lb.objs.SockMembers, bpf.SockMemberKey{Id: id, Backend: backend(b)}); err != nil {
				return fmt.Errorf("frontend %s: %w", f, err)
			}
		}
	}
	lb.cur[f] = e
	return nil
}

// remove takes frontend f out of the maps: the frontend first, so no new
// connection finds it half removed.
func (lb *LB) remove(f Frontend) error {
	id, old := lb.ids[f], lb.cur[f]
	if err := lbkey.DeleteIfPresent(lb.objs.SockServices, svcKey(f)); err != nil {
		return fmt.Errorf("frontend %s: %w", f, err)
	}
	for i, b := range old.Backends {
		if err := lbkey.DeleteIfPresent(lb.objs.SockBackends, bpf.SockSlotKey{Id: id, Slot: uint32(i)}); err != nil {
			return fmt.Errorf("frontend %s: %w", f, err)
		}
		if err := lbkey.DeleteIfPresent(lb.objs.SockMembers, bpf.SockMemberKey{Id: id, Backend: backend(b)}); err != nil {
			return fmt.Errorf("frontend %s: %w", f, err)
		}
	}
	if err := lbkey.DeleteIfPresent(lb.objs.SockFrontendStats, id); err != nil {
		return fmt.Errorf("frontend %s: counter: %w", f, err)
	}
	delete(lb.cur, f)
	delete(lb.ids, f)
	return nil
}

// FrontendStats returns, per frontend, how many connections (and UDP
// sends on unconnected sockets) were sent to one of its backends since it
// was added.
func (lb *LB) FrontendStats() (map[Frontend]uint64, error) {
	out := make(map[Frontend]uint64, len(lb.ids))
	for f, id := range lb.ids {
		var per []uint64
		if err := lb.objs.SockFrontendStats.Lookup(id, &per); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue // added before the counters existed
			}
			return nil, fmt.Errorf("frontend %s: counter: %w", f, err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[f] = sum
	}
	return out, nil
}

// Counters sums the programs' per-CPU counters by reason.
func (lb *LB) Counters() (map[string]uint64, error) {
	out := map[string]uint64{}
	for r := bpf.SockReason(0); r < bpf.SockReasonSOCK_REASON_MAX; r++ {
		var per []uint64
		if err := lb.objs.SockCounters.Lookup(uint32(r), &per); err != nil {
			return nil, fmt.Errorf("counter %s: %w", reasonName(r), err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[reasonName(r)] = sum
	}
	return out, nil
}

// reasonNames are the counters' names, by enum reason.
var reasonNames = map[bpf.SockReason]string{
	bpf.SockReasonSOCK_PASS:           "pass",
	bpf.SockReasonSOCK_XLATE:          "translated",
	bpf.SockReasonSOCK_XLATE_AFFINITY: "translated-affinity",
	bpf.SockReasonSOCK_NO_BACKEND:     "no-backend",
	bpf.SockReasonSOCK_REVNAT:         "reverse-translated",
}

// reasonName is r as roostctl and the metrics name it.
func reasonName(r bpf.SockReason) string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason-%d", r)
}

// CgroupRoot returns the mount point of the cgroup v2 hierarchy:
// /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one.
func CgroupRoot() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if f := strings.Fields(pre); len(f) > 4 {
			return filepath.Clean(f[4]), nil
		}
	}
	return "", errors.New("no cgroup v2 file system is mounted (socket load balancing attaches to one)")
}
