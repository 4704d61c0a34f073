// Package inspect joins what roost-agent wants announced with what BIRD and
// the kernel really hold, and says, per prefix, what each peer is sent and
// why a prefix is missing, and, per session, what its last error means
// (Explain); it also diffs BIRD configs and redacts their secrets. It is
// pure: roostctl gathers the facts.
package inspect

import (
	"fmt"
	"maps"
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
	// Family is the address family the session carries, FamilyIPv4 or
	// FamilyIPv6 (BIRD's channel); "" means that of Neighbor.
	Family string `json:"family,omitempty"`
	// LocalASN is this node's AS number as BIRD runs it (agent.yaml asn).
	LocalASN uint32 `json:"localASN,omitempty"`
	// ExpectedASN and ReceivedASN are set by Explain when BIRD refused the
	// peer's AS number (LastErrorBadPeerAS): the AS BIRD expects
	// (agent.yaml peers[].asn, as ASN) and the AS the peer sent, from
	// BIRD's log (0 when the log does not tell).
	ExpectedASN uint32 `json:"expectedASN,omitempty"`
	ReceivedASN uint32 `json:"receivedASN,omitempty"`
	// Hint, set by Explain, says in words what LastError means here and
	// what to fix; "" when Explain knows nothing more than BIRD says.
	Hint string `json:"hint,omitempty"`
}

// Address families, as BIRD names its channels and agentapi.Peer.Family
// spells them.
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// Established reports whether the session is up.
func (s Session) Established() bool { return s.BGPState == "Established" }

// unknown reports whether the session's state is not known (BIRD does not
// answer).
func (s Session) unknown() bool {
	return s.State == agentapi.StateUnknown || s.BGPState == agentapi.StateUnknown
}

// family returns the address family of the prefixes s carries: Family, or
// else that of the neighbor address (a link-local IPv6 neighbor is
// FamilyIPv6); "" when neither is known.
func (s Session) family() string {
	if s.Family != "" {
		return s.Family
	}
	return addrFamily(s.Neighbor)
}

func addrFamily(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return ""
	case a.Unmap().Is4():
		return FamilyIPv4
	default:
		return FamilyIPv6
	}
}

// Facts is what roostctl gathered for Routes.
type Facts struct {
	// Status is the agent's status (desired prefixes, last apply).
	Status agentapi.Status
	// InBird holds the prefixes present in roost's static protocols, and
	// the VIPs its kernel protocols learnt.
	InBird map[netip.Prefix]bool
	// Sessions are BIRD's BGP protocols.
	Sessions []Session
	// Exported maps a BIRD protocol name to the prefixes it exports.
	Exported map[string]map[netip.Prefix]bool
	// Blackholes holds the prefixes with a roost kernel blackhole route;
	// nil when the kernel was not read (Status.BlackholeRoutes is off) or
	// could not be (BlackholeError says why).
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
	// VIP says the prefix is a service's VIP (agentapi.Status.VIPs): BIRD
	// learns it from the agent's VIP table, and the main table has no
	// blackhole for it.
	VIP    bool `json:"vip,omitempty"`
	InBird bool `json:"inBird"`
	// ExportedTo maps each peer name to whether BIRD sends it the prefix.
	ExportedTo map[string]bool `json:"exportedTo"`
	// ExpectedOn are the peers the prefix is for, sorted: those whose
	// session carries the prefix's address family.
	ExpectedOn []string `json:"expectedOn"`
	// Blackhole is whether the kernel blackhole route exists; null when
	// the agent keeps none (Status.BlackholeRoutes is off) or the kernel
	// could not be read.
	Blackhole *bool `json:"blackhole"`
	// OK is true when the prefix is desired, exported to every peer of its
	// family and (if the agent keeps them) has its blackhole route, or is
	// neither desired nor exported nor blackholed.
	OK bool `json:"ok"`
	// Problems say, in words, what is wrong and why.
	Problems []string `json:"problems,omitempty"`
	// Note says why a desired prefix is not sent on purpose: the node is
	// drained (roostctl drain).
	Note string `json:"note,omitempty"`
}

// Routes builds the rows of `roostctl routes`: one per desired prefix, and
// one per prefix that BIRD exports, or the kernel blackholes, without it
// being desired. A prefix is expected only on the sessions of its address
// family; one of another family sent to a session is a problem only when it
// is not desired. Blackhole routes are checked only when the agent keeps
// them (Status.BlackholeRoutes).
func Routes(f Facts) []Route {
	blackholes := f.Status.BlackholeRoutes && f.Blackholes != nil
	set := map[netip.Prefix]bool{}
	for _, p := range f.Status.Desired {
		set[p] = true
	}
	vip := map[netip.Prefix]bool{}
	for _, p := range f.Status.VIPs {
		set[p], vip[p] = true, true
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
	if blackholes {
		for p, ok := range f.Blackholes {
			if ok {
				all[p] = true
			}
		}
	}
	prefixes := make([]netip.Prefix, 0, len(all))
	for p := range all {
		prefixes = append(prefixes, p)
	}
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Compare(b) })
	sessions := slices.Clone(f.Sessions)
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].Name < sessions[j].Name })
	// A drained node sends nothing, on purpose.
	drained := f.Status.Drain.State == agentapi.DrainDrained

	rows := make([]Route, 0, len(prefixes))
	for _, p := range prefixes {
		r := Route{Prefix: p, Desired: set[p], VIP: vip[p], InBird: f.InBird[p], ExportedTo: map[string]bool{}, ExpectedOn: []string{}}
		fam := addrFamily(p.Addr())
		missing := 0
		for _, s := range sessions {
			ex := f.Exported[s.Protocol][p]
			r.ExportedTo[s.Name] = ex
			// A session of unknown family is expected to carry everything.
			expected := s.family() == "" || s.family() == fam
			if expected {
				r.ExpectedOn = append(r.ExpectedOn, s.Name)
			}
			switch {
			case r.Desired && expected && !ex && drained && r.InBird:
				r.Note = "withdrawn: the node is drained (roostctl undrain)"
			case r.Desired && expected && ex && drained:
				r.Problems = append(r.Problems, fmt.Sprintf("sent to %s although the node is drained (apply pending? see roostctl status)", s.Name))
			case r.Desired && expected && !ex:
				missing++
				r.Problems = append(r.Problems, whyNotExported(f, s, r.InBird, r.VIP))
			case !r.Desired && ex:
				r.Problems = append(r.Problems, fmt.Sprintf("sent to %s but not desired by the agent (BIRD runs an old config? see roostctl status)", s.Name))
			}
		}
		switch {
		case r.Desired && len(sessions) == 0:
			r.Problems = append(r.Problems, "BIRD has no BGP protocol: no peer is sent anything")
		case r.Desired && len(r.ExpectedOn) == 0:
			msg := fmt.Sprintf("no session of its family (%s)", fam)
			if !slices.Contains(slices.Collect(maps.Values(r.ExportedTo)), true) {
				msg += ": no peer is sent it"
			}
			r.Problems = append(r.Problems, msg)
		}
		if r.Desired && !r.InBird && missing == 0 {
			if r.VIP {
				r.Problems = append(r.Problems, "not learnt by BIRD from the agent's VIP table (vips.table)")
			} else {
				r.Problems = append(r.Problems, "not in BIRD's static protocols")
			}
		}
		// A VIP's blackhole is in the agent's VIP table, not the main one.
		if blackholes && !r.VIP {
			b := f.Blackholes[p]
			r.Blackhole = &b
			switch {
			case r.Desired && !b:
				msg := "no kernel blackhole route (traffic to unused pod IPs would bounce off the ToR)"
				if f.Status.BlackholeError != "" {
					msg += "; the agent's last blackhole sync failed: " + f.Status.BlackholeError
				}
				r.Problems = append(r.Problems, msg)
			case !r.Desired && b:
				r.Problems = append(r.Problems, "kernel blackhole route but not desired by the agent (traffic to it is dropped; the agent removes it at its next sync, see roostctl status)")
			}
		}
		r.OK = len(r.Problems) == 0
		rows = append(rows, r)
	}
	return rows
}

// whyNotExported explains why a desired prefix is not sent to session s.
func whyNotExported(f Facts, s Session, inBird, vip bool) string {
	switch {
	case s.unknown():
		return fmt.Sprintf("not sent to %s: session state unknown (BIRD does not answer, see roostctl status)", s.Name)
	case !inBird && vip:
		msg := fmt.Sprintf("not sent to %s: BIRD did not learn it from the agent's VIP table (vips.table)", s.Name)
		if f.Status.VIPError != "" {
			msg += "; the agent's last VIP sync failed: " + f.Status.VIPError
		}
		return msg
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
		if e := s.LastErrorText(); e != "" {
			msg += " (last error: " + e + ")"
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
