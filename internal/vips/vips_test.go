package vips

import (
	"net/netip"
	"slices"
	"testing"

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
