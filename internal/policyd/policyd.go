// Package policyd is roost-loader's reconcile loop: it reads the endpoints
// file, the policy directory and (when enabled) the Kubernetes Pods, compiles
// them, and has the loader enforce the result. Whatever fails to read or
// compile leaves the last enforced policy in place: a policy is never half
// enforced and never dropped because a file is being rewritten. It also keeps
// the recent drop events and serves the loader's HTTP API.
package policyd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/endpoints"
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
}

// Inputs reads what the policy is compiled from. Resolve reads the files and
// compiles; the loop calls it on every change.
type Inputs func(cfg loaderconfig.Config, pods []policy.Endpoint) ([]policy.Endpoint, []policy.Policy, error)

// ReadFiles is the Inputs of the files in cfg: the endpoints file (a missing
// file is no endpoints) merged with pods, and the policy directory.
func ReadFiles(cfg loaderconfig.Config, pods []policy.Endpoint) ([]policy.Endpoint, []policy.Policy, error) {
	var fileEPs []policy.Endpoint
	if cfg.EndpointsFile != "" {
		f, err := os.Open(cfg.EndpointsFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, nil, fmt.Errorf("endpoints file: %w", err)
		default:
			fileEPs, err = endpoints.LoadFile(f, cfg.EndpointsFile)
			f.Close()
			if err != nil {
				return nil, nil, err
			}
		}
	}
	eps, err := endpoints.Merge(fileEPs, pods)
	if err != nil {
		return nil, nil, err
	}
	pols, err := endpoints.LoadPolicyDir(cfg.PolicyDir)
	if err != nil {
		return nil, nil, err
	}
	return eps, pols, nil
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
}

// Daemon is the loop. Its setters may be called from any goroutine.
type Daemon struct {
	enf    Enforcer
	inputs Inputs
	log    logrus.FieldLogger
	kick   chan struct{}

	mu       sync.Mutex
	cfg      loaderconfig.Config
	pods     *endpoints.PodsState // nil when Kubernetes is off
	status   loaderapi.Status
	resolved policy.Resolved
	drops    *dropRing
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
		enf: o.Enforcer, inputs: o.Inputs, log: o.Log, cfg: o.Config,
		kick:  make(chan struct{}, 1),
		drops: newDropRing(o.KeepDrops),
	}
	d.status.Node = o.Config.Node
	d.status.LastApply.Result = loaderapi.ResultPending
	if o.Config.Kubernetes.Enabled {
		d.pods = &endpoints.PodsState{}
	}
	return d
}

// Changed asks for a reconcile (a file changed, SIGHUP).
func (d *Daemon) Changed() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// SetPods records the Kubernetes Pods.
func (d *Daemon) SetPods(s endpoints.PodsState) {
	d.mu.Lock()
	d.pods = &s
	d.mu.Unlock()
	d.Changed()
}

// Run reconciles until ctx ends: at once, and after every change (changes
// closer than debounce are folded). A failed reconcile is retried every
// retry until one succeeds.
func (d *Daemon) Run(ctx context.Context, debounce, retry time.Duration) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
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
	cfg, pods := d.cfg, d.pods
	d.mu.Unlock()
	waiting, err := d.reconcile(cfg, pods)
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

// reconcile reads, compiles and applies; it returns why it waits, if it
// does.
func (d *Daemon) reconcile(cfg loaderconfig.Config, pods *endpoints.PodsState) (string, error) {
	var podEPs []policy.Endpoint
	if pods != nil {
		if !pods.Synced {
			return "waiting for the Pod informer to sync", nil
		}
		podEPs = pods.Endpoints
	}
	eps, pols, err := d.inputs(cfg, podEPs)
	if err != nil {
		return "", err
	}
	eps, err = d.enf.Locate(eps)
	if err != nil {
		return "", fmt.Errorf("locate endpoints: %w", err)
	}
	var opts []policy.Option
	if len(cfg.HostIPs) > 0 {
		opts = append(opts, policy.WithHostIPs(cfg.HostIPs...))
	}
	d.mu.Lock()
	prev := d.resolved
	d.mu.Unlock()
	opts = append(opts, policy.WithPrevious(prev))
	res, err := policy.Compile(pols, eps, opts...)
	if err != nil {
		return "", fmt.Errorf("compile policy: %w", err)
	}
	rep, err := d.enf.Apply(res)
	if err != nil {
		return "", fmt.Errorf("apply policy: %w", err)
	}
	if rep.Changed() {
		d.log.WithFields(logrus.Fields{"endpoints": len(res.Endpoints), "set": rep.Counts}).Info("policy applied")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resolved = res
	d.status.Endpoints = endpointStatus(eps, res)
	d.status.Skipped = nil
	for _, s := range rep.Skipped {
		d.status.Skipped = append(d.status.Skipped, loaderapi.SkippedEndpoint{Name: s.Name, Reason: s.Reason})
	}
	d.status.Policies = len(pols)
	return "", nil
}

// endpointStatus lists every known endpoint with its identity and whether
// it is local and enforced.
func endpointStatus(eps []policy.Endpoint, res policy.Resolved) []loaderapi.Endpoint {
	enforced := map[string]bool{}
	for _, ep := range res.Endpoints {
		enforced[ep.Name] = ep.Enforced
	}
	out := make([]loaderapi.Endpoint, 0, len(eps))
	for _, ep := range eps {
		e := loaderapi.Endpoint{Name: ep.Name, IPs: ep.IPs, Labels: ep.Labels, Local: ep.Local, Enforced: enforced[ep.Name]}
		if len(ep.IPs) > 0 {
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
