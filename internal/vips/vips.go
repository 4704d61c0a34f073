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
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/routes"
	"github.com/roost-net/roost/internal/services"
)

// Desired returns the VIP prefixes node announces for svcs, sorted and
// each once.
func Desired(svcs []services.Service, node string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range svcs {
		if s.ExternalTrafficPolicy == services.TrafficPolicyLocal && !hasLocal(s, node) {
			continue
		}
		for _, f := range s.Frontends() {
			if f.Kind == services.ClusterIP {
				continue
			}
			a := f.Addr.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return slices.Compact(out)
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
	Sync(want []netip.Prefix) (routes.Changes, error)
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

	kick     chan struct{}
	mu       sync.Mutex
	st       Status
	excluded bool
	kube     *[]services.Service // nil until the first set
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
	var want []netip.Prefix
	if err == nil {
		if !excluded {
			want = Desired(svcs, a.Node)
		}
		var ch routes.Changes
		if ch, err = a.Routes.Sync(want); err == nil && !ch.Empty() {
			a.Log.WithField("changes", ch.String()).Info("VIPs changed")
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.LastSync = time.Now()
	if err != nil {
		a.st.Error = err.Error()
		return err
	}
	a.st.Error, a.st.VIPs, a.st.Excluded = "", append([]netip.Prefix{}, want...), excluded
	return nil
}

// Status returns what the announcer last did.
func (a *Announcer) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.st
	st.VIPs = slices.Clone(st.VIPs)
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
