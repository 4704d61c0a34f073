// Package policyd is roost-loader's reconcile loop: it reads the endpoints
// file, the policy directory and (when enabled) what the Kubernetes sources
// report (Pods, Namespaces, Nodes, policies), finds the node's own
// addresses, compiles it all, and has the loader enforce the result. Whatever fails to read or
// compile leaves the last enforced policy in place: a policy is never half
// enforced and never dropped because a file is being rewritten. It also keeps
// the recent drop events and serves the loader's HTTP API.
package policyd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/endpoints"
	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/loader"
	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/loaderconfig"
	"github.com/roost-net/roost/internal/policy"
)

// Enforcer is what the loop needs of the loader.
type Enforcer interface {
	// Locate says which endpoints are local (routed to a local interface).
	Locate(eps []policy.Endpoint) ([]policy.Endpoint, error)
	// Apply makes the datapath enforce res.
	Apply(res policy.Resolved) (loader.Report, error)
	// HostAddresses returns the addresses of the node's own interfaces.
	HostAddresses() ([]netip.Addr, error)
}

// Files is what the loader reads from files: the endpoints file and the
// policy directory.
type Files struct {
	Endpoints endpoints.File
	Policies  []policy.Policy
}

// Inputs reads the files the policy is compiled from; the loop calls it on
// every change.
type Inputs func(cfg loaderconfig.Config) (Files, error)

// ReadFiles is the Inputs of the files in cfg: the endpoints file (a
// missing file is an empty one) and the policy directory.
func ReadFiles(cfg loaderconfig.Config) (Files, error) {
	var out Files
	if cfg.EndpointsFile != "" {
		f, err := os.Open(cfg.EndpointsFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return Files{}, fmt.Errorf("endpoints file: %w", err)
		default:
			out.Endpoints, err = endpoints.LoadFile(f, cfg.EndpointsFile)
			f.Close()
			if err != nil {
				return Files{}, err
			}
		}
	}
	pols, err := endpoints.LoadPolicyDir(cfg.PolicyDir)
	if err != nil {
		return Files{}, err
	}
	out.Policies = pols
	return out, nil
}

// Kube is what the Kubernetes sources last reported; a nil field is a
// source that has not synced yet.
type Kube struct {
	Pods       *endpoints.PodsState
	Namespaces *endpoints.NamespacesState
	Nodes      *endpoints.NodesState
	Policies   *endpoints.PoliciesState
}

// waiting names the sources that have not synced, or returns "".
func (k Kube) waiting() string {
	var names []string
	if k.Pods == nil || !k.Pods.Synced {
		names = append(names, "Pods")
	}
	if k.Namespaces == nil || !k.Namespaces.Synced {
		names = append(names, "Namespaces")
	}
	if k.Nodes == nil || !k.Nodes.Synced {
		names = append(names, "Nodes")
	}
	if k.Policies == nil || !k.Policies.Synced {
		names = append(names, "CiliumNetworkPolicies")
	}
	if len(names) == 0 {
		return ""
	}
	return "waiting for the Kubernetes informers to sync: " + strings.Join(names, ", ")
}

// Options are what a Daemon is built from.
type Options struct {
	Config   loaderconfig.Config
	Enforcer Enforcer
	// Inputs defaults to ReadFiles.
	Inputs Inputs
	Log    logrus.FieldLogger
	// KeepDrops is how many recent drop events are kept (default 1024).
	KeepDrops int
	// OnNodes, when not nil, is called after every applied policy with the
	// addresses of the cluster's nodes: this one's (host) and the others'
	// (remote-node).
	OnNodes func([]netip.Addr)
	// NotReady, when not nil, gives a reason the loader is not ready
	// besides the policy ("" for none): the load balancers' last sync
	// failed, or has not happened.
	NotReady func() string
	// GlobalView are the hooks of the global view, when
	// Config.GlobalView is enabled; views come through SetView.
	GlobalView GlobalView
}

// Daemon is the loop. Its setters may be called from any goroutine.
type Daemon struct {
	onNodes  func([]netip.Addr)
	notReady func() string
	gv       GlobalView
	enf      Enforcer
	inputs   Inputs
	log      logrus.FieldLogger
	kick     chan struct{}

	mu       sync.Mutex
	cfg      loaderconfig.Config
	kube     *Kube // nil when Kubernetes is off
	status   loaderapi.Status
	resolved policy.Resolved
	drops    *dropRing
	// logged is what was last logged of the warnings and the refused API
	// objects, so that each is logged once, when it changes.
	logged string
	// metrics are the collectors of the loader's other parts
	// (RegisterMetrics), served on /metrics beside the policy's.
	metrics *prometheus.Registry

	// view is the latest global view; nil before the first.
	view *globalview.View
	// What the last reconcile found of the view: endpoints and other
	// clusters' nodes enforced by origin, this cluster's own endpoints,
	// and those skipped.
	viewCounts     map[string]int
	viewNodeCounts map[string]int
	viewOwn        int
	viewConflicts  []string
	// lastPublished is what the publisher was last given, and what it
	// refused of it.
	lastPublished *publishedSet
	publishNotes  []string
	// applied is the revision of the view last applied; appliedWake is
	// closed and replaced whenever it changes.
	applied     int64
	appliedWake chan struct{}
	// started is when the daemon was made: the first view is waited for
	// until Config.GlobalView.SyncTimeout after it.
	started time.Time
}

// New returns a Daemon.
func New(o Options) *Daemon {
	if o.Inputs == nil {
		o.Inputs = ReadFiles
	}
	if o.KeepDrops <= 0 {
		o.KeepDrops = 1024
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		o.Log = l
	}
	d := &Daemon{
		enf: o.Enforcer, inputs: o.Inputs, log: o.Log, cfg: o.Config, onNodes: o.OnNodes, notReady: o.NotReady, gv: o.GlobalView,
		kick:        make(chan struct{}, 1),
		appliedWake: make(chan struct{}),
		started:     time.Now(),
		drops:       newDropRing(o.KeepDrops),
		metrics:     prometheus.NewRegistry(),
	}
	d.status.Node = o.Config.Node
	d.status.Cluster = o.Config.Cluster
	d.status.LastApply.Result = loaderapi.ResultPending
	if o.Config.Kubernetes.Enabled {
		d.kube = &Kube{}
	}
	return d
}

// Changed asks for a reconcile (a file or an address changed, SIGHUP).
func (d *Daemon) Changed() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// setKube records a Kubernetes source's state and asks for a reconcile.
func (d *Daemon) setKube(f func(k *Kube)) {
	d.mu.Lock()
	if d.kube == nil {
		d.kube = &Kube{}
	}
	f(d.kube)
	d.mu.Unlock()
	d.Changed()
}

// SetPods records the Kubernetes Pods.
func (d *Daemon) SetPods(s endpoints.PodsState) { d.setKube(func(k *Kube) { k.Pods = &s }) }

// SetNamespaces records the Kubernetes Namespaces.
func (d *Daemon) SetNamespaces(s endpoints.NamespacesState) {
	d.setKube(func(k *Kube) { k.Namespaces = &s })
}

// SetNodes records the Kubernetes Nodes.
func (d *Daemon) SetNodes(s endpoints.NodesState) { d.setKube(func(k *Kube) { k.Nodes = &s }) }

// SetPolicies records the policies of the Kubernetes API.
func (d *Daemon) SetPolicies(s endpoints.PoliciesState) {
	d.setKube(func(k *Kube) { k.Policies = &s })
}

// Run reconciles until ctx ends: at once, and after every change (changes
// closer than debounce are folded). A failed reconcile is retried every
// retry until one succeeds.
func (d *Daemon) Run(ctx context.Context, debounce, retry time.Duration) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	if d.cfg.GlobalView.Enabled {
		// Reconcile when the wait for the first view is over.
		t := time.AfterFunc(time.Until(d.started.Add(d.cfg.GlobalView.SyncTimeout)), d.Changed)
		defer t.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.kick:
			timer.Reset(debounce)
		case <-timer.C:
			if err := d.Reconcile(); err != nil {
				d.log.WithError(err).Warn("policy not applied; the last good policy stays enforced")
				timer.Reset(retry)
			}
		}
	}
}

// Reconcile reads, compiles and applies once.
func (d *Daemon) Reconcile() error {
	start := time.Now()
	d.mu.Lock()
	cfg := d.cfg
	var kube *Kube
	if d.kube != nil {
		k := *d.kube
		kube = &k
	}
	view := d.view
	d.mu.Unlock()
	waiting, err := d.reconcile(cfg, kube, view)
	d.mu.Lock()
	defer d.mu.Unlock()
	la := &d.status.LastApply
	la.Time, la.Duration = time.Now(), time.Since(start)
	switch {
	case err != nil:
		la.Result, la.Error = loaderapi.ResultFailed, err.Error()
		la.Failures++
	case waiting != "":
		la.Result, la.Error, la.Failures = loaderapi.ResultWaiting, waiting, 0
	default:
		la.Result, la.Error, la.Failures = loaderapi.ResultOK, "", 0
	}
	d.status.Ready = la.Result == loaderapi.ResultOK
	return err
}

// inputs is everything one reconcile compiles.
type inputs struct {
	endpoints []policy.Endpoint
	policies  []policy.Policy
	hostIPs   []netip.Addr
	nodes     []loaderapi.Node
	warnings  []string
	refused   []loaderapi.PolicyError
	notes     []string
	// origins are the endpoints' origins by name.
	origins map[string]string
	view    viewMerge
}

// gather reads the files and combines them with what Kubernetes says.
func (d *Daemon) gather(cfg loaderconfig.Config, kube *Kube, view *globalview.View) (inputs, error) {
	var in inputs
	files, err := d.inputs(cfg)
	if err != nil {
		return in, err
	}
	var pods []endpoints.Workload
	nsLabels := make(map[string]map[string]string)
	nodeIPs := make(map[string][]netip.Addr)
	for _, n := range files.Endpoints.Nodes {
		nodeIPs[n.Name] = append(nodeIPs[n.Name], n.IPs...)
	}
	in.policies = files.Policies
	if kube != nil {
		pods = kube.Pods.Workloads
		maps.Copy(nsLabels, kube.Namespaces.Labels)
		for _, n := range kube.Nodes.Nodes {
			nodeIPs[n.Name] = append(nodeIPs[n.Name], n.IPs...)
		}
		if kube.Nodes.Err != nil {
			in.notes = append(in.notes, kube.Nodes.Err.Error())
		}
		in.notes = append(in.notes, kube.Policies.Missing...)
		fromFiles := make(map[string]policy.Policy, len(files.Policies))
		for _, p := range files.Policies {
			fromFiles[p.ID()] = p
		}
		for _, p := range kube.Policies.Policies {
			if f, dup := fromFiles[p.ID()]; dup {
				in.refused = append(in.refused, loaderapi.PolicyError{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name,
					Error: fmt.Sprintf("%s %s is also defined in %s:%d; the file's is enforced", p.Kind, p.ID(), f.File, f.Line)})
				continue
			}
			in.policies = append(in.policies, p)
		}
		for _, e := range kube.Policies.Errors {
			in.refused = append(in.refused, loaderapi.PolicyError{Kind: e.Kind, Namespace: e.Namespace, Name: e.Name, Error: e.Error})
		}
	}
	// A namespace the endpoints file describes has the file's labels.
	maps.Copy(nsLabels, files.Endpoints.Namespaces)
	ws, err := endpoints.Merge(files.Endpoints.Endpoints, pods)
	if err != nil {
		return in, err
	}
	in.endpoints = endpoints.Derive(ws, nsLabels, cfg.Cluster)
	in.origins = make(map[string]string, len(ws))
	namespaces := make(map[string]string, len(ws))
	local := make(map[netip.Addr]string)
	for _, w := range ws {
		in.origins[w.Name], namespaces[w.Name] = OriginFile, w.Namespace
		for _, ip := range w.IPs {
			local[ip] = w.Name
		}
	}
	var podNodes map[string]string
	for _, w := range pods {
		in.origins[w.Name] = OriginKubernetes
	}
	if kube != nil {
		podNodes = kube.Pods.Nodes
	}
	if cfg.GlobalView.Enabled {
		own := globalview.ClusterOrigin(cfg.Cluster)
		in.notes = append(in.notes, d.publish(publishedSet{eps: published(in.endpoints, namespaces, podNodes, own), nodes: publishedNodes(nodeIPs, own)})...)
	}
	for _, p := range in.policies {
		in.warnings = append(in.warnings, p.Warnings...)
	}

	// The host: the node's own addresses, those configured, and those the
	// sources list for this node. A found address that an endpoint claims
	// is the endpoint's.
	claimed := make(map[netip.Addr]bool)
	for _, ep := range in.endpoints {
		for _, ip := range ep.IPs {
			claimed[ip] = true
		}
	}
	found, err := d.enf.HostAddresses()
	if err != nil {
		return in, err
	}
	for _, ip := range found {
		if !claimed[ip] {
			in.hostIPs = append(in.hostIPs, ip)
		}
	}
	in.hostIPs = append(in.hostIPs, cfg.HostIPs...)
	in.hostIPs = append(in.hostIPs, nodeIPs[cfg.Node]...)
	slices.SortFunc(in.hostIPs, netip.Addr.Compare)
	in.hostIPs = slices.Compact(in.hostIPs)
	for _, name := range slices.Sorted(maps.Keys(nodeIPs)) {
		if name == cfg.Node {
			continue
		}
		ips := slices.Clone(nodeIPs[name])
		slices.SortFunc(ips, netip.Addr.Compare)
		in.nodes = append(in.nodes, loaderapi.Node{Name: name, IPs: slices.Compact(ips)})
	}
	if cfg.GlobalView.Enabled {
		// The view's endpoints, then the other clusters' nodes, where
		// the local sources leave room: an address that a local
		// endpoint, this node or a node of this cluster holds is
		// theirs.
		taken := make(map[netip.Addr]string)
		for ip, name := range local {
			taken[ip] = fmt.Sprintf("the local endpoint %q's", name)
		}
		for _, n := range in.nodes {
			for _, ip := range n.IPs {
				taken[ip] = fmt.Sprintf("this cluster's node %q's", n.Name)
			}
		}
		for _, ip := range in.hostIPs {
			taken[ip] = "this node's"
		}
		own := globalview.ClusterOrigin(cfg.Cluster)
		in.view = mergeView(view, own, taken)
		for name, o := range in.view.origins {
			in.origins[name] = o
		}
		for _, ep := range in.view.endpoints {
			for _, ip := range ep.IPs {
				taken[ip] = fmt.Sprintf("the view endpoint %s's", ep.Name)
			}
		}
		in.view.mergeViewNodes(view, own, taken)
	}
	slices.SortFunc(in.refused, func(a, b loaderapi.PolicyError) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return in, nil
}

// reconcile reads, compiles and applies; it returns why it waits, if it
// does.
func (d *Daemon) reconcile(cfg loaderconfig.Config, kube *Kube, view *globalview.View) (string, error) {
	if kube != nil {
		if w := kube.waiting(); w != "" {
			return w, nil
		}
	}
	if cfg.GlobalView.Enabled && view == nil {
		if time.Since(d.started) < cfg.GlobalView.SyncTimeout {
			return "waiting for the first global view from etcd", nil
		}
		// Bounded: the local endpoints alone, rather than nothing.
		view = &globalview.View{}
	}
	in, err := d.gather(cfg, kube, view)
	if err != nil {
		return "", err
	}
	eps, err := d.enf.Locate(in.endpoints)
	if err != nil {
		return "", fmt.Errorf("locate endpoints: %w", err)
	}
	// The global view's endpoints run elsewhere: another cluster's pods,
	// outside workloads. They only feed identities and the ipcache.
	eps = append(eps, in.view.endpoints...)
	var nodeIPs, viewNodeIPs []netip.Addr
	for _, n := range in.nodes {
		nodeIPs = append(nodeIPs, n.IPs...)
	}
	// The other clusters' nodes are remote-node to policy too, but not
	// this cluster's nodes to the load balancers (onNodes).
	for _, n := range in.view.nodes {
		viewNodeIPs = append(viewNodeIPs, n.IPs...)
	}
	d.mu.Lock()
	prev := d.resolved
	d.mu.Unlock()
	res, err := policy.Compile(in.policies, eps,
		policy.WithHostIPs(in.hostIPs...), policy.WithRemoteNodeIPs(nodeIPs...), policy.WithRemoteNodeIPs(viewNodeIPs...),
		policy.WithCluster(cfg.Cluster), policy.WithPrevious(prev))
	if err != nil {
		return "", fmt.Errorf("compile policy: %w", err)
	}
	d.logInputs(in)
	rep, err := d.enf.Apply(res)
	if err != nil {
		return "", fmt.Errorf("apply policy: %w", err)
	}
	if rep.Changed() {
		d.log.WithFields(logrus.Fields{"endpoints": len(res.Endpoints), "set": rep.Counts}).Info("policy applied")
	}
	if d.onNodes != nil {
		d.onNodes(append(slices.Clone(in.hostIPs), nodeIPs...))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resolved = res
	d.status.Endpoints = endpointStatus(eps, res, in.origins)
	d.viewCounts, d.viewNodeCounts, d.viewOwn, d.viewConflicts = in.view.counts, in.view.nodeCounts, in.view.own, in.view.conflicts
	if view != nil && view.Revision != d.applied {
		d.applied = view.Revision
		close(d.appliedWake)
		d.appliedWake = make(chan struct{})
	}
	d.status.Skipped = nil
	for _, s := range rep.Skipped {
		d.status.Skipped = append(d.status.Skipped, loaderapi.SkippedEndpoint{Name: s.Name, Reason: s.Reason})
	}
	d.status.Policies = len(in.policies)
	d.status.HostIPs = in.hostIPs
	d.status.Nodes = append(slices.Clone(in.nodes), in.view.nodes...)
	d.status.Warnings = in.warnings
	d.status.PolicyErrors = in.refused
	d.status.Notes = in.notes
	return "", nil
}

// logInputs logs the ignored fields and the refused policy objects once,
// when they change.
func (d *Daemon) logInputs(in inputs) {
	key := fmt.Sprint(in.warnings, in.refused, in.notes, in.view.conflicts)
	d.mu.Lock()
	same := key == d.logged
	d.logged = key
	d.mu.Unlock()
	if same {
		return
	}
	for _, w := range in.warnings {
		d.log.WithField("warning", w).Warn("policy field ignored")
	}
	for _, e := range in.refused {
		d.log.WithFields(logrus.Fields{"kind": e.Kind, "namespace": e.Namespace, "name": e.Name}).WithField("error", e.Error).
			Warn("policy object refused; the rest stays enforced")
	}
	for _, n := range in.notes {
		d.log.WithField("note", n).Warn("endpoint source")
	}
	for _, c := range in.view.conflicts {
		d.log.WithField("conflict", c).Warn("global view endpoint skipped")
	}
}

// endpointStatus lists every known endpoint with its identity and whether
// it is local and enforced.
func endpointStatus(eps []policy.Endpoint, res policy.Resolved, origins map[string]string) []loaderapi.Endpoint {
	enforced := map[string]bool{}
	for _, ep := range res.Endpoints {
		enforced[ep.Name] = ep.Enforced
	}
	// Each endpoint's identity from the identities' lists: a lookup in
	// the ipcache per endpoint would cost endpoints × prefixes.
	ids := make(map[string]policy.Identity, len(eps))
	for _, info := range res.Identities {
		for _, name := range info.Endpoints {
			ids[name] = info.ID
		}
	}
	out := make([]loaderapi.Endpoint, 0, len(eps))
	for _, ep := range eps {
		e := loaderapi.Endpoint{Name: ep.Name, Origin: origins[ep.Name], IPs: ep.IPs, Labels: ep.Labels, Local: ep.Local, Enforced: enforced[ep.Name]}
		if id, ok := ids[ep.Name]; ok {
			e.Identity = uint32(id)
		} else if len(ep.IPs) > 0 {
			e.Identity = uint32(res.Lookup(ep.IPs[0]))
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b loaderapi.Endpoint) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Status returns a copy of the status.
func (d *Daemon) Status() loaderapi.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.status
	s.Endpoints = slices.Clone(s.Endpoints)
	s.Skipped = slices.Clone(s.Skipped)
	s.HostIPs = slices.Clone(s.HostIPs)
	s.Nodes = slices.Clone(s.Nodes)
	s.Warnings = slices.Clone(s.Warnings)
	s.PolicyErrors = slices.Clone(s.PolicyErrors)
	s.Notes = slices.Clone(s.Notes)
	s.GlobalView = d.globalViewStatus()
	return s
}

// Resolved returns the policy last applied.
func (d *Daemon) Resolved() policy.Resolved {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resolved
}

// RecordDrop keeps a drop event for the API.
func (d *Daemon) RecordDrop(ev datapath.DropEvent) { d.drops.add(ev) }
