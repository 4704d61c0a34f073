package servicesd

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/loaderapi"
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
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Counters["translated"] != 7 || got.Frontends[0].Frontend != "tcp/10.96.0.10:6379" {
		t.Errorf("GET /v1/services: %v %s", err, rec.Body)
	}
	rec = httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/services", nil))
	if rec.Code != 405 {
		t.Errorf("POST /v1/services: %d", rec.Code)
	}
}
