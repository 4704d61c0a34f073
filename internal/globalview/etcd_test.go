package globalview

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// These tests run a real etcd (Debian's etcd-server, 3.4) with the etcd
// v3.7 client this package is built on: KV, transactions, watches, leases
// and elections across the two versions are what they exercise.

// TestPublishSubscribe publishes two origins and follows adds, updates and
// deletes to the subscriber, logging how long each took to arrive.
func TestPublishSubscribe(t *testing.T) {
	e := startEtcd(t, 1)
	c := newClient(t, e.Endpoints)
	logServerVersion(t, c, e.Endpoints[0])

	prod, vms := ClusterOrigin("prod"), SyncOrigin("vms")
	pp, _ := publisher(t, c, prod, "prod-a", 10*time.Second)
	pv, _ := publisher(t, c, vms, "vms-a", 10*time.Second)
	s, rec, _ := subscribe(t, c)

	web0 := ep(prod, "web", "web-0", "10.244.1.5", "app", "web")
	web1 := ep(prod, "web", "web-1", "10.244.2.5", "app", "web")
	db := ep(vms, "legacy", "db-1", "192.0.2.7", "app", "db", policy.ClusterLabel, "prod")
	set(t, pp, web0, web1)
	set(t, pv, db)

	step := func(what string, ok func(View) bool, change func() uint64, p *Publisher) View {
		t.Helper()
		began := time.Now()
		gen := change()
		waitPublished(t, p, gen)
		v, at := rec.wait(t, what, ok)
		t.Logf("%s: in the view %v after Set", what, at.Sub(began).Round(100*time.Microsecond))
		return v
	}
	v, _ := rec.wait(t, "with all three", hasIDs("cluster:prod/web/web-0", "cluster:prod/web/web-1", "sync:vms/legacy/db-1"))
	got := v.Endpoints["cluster:prod/web/web-0"]
	if got.Labels[policy.ClusterLabel] != "prod" || got.Labels[policy.NamespaceLabel] != "web" || got.Labels["app"] != "web" {
		t.Errorf("web-0's labels = %v, want app, namespace and cluster labels", got.Labels)
	}
	if got.IPs[0] != netip.MustParseAddr("10.244.1.5") {
		t.Errorf("web-0's IPs = %v", got.IPs)
	}

	web1b := web1
	web1b.Labels = map[string]string{"app": "web", "version": "2"}
	step("with web-1 relabelled", func(v View) bool { return v.Endpoints["cluster:prod/web/web-1"].Labels["version"] == "2" },
		func() uint64 { return set(t, pp, web0, web1b) }, pp)
	step("without web-0", hasIDs("cluster:prod/web/web-1", "sync:vms/legacy/db-1"),
		func() uint64 { return set(t, pp, web1b) }, pp)
	web2 := ep(prod, "web", "web-2", "10.244.3.5")
	step("with web-2", hasIDs("cluster:prod/web/web-1", "cluster:prod/web/web-2", "sync:vms/legacy/db-1"),
		func() uint64 { return set(t, pp, web1b, web2) }, pp)

	// Idempotent: the same set again writes nothing.
	st := waitPublished(t, pp, set(t, pp, web2, web1b))
	if st.Last.Puts != 0 || st.Last.Deletes != 0 || st.Last.Txns != 0 {
		t.Errorf("publishing the same set again: %+v, want no writes", st.Last)
	}
	// Every key is under the leader's lease.
	for k, lease := range keys(t, c, c.layout.OriginPrefix(prod)) {
		if fmt.Sprintf("%x", lease) != st.Lease {
			t.Errorf("%s is under lease %x, want the publisher's %s", k, lease, st.Lease)
		}
	}
	// The candidacy is <root>leaders/<origin>/<lease id in hex>.
	cands := keys(t, c, c.layout.Leaders(prod))
	if len(cands) != 1 {
		t.Errorf("candidacies of %s: %v, want one", prod, cands)
	}
	for k := range cands {
		if rest := strings.TrimPrefix(k, c.layout.Leaders(prod)); strings.Contains(rest, "/") || rest == "" {
			t.Errorf("candidacy key %q, want %s<lease id>", k, c.layout.Leaders(prod))
		}
	}
	sst := s.Status()
	if !sst.Connected || !sst.Listed || sst.Lists != 1 || sst.Endpoints != 3 || sst.LastError != "" {
		t.Errorf("subscriber status = %+v, want connected, one listing, 3 endpoints, no error", sst)
	}
	// The first view may be empty (nothing was published yet); none after
	// the first that was not.
	seen := false
	for i, v := range rec.all() {
		if seen && len(v.Endpoints) == 0 {
			t.Errorf("view %d (revision %d) is empty", i, v.Revision)
		}
		seen = seen || len(v.Endpoints) > 0
	}
}

// set sets p's endpoints and fails the test when Set finds a problem.
func set(tb testing.TB, p *Publisher, eps ...Endpoint) uint64 {
	tb.Helper()
	gen, err := p.Set(eps, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return gen
}

func logServerVersion(tb testing.TB, c *Client, endpoint string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.etcd.Status(ctx, endpoint)
	if err != nil {
		tb.Fatalf("status of %s: %v", endpoint, err)
	}
	tb.Logf("etcd server %s, client go.etcd.io/etcd/client/v3 v3.7", st.Version)
}

// TestSetRejects checks that Set leaves out what it must not publish and
// publishes the rest.
func TestSetRejects(t *testing.T) {
	e := startEtcd(t, 1)
	c := newClient(t, e.Endpoints)
	prod := ClusterOrigin("prod")
	p, _ := publisher(t, c, prod, "a", 10*time.Second)
	gen, err := p.Set([]Endpoint{
		ep(prod, "web", "web-0", "10.0.0.1"),
		ep(ClusterOrigin("dev"), "web", "web-9", "10.0.0.9"),
		ep(prod, "web", "web-0", "10.0.0.2"),
		ep(prod, "web", "Bad", "10.0.0.3"),
		ep(prod, "web", "web-4", "10.0.0.4", policy.ClusterLabel, "dev"),
	}, nil)
	for _, want := range []string{
		"cluster:dev/web/web-9: origin is not this publisher's cluster:prod",
		"cluster:prod/web/web-0: given twice",
		`cluster:prod/web/Bad: name "Bad"`,
		"cluster:prod/web/web-4: label io.cilium.k8s.policy.cluster=\"dev\" does not match",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Set error = %v, want it to contain %q", err, want)
		}
	}
	waitPublished(t, p, gen)
	got := slices.Sorted(maps.Keys(keys(t, c, c.layout.Endpoints())))
	if want := []string{"/roost/v1/endpoints/cluster:prod/web/web-0"}; !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
}

// TestPublisherDies closes a publisher's connection without revoking its
// lease, as a crash would: its endpoints stay until the lease's TTL has
// passed, and are gone soon after.
func TestPublisherDies(t *testing.T) {
	e := startEtcd(t, 1)
	observer := newClient(t, e.Endpoints)
	pc := newClient(t, e.Endpoints)
	const ttl = 4 * time.Second
	prod := ClusterOrigin("prod")
	p, stop := publisher(t, pc, prod, "a", ttl)
	_, rec, _ := subscribe(t, observer)
	waitPublished(t, p, set(t, p, numbered(prod, "web", 5)...))
	rec.wait(t, "with 5 endpoints", func(v View) bool { return len(v.Endpoints) == 5 })

	pc.Close() // the process dies: no more keepalives, nothing revoked
	died := time.Now()
	stop()
	prefix := observer.layout.OriginPrefix(prod)
	// Keepalives went every TTL/3, so the lease has at least 2/3 of its
	// TTL left; check at half of it.
	sleepUntil(died.Add(ttl / 2))
	if n := len(keys(t, observer, prefix)); n != 5 {
		t.Fatalf("%v after the publisher died: %d keys, want all 5 until the lease expires", time.Since(died).Round(time.Millisecond), n)
	}
	v, at := rec.wait(t, "empty after the lease expired", func(v View) bool { return len(v.Endpoints) == 0 })
	gone := at.Sub(died)
	t.Logf("endpoints gone from the view %v after the publisher died (lease TTL %v)", gone.Round(time.Millisecond), ttl)
	if gone < ttl/2 {
		t.Errorf("endpoints gone after %v, before the lease can have expired", gone)
	}
	if len(keys(t, observer, prefix)) != 0 || v.Problems != nil {
		t.Errorf("keys left after the lease expired: %v, problems %v", keys(t, observer, prefix), v.Problems)
	}
}

// sleepUntil sleeps until t.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// TestStandbyTakesOver runs two publishers of one origin: one is the
// leader and writes; when it dies, the standby takes over and rewrites
// every endpoint under its own lease before the dead leader's lease
// expires, so that the subscriber never sees them go; when the new leader
// stops cleanly, the first one back takes over at once.
func TestStandbyTakesOver(t *testing.T) {
	e := startEtcd(t, 1)
	observer := newClient(t, e.Endpoints)
	ca, cb := newClient(t, e.Endpoints), newClient(t, e.Endpoints)
	const ttl = 6 * time.Second // ElectionTTL is 2s
	prod := ClusterOrigin("prod")
	eps := numbered(prod, "web", 20)
	a, stopA := publisher(t, ca, prod, "a", ttl)
	set(t, a, eps...)
	waitPublished(t, a, 1)
	b, stopB := publisher(t, cb, prod, "b", ttl)
	set(t, b, eps...)
	_, rec, _ := subscribe(t, observer)
	rec.wait(t, "with 20 endpoints", func(v View) bool { return len(v.Endpoints) == 20 })
	time.Sleep(500 * time.Millisecond)
	if st := b.Status(); st.Leader || st.Published != 0 {
		t.Fatalf("standby b: %+v, want not leader, nothing published", st)
	}

	// The leader dies without a word.
	ca.Close()
	died := time.Now()
	stopA()
	st := waitPublished(t, b, 1)
	t.Logf("standby led and rewrote %d endpoints (%d txns) %v after the leader died", st.Last.Puts, st.Last.Txns, time.Since(died).Round(time.Millisecond))
	if st.Last.Puts != 20 || !st.Last.Full {
		t.Errorf("standby's first publication: %+v, want a full rewrite of 20 endpoints", st.Last)
	}
	// Past the dead leader's lease, everything is still there, under b's.
	sleepUntil(died.Add(ttl + time.Second))
	for k, lease := range keys(t, observer, observer.layout.OriginPrefix(prod)) {
		if fmt.Sprintf("%x", lease) != st.Lease {
			t.Errorf("%s is under lease %x, want the new leader's %s", k, lease, st.Lease)
		}
	}
	for i, v := range rec.all() {
		if len(v.Endpoints) != 20 {
			t.Errorf("view %d (revision %d) has %d endpoints: the handover lost some", i, v.Revision, len(v.Endpoints))
		}
	}

	// A clean stop hands over at once: a new publisher waits as standby,
	// then leads as soon as b withdraws.
	cc := newClient(t, e.Endpoints)
	c, _ := publisher(t, cc, prod, "c", ttl)
	set(t, c, eps[:10]...)
	time.Sleep(500 * time.Millisecond)
	if c.Status().Leader {
		t.Fatal("c leads while b does")
	}
	stopB()
	stopped := time.Now()
	waitPublished(t, c, 1)
	t.Logf("c led and published %v after b stopped", time.Since(stopped).Round(time.Millisecond))
	if time.Since(stopped) > time.Second {
		t.Errorf("c took %v to take over from a clean stop, want well under the election TTL", time.Since(stopped))
	}
	rec.wait(t, "with c's 10 endpoints", func(v View) bool { return len(v.Endpoints) == 10 })
}

// TestDeposedLeaderCannotWrite checks the fence: a writer whose candidacy
// is no longer the leader's writes nothing.
func TestDeposedLeaderCannotWrite(t *testing.T) {
	e := startEtcd(t, 1)
	c := newClient(t, e.Endpoints)
	prod := ClusterOrigin("prod")
	p, stop := publisher(t, c, prod, "a", 10*time.Second)
	waitPublished(t, p, set(t, p, numbered(prod, "web", 3)...))
	stop()

	ctx := t.Context()
	// The leader key's creation revision is what a leader's fence
	// compares; a candidacy that is gone (or never was) fails it.
	leaders := c.layout.Leaders(prod)
	w := &writer{
		c: c, prefix: c.layout.OriginPrefix(prod), maxOps: 128,
		fence: clientv3.Compare(clientv3.CreateRevision(leaders+"gone"), "=", 7),
	}
	_, err := w.reconcile(ctx, map[string][]byte{})
	if err != ErrNotLeader {
		t.Fatalf("reconcile with a stale fence = %v, want ErrNotLeader", err)
	}
	if n := len(keys(t, c, c.layout.OriginPrefix(prod))); n != 3 {
		t.Errorf("%d keys after a refused write, want the 3 published", n)
	}
}

// TestSubscriberSurvivesEtcdRestart stops the only etcd member: the
// subscriber keeps its view, passes on no other, and says it is
// disconnected; once etcd is back it reconnects and follows new changes
// without listing again.
func TestSubscriberSurvivesEtcdRestart(t *testing.T) {
	e := startEtcd(t, 1)
	c := newClient(t, e.Endpoints)
	w := newClient(t, e.Endpoints)
	prod := ClusterOrigin("prod")
	p, _ := publisher(t, w, prod, "a", 30*time.Second)
	waitPublished(t, p, set(t, p, numbered(prod, "web", 3)...))
	s, rec, _ := subscribe(t, c)
	rec.wait(t, "with 3 endpoints", func(v View) bool { return len(v.Endpoints) == 3 })
	views := rec.count()

	e.Members[0].Stop()
	stopped := time.Now()
	st := waitStatus(t, s, "disconnected", func(st SubscriberStatus) bool { return !st.Connected })
	t.Logf("disconnected %v after etcd stopped: %s", time.Since(stopped).Round(time.Millisecond), st.LastError)
	if st.LastError == "" {
		t.Error("disconnected without an error")
	}
	time.Sleep(time.Second)
	if n := rec.count(); n != views {
		t.Errorf("%d views passed on while etcd was down, want none", n-views)
	}
	if st := s.Status(); st.Connected || st.Endpoints != 3 || st.ViewAge < time.Second {
		t.Errorf("while etcd is down: %+v, want disconnected, the 3 endpoints, a view older than 1s", st)
	}

	e.Members[0].Start()
	put(t, w, w.layout.Key(ep(SyncOrigin("vms"), "legacy", "db-1", "192.0.2.7")), `{"v":1,"ips":["192.0.2.7"],"namespace":"legacy"}`)
	rec.wait(t, "with the outside workload added after the restart", func(v View) bool { return len(v.Endpoints) == 4 })
	st = waitStatus(t, s, "connected", func(st SubscriberStatus) bool { return st.Connected })
	if st.Lists != 1 {
		t.Errorf("subscriber listed %d times, want once: a restart needs no new listing", st.Lists)
	}
	if st.ViewAge > time.Second {
		t.Errorf("view age %v after catching up", st.ViewAge)
	}
}

// TestSubscriberCatchesUp cuts a subscriber off (its only member stops)
// while another client changes the view through the other members: when
// its member is back it has all the changes, from where it stopped.
// Then it is cut off again, and the history it would need is compacted
// away meanwhile: it lists again, and the view is right, deletions
// included.
func TestSubscriberCatchesUp(t *testing.T) {
	e := startEtcd(t, 3)
	c := newClient(t, e.Endpoints[:1])
	w := newClient(t, e.Endpoints[1:])
	prod := ClusterOrigin("prod")
	p, _ := publisher(t, w, prod, "a", 30*time.Second)
	eps := numbered(prod, "web", 10)
	waitPublished(t, p, set(t, p, eps...))
	s, rec, _ := subscribe(t, c)
	rec.wait(t, "with 10 endpoints", func(v View) bool { return len(v.Endpoints) == 10 })

	cutOff := func() {
		t.Helper()
		e.Members[0].Stop()
		waitStatus(t, s, "disconnected", func(st SubscriberStatus) bool { return !st.Connected })
	}
	relabelled := func(e Endpoint, k, v string) Endpoint {
		e.Labels = map[string]string{k: v}
		return e
	}

	// 1. Catch up from the last revision.
	cutOff()
	views := rec.count()
	changed := append(slices.Clone(eps[2:]), ep(prod, "web", "new-0", "10.1.0.1"))
	changed[0] = relabelled(changed[0], "app", "changed")
	waitPublished(t, p, set(t, p, changed...))
	e.Members[0].Start()
	want := func(eps []Endpoint) func(View) bool {
		return func(v View) bool {
			if len(v.Endpoints) != len(eps) {
				return false
			}
			for _, e := range eps {
				got, ok := v.Endpoints[e.ID()]
				if !ok || got.Labels["app"] != e.Labels["app"] {
					return false
				}
			}
			return true
		}
	}
	rec.wait(t, "with the changes made while cut off", want(changed))
	if st := s.Status(); st.Lists != 1 {
		t.Errorf("subscriber listed %d times, want once: it should resume from its revision", st.Lists)
	}
	if n := rec.count(); n == views {
		t.Error("no view passed on after catching up")
	}

	// 2. The history it needs compacted away while cut off: it lists
	// again when its watch resumes.
	cutOff()
	next := append(slices.Clone(changed[3:]), ep(prod, "web", "new-1", "10.1.0.2"))
	next[0] = relabelled(next[0], "app", "changed-again")
	waitPublished(t, p, set(t, p, next...))
	// Another origin writes too, so that the compaction is past the
	// revision the watch resumes at.
	put(t, w, w.layout.Key(ep(SyncOrigin("vms"), "legacy", "db-1", "192.0.2.7")), `{"v":1,"ips":["192.0.2.7"],"namespace":"legacy"}`)
	next = append(next, ep(SyncOrigin("vms"), "legacy", "db-1", "192.0.2.7"))
	compact(t, w)
	e.Members[0].Start()
	rec.wait(t, "listed after the compaction", want(next))
	st := waitStatus(t, s, "connected", func(st SubscriberStatus) bool { return st.Connected })
	if st.Lists != 2 || !strings.Contains(st.LastError, "compacted") {
		t.Errorf("after the compaction: %+v, want a second listing and the compaction as the last error", st)
	}

	// 3. The compaction exactly at the revision the watch resumes at,
	// which holds deletions: etcd 3.4.23 (fixed in 3.4.34) drops them
	// from the watch (etcd-io/etcd#18089), and the subscriber's probes
	// find the count wrong and list again.
	cutOff()
	final := slices.Clone(next[2 : len(next)-1]) // db-1 is not p's
	final[0] = relabelled(final[0], "app", "changed-a-third-time")
	waitPublished(t, p, set(t, p, final...))
	final = append(final, next[len(next)-1])
	compact(t, w)
	e.Members[0].Start()
	rec.wait(t, "right after a compaction at the resumed revision", want(final))
	st = waitStatus(t, s, "connected", func(st SubscriberStatus) bool { return st.Connected })
	t.Logf("after the compaction at the resumed revision: %d listings, last error %q", st.Lists, st.LastError)

	for i, v := range rec.all() {
		if len(v.Endpoints) == 0 {
			t.Errorf("view %d is empty", i)
		}
	}
}

// compact compacts etcd's history up to its current revision.
func compact(tb testing.TB, c *Client) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := c.Check(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.etcd.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		tb.Fatalf("compact at %d: %v", rev, err)
	}
}

// TestMemberKilled kills the leader member of a 3-member cluster: the
// publisher and the subscriber, which know every member, carry on.
func TestMemberKilled(t *testing.T) {
	e := startEtcd(t, 3)
	c := newClient(t, e.Endpoints)
	w := newClient(t, e.Endpoints)
	prod := ClusterOrigin("prod")
	// A longer election lease than elsewhere: the raft election and the
	// client's move to another member take a second or two.
	const ttl = 12 * time.Second
	p, _ := publisher(t, w, prod, "a", ttl)
	eps := numbered(prod, "web", 10)
	waitPublished(t, p, set(t, p, eps...))
	s, rec, _ := subscribe(t, c)
	rec.wait(t, "with 10 endpoints", func(v View) bool { return len(v.Endpoints) == 10 })
	lease := p.Status().Lease

	leader := raftLeader(t, c, e)
	e.Members[leader].Kill()
	killed := time.Now()
	t.Logf("killed the raft leader %s", e.Members[leader].Name)
	waitPublished(t, p, set(t, p, eps[:7]...))
	rec.wait(t, "with 7 endpoints", func(v View) bool { return len(v.Endpoints) == 7 })
	t.Logf("a change reached the subscriber %v after the kill", time.Since(killed).Round(time.Millisecond))
	if st := p.Status(); st.Lease != lease || st.Terms != 1 {
		t.Errorf("publisher after the kill: %+v, want the same term and lease %s", st, lease)
	}
	// Past the lease TTL, the keepalives went on through the others.
	sleepUntil(killed.Add(ttl + time.Second))
	if n := len(keys(t, c, c.layout.OriginPrefix(prod))); n != 7 {
		t.Errorf("%d keys %v after the kill, want 7: the lease was not kept alive", n, ttl+time.Second)
	}
	if st := s.Status(); !st.Connected || st.Endpoints != 7 {
		t.Errorf("subscriber: %+v, want connected with 7 endpoints", st)
	}
}

// raftLeader returns the index of e's member that leads the raft group.
func raftLeader(tb testing.TB, c *Client, e *testenv.Etcd) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, ep := range e.Endpoints {
		st, err := c.etcd.Status(ctx, ep)
		if err != nil {
			tb.Fatalf("status of %s: %v", ep, err)
		}
		if st.Leader == st.Header.MemberId {
			return i
		}
	}
	tb.Fatal("no member leads")
	return 0
}

// TestBadValues writes values a reader must skip under the prefix: each
// is reported, the rest of the view stays, and a key that becomes valid
// again comes back.
func TestBadValues(t *testing.T) {
	e := startEtcd(t, 1)
	c := newClient(t, e.Endpoints)
	prod := ClusterOrigin("prod")
	p, _ := publisher(t, c, prod, "a", 10*time.Second)
	waitPublished(t, p, set(t, p, numbered(prod, "web", 3)...))
	s, rec, _ := subscribe(t, c)
	rec.wait(t, "with 3 endpoints", func(v View) bool { return len(v.Endpoints) == 3 })

	root := c.layout.Endpoints()
	bad := map[string]string{
		root + "sync:vms/legacy/garbage":    "not json",
		root + "sync:vms/legacy/future":     `{"v":2,"ips":["192.0.2.1"],"namespace":"legacy"}`,
		root + "sync:vms/legacy/short":      `{"v":1}`,
		root + "sync:vms/legacy":            `{"v":1,"ips":["192.0.2.2"],"namespace":"legacy"}`,
		root + "cluster:dev/web/forged":     `{"v":1,"ips":["192.0.2.3"],"namespace":"web","labels":{"io.cilium.k8s.policy.cluster":"prod"}}`,
		root + "sync:vms/legacy/wrong-ns":   `{"v":1,"ips":["192.0.2.4"],"namespace":"kube-system"}`,
		root + "sync:vms/legacy/becomes-ok": `{"v":1,"ips":[]}`,
	}
	for k, v := range bad {
		put(t, c, k, v)
	}
	v, _ := rec.wait(t, "with 7 problems", func(v View) bool { return len(v.Problems) == 7 })
	if len(v.Endpoints) != 3 {
		t.Errorf("view with bad values has %v, want the 3 good endpoints", ids(v))
	}
	for _, pr := range v.Problems {
		if _, ok := bad[pr.Key]; !ok || pr.Err == "" {
			t.Errorf("problem %+v: not one of the bad keys, or no reason", pr)
		}
		t.Logf("skipped %s", pr.Err)
	}
	if st := s.Status(); st.Problems != 7 || st.Endpoints != 3 {
		t.Errorf("status: %+v, want 7 problems and 3 endpoints", st)
	}

	// A good key turning bad leaves the view; fixed, it comes back.
	key := root + "sync:vms/legacy/becomes-ok"
	put(t, c, key, `{"v":1,"ips":["192.0.2.9"],"namespace":"legacy"}`)
	rec.wait(t, "with the fixed key", func(v View) bool { return len(v.Endpoints) == 4 && len(v.Problems) == 6 })
	put(t, c, key, `{"v":1,"ips":"oops"}`)
	rec.wait(t, "without the broken key", func(v View) bool { return len(v.Endpoints) == 3 && len(v.Problems) == 7 })
}

// TestTLS runs etcd with client certificate authentication: a client with
// a certificate its CA signed publishes and subscribes; one without a
// certificate, with another CA's, or that does not trust etcd's CA, fails
// with an error that says so.
func TestTLS(t *testing.T) {
	skipShort(t)
	e := testenv.StartEtcdTLS(t, 1)
	withTLS := func(ca, cert, key string) func(*Config) {
		return func(c *Config) { c.CAFile, c.CertFile, c.KeyFile = ca, cert, key }
	}
	c := newClient(t, e.Endpoints, withTLS(e.CAFile, e.CertFile, e.KeyFile))
	if _, err := c.Check(t.Context()); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	prod := ClusterOrigin("prod")
	p, _ := publisher(t, c, prod, "a", 10*time.Second)
	waitPublished(t, p, set(t, p, numbered(prod, "web", 2)...))
	_, rec, _ := subscribe(t, c)
	rec.wait(t, "with 2 endpoints over TLS", func(v View) bool { return len(v.Endpoints) == 2 })

	otherCert, otherKey := testenv.NewCA(t).Issue(t, "intruder", false)
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no client certificate", withTLS(e.CAFile, "", ""), "set certFile and keyFile"},
		{"another CA's certificate", withTLS(e.CAFile, otherCert, otherKey), "set certFile and keyFile"},
		{"etcd's CA not trusted", withTLS("", e.CertFile, e.KeyFile), "set caFile"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, e.Endpoints, tt.mod)
			_, err := c.Check(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want an error containing %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

// TestDeadEtcd points a publisher and a subscriber at an address where no
// etcd answers: neither passes anything on, both report the error, and
// both stop promptly when asked.
func TestDeadEtcd(t *testing.T) {
	e := startEtcd(t, 1)
	e.Members[0].Stop() // its port is now closed
	c := newClient(t, e.Endpoints)
	prod := ClusterOrigin("prod")
	p, stopP := publisher(t, c, prod, "a", 10*time.Second)
	set(t, p, numbered(prod, "web", 2)...)
	s, rec, stopS := subscribe(t, c)
	waitStatus(t, s, "failing", func(st SubscriberStatus) bool { return st.LastError != "" })
	deadline := time.Now().Add(testTimeout)
	for p.Status().LastError == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("subscriber: %s", s.Status().LastError)
	t.Logf("publisher: %s", p.Status().LastError)
	if st := p.Status(); st.LastError == "" || st.Leader {
		t.Errorf("publisher: %+v, want an error and no leadership", st)
	}
	if st := s.Status(); st.Connected || st.Listed {
		t.Errorf("subscriber: %+v, want neither connected nor listed", st)
	}
	if n := rec.count(); n != 0 {
		t.Errorf("%d views passed on without etcd, want none", n)
	}
	stopped := time.Now()
	stopP()
	stopS()
	t.Logf("both stopped in %v", time.Since(stopped).Round(time.Millisecond))
}

// TestStandbyStopsWithoutEtcd stops a standby that is campaigning while
// etcd is gone: its Run returns at once all the same.
func TestStandbyStopsWithoutEtcd(t *testing.T) {
	e := startEtcd(t, 1)
	prod := ClusterOrigin("prod")
	a, _ := publisher(t, newClient(t, e.Endpoints), prod, "a", 30*time.Second)
	waitPublished(t, a, set(t, a, numbered(prod, "web", 1)...))
	b, stopB := publisher(t, newClient(t, e.Endpoints), prod, "b", 30*time.Second)
	deadline := time.Now().Add(testTimeout)
	for b.Status().Terms == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // b is waiting in its campaign
	if b.Status().Leader {
		t.Fatal("b leads while a does")
	}
	e.Members[0].Kill()
	stopped := time.Now()
	stopB() // fails the test if Run does not return within 10s
	t.Logf("the standby stopped %v after being asked, etcd gone", time.Since(stopped).Round(time.Millisecond))
}

// TestEtcdRolesEnforceAuthority sets up the roles docs/globalview.md
// describes on a real etcd with client certificate authentication and
// auth enabled, and checks that they hold each writer to its origin: the
// publisher of cluster c1 publishes c1's endpoints, is refused c2's, and a
// reader reads every origin and writes nothing.
func TestEtcdRolesEnforceAuthority(t *testing.T) {
	skipShort(t)
	e := testenv.StartEtcdTLS(t, 1)
	client := func(cn string) *Client {
		cert, key := e.CA.Issue(t, cn, false)
		return newClient(t, e.Endpoints, func(c *Config) { c.CAFile, c.CertFile, c.KeyFile = e.CAFile, cert, key })
	}
	admin := client("root")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	layout := admin.Layout()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	user := func(name string, roles ...string) {
		_, err := admin.etcd.UserAddWithOptions(ctx, name, "", &clientv3.UserAddOptions{NoPassword: true})
		must("add user "+name, err)
		for _, r := range roles {
			must("grant "+r+" to "+name, func() error { _, err := admin.etcd.UserGrantRole(ctx, name, r); return err }())
		}
	}
	grant := func(role, prefix string, perm clientv3.PermissionType) {
		_, err := admin.etcd.RoleGrantPermission(ctx, role, prefix, clientv3.GetPrefixRangeEnd(prefix), perm)
		must("grant "+prefix+" to "+role, err)
	}
	for _, r := range []string{"root", "roost-cluster-c1", "roost-reader"} {
		_, err := admin.etcd.RoleAdd(ctx, r)
		must("add role "+r, err)
	}
	c1 := ClusterOrigin("c1")
	grant("roost-cluster-c1", layout.OriginPrefix(c1), clientv3.PermissionType(clientv3.PermReadWrite))
	grant("roost-cluster-c1", layout.Leaders(c1), clientv3.PermissionType(clientv3.PermReadWrite))
	grant("roost-reader", layout.Endpoints(), clientv3.PermissionType(clientv3.PermRead))
	user("root", "root")
	user("roost-cluster-c1", "roost-cluster-c1")
	user("roost-reader", "roost-reader")
	_, err := admin.etcd.AuthEnable(ctx)
	must("enable auth", err)

	writer, reader := client("roost-cluster-c1"), client("roost-reader")
	_, rec, _ := subscribe(t, reader)
	p, _ := publisher(t, writer, c1, "c1", 3*time.Second)
	gen, err := p.Set(numbered(c1, "default", 3), nil)
	must("set", err)
	waitPublished(t, p, gen)
	rec.wait(t, "c1's endpoints", hasIDs("cluster:c1/default/w-0", "cluster:c1/default/w-1", "cluster:c1/default/w-2"))

	// The same certificate cannot publish another cluster's endpoints.
	c2 := ClusterOrigin("c2")
	q, _ := publisher(t, writer, c2, "c1-as-c2", 3*time.Second)
	if _, err := q.Set(numbered(c2, "default", 1), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for st := q.Status(); !strings.Contains(st.LastError, "permission denied"); st = q.Status() {
		if st.Published > 0 || time.Now().After(deadline) {
			t.Fatalf("c1's certificate publishing as c2: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nor can a reader write, even where c1 may.
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if _, err := reader.etcd.Put(wctx, layout.OriginPrefix(c1)+"default/forged", "{}"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("reader put: %v, want permission denied", err)
	}
	if len(keys(t, admin, layout.OriginPrefix(c2))) != 0 {
		t.Error("c2's prefix was written")
	}
}
