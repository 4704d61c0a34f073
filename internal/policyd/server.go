package policyd

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/loader"
	"github.com/roost-net/roost/internal/loaderapi"
)

// Observer is what the API reads from the loader.
type Observer interface {
	Counters() (map[datapath.Reason]datapath.Counter, error)
	EntryCounters() ([]loader.EntryCounter, error)
	Attachments() ([]loader.Attachment, error)
}

// Handler returns the loader's HTTP API (see loaderapi for the paths).
func (d *Daemon) Handler(obs Observer, pins string) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&verdictCollector{obs: obs}, &applyCollector{d: d})
	if d.cfg.GlobalView.Enabled {
		reg.MustRegister(&viewCollector{d: d})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loaderapi.PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET "+loaderapi.PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		s := d.Status()
		if !s.Ready {
			http.Error(w, "not ready: last apply "+s.LastApply.Result+": "+s.LastApply.Error, http.StatusServiceUnavailable)
			return
		}
		if g := s.GlobalView; g != nil && !g.Connected {
			// Still enforcing, but on a view that may be stale: say so.
			http.Error(w, fmt.Sprintf("not ready: global view: etcd does not answer (%s); enforcing the view of revision %d, confirmed %s ago",
				dash(g.LastError), g.Revision, g.ViewAge.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
		if d.notReady != nil {
			if msg := d.notReady(); msg != "" {
				http.Error(w, "not ready: "+msg, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET "+loaderapi.PathMetrics, promhttp.HandlerFor(prometheus.Gatherers{reg, d.metrics}, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+loaderapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, d.Status())
	})
	mux.HandleFunc("GET "+loaderapi.PathGlobalView, d.serveGlobalView)
	mux.HandleFunc("GET "+loaderapi.PathPolicy, func(w http.ResponseWriter, r *http.Request) {
		res := d.Resolved()
		ecs, err := entryCounters(obs)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, loaderapi.Policy{Resolved: res, EntryCounters: ecs})
	})
	mux.HandleFunc("GET "+loaderapi.PathCounters, func(w http.ResponseWriter, r *http.Request) {
		cs, err := counters(obs)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, cs)
	})
	mux.HandleFunc("GET "+loaderapi.PathBPF, func(w http.ResponseWriter, r *http.Request) {
		as, err := obs.Attachments()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out := loaderapi.BPF{Pins: pins, Attachments: []loaderapi.Attachment{}}
		for _, a := range as {
			out.Attachments = append(out.Attachments, loaderapi.Attachment{
				Ifindex: a.Ifindex, Interface: a.Interface, Program: a.Program, Mode: a.Mode.String(), Hook: a.Hook,
				ProgramID: uint32(a.ProgramID), Tag: a.Tag, Current: a.Current, LinkID: uint32(a.LinkID), Pin: a.Pin,
			})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET "+loaderapi.PathDrops, func(w http.ResponseWriter, r *http.Request) {
		follow := r.URL.Query().Get("follow") == "1"
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		next := 0
		for {
			evs, n, wake := d.drops.since(next)
			next = n
			for _, ev := range evs {
				if err := enc.Encode(d.drop(ev)); err != nil {
					return
				}
			}
			if !follow {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
			select {
			case <-wake:
			case <-r.Context().Done():
				return
			}
		}
	})
	return mux
}

// RegisterMetrics adds collectors of the loader's other parts (the load
// balancers) to what /metrics serves, beside the policy's; before or after
// Handler. Their metrics must not be named roost_policy_*.
func (d *Daemon) RegisterMetrics(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := d.metrics.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// drop converts a drop event for the API; the kernel's monotonic time is
// turned into wall time.
func (d *Daemon) drop(ev datapath.DropEvent) loaderapi.Drop {
	out := loaderapi.Drop{
		Time: monoToWall(ev.Time), Src: ev.Src, Dst: ev.Dst, SrcPort: ev.SrcPort, DstPort: ev.DstPort,
		Proto: ev.Proto, SrcIdentity: uint32(ev.SrcIdentity), Ifindex: ev.Ifindex, Len: ev.Len, Reason: ev.Reason.String(),
	}
	d.mu.Lock()
	for _, e := range d.status.Endpoints {
		if e.Local && slices.Contains(e.IPs, ev.Dst) {
			out.Endpoint = e.Name
		}
	}
	d.mu.Unlock()
	return out
}

func counters(obs Observer) ([]loaderapi.Counter, error) {
	cs, err := obs.Counters()
	if err != nil {
		return nil, err
	}
	out := []loaderapi.Counter{}
	for r, c := range cs {
		if c.Packets == 0 {
			continue
		}
		out = append(out, loaderapi.Counter{Reason: r.String(), Dropped: r.Dropped(), Packets: c.Packets, Bytes: c.Bytes})
	}
	slices.SortFunc(out, func(a, b loaderapi.Counter) int {
		if a.Reason < b.Reason {
			return -1
		}
		if a.Reason > b.Reason {
			return 1
		}
		return 0
	})
	return out, nil
}

// entryCounters returns the counters of the loader's policy entries, by
// endpoint name, endpoint id and remote identity.
func entryCounters(obs Observer) ([]loaderapi.EntryCounter, error) {
	cs, err := obs.EntryCounters()
	if err != nil {
		return nil, err
	}
	count := func(c datapath.Counter) loaderapi.Count { return loaderapi.Count{Packets: c.Packets, Bytes: c.Bytes} }
	out := make([]loaderapi.EntryCounter, 0, len(cs))
	for _, c := range cs {
		out = append(out, loaderapi.EntryCounter{
			Endpoint: c.Endpoint, EndpointID: c.EndpointID, Remote: uint32(c.Remote), Counted: c.Counted,
			Allowed: count(c.Counts.Allowed), Denied: count(c.Counts.Denied), DefaultDenied: count(c.Counts.DefaultDenied),
		})
	}
	slices.SortFunc(out, func(a, b loaderapi.EntryCounter) int {
		return cmp.Or(cmp.Compare(a.Endpoint, b.Endpoint), cmp.Compare(a.EndpointID, b.EndpointID), cmp.Compare(a.Remote, b.Remote))
	})
	return out, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

var (
	verdictDesc = prometheus.NewDesc("roost_policy_packets_total",
		"Packets seen by the datapath, by reason (a pass reason or a drop reason).", []string{"reason", "verdict"}, nil)
	verdictBytesDesc = prometheus.NewDesc("roost_policy_bytes_total",
		"Bytes seen by the datapath, by reason.", []string{"reason", "verdict"}, nil)
	appliesDesc = prometheus.NewDesc("roost_policy_apply_failures",
		"Failed policy applies in a row (0 after a success).", nil, nil)
	readyDesc = prometheus.NewDesc("roost_policy_ready",
		"1 when the last policy apply succeeded.", nil, nil)
	endpointsDesc = prometheus.NewDesc("roost_policy_endpoints",
		"Known endpoints, by whether they are local and enforced.", []string{"local", "enforced"}, nil)
)

// verdictCollector reads the per-reason counters at scrape time.
type verdictCollector struct{ obs Observer }

func (c *verdictCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- verdictDesc
	ch <- verdictBytesDesc
}

func (c *verdictCollector) Collect(ch chan<- prometheus.Metric) {
	cs, err := c.obs.Counters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(verdictDesc, err)
		return
	}
	for r, v := range cs {
		verdict := "pass"
		if r.Dropped() {
			verdict = "drop"
		}
		ch <- prometheus.MustNewConstMetric(verdictDesc, prometheus.CounterValue, float64(v.Packets), r.String(), verdict)
		ch <- prometheus.MustNewConstMetric(verdictBytesDesc, prometheus.CounterValue, float64(v.Bytes), r.String(), verdict)
	}
}

// applyCollector reports the reconcile state.
type applyCollector struct{ d *Daemon }

func (c *applyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- appliesDesc
	ch <- readyDesc
	ch <- endpointsDesc
}

func (c *applyCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.d.Status()
	ch <- prometheus.MustNewConstMetric(appliesDesc, prometheus.GaugeValue, float64(s.LastApply.Failures))
	ready := 0.0
	if s.Ready {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready)
	n := map[[2]bool]int{}
	for _, e := range s.Endpoints {
		n[[2]bool{e.Local, e.Enforced}]++
	}
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(endpointsDesc, prometheus.GaugeValue, float64(v), fmt.Sprint(k[0]), fmt.Sprint(k[1]))
	}
}

// monoToWall converts a CLOCK_MONOTONIC time to wall-clock time.
func monoToWall(mono time.Duration) time.Time {
	now := time.Now()
	return now.Add(mono - monotonicNow())
}

var (
	viewConnectedDesc = prometheus.NewDesc("roost_globalview_connected",
		"1 when etcd answered the global view's subscriber lately.", nil, nil)
	viewEndpointsDesc = prometheus.NewDesc("roost_globalview_endpoints",
		"Endpoints of the global view enforced, by origin.", []string{"origin"}, nil)
	viewConflictsDesc = prometheus.NewDesc("roost_globalview_conflicts",
		"Endpoints of the global view skipped because another endpoint holds an address of theirs.", nil, nil)
	viewAgeDesc = prometheus.NewDesc("roost_globalview_view_age_seconds",
		"How long ago etcd last confirmed the view current.", nil, nil)
	viewRevisionDesc = prometheus.NewDesc("roost_globalview_revision",
		"etcd's revision of the view enforced.", nil, nil)
	viewLeaderDesc = prometheus.NewDesc("roost_globalview_publisher_leader",
		"1 when this loader is its cluster's elected publisher.", nil, nil)
)

// viewCollector reports the global view's state.
type viewCollector struct{ d *Daemon }

func (c *viewCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{viewConnectedDesc, viewEndpointsDesc, viewConflictsDesc, viewAgeDesc, viewRevisionDesc, viewLeaderDesc} {
		ch <- d
	}
}

func (c *viewCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.d.Status().GlobalView
	if g == nil {
		return
	}
	one := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(viewConnectedDesc, prometheus.GaugeValue, one(g.Connected))
	for _, o := range sortedOrigins(g.Origins) {
		ch <- prometheus.MustNewConstMetric(viewEndpointsDesc, prometheus.GaugeValue, float64(g.Origins[o]), o)
	}
	ch <- prometheus.MustNewConstMetric(viewConflictsDesc, prometheus.GaugeValue, float64(len(g.Conflicts)))
	ch <- prometheus.MustNewConstMetric(viewAgeDesc, prometheus.GaugeValue, g.ViewAge.Seconds())
	ch <- prometheus.MustNewConstMetric(viewRevisionDesc, prometheus.GaugeValue, float64(g.Revision))
	if g.Publisher != nil {
		ch <- prometheus.MustNewConstMetric(viewLeaderDesc, prometheus.GaugeValue, one(g.Publisher.Leader))
	}
}

// dash returns s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
