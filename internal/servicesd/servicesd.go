// Package servicesd keeps roost-loader's socket load balancer in step with
// the services file: on every change it reads the file, works out what
// this node serves (socklb.Entries) and syncs the datapath. A file that
// does not load keeps the last good set served, and says why in its
// status; GET /v1/services serves that status.
package servicesd

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/services"
	"github.com/roost-net/roost/internal/socklb"
)

// Datapath is what the daemon syncs: socklb.LB.
type Datapath interface {
	Sync([]socklb.Entry) error
	Counters() (map[string]uint64, error)
}

// Options configure a Daemon.
type Options struct {
	// File is the services file; a missing file means no services.
	File string
	// Node is this node's name (internalTrafficPolicy: Local).
	Node     string
	Datapath Datapath
	Log      logrus.FieldLogger
}

// Daemon is the reconcile loop.
type Daemon struct {
	o    Options
	kick chan struct{}

	mu     sync.Mutex
	status loaderapi.Services
}

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

// Reconcile reads the file and syncs the datapath once.
func (d *Daemon) Reconcile() error {
	svcs, err := services.LoadFile(d.o.File) // missing: no services
	var entries []socklb.Entry
	var notes []string
	if err == nil {
		entries, notes = socklb.Entries(svcs, d.o.Node)
		err = d.o.Datapath.Sync(entries)
	}
	counters, cerr := d.o.Datapath.Counters()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status.LastSync = time.Now()
	if cerr == nil {
		d.status.Counters = counters
	}
	if err != nil {
		d.status.Error = err.Error()
		return err
	}
	d.status.Error = ""
	d.status.Services, d.status.Notes = len(svcs), notes
	d.status.Frontends = frontends(entries)
	for _, n := range notes {
		d.o.Log.WithField("file", d.o.File).Warn(n)
	}
	d.o.Log.WithField("services", len(svcs)).WithField("frontends", len(entries)).Info("services synced")
	return nil
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

// Status returns the daemon's status, with fresh counters.
func (d *Daemon) Status() loaderapi.Services {
	counters, err := d.o.Datapath.Counters()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.status
	if err == nil {
		st.Counters = counters
	}
	return st
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
