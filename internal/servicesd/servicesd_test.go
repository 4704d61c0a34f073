package servicesd

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/services"
	"github.com/roost-net/roost/internal/services/kubewatch"
	"github.com/roost-net/roost/internal/socklb"
)

// fakeDatapath records what it is synced with; err makes Sync fail.
type fakeDatapath struct {
	synced []socklb.Entry
	syncs  int
	err    error
}

func (f *fakeDatapath) Sync(es []socklb.Entry) error {
	if f.err != nil {
		return f.err
	}
	f.synced, f.syncs = es, f.syncs+1
	return nil
}

func (f *fakeDatapath) Counters() (map[string]uint64, error) {
	return map[string]uint64{"translated": 7}, nil
}

func (f *fakeDatapath) FrontendStats() (map[socklb.Frontend]uint64, error) {
	out := map[socklb.Frontend]uint64{}
	for _, e := range f.synced {
		out[e.Frontend] = 5
	}
	return out, nil
}

const goodFile = `services:
  - name: db
    clusterIPs: [10.96.0.10]
    ports: [{name: redis, port: 6379, targetPort: 6379}]
    internalTrafficPolicy: Local
    backends: [{ip: 10.244.1.10, node: node1}, {ip: 10.244.2.12, node: node2}]
`

func TestReconcile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	dp := &fakeDatapath{}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	d := New(Options{File: path, Node: "node1", Datapath: dp, Log: log})

	// No file: no services, synced (empty).
	if err := d.Reconcile(); err != nil || dp.syncs != 1 || len(dp.synced) != 0 {
		t.Fatalf("missing file: %v, %d syncs of %v", err, dp.syncs, dp.synced)
	}

	if err := os.WriteFile(path, []byte(goodFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if len(dp.synced) != 1 || len(dp.synced[0].Backends) != 1 || dp.synced[0].Backends[0].String() != "10.244.1.10:6379" {
		t.Fatalf("synced %v, want db's frontend with node1's backend only (internalTrafficPolicy Local)", dp.synced)
	}

	// A bad file keeps the last good set, and says why.
	if err := os.WriteFile(path, []byte("services:\n  - name: db\n    clusterIPs: [10.96.0.999]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(); err == nil {
		t.Fatal("a bad file reconciled")
	}
	if dp.syncs != 2 {
		t.Errorf("a bad file was synced")
	}
	st := d.Status()
	if st.Error == "" || !strings.Contains(st.Error, "clusterIPs") || len(st.Frontends) != 1 || st.Services != 1 {
		t.Errorf("status after a bad file: %+v", st)
	}

	// The datapath failing: an error in status, not the new set.
	if err := os.WriteFile(path, []byte(goodFile), 0o644); err != nil {
		t.Fatal(err)
	}
	dp.err = errors.New("map full")
	if err := d.Reconcile(); err == nil || !strings.Contains(d.Status().Error, "map full") {
		t.Errorf("datapath failure: %v, status %q", err, d.Status().Error)
	}

	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/services", nil))
	var got loaderapi.Services
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Counters["translated"] != 7 || got.Frontends[0].Frontend != "tcp/10.96.0.10:6379" || got.Frontends[0].Connections != 5 {
		t.Errorf("GET /v1/services: %v %s", err, rec.Body)
	}
	rec = httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/services", nil))
	if rec.Code != 405 {
		t.Errorf("POST /v1/services: %d", rec.Code)
	}
}

// kubeSvc returns a Kubernetes-sourced service default/name on one TCP
// port, with cluster IP cip and external IPs, and one ready backend.
func kubeSvc(name, cip string, port uint16, external ...string) services.Service {
	s := services.Service{
		Namespace: "default", Name: name,
		ClusterIPs:            []netip.Addr{netip.MustParseAddr(cip)},
		Ports:                 []services.Port{{Protocol: services.TCP, Port: port, TargetPortName: kubewatch.UnnamedPort}},
		ExternalTrafficPolicy: services.TrafficPolicyCluster,
		InternalTrafficPolicy: services.TrafficPolicyCluster,
		SessionAffinity:       services.SessionAffinityNone,
		Backends: []services.Backend{{IP: netip.MustParseAddr("10.244.9.9"), Ready: true, Serving: true,
			Ports: map[string]services.NamedPort{kubewatch.UnnamedPort: {Port: 8080, Protocol: services.TCP}}}},
	}
	for _, e := range external {
		s.ExternalIPs = append(s.ExternalIPs, netip.MustParseAddr(e))
	}
	return s
}

func entriesText(es []socklb.Entry) string {
	var out []string
	for _, e := range es {
		var bs []string
		for _, b := range e.Backends {
			bs = append(bs, b.String())
		}
		out = append(out, e.Frontend.String()+" -> "+strings.Join(bs, ","))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func TestReconcileKubernetes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(path, []byte(goodFile), 0o644); err != nil {
		t.Fatal(err)
	}
	dp := &fakeDatapath{}
	log := logrus.New()
	log.SetOutput(io.Discard)
	d := New(Options{File: path, Kubernetes: true, Node: "node1", Datapath: dp, Log: log})

	// Before the Kubernetes services arrive: nothing synced, whatever the
	// datapath serves stays, and the status says why.
	for range 2 {
		if err := d.Reconcile(); err != nil {
			t.Fatalf("waiting: %v", err)
		}
	}
	if dp.syncs != 0 {
		t.Fatalf("synced %v before the Kubernetes services arrived", dp.synced)
	}
	if st := d.Status(); st.Error != WaitingForKubernetes {
		t.Errorf("status while waiting: %+v", st)
	}
	// A bad file is still an error, and says so.
	if err := os.WriteFile(path, []byte("services: [{name: db}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(); err == nil || !strings.Contains(d.Status().Error, "services[0]") {
		t.Errorf("a bad file while waiting: %v, status %q", err, d.Status().Error)
	}
	if err := os.WriteFile(path, []byte(goodFile), 0o644); err != nil {
		t.Fatal(err)
	}

	d.SetKubernetes([]services.Service{
		kubeSvc("db", "10.96.0.99", 6379),                // the file's name: left out
		kubeSvc("web", "10.96.0.20", 80),                 // served
		kubeSvc("vip", "10.96.0.21", 6379, "10.96.0.10"), // its external IP is the file's db: that address left out
		kubeSvc("steal", "10.96.0.10", 6379),             // its only frontend is the file's: left out
	}, []string{"service default/bad: left out: no port"})
	select {
	case <-d.kick:
	default:
		t.Error("SetKubernetes did not ask for a reconcile")
	}
	for i := range 2 { // idempotent
		if err := d.Reconcile(); err != nil {
			t.Fatal(err)
		}
		if got, want := entriesText(dp.synced), `tcp/10.96.0.10:6379 -> 10.244.1.10:6379
tcp/10.96.0.20:80 -> 10.244.9.9:8080
tcp/10.96.0.21:6379 -> 10.244.9.9:8080`; got != want {
			t.Fatalf("reconcile %d synced:\n%s\nwant:\n%s", i, got, want)
		}
	}
	st := d.Status()
	wantNotes := []string{
		"service default/bad: left out: no port",
		"service default/db from Kubernetes left out: the services file has a service of that name, and wins",
		"service default/vip: externalIP 10.96.0.10 left out: 10.96.0.10 TCP/6379 is already a frontend of default/db (a service of the services file)",
		"service default/steal: clusterIP 10.96.0.10 left out: 10.96.0.10 TCP/6379 is already a frontend of default/db (a service of the services file)",
		"service default/steal from Kubernetes left out: its frontends are the services file's",
	}
	if st.Error != "" || st.Services != 3 || !slices.Equal(st.Notes, wantNotes) {
		t.Errorf("status: error %q, %d services, notes:\n%s\nwant:\n%s", st.Error, st.Services, strings.Join(st.Notes, "\n"), strings.Join(wantNotes, "\n"))
	}

	// An empty Kubernetes set, once synced, is served as empty.
	d.SetKubernetes(nil, nil)
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if got, want := entriesText(dp.synced), "tcp/10.96.0.10:6379 -> 10.244.1.10:6379"; got != want {
		t.Errorf("with no Kubernetes services synced:\n%s\nwant:\n%s", got, want)
	}
}

// TestReconcileWithoutKubernetes checks that without Options.Kubernetes
// nothing waits.
func TestReconcileWithoutKubernetes(t *testing.T) {
	dp := &fakeDatapath{}
	log := logrus.New()
	log.SetOutput(io.Discard)
	d := New(Options{File: filepath.Join(t.TempDir(), "none.yaml"), Datapath: dp, Log: log})
	if err := d.Reconcile(); err != nil || dp.syncs != 1 || d.Status().Error != "" {
		t.Errorf("Reconcile = %v, %d syncs, status %q", err, dp.syncs, d.Status().Error)
	}
}
