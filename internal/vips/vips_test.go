package vips

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/community"
	"github.com/roost-net/roost/internal/routes"
	"github.com/roost-net/roost/internal/services"
)

func TestDesired(t *testing.T) {
	a := netip.MustParseAddr
	be := func(node string, ready, serving bool) services.Backend {
		return services.Backend{IP: a("10.244.1.10"), Node: node, Ready: ready, Serving: serving}
	}
	svcs := []services.Service{
		{Name: "cluster", ClusterIPs: []netip.Addr{a("10.96.0.10")}, ExternalIPs: []netip.Addr{a("192.0.2.10"), a("2001:db8::10")},
			LoadBalancerIPs: []netip.Addr{a("198.51.100.10")}, ExternalTrafficPolicy: services.TrafficPolicyCluster},
		{Name: "local-here", ExternalIPs: []netip.Addr{a("192.0.2.11")}, ExternalTrafficPolicy: services.TrafficPolicyLocal,
			Backends: []services.Backend{be("node1", true, true)}},
		{Name: "local-draining-here", ExternalIPs: []netip.Addr{a("192.0.2.12")}, ExternalTrafficPolicy: services.TrafficPolicyLocal,
			Backends: []services.Backend{be("node1", false, true)}},
		{Name: "local-not-ready-here", ExternalIPs: []netip.Addr{a("192.0.2.13")}, ExternalTrafficPolicy: services.TrafficPolicyLocal,
			Backends: []services.Backend{be("node1", false, false)}},
		{Name: "local-elsewhere", ExternalIPs: []netip.Addr{a("192.0.2.14")}, ExternalTrafficPolicy: services.TrafficPolicyLocal,
			Backends: []services.Backend{be("node2", true, true)}},
		{Name: "same VIP again", ExternalIPs: []netip.Addr{a("192.0.2.10")}},
	}
	got := Desired(svcs, "node1")
	want := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("192.0.2.11/32"), netip.MustParsePrefix("192.0.2.12/32"),
		netip.MustParsePrefix("198.51.100.10/32"), netip.MustParsePrefix("2001:db8::10/128"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("Desired = %v\nwant      %v", got, want)
	}
	if got := Desired(nil, "node1"); len(got) != 0 {
		t.Errorf("no services: %v", got)
	}
}

// fakeRoutes records what the announcer asks the table to hold.
type fakeRoutes struct {
	want    []netip.Prefix
	metrics map[netip.Prefix]uint32
}

func (f *fakeRoutes) SyncMetrics(want map[netip.Prefix]uint32) (routes.Changes, error) {
	f.want = slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare)
	f.metrics = maps.Clone(want)
	return routes.Changes{}, nil
}

// fakeTagger is the agent: tags asked for, and those "applied".
type fakeTagger struct {
	asked   []birdconf.VIPTag
	applied map[uint32]bool
}

func (f *fakeTagger) SetVIPTags(tags []birdconf.VIPTag) { f.asked = slices.Clone(tags) }
func (f *fakeTagger) AppliedVIPTags() map[uint32]bool   { return maps.Clone(f.applied) }

// apply makes BIRD run what was asked.
func (f *fakeTagger) apply() {
	f.applied = map[uint32]bool{}
	for _, t := range f.asked {
		f.applied[t.Metric] = true
	}
}

// TestAnnouncerTags: a VIP whose service asks for communities waits until
// BIRD runs its tag, then gets the tag's metric; a change of its
// communities keeps the old route until the new tag is applied; tags no
// route uses leave bird.conf.
func TestAnnouncerTags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "services.yaml")
	write := func(comms string) {
		t.Helper()
		y := "services:\n  - name: web\n    externalIPs: [192.0.2.10]\n    ports: [{port: 80}]\n" + comms +
			"  - name: plain\n    externalIPs: [192.0.2.11]\n    ports: [{port: 80}]\n"
		if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, tg := &fakeRoutes{}, &fakeTagger{}
	a := New(file, "node1", r, logrus.New())
	a.Tagger = tg
	web, plain := netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("192.0.2.11/32")
	c300 := []community.Community{{A: 65000, B: 300}}
	m300 := TagMetrics(map[string][]community.Community{"65000:300": c300})["65000:300"]
	c301 := []community.Community{{A: 65000, B: 301}}
	m301 := TagMetrics(map[string][]community.Community{"65000:301": c301})["65000:301"]
	if m300 < TagMetricBase || m300 == m301 {
		t.Fatalf("metrics %d %d", m300, m301)
	}

	write("    bgpCommunities: [\"65000:300\"]\n")
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(r.metrics, map[netip.Prefix]uint32{plain: 0}) || !slices.Equal(a.Status().WaitingForTags, []netip.Prefix{web}) {
		t.Fatalf("before BIRD knows the tag: table %v, status %+v", r.metrics, a.Status())
	}
	if len(tg.asked) != 1 || tg.asked[0].Metric != m300 || !slices.Equal(tg.asked[0].Communities, c300) {
		t.Fatalf("tags asked: %+v", tg.asked)
	}
	tg.apply()
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(r.metrics, map[netip.Prefix]uint32{plain: 0, web: m300}) || len(a.Status().WaitingForTags) != 0 {
		t.Fatalf("after: table %v, status %+v", r.metrics, a.Status())
	}

	// Another community: the route keeps its metric (and BIRD the old
	// tag) until the new tag is applied.
	write("    bgpCommunities: [\"65000:301\"]\n")
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(r.metrics, map[netip.Prefix]uint32{plain: 0, web: m300}) || len(tg.asked) != 2 {
		t.Fatalf("changed, before BIRD knows: table %v, tags %+v", r.metrics, tg.asked)
	}
	tg.apply()
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(r.metrics, map[netip.Prefix]uint32{plain: 0, web: m301}) || len(tg.asked) != 1 || tg.asked[0].Metric != m301 {
		t.Fatalf("changed: table %v, tags %+v", r.metrics, tg.asked)
	}

	// No communities: metric 0 at once (no tag needed), and the tag goes.
	write("")
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(r.metrics, map[netip.Prefix]uint32{plain: 0, web: 0}) || len(tg.asked) != 0 {
		t.Fatalf("none: table %v, tags %+v", r.metrics, tg.asked)
	}
}

func TestTagMetricsStable(t *testing.T) {
	sets := map[string][]community.Community{}
	var keys []string
	for i := range 200 {
		c := []community.Community{{A: 65000, B: uint32(i)}}
		k := community.Join(c)
		sets[k], keys = c, append(keys, k)
	}
	all := TagMetrics(sets)
	seen := map[uint32]bool{}
	for _, k := range keys {
		m := all[k]
		if m < TagMetricBase || m >= TagMetricBase+TagMetricSpan || seen[m] {
			t.Fatalf("set %s: metric %d out of range or taken", k, m)
		}
		seen[m] = true
		// Alone, a set has the same metric (no clash among these).
		if one := TagMetrics(map[string][]community.Community{k: sets[k]})[k]; one != m {
			t.Errorf("set %s: %d alone, %d among others", k, one, m)
		}
	}
}

// TestAnnouncer: the file's VIPs go to the table; an excluded node (its
// Node's label) withdraws them all; a file that does not load keeps them.
func TestAnnouncer(t *testing.T) {
	file := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(file, []byte("services:\n  - name: web\n    externalIPs: [192.0.2.10]\n    ports: [{port: 80}]\n    backends: [{ip: 10.244.1.10, node: node1}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &fakeRoutes{}
	a := New(file, "node1", r, logrus.New())
	vip := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}
	if err := a.Sync(); err != nil || !slices.Equal(r.want, vip) || !slices.Equal(a.Status().VIPs, vip) {
		t.Fatalf("Sync: %v, table %v, status %+v", err, r.want, a.Status())
	}
	a.SetExcluded(true)
	if err := a.Sync(); err != nil || len(r.want) != 0 || !a.Status().Excluded {
		t.Fatalf("excluded: %v, table %v, status %+v", err, r.want, a.Status())
	}
	a.SetExcluded(false)
	if err := a.Sync(); err != nil || !slices.Equal(r.want, vip) {
		t.Fatalf("back: %v, table %v", err, r.want)
	}
	if err := os.WriteFile(file, []byte("services: [{name: web, ports: 80}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err == nil || !slices.Equal(r.want, vip) || a.Status().Error == "" {
		t.Fatalf("broken file: %v, table %v, status %+v", err, r.want, a.Status())
	}
}
