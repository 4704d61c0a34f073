package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPillarKeysChecked renders the formula with a real salt-call: a pillar
// key the formula does not know fails the run when the states render (so
// state.show_sls and test=True fail too), naming the key and the nearest
// known one; a good pillar renders.
func TestPillarKeysChecked(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := newSalt(t, repo)
	good := func() map[string]any {
		return map[string]any{
			"asn": 65101, "router_id": "10.0.1.2", "pod_cidrs": []string{"10.244.1.0/24"},
			"peers": []map[string]any{{"name": "tor1", "address": "10.0.1.1", "asn": 65000, "hold_time": 9}},
			"agent": map[string]any{"blackhole_routes": true},
		}
	}
	// salt/pillar.example, which documents every key, passes the check.
	example, err := os.ReadFile(filepath.Join(repo, "salt", "pillar.example"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.pillars, "roost.sls"), string(example))
	if r := s.apply(t, "state.show_sls", "roost.config"); r.err != nil {
		t.Fatalf("salt/pillar.example does not render: %v\n%s", r.err, r.out)
	}
	s.setPillar(t, good())
	if r := s.apply(t, "state.show_sls", "roost.config"); r.err != nil {
		t.Fatalf("a good pillar does not render: %v\n%s", r.err, r.out)
	}
	tests := []struct {
		name   string
		change func(map[string]any)
		want   string
	}{
		{"top level", func(p map[string]any) { p["pod_cidr"] = p["pod_cidrs"]; delete(p, "pod_cidrs") },
			"roost:pod_cidr is not a key of the roost formula (did you mean roost:pod_cidrs?)"},
		{"nested", func(p map[string]any) { p["agent"] = map[string]any{"blackhole-routes": false} },
			"roost:agent:blackhole-routes is not a key of the roost formula (did you mean roost:agent:blackhole_routes?)"},
		{"peer", func(p map[string]any) { p["peers"].([]map[string]any)[0]["holdtime"] = 9 },
			"roost:peers:0:holdtime is not a key of the roost formula (did you mean roost:peers:0:hold_time?)"},
		{"letters swapped", func(p map[string]any) { p["dokcer"] = map[string]any{} },
			"roost:dokcer is not a key of the roost formula (did you mean roost:docker?)"},
		{"nothing close", func(p map[string]any) { p["zzz"] = 1 },
			"roost:zzz is not a key of the roost formula (known: agent, asn,"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			tt.change(p)
			s.setPillar(t, p)
			for _, args := range [][]string{{"state.show_sls", "roost.config"}, {"state.apply", "roost", "test=True"}} {
				r := s.apply(t, args...)
				if r.err == nil || !strings.Contains(r.out, tt.want) {
					t.Errorf("%s: %v, want it refused with %q\n%s", strings.Join(args, " "), r.err, tt.want, r.out)
				}
				if len(r.changed()) > 0 {
					t.Errorf("%s changed or would change %v", strings.Join(args, " "), r.changed())
				}
			}
		})
	}
}
