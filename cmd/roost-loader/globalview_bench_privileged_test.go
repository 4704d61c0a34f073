package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// benchViewSize is the number of endpoints in the global view the
// convergence benchmark changes one of.
const benchViewSize = 10000

// benchEndpoints returns n outside workloads of origin sync:bench, half
// app=employee, half app=guest; flipped has endpoint i's app swapped.
func benchEndpoints(n, flipped int) []globalview.Endpoint {
	out := make([]globalview.Endpoint, n)
	for i := range out {
		app := "employee"
		if i%2 == 1 {
			app = "guest"
		}
		if i == flipped {
			app = map[string]string{"employee": "guest", "guest": "employee"}[app]
		}
		labels := policy.EndpointLabels(map[string]string{"app": app, "rack": fmt.Sprintf("r%d", i%40)}, "default",
			map[string]string{"kubernetes.io/metadata.name": "default"}, "", "")
		delete(labels, policy.ClusterLabel)
		out[i] = globalview.Endpoint{Origin: globalview.SyncOrigin("bench"), Namespace: "default", Name: fmt.Sprintf("w%05d", i),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)})}, Labels: labels}
	}
	return out
}

// appliedAtLeast waits, through the loader's API, until its policy is
// built on a view of revision rev or later.
func (n *globalNode) appliedAtLeast(rev int64) error {
	c := n.httpClient()
	c.Timeout = 35 * time.Second
	resp, err := c.Get(fmt.Sprintf("http://%s%s?appliedAtLeast=%d&wait=30s", apiAddr, loaderapi.PathGlobalView, rev))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var g loaderapi.GlobalView
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	if g.Applied < rev {
		return fmt.Errorf("%s: applied revision %d after 30 s, want %d", n.name, g.Applied, rev)
	}
	return nil
}

// BenchmarkPrivilegedGlobalViewConvergence measures change → enforced
// across two clusters of two nodes each (four roost-loader processes on
// this machine, each with pods attached) with 10,000 endpoints in the
// global view: each iteration relabels one outside workload (employee ↔
// guest) through a real publisher and etcd, and times until every loader
// has applied a policy built on the view holding the change (its
// /v1/globalview?appliedAtLeast answers). Reported: p50 and p99 of the
// slowest node per change ("every node"), of every node's time, and the
// median time until the change was in etcd (the publisher encodes all
// 10,000 endpoints again and writes the one that changed).
func BenchmarkPrivilegedGlobalViewConvergence(b *testing.B) {
	e := testenv.StartEtcd(b, 1)
	var nodes []*globalNode
	for _, spec := range []struct{ cluster, name, eps string }{
		{clusterA, "a1", c1File}, {clusterA, "a2", c1File}, {clusterB, "b1", c2File}, {clusterB, "b2", c2File},
	} {
		nodes = append(nodes, newGlobalNode(b, e, spec.cluster, spec.name, spec.eps))
	}
	cfg := globalview.Default()
	cfg.Endpoints = e.Endpoints
	c, err := globalview.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pub, err := globalview.NewPublisher(c, globalview.SyncOrigin("bench"), globalview.PublisherOptions{ID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = pub.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	// published sets eps and returns the revision etcd holds them at.
	published := func(eps []globalview.Endpoint) int64 {
		gen, err := pub.Set(eps, nil)
		if err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			s := pub.Status()
			if s.Published >= gen {
				return s.Last.Revision
			}
			if time.Now().After(deadline) {
				b.Fatalf("generation %d not published in 30 s: %+v", gen, s)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitAll := func(rev int64, start time.Time) (each []time.Duration) {
		each = make([]time.Duration, len(nodes))
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() {
				errs[i] = n.appliedAtLeast(rev)
				each[i] = time.Since(start)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		return each
	}

	rev := published(benchEndpoints(benchViewSize, -1))
	first := time.Now()
	for _, n := range nodes {
		n.start(b)
	}
	for _, n := range nodes {
		n.waitFor(b, n.name+"'s API", func() (bool, string) {
			_, err := n.status()
			return err == nil, fmt.Sprint(err)
		})
	}
	waitAll(rev, first)
	b.Logf("4 loaders started and enforcing a view of %d endpoints in %v", benchViewSize, time.Since(first).Round(time.Millisecond))
	for _, n := range nodes {
		s, err := n.status()
		if err != nil || s.GlobalView == nil || s.GlobalView.Origins["sync:bench"] != benchViewSize {
			b.Fatalf("%s: %v %+v", n.name, err, s.GlobalView)
		}
	}

	var slowest, all, pubs []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		rev := published(benchEndpoints(benchViewSize, i%benchViewSize))
		pubs = append(pubs, time.Since(start))
		each := waitAll(rev, start)
		slowest = append(slowest, slices.Max(each))
		all = append(all, each...)
	}
	b.StopTimer()
	for _, n := range nodes {
		if s, err := n.status(); err == nil {
			b.Logf("%s: its last reconcile (read, merge, compile, apply) took %v", n.name, s.LastApply.Duration.Round(time.Millisecond))
		}
	}
	slices.Sort(slowest)
	slices.Sort(all)
	slices.Sort(pubs)
	pct := func(ds []time.Duration, p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(slowest, 0.5), "p50-every-node-ms")
	b.ReportMetric(pct(slowest, 0.99), "p99-every-node-ms")
	b.ReportMetric(pct(all, 0.5), "p50-per-node-ms")
	b.ReportMetric(pct(all, 0.99), "p99-per-node-ms")
	b.ReportMetric(pct(pubs, 0.5), "p50-in-etcd-ms")
	b.ReportMetric(0, "ns/op")
	var names []string
	for _, n := range nodes {
		names = append(names, n.name)
	}
	b.Logf("nodes %s; %d changes; slowest node per change: max %v", strings.Join(names, ","), len(slowest), slowest[len(slowest)-1])
}
