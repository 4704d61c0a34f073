package globalview

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roost-net/roost/internal/testenv"
)

// testTimeout bounds every wait of these tests for something etcd should
// do within a second or two.
const testTimeout = 20 * time.Second

// newClient returns a client of endpoints with short timeouts, closed at
// cleanup.
func newClient(tb testing.TB, endpoints []string, mod ...func(*Config)) *Client {
	tb.Helper()
	cfg := Default()
	cfg.Endpoints = endpoints
	cfg.DialTimeout, cfg.RequestTimeout = 2*time.Second, 2*time.Second
	for _, f := range mod {
		f(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

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

// run runs fn (a Run method) until the test ends, and checks that it
// returns nil within a few seconds of its context ending.
func run(tb testing.TB, name string, fn func(context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("%s: Run = %v, want nil", name, err)
				}
			case <-time.After(10 * time.Second):
				tb.Errorf("%s: Run still running 10s after its context ended", name)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// publisher starts a publisher of o through c with the endpoints' lease
// ttl and the default election lease (a third of it, at least 2s).
func publisher(tb testing.TB, c *Client, o Origin, id string, ttl time.Duration) (*Publisher, context.CancelFunc) {
	tb.Helper()
	p, err := NewPublisher(c, o, PublisherOptions{ID: id, TTL: ttl, Retry: 200 * time.Millisecond, Log: testLog(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	return p, run(tb, "publisher "+id, p.Run)
}

// waitPublished waits until p, as the leader, has written generation gen.
func waitPublished(tb testing.TB, p *Publisher, gen uint64) PublisherStatus {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		st := p.Status()
		if st.Leader && st.Published >= gen {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("publisher %s did not publish generation %d within %v: %+v", st.ID, gen, testTimeout, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder keeps every view a subscriber passes on.
type recorder struct {
	mu    sync.Mutex
	views []View
	times []time.Time
}

func (r *recorder) onView(v View) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.views = append(r.views, v)
	r.times = append(r.times, time.Now())
}

// count returns how many views were passed on.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.views)
}

// all returns every view passed on so far.
func (r *recorder) all() []View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.views)
}

// wait waits until the last view satisfies ok and returns it and when it
// was passed on.
func (r *recorder) wait(tb testing.TB, what string, ok func(View) bool) (View, time.Time) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		r.mu.Lock()
		n := len(r.views)
		var last View
		var at time.Time
		if n > 0 {
			last, at = r.views[n-1], r.times[n-1]
		}
		r.mu.Unlock()
		if n > 0 && ok(last) {
			return last, at
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no view %s within %v; last of %d: %v", what, testTimeout, n, ids(last))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// subscribe starts a subscriber through c with a short probe interval.
func subscribe(tb testing.TB, c *Client) (*Subscriber, *recorder, context.CancelFunc) {
	r := &recorder{}
	s := NewSubscriber(c, SubscriberOptions{ProbeInterval: 200 * time.Millisecond, Retry: 200 * time.Millisecond, Log: testLog(tb)}, r.onView)
	return s, r, run(tb, "subscriber", s.Run)
}

// ids returns the IDs of v's endpoints, sorted.
func ids(v View) []string { return slices.Sorted(maps.Keys(v.Endpoints)) }

// hasIDs returns a predicate: the view holds exactly these endpoints.
func hasIDs(want ...string) func(View) bool {
	slices.Sort(want)
	return func(v View) bool { return slices.Equal(ids(v), want) }
}

// waitStatus waits until the subscriber's status satisfies ok.
func waitStatus(tb testing.TB, s *Subscriber, what string, ok func(SubscriberStatus) bool) SubscriberStatus {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		st := s.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("subscriber not %s within %v: %+v", what, testTimeout, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// keys returns the keys under prefix, read through c, and their leases.
func keys(tb testing.TB, c *Client, prefix string) map[string]clientv3.LeaseID {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		tb.Fatalf("get %s: %v", prefix, err)
	}
	out := map[string]clientv3.LeaseID{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = clientv3.LeaseID(kv.Lease)
	}
	return out
}

// put writes key=value through c, without a lease.
func put(tb testing.TB, c *Client, key, value string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.etcd.Put(ctx, key, value); err != nil {
		tb.Fatalf("put %s: %v", key, err)
	}
}

// numbered returns n endpoints of origin o in namespace ns, named and
// addressed by their number, with labels app=<name>.
func numbered(o Origin, ns string, n int) []Endpoint {
	out := make([]Endpoint, n)
	for i := range n {
		name := fmt.Sprintf("w-%d", i)
		out[i] = ep(o, ns, name, fmt.Sprintf("10.%d.%d.%d", 100+i>>16, i>>8&0xff, i&0xff), "app", name)
	}
	return out
}

// startEtcd starts an etcd cluster of n members; with -short (make unit,
// which runs no daemons) it skips the test.
func startEtcd(tb testing.TB, n int) *testenv.Etcd {
	tb.Helper()
	skipShort(tb)
	return testenv.StartEtcd(tb, n)
}

func skipShort(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts etcd; skipped with -short")
	}
}
