package vips

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"

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
type fakeRoutes struct{ want []netip.Prefix }

func (f *fakeRoutes) Sync(want []netip.Prefix) (routes.Changes, error) {
	f.want = slices.Clone(want)
	return routes.Changes{}, nil
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
