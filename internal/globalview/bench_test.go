package globalview

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roost-net/roost/internal/policy"
)

// podLike returns n endpoints of origin o with the labels a pod of a
// Deployment has once derived (about 400 bytes of value each), spread over
// 50 namespaces and 100 nodes.
func podLike(o Origin, n int, version string) []Endpoint {
	out := make([]Endpoint, n)
	for i := range n {
		ns := fmt.Sprintf("team-%d", i%50)
		app := fmt.Sprintf("app-%d", i%400)
		e := ep(o, ns, fmt.Sprintf("%s-7d9f8b6c5-%05d", app, i), fmt.Sprintf("10.%d.%d.%d", 100+i>>16, i>>8&0xff, i&0xff),
			"app", app,
			"app.kubernetes.io/name", app,
			"app.kubernetes.io/version", version,
			"pod-template-hash", "7d9f8b6c5",
			"tier", []string{"web", "api", "db"}[i%3],
			policy.NamespaceLabelsPrefix+"kubernetes.io/metadata.name", ns,
			policy.NamespaceLabelsPrefix+"team", ns,
			policy.ServiceAccountLabel, app,
		)
		e.Node = "node-" + strconv.Itoa(i%100)
		out[i] = e
	}
	return out
}

// BenchmarkPublish10k measures the write load of one cluster's 10,000
// endpoints on a one-member etcd: the first publication, a change of 1%
// (100 endpoints relabelled), and what a subscriber sees of each; then
// the expiry of the publisher's lease, as when it dies.
func BenchmarkPublish10k(b *testing.B) {
	const n = 10000
	e := startEtcd(b, 1)
	c := newClient(b, e.Endpoints)
	for i := range b.N {
		o := ClusterOrigin("bench-" + strconv.Itoa(i))
		p, err := NewPublisher(c, o, PublisherOptions{ID: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		stop := run(b, "publisher", p.Run)
		r := &recorder{}
		s := NewSubscriber(c, SubscriberOptions{}, r.onView)
		stopSub := run(b, "subscriber", s.Run)
		r.wait(b, "listed", func(View) bool { return true })

		eps := podLike(o, n, "1.0")
		began := time.Now()
		gen, err := p.Set(eps, nil)
		if err != nil {
			b.Fatal(err)
		}
		initial := waitPublished(b, p, gen).Last
		_, seen := r.wait(b, "with 10k", func(v View) bool { return len(v.Endpoints) == n })
		b.ReportMetric(initial.Duration.Seconds()*1e3, "initial-ms")
		b.ReportMetric(float64(initial.Txns), "initial-txns")
		b.ReportMetric(float64(initial.Bytes)/float64(n), "bytes/endpoint")
		b.ReportMetric(seen.Sub(began).Seconds()*1e3, "initial-seen-ms")

		for j := 0; j < n; j += 100 {
			eps[j].Labels["app.kubernetes.io/version"] = "1.1"
		}
		began = time.Now()
		if gen, err = p.Set(eps, nil); err != nil {
			b.Fatal(err)
		}
		change := waitPublished(b, p, gen).Last
		_, seen = r.wait(b, "with the change", func(v View) bool {
			return v.Endpoints[eps[n-100].ID()].Labels["app.kubernetes.io/version"] == "1.1"
		})
		if change.Puts != n/100 || change.Deletes != 0 {
			b.Errorf("1%% change: %+v, want %d puts", change, n/100)
		}
		b.ReportMetric(change.Duration.Seconds()*1e3, "change-ms")
		b.ReportMetric(float64(change.Txns), "change-txns")
		b.ReportMetric(seen.Sub(began).Seconds()*1e3, "change-seen-ms")

		// A full listing, as a subscriber makes at start and after a
		// compaction.
		began = time.Now()
		if _, err := listPrefix(context.Background(), c, c.layout.Endpoints(), func(kvPair) {}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(began).Seconds()*1e3, "list-ms")

		// The lease ends (revoked here, as etcd does when it expires):
		// every key goes in one revision.
		lease, err := strconv.ParseInt(p.Status().Lease, 16, 64)
		if err != nil {
			b.Fatal(err)
		}
		stop() // keeps the keys
		began = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := c.etcd.Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
			b.Fatal(err)
		}
		cancel()
		b.ReportMetric(time.Since(began).Seconds()*1e3, "revoke-ms")
		_, seen = r.wait(b, "empty", func(v View) bool { return len(v.Endpoints) == 0 })
		b.ReportMetric(seen.Sub(began).Seconds()*1e3, "revoke-seen-ms")
		stopSub()
	}
}
