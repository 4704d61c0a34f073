package servicesd

import (
	"errors"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/roost-net/roost/internal/xdplb"
)

// fakeUplink records what it is synced with. Its counters come from the
// frontends it has; frontendErr makes FrontendStats fail, and a conns
// channel makes Conns wait for a value on it (a datapath that hangs).
type fakeUplink struct {
	synced      []xdplb.Entry
	frontendErr error
	conns       chan int
	connsCalls  atomic.Int32
}

func (f *fakeUplink) Sync(es []xdplb.Entry) error { f.synced = es; return nil }

func (f *fakeUplink) Counters() (map[string]uint64, error) {
	return map[string]uint64{"local": 40, "encapsulated": 2, "not-served": 1}, nil
}

func (f *fakeUplink) FrontendStats() (map[xdplb.Frontend]xdplb.Stats, error) {
	if f.frontendErr != nil {
		return nil, f.frontendErr
	}
	out := map[xdplb.Frontend]xdplb.Stats{}
	for i, e := range f.synced {
		n := uint64(i + 1)
		out[e.Frontend] = xdplb.Stats{Packets: 10 * n, Bytes: 1000 * n, Conns: n}
	}
	return out, nil
}

func (f *fakeUplink) Conns() (int, error) {
	f.connsCalls.Add(1)
	if f.conns != nil {
		return <-f.conns, nil
	}
	return 3, nil
}

func (f *fakeUplink) Modes() map[string]string    { return map[string]string{"eth0": "native"} }
func (f *fakeUplink) SetNodes([]netip.Addr) error { return nil }

// uplinkFile has a VIP with affinity, served at the socket too (its
// cluster IP), and a node port, UDP.
const uplinkFile = `services:
  - name: db
    clusterIPs: [10.96.0.10]
    externalIPs: [192.0.2.10]
    ports: [{name: redis, port: 6379, targetPort: 6379}]
    sessionAffinity: ClientIP
    backends: [{ip: 10.244.1.10, node: node1}, {ip: 10.244.2.12, node: node2, terminating: true}]
  - name: dns
    clusterIPs: [10.96.0.53]
    ports: [{port: 53, protocol: UDP, nodePort: 30053}]
    backends: [{ip: 10.244.2.13, node: node2}]
`

// scrape returns the series of c's metrics, sorted, as /metrics serves
// them, and fails the test when the scrape fails (from any goroutine).
func scrape(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Error(err)
		return nil
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Errorf("scrape: %d %s", rec.Code, rec.Body)
		return nil
	}
	var out []string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func newMetricsDaemon(t *testing.T, dp *fakeDatapath, up *fakeUplink) (*Daemon, *test.Hook) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(path, []byte(uplinkFile), 0o644); err != nil {
		t.Fatal(err)
	}
	log, hook := test.NewNullLogger()
	o := Options{File: path, Node: "node1", Log: log, MaglevSize: 65537,
		NodeAddrs: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("192.0.2.1")} }}
	if dp != nil {
		o.Datapath = dp
	}
	if up != nil {
		o.Uplink = up
	}
	d := New(o)
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	return d, hook
}

func TestMetrics(t *testing.T) {
	d, _ := newMetricsDaemon(t, &fakeDatapath{}, &fakeUplink{})
	want := []string{
		`roost_socket_lb_frontend_connections_total{frontend="tcp/10.96.0.10:6379"} 5`,
		`roost_socket_lb_frontend_connections_total{frontend="tcp/192.0.2.10:6379"} 5`,
		`roost_socket_lb_frontend_connections_total{frontend="udp/10.96.0.53:53"} 5`,
		`roost_socket_lb_operations_total{reason="translated"} 7`,
		`roost_uplink_lb_flows 3`,
		// The fake counts 10, 20, 30 packets in the order of the entries:
		// the VIP, then the node port on 0.0.0.0 and on the node's address.
		`roost_uplink_lb_frontend_bytes_total{frontend="tcp/192.0.2.10:6379",kind="vip"} 1000`,
		`roost_uplink_lb_frontend_bytes_total{frontend="udp/0.0.0.0:30053",kind="nodeport"} 2000`,
		`roost_uplink_lb_frontend_bytes_total{frontend="udp/192.0.2.1:30053",kind="nodeport"} 3000`,
		`roost_uplink_lb_frontend_connections_total{frontend="tcp/192.0.2.10:6379",kind="vip"} 1`,
		`roost_uplink_lb_frontend_connections_total{frontend="udp/0.0.0.0:30053",kind="nodeport"} 2`,
		`roost_uplink_lb_frontend_connections_total{frontend="udp/192.0.2.1:30053",kind="nodeport"} 3`,
		`roost_uplink_lb_frontend_packets_total{frontend="tcp/192.0.2.10:6379",kind="vip"} 10`,
		`roost_uplink_lb_frontend_packets_total{frontend="udp/0.0.0.0:30053",kind="nodeport"} 20`,
		`roost_uplink_lb_frontend_packets_total{frontend="udp/192.0.2.1:30053",kind="nodeport"} 30`,
		`roost_uplink_lb_packets_total{reason="encapsulated"} 2`,
		`roost_uplink_lb_packets_total{reason="local"} 40`,
		`roost_uplink_lb_packets_total{reason="not-served"} 1`,
	}
	got := scrape(t, d.Collector())
	if !slices.Equal(got, want) {
		t.Errorf("metrics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The metrics are those of GET /v1/services.
	st := d.Status()
	if st.Uplink == nil || len(st.Uplink.Frontends) != 3 || st.Uplink.Frontends[0].Kind != "vip" || !st.Uplink.Frontends[0].Affinity ||
		st.Uplink.Frontends[0].Backends[1].State != "draining" || st.Uplink.Flows != 3 {
		t.Errorf("uplink status: %+v", st.Uplink)
	}

	// Each load balancer alone: only its metrics.
	for _, tt := range []struct {
		name       string
		dp         *fakeDatapath
		up         *fakeUplink
		has, hasnt string
	}{
		{"socket only", &fakeDatapath{}, nil, "roost_socket_lb_", "roost_uplink_lb_"},
		{"uplink only", nil, &fakeUplink{}, "roost_uplink_lb_", "roost_socket_lb_"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newMetricsDaemon(t, tt.dp, tt.up)
			got := strings.Join(scrape(t, d.Collector()), "\n")
			if !strings.Contains(got, tt.has) || strings.Contains(got, tt.hasnt) {
				t.Errorf("metrics, want %s*, no %s*:\n%s", tt.has, tt.hasnt, got)
			}
		})
	}
}

// TestMetricsReadError checks that counters that cannot be read are left
// out, not zero (a counter reset), and the rest is served.
func TestMetricsReadError(t *testing.T) {
	up := &fakeUplink{}
	d, hook := newMetricsDaemon(t, nil, up)
	up.frontendErr = errors.New("lookup lb_stats: bad file descriptor")
	got := strings.Join(scrape(t, d.Collector()), "\n")
	if strings.Contains(got, "roost_uplink_lb_frontend_") || !strings.Contains(got, "roost_uplink_lb_flows 3") ||
		!strings.Contains(got, `roost_uplink_lb_packets_total{reason="local"} 40`) {
		t.Errorf("metrics with the frontends' counters failing:\n%s", got)
	}
	if e := hook.LastEntry(); e == nil || !strings.Contains(e.Message, "uplink load balancer frontend counters not read") {
		t.Errorf("not logged: %v", e)
	}
}

// TestMetricsTimeout checks that a datapath that does not answer holds a
// scrape for the timeout at most, and the next ones not at all, with one
// read in flight, and that its metrics are back once it answers.
func TestMetricsTimeout(t *testing.T) {
	up := &fakeUplink{}
	d, hook := newMetricsDaemon(t, &fakeDatapath{}, up)
	up.conns = make(chan int)
	c := d.Collector().(*collector)
	c.timeout = 300 * time.Millisecond

	start := time.Now()
	got := scrape(t, c)
	if took := time.Since(start); took < c.timeout || took > c.timeout+2*time.Second {
		t.Errorf("first scrape took %v, want the timeout, %v", took, c.timeout)
	}
	if len(got) != 0 {
		t.Errorf("metrics of a datapath that does not answer: %q", got)
	}
	start = time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if got := scrape(t, c); len(got) != 0 {
				t.Errorf("metrics of a datapath that does not answer: %q", got)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > c.timeout {
		t.Errorf("scrapes after the timeout took %v: they waited again", took)
	}
	if n := up.connsCalls.Load(); n != 1 {
		t.Errorf("%d reads of the hung datapath, want 1", n)
	}
	warned := 0
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "did not come in time") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings of the late read, want 1", warned)
	}
	// The datapath answers: the next scrape reads it again.
	up.conns <- 9
	for deadline := time.Now().Add(5 * time.Second); ; {
		c.mu.Lock()
		idle := c.call == nil
		c.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read never finished")
		}
		time.Sleep(time.Millisecond)
	}
	go func() { up.conns <- 4 }()
	if got := strings.Join(scrape(t, c), "\n"); !strings.Contains(got, "roost_uplink_lb_flows 4") || !strings.Contains(got, "roost_socket_lb_operations_total") {
		t.Errorf("metrics once the datapath answers:\n%s", got)
	}
}

// TestStatusDuringReconcile runs Status and the metrics beside Reconcile:
// the datapaths' FrontendStats read what Sync writes (go test -race).
func TestStatusDuringReconcile(t *testing.T) {
	d, _ := newMetricsDaemon(t, &fakeDatapath{}, &fakeUplink{})
	c := d.Collector()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			d.Status()
			scrape(t, c)
		}
	})
	for range 50 {
		if err := d.Reconcile(); err != nil {
			t.Error(err)
		}
	}
	close(done)
	wg.Wait()
}
