package agent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roost-net/roost/internal/agentapi"
)

// Metrics are the agent's Prometheus metrics, in a registry of their own.
type Metrics struct {
	reg        *prometheus.Registry
	session    *prometheus.GaugeVec
	state      *prometheus.GaugeVec
	birdUp     prometheus.Gauge
	desired    prometheus.Gauge
	announced  prometheus.Gauge
	applies    *prometheus.CounterVec
	lastApply  prometheus.Gauge
	applyHisto prometheus.Histogram
}

// NewMetrics returns the agent's metrics, with Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		session: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_bgp_session_established",
			Help: "1 when the BGP session to the peer is Established, else 0.",
		}, []string{"peer", "neighbor"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_bgp_session_state",
			Help: "1 for the BGP state BIRD reports for the peer's session (Idle, Connect, Active, OpenSent, OpenConfirm, Established; \"down\" when the protocol is not running).",
		}, []string{"peer", "neighbor", "state"}),
		birdUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_bird_up", Help: "1 when BIRD answered the last poll on its control socket.",
		}),
		desired: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_desired_prefixes", Help: "Prefixes this node must announce.",
		}),
		announced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_announced_prefixes", Help: "Prefixes in the config BIRD last accepted.",
		}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_applies_total", Help: "Apply attempts by result (ok, failed, waiting).",
		}, []string{"result"}),
		lastApply: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_last_apply_duration_seconds", Help: "Duration of the last apply attempt.",
		}),
		applyHisto: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "roost_apply_duration_seconds", Help: "Duration of apply attempts.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	m.reg.MustRegister(m.session, m.state, m.birdUp, m.desired, m.announced, m.applies, m.lastApply, m.applyHisto,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{agentapi.ResultOK, agentapi.ResultFailed, agentapi.ResultWaiting} {
		m.applies.WithLabelValues(r)
	}
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *Metrics) observeApply(result string, d time.Duration) {
	m.applies.WithLabelValues(result).Inc()
	m.lastApply.Set(d.Seconds())
	m.applyHisto.Observe(d.Seconds())
}

func (m *Metrics) setDesired(n int)   { m.desired.Set(float64(n)) }
func (m *Metrics) setAnnounced(n int) { m.announced.Set(float64(n)) }

func (m *Metrics) setBirdUp(up bool) {
	if up {
		m.birdUp.Set(1)
	} else {
		m.birdUp.Set(0)
	}
}

func (m *Metrics) setPeers(peers []agentapi.Peer) {
	m.session.Reset()
	m.state.Reset()
	for _, p := range peers {
		v := 0.0
		if p.BGPState == "Established" {
			v = 1
		}
		m.session.WithLabelValues(p.Name, p.Neighbor.String()).Set(v)
		st := p.BGPState
		if st == "" {
			st = "down"
		}
		m.state.WithLabelValues(p.Name, p.Neighbor.String(), st).Set(1)
	}
}
