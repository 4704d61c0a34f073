package policyd

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
)

// Origins of the endpoints the loader enforces with, as the status and
// roostctl show them. An endpoint of the global view has its view origin
// ("cluster:prod", "sync:vms").
const (
	OriginFile       = "file"
	OriginKubernetes = "kubernetes"
)

// GlobalView is what the loop needs of the global endpoint view besides
// the views themselves (SetView).
type GlobalView struct {
	// Publish, when not nil, is given the cluster's local endpoints and
	// nodes whenever they change (globalview.Publisher.Set).
	Publish func(eps []globalview.Endpoint, nodes []globalview.Node) error
	// Status, when not nil, reports the subscriber's and, when
	// publishing, the publisher's state for the status API.
	Status func() (globalview.SubscriberStatus, *globalview.PublisherStatus)
}

// SetView records the latest global view and asks for a reconcile. The
// view's map becomes the daemon's.
func (d *Daemon) SetView(v globalview.View) {
	d.mu.Lock()
	d.view = &v
	d.mu.Unlock()
	d.Changed()
}

// viewMerge is what merging the global view with the local endpoints
// found.
type viewMerge struct {
	endpoints []policy.Endpoint
	// origins are the endpoints' origins by name.
	origins map[string]string
	// counts are the view's endpoints enforced, by origin.
	counts map[string]int
	// own counts the view's endpoints of this cluster's own origin, which
	// the local sources stand for.
	own       int
	conflicts []string
	// nodes are the other clusters' nodes (Origin set), whose addresses
	// are remote-node, as Cilium's ClusterMesh makes them; nodeCounts
	// counts them by origin.
	nodes      []loaderapi.Node
	nodeCounts map[string]int
}

// mergeView returns the endpoints of v to enforce beside the local ones,
// named by their view ID ("cluster:c2/ns/name"), which no local name can
// be. The local sources are this cluster's authority: the view's
// endpoints of own are skipped, and a view endpoint that claims an address
// the local sources hold (taken: address → whose: a local endpoint's,
// this node's, a node of this cluster's) is skipped whole, as is every
// view endpoint of an address that several of them claim, on every node
// alike. Each skip is a conflict, reported. A skipped endpoint's traffic
// is then seen as what holds its address, or the world's.
func mergeView(v *globalview.View, own globalview.Origin, taken map[netip.Addr]string) viewMerge {
	m := viewMerge{origins: map[string]string{}, counts: map[string]int{}}
	ips := make(map[string][]netip.Addr, len(v.Endpoints))
	for id, e := range v.Endpoints {
		if e.Origin == own {
			m.own++
			continue
		}
		ips[id] = e.IPs
	}
	for _, id := range m.keep(ips, taken) {
		e := v.Endpoints[id]
		m.endpoints = append(m.endpoints, policy.Endpoint{Name: id, IPs: e.IPs, Labels: e.Labels})
		m.origins[id] = e.Origin.String()
		m.counts[e.Origin.String()]++
	}
	return m
}

// mergeViewNodes adds to m the nodes of v's other origins than own. A node
// with an address that taken holds (address → whose: the local endpoints',
// the view endpoints' m enforces, this node's and the local nodes') is
// skipped whole, as is every node of an address that several origins'
// nodes claim; each skip is a conflict. A skipped node's traffic is the
// world's.
func (m *viewMerge) mergeViewNodes(v *globalview.View, own globalview.Origin, taken map[netip.Addr]string) {
	m.nodeCounts = map[string]int{}
	ips := make(map[string][]netip.Addr, len(v.Nodes))
	for id, n := range v.Nodes {
		if n.Origin != own {
			ips[id] = n.IPs
		}
	}
	for _, id := range m.keep(ips, taken) {
		n := v.Nodes[id]
		sorted := slices.Clone(n.IPs)
		slices.SortFunc(sorted, netip.Addr.Compare)
		m.nodes = append(m.nodes, loaderapi.Node{Name: n.Name, Origin: n.Origin.String(), IPs: sorted})
		m.nodeCounts[n.Origin.String()]++
	}
}

// keep returns, in order, the IDs of ips (ID → addresses) that hold no
// address of taken (address → whose) and none that another of them
// claims; each one it leaves out is a conflict of m, with why.
func (m *viewMerge) keep(ips map[string][]netip.Addr, taken map[netip.Addr]string) []string {
	claims := make(map[netip.Addr][]string)
	for id, addrs := range ips {
		for _, ip := range addrs {
			claims[ip] = append(claims[ip], id)
		}
	}
	var kept []string
	for _, id := range slices.Sorted(maps.Keys(ips)) {
		var why []string
		for _, ip := range ips[id] {
			if whose, ok := taken[ip]; ok {
				why = append(why, fmt.Sprintf("%s is %s", ip, whose))
			} else if c := claims[ip]; len(c) > 1 {
				others := slices.DeleteFunc(slices.Clone(c), func(o string) bool { return o == id })
				slices.Sort(others)
				why = append(why, fmt.Sprintf("%s is also claimed by %s", ip, strings.Join(others, ", ")))
			}
		}
		if len(why) > 0 {
			m.conflicts = append(m.conflicts, fmt.Sprintf("%s skipped: %s", id, strings.Join(why, "; ")))
			continue
		}
		kept = append(kept, id)
	}
	return kept
}

// publishedNodes converts the cluster's nodes (name → addresses, this
// node's included) to the published ones; a node without an address is
// left out.
func publishedNodes(nodeIPs map[string][]netip.Addr, origin globalview.Origin) []globalview.Node {
	var out []globalview.Node
	for _, name := range slices.Sorted(maps.Keys(nodeIPs)) {
		ips := slices.Clone(nodeIPs[name])
		slices.SortFunc(ips, netip.Addr.Compare)
		if ips = slices.Compact(ips); len(ips) > 0 {
			out = append(out, globalview.Node{Origin: origin, Name: name, IPs: ips})
		}
	}
	return out
}

// published converts the local endpoints to the cluster's published ones.
// A pod ("namespace/name") is published under its name; nodes are the
// pods' nodes by endpoint name.
func published(eps []policy.Endpoint, namespaces map[string]string, nodes map[string]string, origin globalview.Origin) []globalview.Endpoint {
	out := make([]globalview.Endpoint, 0, len(eps))
	for _, ep := range eps {
		name := ep.Name
		if _, after, ok := strings.Cut(name, "/"); ok {
			name = after
		}
		out = append(out, globalview.Endpoint{Origin: origin, Namespace: namespaces[ep.Name], Name: name,
			IPs: ep.IPs, Labels: ep.Labels, Node: nodes[ep.Name]})
	}
	return out
}

// samePublished reports whether a and b are the same endpoints and nodes
// in the same order.
func samePublished(a, b publishedSet) bool {
	return slices.EqualFunc(a.eps, b.eps, func(x, y globalview.Endpoint) bool {
		return x.Origin == y.Origin && x.Namespace == y.Namespace && x.Name == y.Name && x.Node == y.Node &&
			slices.Equal(x.IPs, y.IPs) && maps.Equal(x.Labels, y.Labels)
	}) && slices.EqualFunc(a.nodes, b.nodes, func(x, y globalview.Node) bool {
		return x.Origin == y.Origin && x.Name == y.Name && slices.Equal(x.IPs, y.IPs)
	})
}

// publishedSet is what the publisher was last given.
type publishedSet struct {
	eps   []globalview.Endpoint
	nodes []globalview.Node
}

// publish hands set to the publisher when it differs from what it was
// last given. A refused endpoint or node is a note; the others are
// published.
func (d *Daemon) publish(set publishedSet) []string {
	if d.gv.Publish == nil {
		return nil
	}
	d.mu.Lock()
	same := d.lastPublished != nil && samePublished(*d.lastPublished, set)
	notes := d.publishNotes
	d.mu.Unlock()
	if same {
		return notes
	}
	notes = nil
	if err := d.gv.Publish(set.eps, set.nodes); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			notes = append(notes, "not published: "+line)
		}
	}
	d.mu.Lock()
	d.lastPublished, d.publishNotes = &set, notes
	d.mu.Unlock()
	return notes
}

// globalViewStatus is the status API's part on the global view.
func (d *Daemon) globalViewStatus() *loaderapi.GlobalView {
	if !d.cfg.GlobalView.Enabled {
		return nil
	}
	out := &loaderapi.GlobalView{Origins: maps.Clone(d.viewCounts), Nodes: maps.Clone(d.viewNodeCounts), Own: d.viewOwn,
		Conflicts: slices.Clone(d.viewConflicts), Applied: d.applied}
	if d.view != nil {
		out.Revision = d.view.Revision
		for _, p := range d.view.Problems {
			out.Problems = append(out.Problems, p.Key+": "+p.Err)
		}
	}
	if d.gv.Status == nil {
		return out
	}
	s, p := d.gv.Status()
	out.Connected, out.Listed, out.ViewAge, out.LastError, out.LastErrorTime = s.Connected, s.Listed, s.ViewAge, s.LastError, s.LastErrorTime
	if p != nil {
		out.Publisher = &loaderapi.Publisher{Origin: p.Origin, Leader: p.Leader, Endpoints: p.Endpoints, Nodes: p.Nodes, Generation: p.Generation,
			Published: p.Published, Terms: p.Terms, LastError: p.LastError, LastErrorTime: p.LastErrorTime}
	}
	return out
}

// sortedOrigins returns the keys of counts in order.
func sortedOrigins(counts map[string]int) []string {
	return slices.SortedFunc(maps.Keys(counts), cmp.Compare[string])
}

// appliedAtLeast returns whether the policy applied is built on a view of
// revision rev or later, and a channel closed when that may have changed.
func (d *Daemon) appliedAtLeast(rev int64) (bool, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied >= rev, d.appliedWake
}

// serveGlobalView answers PathGlobalView, waiting when asked to.
func (d *Daemon) serveGlobalView(w http.ResponseWriter, r *http.Request) {
	if !d.cfg.GlobalView.Enabled {
		http.Error(w, "the global view is not configured (loader.yaml globalView)", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	if s := q.Get("appliedAtLeast"); s != "" {
		rev, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			http.Error(w, fmt.Sprintf("appliedAtLeast %q: want a revision number", s), http.StatusBadRequest)
			return
		}
		wait := 10 * time.Second
		if s := q.Get("wait"); s != "" {
			if wait, err = time.ParseDuration(s); err != nil || wait < 0 || wait > time.Minute {
				http.Error(w, fmt.Sprintf("wait %q: want a duration up to 1m", s), http.StatusBadRequest)
				return
			}
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			ok, wake := d.appliedAtLeast(rev)
			if ok {
				break
			}
			select {
			case <-wake:
				continue
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
			break
		}
	}
	d.mu.Lock()
	g := d.globalViewStatus()
	d.mu.Unlock()
	writeJSON(w, g)
}
