// Package vips keeps the VIPs a node announces (its services' external and
// load-balancer IPs) as blackhole routes in a kernel table of their own,
// where BIRD's kernel protocols learn them (birdconf.Input.VIPTable): a VIP
// coming or going is one netlink request, and BIRD sends its UPDATE with
// no reconfiguration.
//
// Which VIPs: every external and load-balancer IP of every service, as a
// /32 or /128; a service with externalTrafficPolicy: Local only while this
// node has one of its backends ready, or serving (a terminating one still
// draining), so the fabric sends the VIP's traffic only to nodes that can
// serve it locally and keep the client's address.
package vips

import (
	"context"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/community"
	"github.com/roost-net/roost/internal/routes"
	"github.com/roost-net/roost/internal/services"
)

// Desired returns the VIP prefixes node announces for svcs, sorted and
// each once.
func Desired(svcs []services.Service, node string) []netip.Prefix {
	return slices.SortedFunc(maps.Keys(DesiredCommunities(svcs, node)), netip.Prefix.Compare)
}

// DesiredCommunities returns the VIP prefixes node announces for svcs, each
// with the communities its services ask for (BGPCommunities; several
// services with one VIP: all of theirs), sorted, each once; nil for none.
func DesiredCommunities(svcs []services.Service, node string) map[netip.Prefix][]community.Community {
	out := map[netip.Prefix][]community.Community{}
	for _, s := range svcs {
		if s.ExternalTrafficPolicy == services.TrafficPolicyLocal && !hasLocal(s, node) {
			continue
		}
		for _, f := range s.Frontends() {
			if f.Kind == services.ClusterIP {
				continue
			}
			a := f.Addr.Unmap()
			p := netip.PrefixFrom(a, a.BitLen())
			out[p] = community.Sorted(append(out[p], s.BGPCommunities...))
		}
	}
	return out
}

// TagMetricBase is the least metric of a tagged VIP's route; a VIP
// without communities of its own has metric 0. Tags use metrics from it
// to TagMetricBase+TagMetricSpan-1.
const (
	TagMetricBase = 1 << 24
	TagMetricSpan = 1 << 24
)

// TagMetrics gives every community set (keyed by community.Join) its
// route metric: a hash of the set, so a set keeps its metric as other sets
// come and go, and a VIP's route does not change; on a clash, the set
// later in sorted order takes the next free metric.
func TagMetrics(sets map[string][]community.Community) map[string]uint32 {
	out := make(map[string]uint32, len(sets))
	used := map[uint32]bool{}
	for _, key := range slices.Sorted(maps.Keys(sets)) {
		h := fnv.New32a()
		h.Write([]byte(key))
		off := h.Sum32() % TagMetricSpan
		for used[TagMetricBase+off] {
			off = (off + 1) % TagMetricSpan
		}
		used[TagMetricBase+off] = true
		out[key] = TagMetricBase + off
	}
	return out
}

// Tagger is roost-agent: it renders the VIP tags (birdconf.VIPTag) into
// bird.conf, so BIRD adds each tagged VIP's communities.
type Tagger interface {
	// SetVIPTags asks for exactly these tags in bird.conf.
	SetVIPTags(tags []birdconf.VIPTag)
	// AppliedVIPTags are the metrics of the tags BIRD runs now.
	AppliedVIPTags() map[uint32]bool
}

// hasLocal reports whether node has a backend of s that is ready, or
// serving.
func hasLocal(s services.Service, node string) bool {
	for _, b := range s.Backends {
		if node != "" && b.Node == node && (b.Ready || b.Serving) {
			return true
		}
	}
	return false
}

// Routes is what Announcer writes through: routes.Blackholes.
type Routes interface {
	SyncMetrics(want map[netip.Prefix]uint32) (routes.Changes, error)
}

// Status is what the announcer last did.
type Status struct {
	File string `json:"file"`
	// Excluded: the node's label says it announces no VIPs.
	Excluded bool `json:"excluded,omitempty"`
	// VIPs are the VIPs announced (in the kernel table).
	VIPs []netip.Prefix `json:"vips"`
	// LastSync is the last attempt; Error its error ("" after a success):
	// the VIPs of the last good file stay announced meanwhile.
	LastSync time.Time `json:"lastSync"`
	Error    string    `json:"error,omitempty"`
	// WaitingForTags are VIPs whose communities BIRD does not know yet:
	// a new one is announced, and a changed one takes its new
	// communities, once BIRD runs the config that has them.
	WaitingForTags []netip.Prefix `json:"waitingForTags,omitempty"`
}

// Announcer keeps the kernel table in step with the services file and,
// with Kubernetes set, the Services of the API server (services.Merge: the
// file wins a clash).
type Announcer struct {
	File   string // "" for none
	Node   string
	Routes Routes
	Log    logrus.FieldLogger
	// Kubernetes says the API server's services come too, through
	// SetKubernetes: until the first set arrives, the table is left as it
	// is (WaitingForKubernetes).
	Kubernetes bool
	// Tagger, when not nil, gives VIPs the communities their services ask
	// for; without it they get none of their own.
	Tagger Tagger

	kick     chan struct{}
	mu       sync.Mutex
	st       Status
	excluded bool
	kube     *[]services.Service // nil until the first set

	// Owned by Sync: the table as the last clean sync left it (prefix →
	// metric), and the communities of each metric in it.
	last     map[netip.Prefix]uint32
	lastSets map[uint32][]community.Community
}

// WaitingForKubernetes is the status error while the API server's services
// have not arrived: the VIPs announced stay as they are meanwhile.
const WaitingForKubernetes = "waiting for the Kubernetes services"

// SetKubernetes records the API server's services (kubewatch reports them
// so; its notes are logged there) and asks for a sync.
func (a *Announcer) SetKubernetes(svcs []services.Service, _ []string) {
	a.mu.Lock()
	a.kube = &svcs
	a.mu.Unlock()
	a.Changed()
}

// SetExcluded says whether this node announces no VIPs at all (its Node
// has the label k8swatch.ExcludeVIPsLabel), and asks for a sync.
func (a *Announcer) SetExcluded(excluded bool) {
	a.mu.Lock()
	a.excluded = excluded
	a.mu.Unlock()
	a.Changed()
}

// New returns an Announcer; Run starts it.
func New(file, node string, r Routes, log logrus.FieldLogger) *Announcer {
	return &Announcer{File: file, Node: node, Routes: r, Log: log, kick: make(chan struct{}, 1), st: Status{File: file, VIPs: []netip.Prefix{}}}
}

// Changed asks for a sync (the file changed, or SIGHUP).
func (a *Announcer) Changed() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Sync reads the file and makes the table hold its VIPs. A file that does
// not load keeps the VIPs announced (and returns the error).
func (a *Announcer) Sync() error {
	var (
		svcs []services.Service
		err  error
	)
	if a.File != "" {
		svcs, err = services.LoadFile(a.File) // missing: no services
	}
	a.mu.Lock()
	excluded, kube := a.excluded, a.kube
	a.mu.Unlock()
	if err == nil && a.Kubernetes {
		if kube == nil {
			a.mu.Lock()
			a.st.LastSync, a.st.Error = time.Now(), WaitingForKubernetes
			a.mu.Unlock()
			return nil
		}
		svcs, _ = services.Merge(svcs, *kube)
	}
	var (
		want    map[netip.Prefix]uint32
		waiting []netip.Prefix
	)
	if err == nil {
		var comms map[netip.Prefix][]community.Community
		if !excluded {
			comms = DesiredCommunities(svcs, a.Node)
		}
		want, waiting = a.plan(comms)
		var ch routes.Changes
		if ch, err = a.Routes.SyncMetrics(want); err == nil {
			if !ch.Empty() {
				a.Log.WithField("changes", ch.String()).Info("VIPs changed")
			}
			a.last = want
			a.tidyTags(comms)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.LastSync = time.Now()
	if err != nil {
		a.st.Error = err.Error()
		return err
	}
	a.st.Error, a.st.VIPs, a.st.Excluded = "", slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare), excluded
	a.st.WaitingForTags = waiting
	return nil
}

// plan returns the table to sync to for comms (each VIP with its
// communities), and the VIPs that wait for BIRD to know their
// communities. A VIP whose tag BIRD does not run yet keeps the route it
// has (a new one waits), so it is never announced with communities other
// than its own and old ones.
func (a *Announcer) plan(comms map[netip.Prefix][]community.Community) (map[netip.Prefix]uint32, []netip.Prefix) {
	want := make(map[netip.Prefix]uint32, len(comms))
	if a.Tagger == nil {
		for p := range comms {
			want[p] = 0
		}
		return want, nil
	}
	sets := map[string][]community.Community{}
	for _, cs := range comms {
		if len(cs) > 0 {
			sets[community.Join(cs)] = cs
		}
	}
	metrics := TagMetrics(sets)
	// BIRD must know every tag wanted, and keep those of the routes
	// still in the table until they move.
	tags := map[uint32][]community.Community{}
	for key, m := range metrics {
		tags[m] = sets[key]
	}
	for _, m := range a.last {
		if _, ok := tags[m]; m != 0 && !ok {
			tags[m] = a.lastSets[m]
		}
	}
	a.Tagger.SetVIPTags(vipTags(tags))
	applied := a.Tagger.AppliedVIPTags()
	var waiting []netip.Prefix
	for p, cs := range comms {
		m := uint32(0)
		if len(cs) > 0 {
			m = metrics[community.Join(cs)]
		}
		if m != 0 && !applied[m] {
			waiting = append(waiting, p)
			old, ok := a.last[p]
			if !ok || (old != 0 && !applied[old]) {
				continue // a new VIP waits
			}
			m = old
		}
		want[p] = m
	}
	a.lastSets = tags
	slices.SortFunc(waiting, netip.Prefix.Compare)
	return want, waiting
}

// tidyTags drops from bird.conf the tags no route uses and no VIP
// wants, once the table no longer holds them.
func (a *Announcer) tidyTags(comms map[netip.Prefix][]community.Community) {
	if a.Tagger == nil {
		return
	}
	keep := map[uint32][]community.Community{}
	for _, m := range a.last {
		if m != 0 {
			keep[m] = a.lastSets[m]
		}
	}
	sets := map[string][]community.Community{}
	for _, cs := range comms {
		if len(cs) > 0 {
			sets[community.Join(cs)] = cs
		}
	}
	for key, m := range TagMetrics(sets) {
		keep[m] = sets[key]
	}
	a.lastSets = keep
	a.Tagger.SetVIPTags(vipTags(keep))
}

// vipTags lists tags sorted by metric.
func vipTags(tags map[uint32][]community.Community) []birdconf.VIPTag {
	out := make([]birdconf.VIPTag, 0, len(tags))
	for _, m := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, birdconf.VIPTag{Metric: m, Communities: tags[m]})
	}
	return out
}

// Status returns what the announcer last did.
func (a *Announcer) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.st
	st.VIPs = slices.Clone(st.VIPs)
	st.WaitingForTags = slices.Clone(st.WaitingForTags)
	return st
}

// Run syncs at once, after every Changed (folded within debounce), and
// every resync (repairing the table: a route deleted by hand comes back;
// Blackholes reads the table whole at its own interval), until ctx ends.
func (a *Announcer) Run(ctx context.Context, debounce, resync time.Duration) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
			timer.Reset(debounce)
		case <-tick.C:
			timer.Reset(0)
		case <-timer.C:
			if err := a.Sync(); err != nil {
				a.Log.WithError(err).Warn("VIPs not synced; the last good set stays announced")
			}
		}
	}
}
