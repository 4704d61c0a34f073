package agent

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roost-net/roost/internal/agentapi"
)

// Metrics are the agent's Prometheus metrics, in a registry of their own.
// docs/monitoring.md and compose/monitoring/roost.rules.yml build on their
// names: change them together.
type Metrics struct {
	reg               *prometheus.Registry
	session           *prometheus.GaugeVec
	state             *prometheus.GaugeVec
	exported          *prometheus.GaugeVec
	birdUp            prometheus.Gauge
	ready             prometheus.Gauge
	desired           *prometheus.GaugeVec
	announced         *prometheus.GaugeVec
	applies           *prometheus.CounterVec
	applyFailures     prometheus.Gauge
	lastApply         prometheus.Gauge
	applyHisto        prometheus.Histogram
	rollbacks         prometheus.Counter
	externalReconfigs prometheus.Counter
	holeFailures      prometheus.Gauge
	drain             *prometheus.GaugeVec
}

// families are the label values of the per-family gauges.
var families = []string{"ipv4", "ipv6"}

// NewMetrics returns the agent's metrics, with Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		session: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_bgp_session_established",
			Help: "1 when the BGP session to the peer is Established, else 0; absent while BIRD does not answer (the state is unknown).",
		}, []string{"peer", "neighbor"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_bgp_session_state",
			Help: "1 for the BGP state BIRD reports for the peer's session (Idle, Connect, Active, OpenSent, OpenConfirm, Established; \"down\" when the protocol is not running; \"unknown\" while BIRD does not answer).",
		}, []string{"peer", "neighbor", "state"}),
		exported: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_bgp_exported_prefixes",
			Help: "Routes BIRD exports to the peer; present only while the session is Established.",
		}, []string{"peer", "neighbor", "family"}),
		birdUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_bird_up", Help: "1 when BIRD answered the last poll on its control socket within bird.timeout.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_agent_ready", Help: "1 when the agent is ready (/readyz answers 200).",
		}),
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_desired_prefixes", Help: "Prefixes this node must announce, by family.",
		}, []string{"family"}),
		announced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_announced_prefixes", Help: "Prefixes in the config BIRD last accepted, by family.",
		}, []string{"family"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_applies_total", Help: "Apply attempts by result (ok, failed, waiting).",
		}, []string{"result"}),
		applyFailures: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_apply_failures", Help: "Consecutive failed applies (0 after a success).",
		}),
		lastApply: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_last_apply_duration_seconds", Help: "Duration of the last apply attempt.",
		}),
		applyHisto: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "roost_apply_duration_seconds", Help: "Duration of apply attempts.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roost_bird_rollbacks_total",
			Help: "Configs BIRD went back from because a session that was Established did not come back.",
		}),
		externalReconfigs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roost_bird_external_reconfigs_total",
			Help: "Reconfigurations of BIRD the agent did not make (it applied its own config again).",
		}),
		holeFailures: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_blackhole_sync_failures", Help: "Consecutive failed kernel blackhole route syncs.",
		}),
		drain: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_drain_state",
			Help: "1 for the node's drain state (none; draining: announced with GRACEFUL_SHUTDOWN; drained: withdrawn), else 0.",
		}, []string{"state"}),
	}
	m.reg.MustRegister(m.session, m.state, m.exported, m.birdUp, m.ready, m.desired, m.announced, m.applies,
		m.applyFailures, m.lastApply, m.applyHisto, m.rollbacks, m.externalReconfigs, m.holeFailures, m.drain,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{agentapi.ResultOK, agentapi.ResultFailed, agentapi.ResultWaiting} {
		m.applies.WithLabelValues(r)
	}
	for _, f := range families {
		m.desired.WithLabelValues(f)
		m.announced.WithLabelValues(f)
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

func (m *Metrics) setDesired(ps []netip.Prefix)   { setByFamily(m.desired, ps) }
func (m *Metrics) setAnnounced(ps []netip.Prefix) { setByFamily(m.announced, ps) }

func setByFamily(g *prometheus.GaugeVec, ps []netip.Prefix) {
	n4 := 0
	for _, p := range ps {
		if p.Addr().Is4() {
			n4++
		}
	}
	g.WithLabelValues("ipv4").Set(float64(n4))
	g.WithLabelValues("ipv6").Set(float64(len(ps) - n4))
}

// setDrain sets the drain state's gauges: 1 for state, 0 for the others.
func (m *Metrics) setDrain(state string) {
	for _, s := range []string{agentapi.DrainNone, agentapi.DrainDraining, agentapi.DrainDrained} {
		m.drain.WithLabelValues(s).Set(b2f(s == state))
	}
}

func (m *Metrics) setApplyFailures(n int)     { m.applyFailures.Set(float64(n)) }
func (m *Metrics) setBlackholeFailures(n int) { m.holeFailures.Set(float64(n)) }
func (m *Metrics) setBirdUp(up bool)          { m.birdUp.Set(b2f(up)) }
func (m *Metrics) setReady(ready bool)        { m.ready.Set(b2f(ready)) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// setPeers publishes the peers' states; known is false while BIRD does not
// answer, when only roost_bgp_session_state{state="unknown"} is set.
func (m *Metrics) setPeers(peers []agentapi.Peer, known bool) {
	m.session.Reset()
	m.state.Reset()
	m.exported.Reset()
	for _, p := range peers {
		nb := p.Neighbor.String()
		if !known {
			m.state.WithLabelValues(p.Name, nb, agentapi.StateUnknown).Set(1)
			continue
		}
		est := p.BGPState == "Established"
		m.session.WithLabelValues(p.Name, nb).Set(b2f(est))
		st := p.BGPState
		if st == "" {
			st = "down"
		}
		m.state.WithLabelValues(p.Name, nb, st).Set(1)
		if est {
			m.exported.WithLabelValues(p.Name, nb, p.Family).Set(float64(p.Exported))
		}
	}
}
