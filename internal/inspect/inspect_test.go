package inspect

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdctl"
)

var (
	p1 = netip.MustParsePrefix("10.244.1.0/24")
	p2 = netip.MustParsePrefix("10.244.2.0/24")
	p6 = netip.MustParsePrefix("fd00:10:244:1::/64")
)

// dualStack are an IPv4 and an IPv6 (link-local) session, both up.
func dualStack() []Session {
	return []Session{
		{Name: "tor1", Protocol: "bgp_tor1", Neighbor: netip.MustParseAddr("10.0.1.1"), State: "up", BGPState: "Established"},
		{Name: "tor2", Protocol: "bgp_tor2", Neighbor: netip.MustParseAddr("fe80::1%eth1"), State: "up", BGPState: "Established"},
	}
}

func set(ps ...netip.Prefix) map[netip.Prefix]bool {
	m := map[netip.Prefix]bool{}
	for _, p := range ps {
		m[p] = true
	}
	return m
}

func sessions(bgp1, bgp2 string) []Session {
	return []Session{
		{Name: "tor2", Protocol: "bgp_tor2", BGPState: bgp2, State: "start", LastError: "Socket: Connection refused"},
		{Name: "tor1", Protocol: "bgp_tor1", BGPState: bgp1, State: "up"},
	}
}

func TestRoutes(t *testing.T) {
	yes := map[netip.Prefix]bool{p1: true}
	tests := []struct {
		name     string
		facts    Facts
		ok       bool
		problems []string
		// nProblems, if not 0, is how many problems there must be.
		nProblems int
	}{
		{
			name: "all good",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: yes,
				Sessions: sessions("Established", "Established"),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": yes, "bgp_tor2": yes}, Blackholes: yes,
			},
			ok: true,
		},
		{
			name: "dual stack",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1, p6}, BlackholeRoutes: true},
				InBird: set(p1, p6), Sessions: dualStack(),
				Exported:   map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1), "bgp_tor2": set(p6)},
				Blackholes: set(p1, p6),
			},
			ok: true,
		},
		{
			name: "session family from BIRD's channel",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1, p6}}, InBird: set(p1, p6),
				Sessions: []Session{
					{Name: "tor1", Protocol: "bgp_tor1", Family: FamilyIPv4, BGPState: "Established"},
					{Name: "tor2", Protocol: "bgp_tor2", Family: FamilyIPv6, BGPState: "Established"},
				},
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1), "bgp_tor2": set(p6)},
			},
			ok: true,
		},
		{
			name: "drained: nothing sent, on purpose",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}, Drain: agentapi.Drain{State: agentapi.DrainDrained}},
				InBird: yes, Sessions: sessions("Established", "Established"),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": {}, "bgp_tor2": {}},
			},
			ok: true,
		},
		{
			name: "drained but still sent",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}, Drain: agentapi.Drain{State: agentapi.DrainDrained}},
				InBird: yes, Sessions: sessions("Established", "Established"),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": yes, "bgp_tor2": {}},
			},
			problems:  []string{"sent to tor1 although the node is drained"},
			nProblems: 1,
		},
		{
			name: "v4-only prefix not expected on v6 peer",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: set(p1), Sessions: dualStack(),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1), "bgp_tor2": {}},
			},
			ok: true,
		},
		{
			name: "v6 prefix missing on the v6 peer",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1, p6}}, InBird: set(p1, p6), Sessions: dualStack(),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1), "bgp_tor2": {}},
			},
			problems:  []string{"not sent to tor2: in BIRD and the session is up, but the export filter rejects it"},
			nProblems: 1,
		},
		{
			name: "desired prefix of the other family sent is not a problem",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1, p6}}, InBird: set(p1, p6), Sessions: dualStack(),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1, p6), "bgp_tor2": set(p1, p6)},
			},
			ok: true,
		},
		{
			name: "undesired prefix of the other family sent",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p6}}, InBird: set(p6), Sessions: dualStack(),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": {}, "bgp_tor2": set(p1, p6)},
			},
			problems:  []string{"sent to tor2 but not desired"},
			nProblems: 1,
		},
		{
			name: "no session of its family",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1, p6}}, InBird: set(p1, p6),
				Sessions: dualStack()[:1],
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1)},
			},
			problems:  []string{"no session of its family (ipv6): no peer is sent it"},
			nProblems: 1,
		},
		{
			name: "no session of its family, sent on another",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p6}}, InBird: set(p6),
				Sessions: dualStack()[:1],
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": set(p6)},
			},
			problems:  []string{"no session of its family (ipv6)"},
			nProblems: 1,
		},
		{
			name: "blackholes off",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1, p6}}, InBird: set(p1, p6), Sessions: dualStack(),
				Exported:   map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1), "bgp_tor2": set(p6)},
				Blackholes: map[netip.Prefix]bool{},
			},
			ok: true,
		},
		{
			name: "blackholes on but missing",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1, p6}, BlackholeRoutes: true, BlackholeError: "netlink: operation not permitted"},
				InBird: set(p1, p6), Sessions: dualStack(),
				Exported:   map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1), "bgp_tor2": set(p6)},
				Blackholes: set(p1),
			},
			problems:  []string{"no kernel blackhole route (traffic to unused pod IPs would bounce off the ToR); the agent's last blackhole sync failed: netlink: operation not permitted"},
			nProblems: 1,
		},
		{
			name: "blackholes on, kernel unreadable",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}, BlackholeRoutes: true}, InBird: set(p1), Sessions: dualStack(),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1)}, BlackholeError: "permission denied",
			},
			ok: true,
		},
		{
			name: "stale blackhole",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}, BlackholeRoutes: true}, InBird: set(p1), Sessions: dualStack(),
				Exported:   map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1)},
				Blackholes: set(p1, p2),
			},
			problems:  []string{"kernel blackhole route but not desired"},
			nProblems: 1,
		},
		{
			name: "session state unknown",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: set(p1),
				Sessions: []Session{{Name: "tor1", Protocol: "bgp_tor1", Neighbor: netip.MustParseAddr("10.0.1.1"), State: agentapi.StateUnknown, BGPState: agentapi.StateUnknown}},
			},
			problems:  []string{"not sent to tor1: session state unknown (BIRD does not answer"},
			nProblems: 1,
		},
		{
			name: "session down",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: yes,
				Sessions: sessions("Established", "Active"),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": yes}, Blackholes: yes,
			},
			problems: []string{"not sent to tor2: session is Active, not Established (last error: Socket: Connection refused)"},
		},
		{
			name: "session down for a bad peer AS",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: yes,
				Sessions: []Session{
					Explain(Session{Name: "tor1", Protocol: "bgp_tor1", ASN: 65001, State: "start", BGPState: "Idle", LastError: LastErrorBadPeerAS},
						BirdLog{File: "/run/bird/bird.log", BadPeerAS: map[string]birdctl.BadPeerAS{"bgp_tor1": {Error: true, ErrorAS: 65000}}}),
				},
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": {}},
			},
			problems:  []string{"not sent to tor1: session is Idle, not Established (last error: Bad peer AS: tor1 sent AS 65000, agent.yaml expects 65001 (peers[].asn); fix one side)"},
			nProblems: 1,
		},
		{
			name: "apply failed",
			facts: Facts{
				Status:   agentapi.Status{Desired: []netip.Prefix{p1}, LastApply: agentapi.Apply{Result: agentapi.ResultFailed, Error: "bird rejected"}},
				Sessions: sessions("Established", "Established"), Blackholes: yes,
			},
			problems: []string{"not sent to tor1: not in BIRD, the last apply failed: bird rejected", "not sent to tor2: not in BIRD, the last apply failed: bird rejected"},
		},
		{
			name: "stale export and missing blackhole",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}, BlackholeRoutes: true}, InBird: yes,
				Sessions:   sessions("Established", "Established"),
				Exported:   map[string]map[netip.Prefix]bool{"bgp_tor1": {p1: true, p2: true}, "bgp_tor2": yes},
				Blackholes: map[netip.Prefix]bool{},
			},
			problems: []string{"no kernel blackhole route", "sent to tor1 but not desired"},
		},
		{
			name:     "no sessions",
			facts:    Facts{Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: yes},
			problems: []string{"BIRD has no BGP protocol"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := Routes(tt.facts)
			if AllOK(rows) != tt.ok {
				t.Errorf("AllOK = %v, want %v; rows %+v", !tt.ok, tt.ok, rows)
			}
			var all []string
			for _, r := range rows {
				all = append(all, r.Problems...)
			}
			text := strings.Join(all, "\n")
			for _, want := range tt.problems {
				if !strings.Contains(text, want) {
					t.Errorf("problems:\n%s\nlack %q", text, want)
				}
			}
			if tt.ok && len(all) > 0 {
				t.Errorf("unexpected problems: %s", text)
			}
			if tt.nProblems != 0 && len(all) != tt.nProblems {
				t.Errorf("%d problems, want %d:\n%s", len(all), tt.nProblems, text)
			}
		})
	}
}

func TestRoutesOrderAndPeers(t *testing.T) {
	rows := Routes(Facts{
		Status:   agentapi.Status{Desired: []netip.Prefix{p2, p1}},
		InBird:   map[netip.Prefix]bool{p1: true, p2: true},
		Sessions: sessions("Established", "Established"),
		Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": {p1: true, p2: true}, "bgp_tor2": {p1: true, p2: true}},
	})
	if len(rows) != 2 || rows[0].Prefix != p1 || rows[1].Prefix != p2 {
		t.Fatalf("rows not sorted: %+v", rows)
	}
	if rows[0].Blackhole != nil {
		t.Error("blackhole known without kernel facts")
	}
	if !slices.Equal(rows[0].ExpectedOn, []string{"tor1", "tor2"}) {
		t.Errorf("ExpectedOn = %q", rows[0].ExpectedOn)
	}
	if !rows[0].ExportedTo["tor1"] || !rows[0].ExportedTo["tor2"] || !rows[0].OK {
		t.Errorf("row = %+v", rows[0])
	}
}

func TestRoutesDualStackRows(t *testing.T) {
	rows := Routes(Facts{
		Status: agentapi.Status{Desired: []netip.Prefix{p6, p1}, BlackholeRoutes: true},
		InBird: set(p1, p6), Sessions: dualStack(),
		Exported:   map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1), "bgp_tor2": set(p6)},
		Blackholes: set(p1, p6),
	})
	if len(rows) != 2 {
		t.Fatalf("rows = %+v", rows)
	}
	for i, want := range []struct {
		prefix   netip.Prefix
		expected []string
	}{{p1, []string{"tor1"}}, {p6, []string{"tor2"}}} {
		r := rows[i]
		if r.Prefix != want.prefix || !slices.Equal(r.ExpectedOn, want.expected) || !r.OK || r.Blackhole == nil || !*r.Blackhole {
			t.Errorf("row %d = %+v, want prefix %s expected on %q, OK, blackholed", i, r, want.prefix, want.expected)
		}
	}
}

func TestRoutesBlackholesOffIsNull(t *testing.T) {
	rows := Routes(Facts{
		Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: set(p1), Sessions: dualStack(),
		Exported:   map[string]map[netip.Prefix]bool{"bgp_tor1": set(p1)},
		Blackholes: set(p2),
	})
	if len(rows) != 1 || rows[0].Blackhole != nil || !rows[0].OK {
		t.Errorf("rows = %+v, want one OK row with blackhole null", rows)
	}
}

// TestRoutesVIPs: a VIP the agent announces is desired, learnt by BIRD
// from the VIP table and checked against no main-table blackhole.
func TestRoutesVIPs(t *testing.T) {
	pod, vip := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("192.0.2.10/32")
	f := Facts{
		Status:     agentapi.Status{Desired: []netip.Prefix{pod}, VIPs: []netip.Prefix{vip}, BlackholeRoutes: true},
		InBird:     map[netip.Prefix]bool{pod: true, vip: true},
		Sessions:   []Session{{Name: "tor1", Protocol: "bgp_tor1", BGPState: "Established", Neighbor: netip.MustParseAddr("10.0.1.1")}},
		Exported:   map[string]map[netip.Prefix]bool{"bgp_tor1": {pod: true, vip: true}},
		Blackholes: map[netip.Prefix]bool{pod: true},
	}
	rows := Routes(f)
	if len(rows) != 2 || !AllOK(rows) || !rows[1].VIP || rows[1].Blackhole != nil || rows[0].VIP {
		t.Fatalf("rows %+v", rows)
	}
	f.InBird[vip] = false
	f.Exported["bgp_tor1"][vip] = false
	rows = Routes(f)
	if rows[1].OK || !strings.Contains(strings.Join(rows[1].Problems, ";"), "VIP table") {
		t.Errorf("a VIP BIRD did not learn: %+v", rows[1])
	}
}
