package syncd

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are what GET /metrics serves, in a registry of the daemon's own.
type metrics struct {
	reg             *prometheus.Registry
	registrations   prometheus.Counter
	updates         prometheus.Counter
	deregistrations prometheus.Counter
	expired         prometheus.Counter
	displaced       prometheus.Counter
	requestErrors   *prometheus.CounterVec
	fileLoads       *prometheus.CounterVec
}

func newMetrics(d *Daemon) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		reg:             prometheus.NewRegistry(),
		registrations:   counter("roost_sync_registrations_total", "Workloads registered through the API that were not registered."),
		updates:         counter("roost_sync_updates_total", "Registrations through the API that changed a registered workload's addresses or labels."),
		deregistrations: counter("roost_sync_deregistrations_total", "Workloads deregistered through the API (DELETE)."),
		expired:         counter("roost_sync_expired_total", "API workloads removed because they stopped heartbeating."),
		displaced:       counter("roost_sync_displaced_total", "API workloads removed because the workloads file took their name or an address."),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_sync_request_errors_total", Help: "API requests answered with an error, by HTTP status code.",
		}, []string{"code"}),
		fileLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_sync_file_loads_total", Help: "Readings of the workloads file, by result (ok, error).",
		}, []string{"result"}),
	}
	m.fileLoads.WithLabelValues("ok")
	m.fileLoads.WithLabelValues("error")
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.registrations, m.updates, m.deregistrations, m.expired, m.displaced, m.requestErrors, m.fileLoads, statusCollector{d})
	return m
}

var (
	workloadsDesc = prometheus.NewDesc("roost_sync_workloads",
		"Workloads the syncer publishes, by source (file, api).", []string{"source"}, nil)
	readyDesc = prometheus.NewDesc("roost_sync_ready",
		"1 when this instance is its origin's writer and etcd holds the current set of workloads.", nil, nil)
	leaderDesc = prometheus.NewDesc("roost_sync_publisher_leader",
		"1 when this instance is its origin's writer (the elected publisher).", nil, nil)
	fileErrorDesc = prometheus.NewDesc("roost_sync_file_error",
		"1 when the last reading of the workloads file failed (the last good set stays published).", nil, nil)
)

// statusCollector reports the daemon's state as gauges.
type statusCollector struct{ d *Daemon }

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{workloadsDesc, readyDesc, leaderDesc, fileErrorDesc} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.d.Status()
	one := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(workloadsDesc, prometheus.GaugeValue, float64(s.Workloads.File), SourceFile)
	ch <- prometheus.MustNewConstMetric(workloadsDesc, prometheus.GaugeValue, float64(s.Workloads.API), SourceAPI)
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, one(s.Ready))
	ch <- prometheus.MustNewConstMetric(leaderDesc, prometheus.GaugeValue, one(s.Publisher.Leader))
	ch <- prometheus.MustNewConstMetric(fileErrorDesc, prometheus.GaugeValue, one(s.File.Error != ""))
}
