package socklb

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/services"
)

func TestEntries(t *testing.T) {
	ip := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	db := services.Service{
		Namespace: "default", Name: "db",
		ClusterIPs:  []netip.Addr{ip("10.96.0.10"), ip("fd00:96::10")},
		ExternalIPs: []netip.Addr{ip("192.0.2.10")},
		Ports: []services.Port{
			{Name: "redis", Protocol: services.TCP, Port: 6379, TargetPortName: "redis"},
			{Name: "dns", Protocol: services.UDP, Port: 53, TargetPort: 5353},
			{Name: "sctp", Protocol: services.SCTP, Port: 9999, TargetPort: 9999},
		},
		InternalTrafficPolicy: services.TrafficPolicyLocal,
		SessionAffinity:       services.SessionAffinityClientIP, SessionAffinityTimeout: 3 * time.Hour,
		Backends: []services.Backend{
			{IP: ip("10.244.2.12"), Node: "node2", Ready: true, Serving: true, Ports: map[string]services.NamedPort{"redis": {Port: 6380, Protocol: services.TCP}}},
			{IP: ip("10.244.1.10"), Node: "node1", Ready: true, Serving: true, Ports: map[string]services.NamedPort{"redis": {Port: 6379, Protocol: services.TCP}}},
			{IP: ip("10.244.1.11"), Node: "node1", Ready: false, Serving: true, Terminating: true},
			{IP: ip("10.244.1.12"), Node: "node1", Ready: true, Serving: true}, // no port "redis"
			{IP: ip("fd00:244:1::10"), Node: "node1", Serving: true, Terminating: true},
		},
	}
	got, notes := Entries([]services.Service{db}, "node1")
	want := []Entry{
		// Cluster IPs: internalTrafficPolicy Local, node1's backends only.
		{Frontend: Frontend{Addr: ip("10.96.0.10"), Port: 6379, Proto: TCP}, Backends: []netip.AddrPort{ap("10.244.1.10:6379")}, Affinity: 3 * time.Hour},
		{Frontend: Frontend{Addr: ip("10.96.0.10"), Port: 53, Proto: UDP}, Backends: []netip.AddrPort{ap("10.244.1.10:5353"), ap("10.244.1.12:5353")}, Affinity: 3 * time.Hour},
		// IPv6: no ready backend, so the serving terminating one.
		{Frontend: Frontend{Addr: ip("fd00:96::10"), Port: 6379, Proto: TCP}, Affinity: 3 * time.Hour},
		{Frontend: Frontend{Addr: ip("fd00:96::10"), Port: 53, Proto: UDP}, Backends: []netip.AddrPort{ap("[fd00:244:1::10]:5353")}, Affinity: 3 * time.Hour},
		// The VIP from inside the cluster: every node's backends.
		{Frontend: Frontend{Addr: ip("192.0.2.10"), Port: 6379, Proto: TCP}, Backends: []netip.AddrPort{ap("10.244.1.10:6379"), ap("10.244.2.12:6380")}, Affinity: 3 * time.Hour},
		{Frontend: Frontend{Addr: ip("192.0.2.10"), Port: 53, Proto: UDP}, Backends: []netip.AddrPort{ap("10.244.1.10:5353"), ap("10.244.1.12:5353"), ap("10.244.2.12:5353")}, Affinity: 3 * time.Hour},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("Entries (-want +got):\n%s", d)
	}
	// fd00:244:1::10 has no port "redis": a note, not a backend.
	if len(notes) != 3 || !strings.Contains(notes[0], `no such named port "redis"`) {
		t.Errorf("notes %q, want three about the missing named port", notes)
	}
	for _, e := range got {
		if err := e.check(); err != nil {
			t.Errorf("entry %s does not check: %v", e.Frontend, err)
		}
	}

	// Without affinity, no Affinity.
	db.SessionAffinity, db.SessionAffinityTimeout = services.SessionAffinityNone, 0
	got, _ = Entries([]services.Service{db}, "node1")
	for _, e := range got {
		if e.Affinity != 0 {
			t.Errorf("%s: affinity %s without sessionAffinity", e.Frontend, e.Affinity)
		}
	}
}
