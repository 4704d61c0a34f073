// Package syncd is roost-sync's daemon: it registers workloads outside
// Kubernetes (VMs, bare-metal hosts) in the global endpoint view on etcd,
// as the origin sync:<name>, so that every roost-loader enforces policy on
// them by their labels.
//
// Workloads come from two sources: the workloads file (LoadFile), re-read
// on change, whose last good version stays published while a new one does
// not load; and the HTTP API (Handler), whose workloads live in memory and
// expire when they stop heartbeating. The Daemon publishes their union
// through a globalview.Publisher: instances with the same name elect one
// writer, and the published endpoints outlive a stopped or dead syncer by
// the lease TTL, no more. See docs/roost-sync.md.
package syncd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/filewatch"
	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/syncconfig"
)

// Log field names.
const (
	fieldWorkload = "workload"
	fieldSource   = "source"
	fieldIPs      = "ips"
	fieldFile     = "file"
	fieldCount    = "workloads"
	fieldOrigin   = "origin"
	fieldListen   = "listen"
	fieldTask     = "task"
)

const (
	// reloadSettle is how long a change of the workloads file settles
	// before the file is read: an editor's write is several events.
	reloadSettle = 100 * time.Millisecond
	// shutdownTimeout bounds the HTTP server's shutdown.
	shutdownTimeout = 2 * time.Second
)

// Options configure a Daemon.
type Options struct {
	// Config is the validated configuration.
	Config syncconfig.Config
	// ID names this instance in its candidacy (the host name); default
	// "roost-sync".
	ID string
	// Log receives the daemon's events.
	Log logrus.FieldLogger
}

// Daemon keeps the workloads of the file and of the API published.
type Daemon struct {
	cfg     syncconfig.Config
	origin  globalview.Origin
	log     logrus.FieldLogger
	client  *globalview.Client
	pub     *globalview.Publisher
	metrics *metrics
	// reload is poked to re-read the workloads file.
	reload chan struct{}
	// loaded is closed once the workloads file has loaded: the publisher
	// campaigns only then, so that a file that does not load never has
	// the syncer replace what etcd holds with fewer workloads.
	loaded     chan struct{}
	loadedOnce sync.Once

	mu   sync.Mutex
	reg  *registry
	gen  uint64 // the publisher's generation of the current set
	file FileStatus
}

// New returns a daemon of opts. It does not contact etcd (Run does). It
// returns an error when the config is invalid, Log is nil, or the etcd
// client cannot be made (TLS files that do not load).
func New(opts Options) (*Daemon, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.ID == "" {
		opts.ID = "roost-sync"
	}
	if opts.Log == nil {
		return nil, errors.New("syncd: no logger")
	}
	origin := globalview.SyncOrigin(opts.Config.Name)
	log := opts.Log.WithField(fieldOrigin, origin.String())
	client, err := globalview.New(opts.Config.Etcd)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	pub, err := globalview.NewPublisher(client, origin, globalview.PublisherOptions{ID: opts.ID, TTL: opts.Config.LeaseTTL, Log: log})
	if err != nil {
		client.Close()
		return nil, err
	}
	d := &Daemon{
		cfg: opts.Config, origin: origin, log: log, client: client, pub: pub,
		reload: make(chan struct{}, 1), loaded: make(chan struct{}),
		reg:  newRegistry(opts.Config.HeartbeatTimeout),
		file: FileStatus{Path: opts.Config.WorkloadsFile},
	}
	d.metrics = newMetrics(d)
	return d, nil
}

// Close closes the connection to etcd; Run must have returned.
func (d *Daemon) Close() error { return d.client.Close() }

// Reload asks Run to re-read the workloads file (on SIGHUP, or a change).
// It never blocks.
func (d *Daemon) Reload() {
	select {
	case d.reload <- struct{}{}:
	default:
	}
}

// Run reads the workloads file, serves the HTTP API on ln, follows the
// file, expires API workloads that stop heartbeating and publishes, until
// ctx ends. It returns nil then, once everything has stopped (within a few
// seconds), or the error of a part that failed: the workloads file's
// directory does not exist or cannot be watched, the listener fails.
//
// Stopping withdraws the candidacy and deregisters nothing: the published
// workloads stay until a standby instance rewrites them or the lease
// expires. The API's workloads are in memory only: an instance that starts
// writing publishes the file's and those registered with it since it
// started.
func (d *Daemon) Run(ctx context.Context, ln net.Listener) error {
	if f := d.cfg.WorkloadsFile; f != "" {
		// The file may be missing (no workloads), its directory not: it
		// is watched for the file to appear.
		if st, err := os.Stat(filepath.Dir(f)); err != nil || !st.IsDir() {
			ln.Close()
			return fmt.Errorf("workloadsFile %s: its directory must exist, to be watched for the file: %v", f, cmp.Or(err, errors.New("not a directory")))
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.loadFile()

	errc := make(chan error, 1)
	var wg sync.WaitGroup
	start := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				// Only the first error is read: the others must not
				// block, or wg.Wait would hang.
				select {
				case errc <- fmt.Errorf("%s: %w", name, err):
				default:
					d.log.WithError(err).WithField(fieldTask, name).Error("stopped")
				}
			}
		})
	}
	start("http", func() error { return d.serve(ctx, ln) })
	start("publisher", func() error {
		select {
		case <-d.loaded:
		case <-ctx.Done():
			return nil
		}
		return d.pub.Run(ctx)
	})
	start("expiry", func() error { d.expireLoop(ctx); return nil })
	if d.cfg.WorkloadsFile != "" {
		start("workloads file watch", func() error { return filewatch.Watch(ctx, d.cfg.WorkloadsFile, d.Reload) })
	}
	start("workloads file", func() error { d.reloadLoop(ctx); return nil })
	d.log.WithField(fieldListen, ln.Addr().String()).WithField(fieldFile, d.cfg.WorkloadsFile).Info("roost-sync started")

	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	cancel()
	wg.Wait()
	d.log.Info("roost-sync stopped; its workloads stay until a standby takes over or the lease expires")
	return first
}

// serve serves the API on ln until ctx ends, then shuts the server down
// within shutdownTimeout.
func (d *Daemon) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           d.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-errc
		return nil
	}
}

// reloadLoop re-reads the workloads file when asked, until ctx ends.
func (d *Daemon) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.reload:
		}
		t := time.NewTimer(reloadSettle)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		// This reading covers the pokes of the settling time.
		select {
		case <-d.reload:
		default:
		}
		d.loadFile()
	}
}

// loadFile reads the workloads file and publishes it if it changed. A file
// that does not load changes nothing: its error is logged and reported,
// and the last good set stays published.
func (d *Daemon) loadFile() {
	var ws []Workload
	var err error
	if d.cfg.WorkloadsFile != "" {
		ws, err = LoadFile(d.cfg.WorkloadsFile)
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	log := d.log.WithField(fieldFile, d.cfg.WorkloadsFile)
	if err != nil {
		d.file.Error, d.file.ErrorTime = err.Error(), now
		d.metrics.fileLoads.WithLabelValues("error").Inc()
		if d.file.Loaded {
			log.WithError(err).Error("workloads file does not load; the last good set stays published")
		} else {
			log.WithError(err).Error("workloads file does not load; nothing is published until it does")
		}
		return
	}
	d.metrics.fileLoads.WithLabelValues("ok").Inc()
	first := !d.file.Loaded
	if d.file.Error != "" {
		log.Info("workloads file loads again")
	}
	d.file.Error, d.file.ErrorTime = "", time.Time{}
	d.file.Loaded, d.file.LoadedAt = true, now
	displaced, changed := d.reg.setFile(ws)
	for _, w := range displaced {
		d.metrics.displaced.Inc()
		log.WithField(fieldWorkload, w.ID()).WithField(fieldIPs, w.IPs).Warn("API workload removed: the workloads file now has its name or an address")
	}
	if changed || d.gen == 0 {
		d.publishLocked()
	}
	if changed || first {
		log.WithField(fieldCount, len(ws)).Info("workloads file loaded")
	}
	d.loadedOnce.Do(func() { close(d.loaded) })
}

// expireLoop removes the API workloads that stopped heartbeating, checking
// every tenth of the heartbeat timeout (at least every second), until ctx
// ends.
func (d *Daemon) expireLoop(ctx context.Context) {
	t := time.NewTicker(min(max(d.cfg.HeartbeatTimeout/10, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.expire(now)
		}
	}
}

// expire removes the API workloads last heard from a heartbeat timeout or
// more before now.
func (d *Daemon) expire(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	gone := d.reg.expire(now)
	if len(gone) == 0 {
		return
	}
	for _, e := range gone {
		d.metrics.expired.Inc()
		d.log.WithField(fieldWorkload, e.ID()).WithField(fieldIPs, e.IPs).Info("workload expired: no heartbeat within the heartbeat timeout")
	}
	d.publishLocked()
}

// register registers or updates an API workload.
func (d *Daemon) register(w Workload) (entry, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	created, changed, err := d.reg.put(w, time.Now())
	if err != nil {
		return entry{}, false, err
	}
	log := d.log.WithField(fieldWorkload, w.ID()).WithField(fieldSource, SourceAPI).WithField(fieldIPs, w.IPs)
	switch {
	case created:
		d.metrics.registrations.Inc()
		log.Info("workload registered")
	case changed:
		d.metrics.updates.Inc()
		log.Info("workload updated")
	default:
		log.Debug("workload registered again, unchanged")
	}
	if changed {
		d.publishLocked()
	}
	e, _ := d.reg.get(w.ID())
	return e, created, nil
}

// heartbeat restarts an API workload's heartbeat clock.
func (d *Daemon) heartbeat(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, err := d.reg.heartbeat(id, time.Now())
	if err == nil {
		d.log.WithField(fieldWorkload, id).WithField("expires", e.Expires.UTC().Format(time.RFC3339)).Debug("heartbeat")
	}
	return err
}

// deregister removes an API workload.
func (d *Daemon) deregister(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	w, err := d.reg.remove(id)
	if err != nil {
		return err
	}
	d.metrics.deregistrations.Inc()
	d.log.WithField(fieldWorkload, id).WithField(fieldIPs, w.IPs).Info("workload deregistered")
	d.publishLocked()
	return nil
}

// publishLocked hands the current set to the publisher; d.mu is held.
func (d *Daemon) publishLocked() {
	entries := d.reg.list()
	eps := make([]globalview.Endpoint, len(entries))
	for i, e := range entries {
		eps[i] = e.Endpoint(d.origin, d.cfg.Cluster)
	}
	gen, err := d.pub.Set(eps, nil)
	d.gen = gen
	if err != nil {
		// Every workload was checked on its way in: this is a bug.
		d.log.WithError(err).Error("workloads left out of the global view")
	}
}

// workloads returns every workload, sorted.
func (d *Daemon) workloads() []entry {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reg.list()
}

// workload returns one workload.
func (d *Daemon) workload(id string) (entry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reg.get(id)
}

// Status is what the daemon reports about itself (GET /v1/status).
type Status struct {
	// Origin is "sync:<name>"; Cluster the cluster the workloads are
	// registered into, if any.
	Origin  string `json:"origin"`
	Cluster string `json:"cluster,omitempty"`
	// Ready is whether this instance is its origin's writer and etcd
	// holds the current set; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"notReady,omitempty"`
	// Workloads counts the workloads of each source.
	Workloads Counts     `json:"workloads"`
	File      FileStatus `json:"file"`
	// Generation is the publisher's generation of the current set
	// (Publisher.Published reaches it once etcd holds it).
	Generation uint64                     `json:"generation"`
	Publisher  globalview.PublisherStatus `json:"publisher"`
}

// Counts counts workloads by source.
type Counts struct {
	File int `json:"file"`
	API  int `json:"api"`
}

// FileStatus is the state of the workloads file.
type FileStatus struct {
	// Path is the file; empty for none.
	Path string `json:"path,omitempty"`
	// Loaded is whether it has loaded since the syncer started (a
	// missing file loads as an empty one); LoadedAt when it last did.
	Loaded   bool      `json:"loaded"`
	LoadedAt time.Time `json:"loadedAt,omitzero"`
	// Error is why the last reading failed, one line per problem
	// ("file:line: field: message"); empty when it loaded.
	Error     string    `json:"error,omitempty"`
	ErrorTime time.Time `json:"errorTime,omitzero"`
}

// Status returns a snapshot of the daemon's state.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	file, api := d.reg.counts()
	s := Status{Origin: d.origin.String(), Cluster: d.cfg.Cluster, Workloads: Counts{File: file, API: api}, File: d.file, Generation: d.gen}
	d.mu.Unlock()
	s.Publisher = d.pub.Status()
	s.NotReady = notReady(s)
	s.Ready = s.NotReady == ""
	return s
}

// notReady says why s is not ready, or "" when it is.
func notReady(s Status) string {
	p := s.Publisher
	switch {
	case !s.File.Loaded:
		return fmt.Sprintf("the workloads file has not loaded, so nothing is published: %s", s.File.Error)
	case !p.Leader:
		msg := fmt.Sprintf("not the writer of %s: campaigning (another instance of this name writes, or etcd has not answered yet)", s.Origin)
		if p.LastError != "" {
			msg += fmt.Sprintf("; last error, %s: %s", p.LastErrorTime.Format(time.RFC3339), p.LastError)
		}
		return msg
	case p.Published < s.Generation:
		msg := fmt.Sprintf("publishing: etcd holds generation %d of the workloads, not yet the current %d", p.Published, s.Generation)
		if p.LastError != "" {
			msg += "; last error: " + p.LastError
		}
		return msg
	}
	return ""
}
