package servicesd

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roost-net/roost/internal/loaderapi"
)

// The load balancers' metrics. docs/monitoring.md and compose/monitoring
// (internal/monitoring's list of metrics) build on their names: change them
// together.
var (
	socketFrontendConnsDesc = prometheus.NewDesc("roost_socket_lb_frontend_connections_total",
		"Connections (and UDP sends on unconnected sockets) the socket load balancer sent to one of the frontend's backends since the frontend was added.",
		[]string{"frontend"}, nil)
	socketOperationsDesc = prometheus.NewDesc("roost_socket_lb_operations_total",
		"Socket calls (connect, sendmsg, recvmsg, getpeername) the socket load balancer's programs saw, by what they did: translated, translated-affinity, no-backend (refused), reverse-translated, pass (not a frontend).",
		[]string{"reason"}, nil)
	uplinkFrontendPacketsDesc = prometheus.NewDesc("roost_uplink_lb_frontend_packets_total",
		"Packets to the frontend the uplink load balancer got on this node (decapsulated ones included), since the frontend was added; kind is vip or nodeport.",
		[]string{"frontend", "kind"}, nil)
	uplinkFrontendBytesDesc = prometheus.NewDesc("roost_uplink_lb_frontend_bytes_total",
		"Bytes of the packets counted by roost_uplink_lb_frontend_packets_total.",
		[]string{"frontend", "kind"}, nil)
	uplinkFrontendConnsDesc = prometheus.NewDesc("roost_uplink_lb_frontend_connections_total",
		"Flows to the frontend this node gave a backend from its Maglev table, since the frontend was added.",
		[]string{"frontend", "kind"}, nil)
	uplinkPacketsDesc = prometheus.NewDesc("roost_uplink_lb_packets_total",
		"Packets the uplink load balancer's programs saw, by what they did: local, encapsulated, decapsulated, reply-translated, pass (not a frontend); no-backend, not-served, decap-unknown-backend, error (dropped); malformed (dropped when to a VIP, else passed).",
		[]string{"reason"}, nil)
	uplinkFlowsDesc = prometheus.NewDesc("roost_uplink_lb_flows",
		"Flows the uplink load balancer's connection table remembers.", nil, nil)
)

// CollectTimeout is how long a scrape waits for the load balancers'
// counters before it leaves them out.
const CollectTimeout = 5 * time.Second

// Collector returns the load balancers' metrics, for the loader's /metrics.
// A scrape reads the counters at most once at a time, and waits for them at
// most CollectTimeout: a datapath that does not answer leaves the
// load balancers' metrics out of the scrape (and is logged), never holds
// it.
func (d *Daemon) Collector() prometheus.Collector {
	return &collector{d: d, timeout: CollectTimeout}
}

type collector struct {
	d       *Daemon
	timeout time.Duration

	mu   sync.Mutex
	call *readCall // the read in flight, if any
}

// readCall is one call of Daemon.read, which the scrapes during it share.
type readCall struct {
	start  time.Time
	done   chan struct{} // closed when st and errs are set
	st     loaderapi.Services
	errs   readErrors
	logged bool // that it is late; under collector.mu
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{socketFrontendConnsDesc, socketOperationsDesc, uplinkFrontendPacketsDesc,
		uplinkFrontendBytesDesc, uplinkFrontendConnsDesc, uplinkPacketsDesc, uplinkFlowsDesc} {
		ch <- d
	}
}

// read returns the status and what of it could not be read, or false when
// the read takes longer than the timeout. A read started by an earlier
// scrape that is still running is waited for, not started again: a hung
// datapath holds one goroutine, however many scrapes come.
func (c *collector) read() (*readCall, bool) {
	c.mu.Lock()
	call := c.call
	if call == nil {
		call = &readCall{start: time.Now(), done: make(chan struct{})}
		c.call = call
		go func() {
			call.st, call.errs = c.d.read()
			c.mu.Lock()
			c.call = nil
			c.mu.Unlock()
			close(call.done)
		}()
	}
	c.mu.Unlock()
	timer := time.NewTimer(max(c.timeout-time.Since(call.start), 0))
	defer timer.Stop()
	select {
	case <-call.done:
		return call, true
	case <-timer.C:
	}
	select { // done at the deadline
	case <-call.done:
		return call, true
	default:
	}
	c.mu.Lock()
	logged := call.logged
	call.logged = true
	c.mu.Unlock()
	if !logged {
		c.d.o.Log.WithField("waited", time.Since(call.start).Round(time.Millisecond)).
			Warn("metrics: the load balancers' counters did not come in time; left out of the scrapes until they do")
	}
	return nil, false
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	call, ok := c.read()
	if !ok {
		return
	}
	st, errs := call.st, call.errs
	if c.d.o.Datapath != nil {
		c.readError("socket load balancer counters", errs.counters)
		for r, n := range st.Counters {
			ch <- prometheus.MustNewConstMetric(socketOperationsDesc, prometheus.CounterValue, float64(n), r)
		}
		// Each frontend once: a repeated label set would fail the
		// whole scrape.
		seen := map[string]bool{}
		if !c.readError("socket load balancer frontend counters", errs.frontends) {
			for _, f := range st.Frontends {
				if !seen[f.Frontend] {
					seen[f.Frontend] = true
					ch <- prometheus.MustNewConstMetric(socketFrontendConnsDesc, prometheus.CounterValue, float64(f.Connections), f.Frontend)
				}
			}
		}
	}
	if u := st.Uplink; u != nil {
		c.readError("uplink load balancer counters", errs.uplinkCounters)
		for r, n := range u.Counters {
			ch <- prometheus.MustNewConstMetric(uplinkPacketsDesc, prometheus.CounterValue, float64(n), r)
		}
		if !c.readError("uplink load balancer flows", errs.flows) {
			ch <- prometheus.MustNewConstMetric(uplinkFlowsDesc, prometheus.GaugeValue, float64(u.Flows))
		}
		seen := map[string]bool{}
		if !c.readError("uplink load balancer frontend counters", errs.uplinkFrontends) {
			for _, f := range u.Frontends {
				if seen[f.Frontend] {
					continue
				}
				seen[f.Frontend] = true
				ch <- prometheus.MustNewConstMetric(uplinkFrontendPacketsDesc, prometheus.CounterValue, float64(f.Packets), f.Frontend, f.Kind)
				ch <- prometheus.MustNewConstMetric(uplinkFrontendBytesDesc, prometheus.CounterValue, float64(f.Bytes), f.Frontend, f.Kind)
				ch <- prometheus.MustNewConstMetric(uplinkFrontendConnsDesc, prometheus.CounterValue, float64(f.Connections), f.Frontend, f.Kind)
			}
		}
	}
}

// readError logs err, what could not be read of what, and says whether
// there was one: its metrics are left out (a zero would read as a counter
// reset), and the rest of the scrape is served.
func (c *collector) readError(what string, err error) bool {
	if err == nil {
		return false
	}
	c.d.o.Log.WithError(err).Warn("metrics: " + what + " not read; left out")
	return true
}
