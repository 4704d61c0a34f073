package testenv

import (
	"fmt"
	"net/netip"
	"strings"
)

// FRRPath is one path bgpd holds for a prefix, with the attributes roost
// sets.
type FRRPath struct {
	NextHop          netip.Addr
	Communities      []string // standard ones as "A:B"; well-known ones by FRR's name ("graceful-shutdown")
	LargeCommunities []string // "A:B:C"
	MED              int64    // -1 when the path has none
	LocalPref        int64    // -1 when the path has none
	Best             bool
	Multipath        bool
	// Stale: bgpd keeps the path as a graceful-restart helper for a peer
	// whose session went down without a NOTIFICATION, until the peer
	// sends it again (the mark goes) or its restart or stale-path timer
	// runs out (the path goes).
	Stale bool
}

// Paths returns the paths bgpd holds for prefix, from "show bgp ipv4|ipv6
// unicast PREFIX json"; none when it holds no such prefix.
func (f *FRR) Paths(prefix netip.Prefix) ([]FRRPath, error) {
	family := "ipv4"
	if prefix.Addr().Is6() {
		family = "ipv6"
	}
	var route struct {
		Paths []struct {
			Community *struct {
				String string `json:"string"`
			} `json:"community"`
			LargeCommunity *struct {
				String string `json:"string"`
			} `json:"largeCommunity"`
			MED      *int64 `json:"metric"`
			LocPrf   *int64 `json:"locPrf"`
			Bestpath *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			Multipath bool `json:"multipath"`
			Stale     bool `json:"stale"`
			Nexthops  []struct {
				IP    string `json:"ip"`
				Scope string `json:"scope"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	cmd := fmt.Sprintf("show bgp %s unicast %s json", family, prefix)
	if err := f.vtyshJSON(cmd, &route); err != nil {
		return nil, err
	}
	var out []FRRPath
	for _, p := range route.Paths {
		fp := FRRPath{MED: -1, LocalPref: -1, Multipath: p.Multipath, Stale: p.Stale}
		if p.Community != nil {
			fp.Communities = strings.Fields(p.Community.String)
		}
		if p.LargeCommunity != nil {
			fp.LargeCommunities = strings.Fields(p.LargeCommunity.String)
		}
		if p.MED != nil {
			fp.MED = *p.MED
		}
		if p.LocPrf != nil {
			fp.LocalPref = *p.LocPrf
		}
		fp.Best = p.Bestpath != nil && p.Bestpath.Overall
		for _, nh := range p.Nexthops {
			if a, err := netip.ParseAddr(nh.IP); err == nil && (!fp.NextHop.IsValid() || nh.Scope != "link-local") {
				fp.NextHop = a
			}
		}
		out = append(out, fp)
	}
	return out, nil
}
