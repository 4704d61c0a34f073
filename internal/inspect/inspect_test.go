package inspect

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
)

var (
	p1 = netip.MustParsePrefix("10.244.1.0/24")
	p2 = netip.MustParsePrefix("10.244.2.0/24")
)

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
			name: "session down",
			facts: Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: yes,
				Sessions: sessions("Established", "Active"),
				Exported: map[string]map[netip.Prefix]bool{"bgp_tor1": yes}, Blackholes: yes,
			},
			problems: []string{"not sent to tor2: session is Active, not Established (last error: Socket: Connection refused)"},
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
				Status: agentapi.Status{Desired: []netip.Prefix{p1}}, InBird: yes,
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
	if !rows[0].ExportedTo["tor1"] || !rows[0].ExportedTo["tor2"] || !rows[0].OK {
		t.Errorf("row = %+v", rows[0])
	}
}
