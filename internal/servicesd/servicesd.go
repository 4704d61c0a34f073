// Package servicesd keeps roost-loader's load balancers (the socket one,
// the uplink one, or both) in step with the services file and, optionally,
// the Services of the Kubernetes API: on every change it reads the file,
// merges in the Kubernetes services, works out what this node serves
// (socklb.Entries, xdplb.Entries) and syncs the datapaths. A file that does not load keeps the last good set served, and
// says why in its status; so does a Kubernetes source that has not
// reported yet. GET /v1/services serves that status.
//
// The merge: the file wins. A Kubernetes service with the namespace and
// name of a file service is left out, and so is every frontend address of
// a Kubernetes service that would serve a port and protocol a file
// service serves there; each gets a note in the status. The file is the
// node operator's own word, so nothing created in the cluster can take a
// frontend from it, and a clash costs only the clashing service, never
// the updates of all the others.
package servicesd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/services"
	"github.com/roost-net/roost/internal/socklb"
	"github.com/roost-net/roost/internal/xdplb"
)

// Datapath is the socket load balancer the daemon syncs: socklb.LB.
type Datapath interface {
	Sync([]socklb.Entry) error
	Counters() (map[string]uint64, error)
	FrontendStats() (map[socklb.Frontend]uint64, error)
}

// Uplink is the uplink load balancer the daemon syncs: xdplb.LB.
type Uplink interface {
	Sync([]xdplb.Entry) error
	Counters() (map[string]uint64, error)
	FrontendStats() (map[xdplb.Frontend]xdplb.Stats, error)
	Conns() (int, error)
	Modes() map[string]string
	SetNodes([]netip.Addr) error
}

// Options configure a Daemon.
type Options struct {
	// File is the services file; a missing file means no services.
	File string
	// Kubernetes says that Kubernetes services come too, through
	// SetKubernetes: until the first set arrives, nothing is synced.
	Kubernetes bool
	// Node is this node's name (internalTrafficPolicy and
	// externalTrafficPolicy: Local).
	Node string
	// Datapath is the socket load balancer; nil when not enabled.
	Datapath Datapath
	// Uplink is the uplink load balancer; nil when not enabled.
	// NodeAddrs returns the node's own addresses, where it serves node
	// ports; MaglevSize is the size of its tables.
	Uplink     Uplink
	NodeAddrs  func() []netip.Addr
	MaglevSize uint64
	Log        logrus.FieldLogger
}

// Daemon is the reconcile loop.
type Daemon struct {
	o    Options
	kick chan struct{}

	// dp serializes the datapaths' Sync with their FrontendStats, which
	// reads the frontends Sync writes (socklb.LB and xdplb.LB are not
	// safe for concurrent use): Reconcile runs in Run's goroutine, Status
	// in those of the HTTP API and of the metrics. Their counters, flows
	// and modes read only the maps, or what Attach set, and need no lock.
	dp sync.Mutex

	mu       sync.Mutex
	status   loaderapi.Services
	kube     kubeSet
	uplink   []xdplb.Entry // what the uplink load balancer serves
	nodes    []netip.Addr  // the cluster's nodes' addresses (SetNodes)
	nodesSet bool
}

// SetNodes records the addresses of the cluster's nodes, this one's
// included, and asks for a reconcile when they changed: the uplink load
// balancer decapsulates only what they encapsulated.
func (d *Daemon) SetNodes(addrs []netip.Addr) {
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	d.mu.Lock()
	same := d.nodesSet && slices.Equal(d.nodes, addrs)
	d.nodes, d.nodesSet = addrs, true
	d.mu.Unlock()
	if !same {
		d.Changed()
	}
}

// kubeSet is the last set of Kubernetes services.
type kubeSet struct {
	synced bool
	svcs   []services.Service
	notes  []string
}

// WaitingForKubernetes is the status error while the Kubernetes services
// have not arrived: the datapath keeps what it serves meanwhile, rather
// than lose every Kubernetes service because the API server has not
// answered yet.
const WaitingForKubernetes = "waiting for the Kubernetes services"

// New returns a Daemon; Run starts it.
func New(o Options) *Daemon {
	return &Daemon{o: o, kick: make(chan struct{}, 1), status: loaderapi.Services{File: o.File, Frontends: []loaderapi.ServiceFrontend{}}}
}

// Changed asks for a reconcile (the file changed, or SIGHUP).
func (d *Daemon) Changed() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// SetKubernetes records the Kubernetes services and notes on what their
// source left out (kubewatch.WatchKubernetes reports them so), and asks for
// a reconcile.
func (d *Daemon) SetKubernetes(svcs []services.Service, notes []string) {
	d.mu.Lock()
	d.kube = kubeSet{synced: true, svcs: svcs, notes: notes}
	d.mu.Unlock()
	d.Changed()
}

// Run reconciles at once, then after every change (debounced), and again
// every retry while the last attempt failed, until ctx ends.
func (d *Daemon) Run(done <-chan struct{}, debounce, retry time.Duration) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-d.kick:
			timer.Reset(debounce)
		case <-timer.C:
			if err := d.Reconcile(); err != nil {
				d.o.Log.WithError(err).Warn("services not synced; the last good set stays served")
				timer.Reset(retry)
			}
		}
	}
}

// Reconcile reads the file, merges in the Kubernetes services and syncs
// the datapath once. While the Kubernetes services have not arrived (with
// Options.Kubernetes), it syncs nothing, returns nil and says
// WaitingForKubernetes in the status (a file that does not load is still
// an error).
func (d *Daemon) Reconcile() error {
	svcs, err := services.LoadFile(d.o.File) // missing: no services
	d.mu.Lock()
	kube := d.kube
	d.mu.Unlock()
	waiting := err == nil && d.o.Kubernetes && !kube.synced
	var (
		entries []socklb.Entry
		uplink  []xdplb.Entry
		notes   []string
	)
	if err == nil && !waiting {
		svcs, notes = merge(svcs, kube)
		var more []string
		if d.o.Datapath != nil {
			entries, more = socklb.Entries(svcs, d.o.Node)
			notes = append(notes, more...)
			d.dp.Lock()
			err = d.o.Datapath.Sync(entries)
			d.dp.Unlock()
		}
		if d.o.Uplink != nil && err == nil {
			var addrs []netip.Addr
			if d.o.NodeAddrs != nil {
				addrs = d.o.NodeAddrs()
			}
			uplink, more = xdplb.Entries(svcs, d.o.Node, addrs)
			for _, n := range more {
				if !slices.Contains(notes, n) {
					notes = append(notes, n)
				}
			}
			d.mu.Lock()
			nodes := d.nodes
			d.mu.Unlock()
			d.dp.Lock()
			if err = d.o.Uplink.Sync(uplink); err == nil {
				err = d.o.Uplink.SetNodes(nodes)
			}
			d.dp.Unlock()
			if err != nil {
				err = fmt.Errorf("uplink: %w", err)
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status.LastSync = time.Now()
	if waiting {
		d.status.Error = WaitingForKubernetes
		d.o.Log.Info("services not synced: " + WaitingForKubernetes)
		return nil
	}
	if err != nil {
		d.status.Error = err.Error()
		return err
	}
	// Log only the notes that are new: the Kubernetes services change
	// with every rollout, and their notes would repeat each time.
	for _, n := range notes {
		if !slices.Contains(d.status.Notes, n) {
			d.o.Log.Warn(n)
		}
	}
	d.status.Error = ""
	d.status.Services, d.status.Notes = len(svcs), notes
	d.status.Frontends = frontends(entries)
	if d.o.Uplink != nil {
		d.uplink = uplink
	}
	d.o.Log.WithField("services", len(svcs)).WithField("frontends", len(entries)).WithField("uplinkFrontends", len(uplink)).Info("services synced")
	return nil
}

// merge returns services.Merge of the file's and the Kubernetes services,
// with the notes of the Kubernetes source first.
func merge(file []services.Service, kube kubeSet) ([]services.Service, []string) {
	out, notes := services.Merge(file, kube.svcs)
	return out, append(slices.Clone(kube.notes), notes...)
}

func frontends(es []socklb.Entry) []loaderapi.ServiceFrontend {
	out := make([]loaderapi.ServiceFrontend, 0, len(es))
	for _, e := range es {
		f := loaderapi.ServiceFrontend{Frontend: e.Frontend.String(), Backends: []string{}}
		for _, b := range e.Backends {
			f.Backends = append(f.Backends, b.String())
		}
		if e.Affinity > 0 {
			f.Affinity = e.Affinity.String()
		}
		out = append(out, f)
	}
	return out
}

// SyncError is the last sync's error, "" after a good one: cheap, for
// readiness (Status reads the datapaths too).
func (d *Daemon) SyncError() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status.Error
}

// Status returns the daemon's status, with fresh counters.
func (d *Daemon) Status() loaderapi.Services {
	st, _ := d.read()
	return st
}

// readErrors are what read could not read from the datapaths: the status
// has nothing (counters) or zeros (frontends' counters, flows) in its
// place.
type readErrors struct {
	counters, frontends                    error // the socket load balancer's
	uplinkCounters, uplinkFrontends, flows error
}

// read returns the status with fresh counters, and what of them it could
// not read. It holds d.mu only to copy the status: reading the maps
// (flows: the whole connection table) delays no reconcile.
func (d *Daemon) read() (loaderapi.Services, readErrors) {
	d.mu.Lock()
	st, uplink := d.status, d.uplink
	d.mu.Unlock()
	var errs readErrors
	if d.o.Datapath != nil {
		var (
			counters map[string]uint64
			stats    map[socklb.Frontend]uint64
		)
		if counters, errs.counters = d.o.Datapath.Counters(); errs.counters == nil {
			st.Counters = counters
		}
		d.dp.Lock()
		stats, errs.frontends = d.o.Datapath.FrontendStats()
		d.dp.Unlock()
		if errs.frontends == nil {
			byName := make(map[string]uint64, len(stats))
			for f, n := range stats {
				byName[f.String()] = n
			}
			st.Frontends = slices.Clone(st.Frontends)
			for i := range st.Frontends {
				st.Frontends[i].Connections = byName[st.Frontends[i].Frontend]
			}
		}
	}
	if d.o.Uplink != nil {
		st.Uplink = d.uplinkStatus(uplink, &errs)
	}
	return st, errs
}

// uplinkStatus reports the uplink load balancer serving entries.
func (d *Daemon) uplinkStatus(entries []xdplb.Entry, errs *readErrors) *loaderapi.Uplink {
	u := &loaderapi.Uplink{Interfaces: d.o.Uplink.Modes(), Algorithm: "maglev", MaglevSize: d.o.MaglevSize,
		Frontends: make([]loaderapi.UplinkFrontend, 0, len(entries))}
	var c map[string]uint64
	if c, errs.uplinkCounters = d.o.Uplink.Counters(); errs.uplinkCounters == nil {
		u.Counters = c
	}
	var n int
	if n, errs.flows = d.o.Uplink.Conns(); errs.flows == nil {
		u.Flows = n
	}
	d.dp.Lock()
	stats, err := d.o.Uplink.FrontendStats()
	d.dp.Unlock()
	errs.uplinkFrontends = err
	for _, e := range entries {
		f := loaderapi.UplinkFrontend{Frontend: e.Frontend.String(), Kind: "nodeport", Affinity: e.Affinity,
			Backends: make([]loaderapi.UplinkBackend, 0, len(e.Backends))}
		if e.VIP {
			f.Kind = "vip"
		}
		for _, b := range e.Backends {
			state := "draining"
			if b.Active {
				state = "active"
			}
			f.Backends = append(f.Backends, loaderapi.UplinkBackend{Addr: b.Addr.String(), Local: b.Local, State: state})
		}
		s := stats[e.Frontend]
		f.Packets, f.Bytes, f.Connections = s.Packets, s.Bytes, s.Conns
		u.Frontends = append(u.Frontends, f)
	}
	return u
}

// Handler serves GET /v1/services.
func (d *Daemon) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(d.Status())
	})
}
