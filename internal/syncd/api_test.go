package syncd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/syncconfig"
)

// testLog returns a logger writing to the test's log.
func testLog(tb testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.Out = tbWriter{tb}
	l.Level = logrus.DebugLevel
	return l
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testConfig returns a valid config of a syncer "lab" with a workloads file
// in a temporary directory holding text, and etcd at endpoints.
func testConfig(t *testing.T, endpoints []string, text string) syncconfig.Config {
	t.Helper()
	cfg := syncconfig.Default()
	cfg.Name = "lab"
	cfg.Etcd.Endpoints = endpoints
	cfg.Etcd.DialTimeout, cfg.Etcd.RequestTimeout = 2*time.Second, 2*time.Second
	cfg.WorkloadsFile = filepath.Join(t.TempDir(), "workloads.yaml")
	cfg.Listen = "127.0.0.1:0"
	writeFile(t, cfg.WorkloadsFile, text)
	return cfg
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	// Written aside and renamed into place, as Salt does: a reader never
	// sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newDaemon(t *testing.T, cfg syncconfig.Config, id string) *Daemon {
	t.Helper()
	d, err := New(Options{Config: cfg, ID: id, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// call makes a request and returns the status and body.
func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

const vm1File = "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    labels: {app: employee}\n"

// TestAPI registers, heartbeats, lists and deregisters workloads through
// the API of a daemon that does not run (its publisher only takes sets),
// and checks that every bad request is refused with nothing changed.
func TestAPI(t *testing.T) {
	cfg := testConfig(t, []string{"http://127.0.0.1:1"}, vm1File)
	d := newDaemon(t, cfg, "a")
	d.loadFile()
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	u := srv.URL

	expect := func(method, path, body string, wantStatus int, wantBody ...string) string {
		t.Helper()
		status, got := call(t, method, u+path, body)
		if status != wantStatus {
			t.Errorf("%s %s: %d %s, want %d", method, path, status, got, wantStatus)
		}
		for _, w := range wantBody {
			if !strings.Contains(got, w) {
				t.Errorf("%s %s: body %s\nwant it to contain %q", method, path, got, w)
			}
		}
		return got
	}
	gen0 := d.pub.Status().Generation
	body := expect("PUT", "/v1/workloads/default/vm2", `{"ips":["fd00:0:9::20","10.0.9.20"],"labels":{"app":"web"}}`, http.StatusCreated,
		`"source": "api"`, `"expires": "`, `"ips": [`)
	var got WorkloadInfo
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Namespace != "default" || got.Name != "vm2" || len(got.IPs) != 2 || got.IPs[0].String() != "10.0.9.20" || got.Labels["app"] != "web" ||
		got.Expires.Sub(got.LastSeen) != cfg.HeartbeatTimeout {
		t.Errorf("registered: %+v", got)
	}
	gen1 := d.pub.Status().Generation
	if gen1 != gen0+1 {
		t.Errorf("registering: publisher generation %d, want %d", gen1, gen0+1)
	}
	expect("PUT", "/v1/workloads/default/vm2", `{"ips":["10.0.9.20","fd00:0:9::20"],"labels":{"app":"web"}}`, http.StatusOK, `"source": "api"`)
	if g := d.pub.Status().Generation; g != gen1 {
		t.Errorf("registering again, unchanged: publisher generation %d, want %d (nothing to publish)", g, gen1)
	}
	expect("GET", "/v1/workloads/default/vm2", "", http.StatusOK, `"name": "vm2"`)
	expect("GET", "/v1/workloads/default/vm1", "", http.StatusOK, `"source": "file"`)
	expect("GET", "/v1/workloads/default/vm9", "", http.StatusNotFound, `"error": "default/vm9: no such workload"`)
	expect("POST", "/v1/workloads/default/vm2/heartbeat", "", http.StatusNoContent)
	expect("POST", "/v1/workloads/default/vm9/heartbeat", "", http.StatusNotFound, "no such workload")

	list := func() string {
		t.Helper()
		return expect("GET", "/v1/workloads", "", http.StatusOK)
	}
	before := list()
	var wl WorkloadList
	if err := json.Unmarshal([]byte(before), &wl); err != nil {
		t.Fatal(err)
	}
	if len(wl.Workloads) != 2 || wl.Workloads[0].Name != "vm1" || wl.Workloads[0].Source != "file" || !wl.Workloads[0].Expires.IsZero() ||
		wl.Workloads[1].Name != "vm2" || wl.Workloads[1].Source != "api" || wl.Workloads[1].Expires.IsZero() {
		t.Errorf("GET /v1/workloads:\n%s\nwant vm1 from the file, vm2 from the API with its expiry", before)
	}

	// Every bad request is refused, and changes nothing.
	bad := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"not JSON", "PUT", "/v1/workloads/default/vm3", `{"ips":[1.2.3]}`, 400, "body: not JSON, at byte 12: invalid character '.' after array element"},
		{"truncated JSON", "PUT", "/v1/workloads/default/vm3", `{"ips":`, 400, "body: not JSON: it ends within a value"},
		{"empty body", "PUT", "/v1/workloads/default/vm3", ``, 400, "body: empty"},
		{"a list", "PUT", "/v1/workloads/default/vm3", `["10.0.9.30"]`, 400, "body: must be a JSON object"},
		{"two objects", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30"]} {}`, 400, "body: data after the JSON object"},
		{"unknown field", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30"],"lables":{"app":"x"}}`, 400, `body: unknown field \"lables\" (known: ips, labels)`},
		{"ips a string", "PUT", "/v1/workloads/default/vm3", `{"ips":"10.0.9.30"}`, 400, "body: ips: want []string"},
		{"label value a number", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30"],"labels":{"v":2}}`, 400, "body: labels: want string, not a JSON number"},
		{"no ips", "PUT", "/v1/workloads/default/vm3", `{"labels":{"app":"x"}}`, 400, "ips: required: at least one address"},
		{"bad ip", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30","10.0.9"]}`, 400, `ips[1]: \"10.0.9\" is not an IP address`},
		{"ip twice", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30","10.0.9.30"]}`, 400, "ips[1]: 10.0.9.30 repeats ips[0]"},
		{"bad namespace", "PUT", "/v1/workloads/Bad_ns/vm3", `{"ips":["10.0.9.30"]}`, 400, `namespace: \"Bad_ns\" is not a namespace name`},
		{"bad name", "PUT", "/v1/workloads/default/vm_3", `{"ips":["10.0.9.30"]}`, 400, `name: \"vm_3\" is not a workload name`},
		{"name with a slash", "PUT", "/v1/workloads/default/a%2Fb", `{"ips":["10.0.9.30"]}`, 400, `name: \"a/b\" is not a workload name`},
		{"derived label", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30"],"labels":{"io.cilium.k8s.policy.cluster":"prod"}}`, 400,
			"labels.io.cilium.k8s.policy.cluster: keys under io.cilium.k8s. are derived"},
		{"bad label", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30"],"labels":{"a b":"c"}}`, 400, "labels.a b: invalid label key"},
		{"several problems", "PUT", "/v1/workloads/default/vm3", `{"ips":["x"],"labels":{"app":"a b"}}`, 400, `"problems": [`},
		{"the file's address", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.10"]}`, 409, "address in use: 10.0.9.10 is an address of workload default/vm1 (file)"},
		{"another API workload's address", "PUT", "/v1/workloads/other/vm2", `{"ips":["fd00:0:9::20"]}`, 409, "fd00:0:9::20 is an address of workload default/vm2 (api)"},
		{"the file's name", "PUT", "/v1/workloads/default/vm1", `{"ips":["10.0.9.30"]}`, 409, "default/vm1: the workload comes from the workloads file; edit the file to change it"},
		{"heartbeat the file's", "POST", "/v1/workloads/default/vm1/heartbeat", ``, 409, "the workload comes from the workloads file"},
		{"delete the file's", "DELETE", "/v1/workloads/default/vm1", ``, 409, "the workload comes from the workloads file; edit the file to remove it"},
		{"delete an unknown one", "DELETE", "/v1/workloads/default/vm9", ``, 404, "default/vm9: no such workload"},
		{"body too large", "PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30"],"labels":{"a":"` + strings.Repeat("b", MaxBodyBytes) + `"}}`, 413, "larger than 65536 bytes"},
		{"too many ips", "PUT", "/v1/workloads/default/vm3", `{"ips":[` + strings.TrimSuffix(strings.Repeat(`"10.0.9.30",`, MaxIPs+1), ",") + `]}`, 400, "ips: 65 addresses; at most 64"},
		{"wrong method", "POST", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30"]}`, 405, "method POST not allowed on /v1/workloads/{namespace}/{name}; use DELETE or GET or PUT"},
		{"no such path", "PUT", "/v1/workload/default/vm3", `{"ips":["10.0.9.30"]}`, 404, "no such path /v1/workload/default/vm3"},
	}
	gen := d.pub.Status().Generation
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			body := expect(tt.method, tt.path, tt.body, tt.status, tt.want)
			var e Error
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Errorf("body %s: want a JSON error (%v)", body, err)
			}
			if after := list(); after != before {
				t.Errorf("the workloads changed:\n%s\nwant:\n%s", after, before)
			}
			if g := d.pub.Status().Generation; g != gen {
				t.Errorf("publisher generation %d, want %d: something was published", g, gen)
			}
		})
	}

	expect("GET", "/healthz", "", http.StatusOK, "ok")
	expect("GET", "/readyz", "", http.StatusServiceUnavailable, "not ready: not the writer of sync:lab")
	expect("GET", "/v1/status", "", http.StatusOK, `"origin": "sync:lab"`, `"file": 1`, `"api": 1`, `"loaded": true`, `"ready": false`)

	// Expiry: vm2 is gone a heartbeat timeout after its last heartbeat,
	// not before.
	e, _ := d.workload("default/vm2")
	d.expire(e.LastSeen.Add(cfg.HeartbeatTimeout - time.Millisecond))
	expect("GET", "/v1/workloads/default/vm2", "", http.StatusOK)
	d.expire(e.LastSeen.Add(cfg.HeartbeatTimeout))
	expect("GET", "/v1/workloads/default/vm2", "", http.StatusNotFound)
	expect("POST", "/v1/workloads/default/vm2/heartbeat", "", http.StatusNotFound)

	expect("PUT", "/v1/workloads/default/vm3", `{"ips":["10.0.9.30"]}`, http.StatusCreated)
	expect("DELETE", "/v1/workloads/default/vm3", "", http.StatusNoContent)
	expect("DELETE", "/v1/workloads/default/vm3", "", http.StatusNotFound)

	expect("GET", "/metrics", "", http.StatusOK,
		`roost_sync_workloads{source="file"} 1`, `roost_sync_workloads{source="api"} 0`,
		"roost_sync_registrations_total 2", "roost_sync_expired_total 1", "roost_sync_deregistrations_total 1",
		`roost_sync_request_errors_total{code="409"} 5`, `roost_sync_request_errors_total{code="413"} 1`,
		`roost_sync_file_loads_total{result="ok"} 1`, "roost_sync_ready 0", "roost_sync_file_error 0")
}

// TestFileReload checks that a file that turns bad changes nothing, that
// its error is reported, and that a good file replaces the API workloads it
// takes the name or an address of.
func TestFileReload(t *testing.T) {
	cfg := testConfig(t, []string{"http://127.0.0.1:1"}, vm1File)
	d := newDaemon(t, cfg, "a")
	d.loadFile()
	if _, _, err := d.register(wl("default", "vm2", "10.0.9.20")); err != nil {
		t.Fatal(err)
	}
	list := func() string {
		var b strings.Builder
		for _, e := range d.workloads() {
			fmt.Fprintf(&b, "%s %s %v\n", e.ID(), e.Source, e.IPs)
		}
		return b.String()
	}
	const want = "default/vm1 file [10.0.9.10]\ndefault/vm2 api [10.0.9.20]\n"
	if got := list(); got != want {
		t.Fatalf("workloads:\n%s\nwant:\n%s", got, want)
	}
	gen := d.pub.Status().Generation

	for _, tt := range []struct{ name, text, wantErr string }{
		{"YAML error", "workloads: [", cfg.WorkloadsFile + ":1: YAML"},
		{"unknown key", "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n    ip: [10.0.9.11]\n", cfg.WorkloadsFile + ":4: workloads[0].ip: unknown field"},
		{"duplicate address", "workloads:\n  - {name: vm1, ips: [10.0.9.10]}\n  - {name: vm3, ips: [10.0.9.10]}\n", cfg.WorkloadsFile + ":3: workloads[1].ips[0]: 10.0.9.10 is already an address"},
		{"a directory", "", "is a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "a directory" {
				os.Remove(cfg.WorkloadsFile)
				if err := os.Mkdir(cfg.WorkloadsFile, 0o755); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(cfg.WorkloadsFile)
			} else {
				writeFile(t, cfg.WorkloadsFile, tt.text)
			}
			d.loadFile()
			s := d.Status()
			if !strings.Contains(s.File.Error, tt.wantErr) || s.File.ErrorTime.IsZero() || !s.File.Loaded {
				t.Errorf("file status %+v, want the error %q", s.File, tt.wantErr)
			}
			if got := list(); got != want {
				t.Errorf("workloads after a bad file:\n%s\nwant them unchanged:\n%s", got, want)
			}
			if g := d.pub.Status().Generation; g != gen {
				t.Errorf("publisher generation %d after a bad file, want %d: nothing to publish", g, gen)
			}
		})
	}

	// Fixed: vm1 takes vm2's address; vm2 is gone.
	writeFile(t, cfg.WorkloadsFile, "workloads:\n  - {name: vm1, ips: [10.0.9.10, 10.0.9.20]}\n")
	d.loadFile()
	if s := d.Status(); s.File.Error != "" || s.Generation != gen+1 {
		t.Errorf("status after the fix: %+v, want no error, generation %d", s, gen+1)
	}
	if got, want := list(), "default/vm1 file [10.0.9.10 10.0.9.20]\n"; got != want {
		t.Errorf("workloads after the fix:\n%s\nwant:\n%s", got, want)
	}
	// A missing file is an empty one.
	os.Remove(cfg.WorkloadsFile)
	d.loadFile()
	if s := d.Status(); s.File.Error != "" || s.Workloads != (Counts{}) {
		t.Errorf("status without a file: %+v, want no error, no workloads", s)
	}
}

// TestRunMissingDirectory checks that Run refuses a workloads file whose
// directory does not exist, before it publishes anything.
func TestRunMissingDirectory(t *testing.T) {
	cfg := testConfig(t, []string{"http://127.0.0.1:1"}, "")
	cfg.WorkloadsFile = "/nonexistent-roost/workloads.yaml"
	d := newDaemon(t, cfg, "a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "workloadsFile /nonexistent-roost/workloads.yaml: its directory must exist") {
		t.Errorf("Run = %v, want an error about the directory", err)
	}
	if s := d.Status(); s.Generation != 0 || s.File.Loaded {
		t.Errorf("status %+v, want nothing loaded or published", s)
	}
}
