package syncd

import (
	"context"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/syncconfig"
	"github.com/roost-net/roost/internal/testenv"
)

// These tests run the daemon against a real etcd (Debian's etcd-server)
// and watch what it publishes through a globalview.Subscriber, as every
// roost-loader does.

// testTimeout bounds every wait for something that should happen within a
// second or two.
const testTimeout = 20 * time.Second

// startEtcd starts one etcd member; with -short (make unit, which runs no
// daemons) it skips the test.
func startEtcd(t *testing.T) *testenv.Etcd {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd; skipped with -short")
	}
	return testenv.StartEtcd(t, 1)
}

// running is a daemon whose Run runs until stop.
type running struct {
	d    *Daemon
	url  string
	stop func() // cancels Run and waits until it returns
}

// start runs d on a free port of 127.0.0.1 until the test ends or stop.
func start(t *testing.T, d *Daemon) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run still running 10s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return &running{d: d, url: "http://" + ln.Addr().String(), stop: stop}
}

// recorder keeps the views a subscriber passes on.
type recorder struct {
	mu    sync.Mutex
	views []globalview.View
	times []time.Time
}

func (r *recorder) onView(v globalview.View) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.views = append(r.views, v)
	r.times = append(r.times, time.Now())
}

// wait waits until the last view satisfies ok, and returns it and when it
// came.
func (r *recorder) wait(t *testing.T, what string, ok func(globalview.View) bool) (globalview.View, time.Time) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		r.mu.Lock()
		n := len(r.views)
		var last globalview.View
		var at time.Time
		if n > 0 {
			last, at = r.views[n-1], r.times[n-1]
		}
		r.mu.Unlock()
		if n > 0 && ok(last) {
			return last, at
		}
		if time.Now().After(deadline) {
			t.Fatalf("no view %s within %v; the last: %v", what, testTimeout, ids(last))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// since returns the views passed on at or after t.
func (r *recorder) since(t time.Time) []globalview.View {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []globalview.View
	for i, at := range r.times {
		if !at.Before(t) {
			out = append(out, r.views[i])
		}
	}
	return out
}

// ids returns the IDs of v's endpoints, sorted.
func ids(v globalview.View) []string { return slices.Sorted(maps.Keys(v.Endpoints)) }

// hasIDs returns a predicate: the view holds exactly these endpoints.
func hasIDs(want ...string) func(globalview.View) bool {
	slices.Sort(want)
	return func(v globalview.View) bool { return slices.Equal(ids(v), want) }
}

// subscribe follows etcd's endpoints until the test ends.
func subscribe(t *testing.T, e *testenv.Etcd) *recorder {
	t.Helper()
	cfg := globalview.Default()
	cfg.Endpoints = e.Endpoints
	c, err := globalview.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	s := globalview.NewSubscriber(c, globalview.SubscriberOptions{ProbeInterval: 200 * time.Millisecond, Retry: 200 * time.Millisecond}, r.onView)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		c.Close()
	})
	return r
}

// etcdConfig returns testConfig against e with a short lease and heartbeat
// timeout.
func etcdConfig(t *testing.T, e *testenv.Etcd, text string) syncconfig.Config {
	cfg := testConfig(t, e.Endpoints, text)
	cfg.LeaseTTL = 3 * time.Second
	cfg.HeartbeatTimeout = 2 * time.Second
	return cfg
}

// waitReady waits until the daemon's /readyz answers want (200 or 503)
// with a body containing text.
func waitReady(t *testing.T, r *running, want int, text string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		status, body := call(t, "GET", r.url+"/readyz", "")
		if status == want && strings.Contains(body, text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %q within %v, want %d %q", status, body, testTimeout, want, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustCall(t *testing.T, method, url, body string, want int) string {
	t.Helper()
	status, got := call(t, method, url, body)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, status, got, want)
	}
	return got
}

// TestPublish follows the workloads of the file and of the API into a
// subscriber's view: registered, deregistered, kept alive by heartbeats,
// expired without them, and the file's edits, but not a bad version of it.
func TestPublish(t *testing.T) {
	e := startEtcd(t)
	cfg := etcdConfig(t, e, vm1File)
	cfg.Cluster = "prod"
	r := start(t, newDaemon(t, cfg, "a"))
	rec := subscribe(t, e)

	v, _ := rec.wait(t, "with vm1", hasIDs("sync:lab/default/vm1"))
	want := map[string]string{
		"app":                         "employee",
		"io.kubernetes.pod.namespace": "default",
		"io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "default",
		"io.cilium.k8s.policy.cluster":                               "prod",
	}
	if diff := cmp.Diff(want, v.Endpoints["sync:lab/default/vm1"].Labels); diff != "" {
		t.Errorf("vm1's labels (-want +got):\n%s", diff)
	}
	waitReady(t, r, http.StatusOK, "ready")

	step := func(what string, ok func(globalview.View) bool, change func()) time.Time {
		t.Helper()
		began := time.Now()
		change()
		_, at := rec.wait(t, what, ok)
		t.Logf("%s: in the view %v after the change", what, at.Sub(began).Round(time.Millisecond))
		return at
	}
	step("with vm2 registered", hasIDs("sync:lab/default/vm1", "sync:lab/default/vm2"), func() {
		mustCall(t, "PUT", r.url+"/v1/workloads/default/vm2", `{"ips":["10.0.9.20"],"labels":{"app":"web"}}`, http.StatusCreated)
	})
	step("without vm2, deregistered", hasIDs("sync:lab/default/vm1"), func() {
		mustCall(t, "DELETE", r.url+"/v1/workloads/default/vm2", "", http.StatusNoContent)
	})

	// Heartbeats keep vm3 for longer than the heartbeat timeout; without
	// them it goes a timeout after the last one.
	step("with vm3 registered", hasIDs("sync:lab/default/vm1", "sync:lab/shop/vm3"), func() {
		mustCall(t, "PUT", r.url+"/v1/workloads/shop/vm3", `{"ips":["10.0.9.30"]}`, http.StatusCreated)
	})
	kept := time.Now()
	var last time.Time
	for time.Since(kept) < cfg.HeartbeatTimeout+time.Second {
		last = time.Now()
		mustCall(t, "POST", r.url+"/v1/workloads/shop/vm3/heartbeat", "", http.StatusNoContent)
		time.Sleep(cfg.HeartbeatTimeout / 4)
	}
	for _, v := range rec.since(kept) {
		if _, ok := v.Endpoints["sync:lab/shop/vm3"]; !ok {
			t.Fatalf("vm3 left the view while heartbeating: %v", ids(v))
		}
	}
	_, gone := rec.wait(t, "without vm3, expired", hasIDs("sync:lab/default/vm1"))
	t.Logf("vm3 gone from the view %v after its last heartbeat (timeout %v)", gone.Sub(last).Round(time.Millisecond), cfg.HeartbeatTimeout)
	if gone.Sub(last) < cfg.HeartbeatTimeout {
		t.Errorf("vm3 gone %v after its last heartbeat, before the timeout %v", gone.Sub(last), cfg.HeartbeatTimeout)
	}
	mustCall(t, "POST", r.url+"/v1/workloads/shop/vm3/heartbeat", "", http.StatusNotFound)

	// The file is followed.
	step("with vm4 from the file", hasIDs("sync:lab/default/vm1", "sync:lab/default/vm4"), func() {
		writeFile(t, cfg.WorkloadsFile, vm1File+"  - name: vm4\n    ips: [10.0.9.40]\n")
	})
	// A bad version of it changes nothing, and says why.
	gen := r.d.Status().Generation
	broke := time.Now()
	writeFile(t, cfg.WorkloadsFile, vm1File+"  - name: vm4\n    ips: [10.0.9.40]\n    label: {app: x}\n")
	deadline := time.Now().Add(testTimeout)
	for !strings.Contains(r.d.Status().File.Error, cfg.WorkloadsFile+":7: workloads[1].label: unknown field") {
		if time.Now().After(deadline) {
			t.Fatalf("no error for the bad file in the status within %v: %+v", testTimeout, r.d.Status().File)
		}
		time.Sleep(10 * time.Millisecond)
	}
	body := mustCall(t, "GET", r.url+"/v1/status", "", http.StatusOK)
	if !strings.Contains(body, "workloads[1].label: unknown field") {
		t.Errorf("/v1/status does not show the file's error:\n%s", body)
	}
	time.Sleep(300 * time.Millisecond) // a change would be in the view by now
	if s := r.d.Status(); s.Generation != gen || !s.Ready {
		t.Errorf("after a bad file: generation %d (want %d), ready %v (want true: the last good set is published)", s.Generation, gen, s.Ready)
	}
	for _, v := range rec.since(broke) {
		if !hasIDs("sync:lab/default/vm1", "sync:lab/default/vm4")(v) {
			t.Errorf("a view after the file turned bad: %v, want vm1 and vm4 still", ids(v))
		}
	}
	// Fixed, and reloaded on demand (SIGHUP) as well as on change.
	step("without vm4, the file fixed", hasIDs("sync:lab/default/vm1"), func() {
		writeFile(t, cfg.WorkloadsFile, vm1File)
		r.d.Reload()
	})
	if s := r.d.Status(); s.File.Error != "" {
		t.Errorf("the file's error is still reported after the fix: %q", s.File.Error)
	}
	waitReady(t, r, http.StatusOK, "ready")
}

// TestStopped stops a syncer without deregistering anything: its workloads
// stay in etcd until its lease expires, and then go. A second instance
// whose workloads file does not load meanwhile neither campaigns nor
// replaces them with nothing; once the file is fixed, it publishes.
func TestStopped(t *testing.T) {
	e := startEtcd(t)
	cfg := etcdConfig(t, e, vm1File)
	a := start(t, newDaemon(t, cfg, "a"))
	rec := subscribe(t, e)
	mustCall(t, "PUT", a.url+"/v1/workloads/default/vm2", `{"ips":["10.0.9.20"]}`, http.StatusCreated)
	rec.wait(t, "with vm1 and vm2", hasIDs("sync:lab/default/vm1", "sync:lab/default/vm2"))
	waitReady(t, a, http.StatusOK, "ready")

	a.stop()
	stopped := time.Now()
	cfgB := etcdConfig(t, e, "workloads: [{name: vm1, ips: [10.0.9.10]}, {name: vm1, ips: [10.0.9.11]}]\n")
	b := start(t, newDaemon(t, cfgB, "b"))
	waitReady(t, b, http.StatusServiceUnavailable, "the workloads file has not loaded, so nothing is published: "+cfgB.WorkloadsFile+":1: workloads[1].name: default/vm1 is already the name of workloads[0] (line 1)")

	// Keepalives went every third of the lease: it has at least two
	// thirds left. Check at a third.
	time.Sleep(time.Until(stopped.Add(cfg.LeaseTTL / 3)))
	if v, _ := rec.wait(t, "", func(globalview.View) bool { return true }); !hasIDs("sync:lab/default/vm1", "sync:lab/default/vm2")(v) {
		t.Fatalf("%v after the syncer stopped: %v, want vm1 and vm2 until the lease expires", time.Since(stopped).Round(time.Millisecond), ids(v))
	}
	_, gone := rec.wait(t, "empty, the lease expired", hasIDs())
	t.Logf("workloads gone from the view %v after the syncer stopped (lease %v)", gone.Sub(stopped).Round(time.Millisecond), cfg.LeaseTTL)
	if gone.Sub(stopped) < cfg.LeaseTTL/2 {
		t.Errorf("workloads gone %v after the syncer stopped, before its lease can have expired", gone.Sub(stopped))
	}

	writeFile(t, cfgB.WorkloadsFile, vm1File)
	rec.wait(t, "with b's vm1", hasIDs("sync:lab/default/vm1"))
	waitReady(t, b, http.StatusOK, "ready")
}

// TestStandby runs two instances of one syncer with the same file: one
// writes, the other waits and is not ready; when the writer stops, the
// other takes over at once and the file's workloads never leave the view.
func TestStandby(t *testing.T) {
	e := startEtcd(t)
	cfg := etcdConfig(t, e, vm1File)
	cfg.LeaseTTL = 6 * time.Second
	a := start(t, newDaemon(t, cfg, "a"))
	rec := subscribe(t, e)
	waitReady(t, a, http.StatusOK, "ready")
	b := start(t, newDaemon(t, etcdConfig(t, e, vm1File), "b"))
	waitReady(t, b, http.StatusServiceUnavailable, "not the writer of sync:lab")
	rec.wait(t, "with vm1", hasIDs("sync:lab/default/vm1"))

	stopped := time.Now()
	a.stop()
	waitReady(t, b, http.StatusOK, "ready")
	t.Logf("the standby ready %v after the writer stopped", time.Since(stopped).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	for _, v := range rec.since(stopped) {
		if !hasIDs("sync:lab/default/vm1")(v) {
			t.Errorf("a view during the hand-over: %v, want vm1", ids(v))
		}
	}
	if s := b.d.Status(); !s.Publisher.Leader || s.Publisher.Published != s.Generation {
		t.Errorf("standby after the hand-over: %+v", s)
	}
}

// TestEtcdHangs freezes etcd (SIGSTOP): the syncer must not go on
// reporting ready on an etcd that answers nothing. It turns unready once
// its publisher's term ends, which is bounded by the lease, and ready
// again once etcd goes on; its API answers meanwhile.
func TestEtcdHangs(t *testing.T) {
	e := startEtcd(t)
	cfg := etcdConfig(t, e, vm1File)
	a := start(t, newDaemon(t, cfg, "a"))
	waitReady(t, a, http.StatusOK, "ready")

	m := e.Members[0]
	m.Signal(syscall.SIGSTOP)
	continued := false
	resume := func() {
		if !continued {
			continued = true
			m.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume) // before etcd's own cleanup stops it
	frozen := time.Now()
	waitReady(t, a, http.StatusServiceUnavailable, "not the writer of sync:lab")
	took := time.Since(frozen)
	t.Logf("unready %v after etcd froze (lease %v)", took.Round(time.Millisecond), cfg.LeaseTTL)
	if took > 2*cfg.LeaseTTL {
		t.Errorf("unready only %v after etcd froze; want within about the lease, %v", took, cfg.LeaseTTL)
	}
	mustCall(t, "PUT", a.url+"/v1/workloads/default/vm2", `{"ips":["10.0.9.20"]}`, http.StatusCreated)

	resume()
	rec := subscribe(t, e)
	waitReady(t, a, http.StatusOK, "ready")
	rec.wait(t, "vm2, registered while etcd hung, published", hasIDs("sync:lab/default/vm1", "sync:lab/default/vm2"))
}
