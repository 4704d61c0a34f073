// Package inspect joins what roost-agent wants announced with what BIRD and
// the kernel really hold, and says, per prefix, what each peer is sent and
// why a prefix is missing. It is pure: roostctl gathers the facts.
package inspect

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/roost-net/roost/internal/agentapi"
)

// Session is one BGP protocol of BIRD, as `roostctl peers` shows it.
type Session struct {
	Name      string     `json:"name"`     // the peer's name in roost's config
	Protocol  string     `json:"protocol"` // BIRD's protocol name
	Neighbor  netip.Addr `json:"neighbor"`
	ASN       uint32     `json:"asn"`
	State     string     `json:"state"`    // BIRD protocol state: up, start, down
	BGPState  string     `json:"bgpState"` // Established, Active, Connect, ...
	Since     string     `json:"since"`    // as BIRD prints it
	LastError string     `json:"lastError"`
	Exported  int        `json:"exported"` // routes exported to the peer
}

// Established reports whether the session is up.
func (s Session) Established() bool { return s.BGPState == "Established" }

// Facts is what roostctl gathered for Routes.
type Facts struct {
	// Status is the agent's status (desired prefixes, last apply).
	Status agentapi.Status
	// InBird holds the prefixes present in roost's static protocols.
	InBird map[netip.Prefix]bool
	// Sessions are BIRD's BGP protocols.
	Sessions []Session
	// Exported maps a BIRD protocol name to the prefixes it exports.
	Exported map[string]map[netip.Prefix]bool
	// Blackholes holds the prefixes with a roost kernel blackhole route;
	// nil when the kernel could not be read (BlackholeError says why).
	Blackholes     map[netip.Prefix]bool
	BlackholeError string
}

// Route is one row of `roostctl routes`.
type Route struct {
	Prefix netip.Prefix `json:"prefix"`
	// Desired is true for prefixes the agent wants announced; a prefix
	// that BIRD exports without being desired is listed too, with a
	// problem.
	Desired bool `json:"desired"`
	InBird  bool `json:"inBird"`
	// ExportedTo maps each peer name to whether BIRD sends it the prefix.
	ExportedTo map[string]bool `json:"exportedTo"`
	// Blackhole is whether the kernel blackhole route exists (null when
	// unknown).
	Blackhole *bool `json:"blackhole"`
	// OK is true when the prefix is desired and exported to every peer,
	// or neither.
	OK bool `json:"ok"`
	// Problems say, in words, what is wrong and why.
	Problems []string `json:"problems,omitempty"`
}

// Routes builds the rows of `roostctl routes`: one per desired prefix, and
// one per prefix BIRD exports that is not desired.
func Routes(f Facts) []Route {
	set := map[netip.Prefix]bool{}
	for _, p := range f.Status.Desired {
		set[p] = true
	}
	all := map[netip.Prefix]bool{}
	for p := range set {
		all[p] = true
	}
	for _, ex := range f.Exported {
		for p := range ex {
			all[p] = true
		}
	}
	prefixes := make([]netip.Prefix, 0, len(all))
	for p := range all {
		prefixes = append(prefixes, p)
	}
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Compare(b) })
	sessions := slices.Clone(f.Sessions)
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].Name < sessions[j].Name })

	rows := make([]Route, 0, len(prefixes))
	for _, p := range prefixes {
		r := Route{Prefix: p, Desired: set[p], InBird: f.InBird[p], ExportedTo: map[string]bool{}}
		if f.Blackholes != nil {
			b := f.Blackholes[p]
			r.Blackhole = &b
		}
		missing := 0
		for _, s := range sessions {
			ex := f.Exported[s.Protocol][p]
			r.ExportedTo[s.Name] = ex
			switch {
			case r.Desired && !ex:
				missing++
				r.Problems = append(r.Problems, whyNotExported(f, s, r.InBird))
			case !r.Desired && ex:
				r.Problems = append(r.Problems, fmt.Sprintf("sent to %s but not desired by the agent (BIRD runs an old config? see roostctl status)", s.Name))
			}
		}
		if r.Desired && !r.InBird && missing == 0 {
			r.Problems = append(r.Problems, "not in BIRD's static protocols")
		}
		if r.Desired && r.Blackhole != nil && !*r.Blackhole {
			r.Problems = append(r.Problems, "no kernel blackhole route (traffic to unused pod IPs would bounce off the ToR)")
		}
		if r.Desired && len(sessions) == 0 {
			r.Problems = append(r.Problems, "BIRD has no BGP protocol: no peer is sent anything")
		}
		r.OK = len(r.Problems) == 0
		rows = append(rows, r)
	}
	return rows
}

// whyNotExported explains why a desired prefix is not sent to session s.
func whyNotExported(f Facts, s Session, inBird bool) string {
	switch {
	case !inBird && f.Status.LastApply.Result == agentapi.ResultFailed:
		return fmt.Sprintf("not sent to %s: not in BIRD, the last apply failed: %s", s.Name, f.Status.LastApply.Error)
	case !inBird:
		return fmt.Sprintf("not sent to %s: not in BIRD (apply pending? see roostctl status)", s.Name)
	case !s.Established():
		st := s.BGPState
		if st == "" {
			st = s.State
		}
		msg := fmt.Sprintf("not sent to %s: session is %s, not Established", s.Name, st)
		if s.LastError != "" {
			msg += " (last error: " + s.LastError + ")"
		}
		return msg
	default:
		return fmt.Sprintf("not sent to %s: in BIRD and the session is up, but the export filter rejects it", s.Name)
	}
}

// AllOK reports whether every row is OK.
func AllOK(rows []Route) bool {
	for _, r := range rows {
		if !r.OK {
			return false
		}
	}
	return true
}
